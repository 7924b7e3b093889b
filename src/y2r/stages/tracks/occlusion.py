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
   world position seen from this frame's camera, or a moving point's last observed depth).
   ``expected > observed * (1 + tol)`` means something nearer covers the point. The test is
   one-sided on purpose: an observed depth *behind* the expectation is a depth-map hole or a
   silhouette pixel, not an occluder.

   An estimated depth map is not exact, and the appearance test already catches most occluders,
   so the depth test must only fire on clear evidence. Measured on the accuracy suite, a fixed 5%
   margin rejected far more visible points than hidden ones (fast_blur 146 of 150, occluder 154
   of 162): a frame's depth disagrees with the static points' anchors by a robust std of 1-3.5%
   (of the log ratio), with tails beyond 5%. So the margin is widened by the frame's own depth
   noise (``depth_noise``, measured on the static points that agree with their anchors), which
   is 0 for exact depth and follows the quality of an estimated one. The tracker's other depth
   tests (does a measurement agree with its anchor's depth, is there a surface at the anchor's
   projection) use the same widened margin: a disagreement within the depth map's own noise
   would otherwise re-anchor a static point, which then loses its projection as a prediction.

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


def depth_noise(observed_z: np.ndarray, expected_z: np.ndarray, min_points: int = 10) -> float:
    """Robust std (1.4826 MAD) of log(observed / expected) over the pairs where both are known.

    0 where fewer than ``min_points`` pairs are known (no evidence of noise: the base tolerance).
    """
    o = np.asarray(observed_z, np.float64)
    e = np.asarray(expected_z, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.log(o / e)
    r = r[np.isfinite(r)]
    if len(r) < min_points:
        return 0.0
    return float(1.4826 * np.median(np.abs(r - np.median(r))))


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
