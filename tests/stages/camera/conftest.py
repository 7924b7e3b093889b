"""Fixtures of the built-in camera backend's tests (clip builders: camera_clips.py)."""

from __future__ import annotations

import numpy as np
import pytest

from .camera_clips import rotation_clip


@pytest.fixture(scope="session")
def room_orbit(shared) -> dict:
    z = np.load(shared / "fixtures" / "room_orbit_gt.npz")
    return {k: z[k] for k in ("rgb", "depth", "K", "c2w", "moving_mask")}


@pytest.fixture(scope="session")
def rotating(room_orbit) -> tuple[np.ndarray, np.ndarray]:
    return rotation_clip(room_orbit["rgb"][0], room_orbit["K"])
