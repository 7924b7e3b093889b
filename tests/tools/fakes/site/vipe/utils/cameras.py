from enum import Enum


class CameraType(Enum):
    PINHOLE = "pinhole"
    PANORAMA = "panorama"
    SIMPLE_DIVISIONAL = "simple_divisional"
    MEI = "mei"
