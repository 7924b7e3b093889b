"""Small generated videos for tests (importable as `video_samples`: tests/ is on sys.path)."""

from __future__ import annotations

import numpy as np


def make_frames(T: int = 12, H: int = 48, W: int = 64, seed: int = 0) -> np.ndarray:
    """A textured image translating 2 px per frame (enough structure for every codec and tracker)."""
    rng = np.random.default_rng(seed)
    big = rng.integers(0, 256, size=(H + 8, W + 2 * T + 8, 3), dtype=np.uint8)
    big = np.repeat(np.repeat(big[::4, ::4], 4, 0), 4, 1)[: H + 8, : W + 2 * T + 8]
    return np.stack([big[4:4 + H, 2 * t:2 * t + W] for t in range(T)])
