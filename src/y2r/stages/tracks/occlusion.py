"""Visibility evidence for tracked points: image bounds and depth consistency.

The tracker (``point_tracker.py``) decides visibility per frame from four kinds of evidence:

1. **Bounds**: the position lies inside the image, ``[0, W-1] x [0, H-1]`` (pixel centres).
2. **Motion consistency**: the frame-to-frame flow that brought the point there passed the
   forward-backward check (``optical_flow.py``), or a search found it again.
3. **Appearance**: after affine alignment the point's neighbourhood still correlates with its
   query-frame template (``template_alignment.py``). An occluder covering the point replaces its
   texture, which this catches whatever the occluder's own motion is.
4. **Depth consistency** (here): the depth map must not show a surface *in front of* where the
   point is expected. The expected depth comes from the point's own 3D state (a static point's
   world position seen from this frame's camera, or a moving point's last observed depth); the
   observed depth is the depth map at the tracked pixel. ``expected > observed * (1 + tol)`` means
   something nearer covers the point. The test is one-sided on purpose: an observed depth
   *behind* the expectation is a depth-map hole or a silhouette pixel, not an occluder.

Unknown depth (NaN) is never evidence either way.
"""

from __future__ import annotations

import numpy as np


def inside_image(uv: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(N,2) pixel positions -> (N,) bool, inside ``[0, W-1] x [0, H-1]`` (NaN is outside)."""
    H, W = shape
    uv = np.asarray(uv, np.float64).reshape(-1, 2)
    with np.errstate(invalid="ignore"):
        return (uv[:, 0] >= 0) & (uv[:, 0] <= W - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= H - 1)


def depth_occluded(expected_z: np.ndarray, observed_z: np.ndarray, tol: float) -> np.ndarray:
    """True where the observed surface is nearer than the expected point by more than ``tol`` (relative)."""
    e = np.asarray(expected_z, np.float64)
    o = np.asarray(observed_z, np.float64)
    with np.errstate(invalid="ignore"):
        return np.isfinite(e) & np.isfinite(o) & (e > o * (1.0 + tol))


def depth_consistent(expected_z: np.ndarray, observed_z: np.ndarray, tol: float) -> np.ndarray:
    """True where both depths are known and agree within ``tol`` (relative to the expected one)."""
    e = np.asarray(expected_z, np.float64)
    o = np.asarray(observed_z, np.float64)
    with np.errstate(invalid="ignore"):
        return np.isfinite(e) & np.isfinite(o) & (np.abs(o - e) <= tol * e)


def depth_contradicts(expected_z: np.ndarray, observed_z: np.ndarray, tol: float) -> np.ndarray:
    """True where both depths are known and disagree by more than ``tol`` (either direction)."""
    e = np.asarray(expected_z, np.float64)
    o = np.asarray(observed_z, np.float64)
    with np.errstate(invalid="ignore"):
        return np.isfinite(e) & np.isfinite(o) & (np.abs(o - e) > tol * e)
