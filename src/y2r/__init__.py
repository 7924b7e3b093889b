"""y2r: human-demonstration videos to robot-learning datasets."""

__version__ = "0.1.0"
