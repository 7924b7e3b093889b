"""Frame-to-frame sparse optical flow: pyramidal Lucas-Kanade with a forward-backward check.

Each frame is converted once (``FlowFrame``) and used for the forward pass (previous -> current)
and the backward pass (current -> previous). OpenCV builds the image pyramids inside each call:
its 5.x Python binding no longer accepts the pre-built pyramid of ``buildOpticalFlowPyramid``, and
rebuilding costs about a millisecond per call at 512x384. The forward-backward error
(Kalal, Mikolajczyk and Matas, ICPR 2010) is the distance between a point and the result of
tracking it forward and then back; a large value means the flow is not self-consistent there
(occlusion, disocclusion, a textureless or repetitive patch) and the step is not trusted.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Stop after 30 iterations or when the update is below 0.01 px (OpenCV's defaults are 30 / 0.01).
_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 30, 0.01)


def to_grey(rgb: np.ndarray) -> np.ndarray:
    """(H,W,3) uint8 RGB -> (H,W) uint8 grey (ITU-R BT.601 luma, as OpenCV computes it)."""
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


@dataclass
class FlowFrame:
    """One frame prepared for tracking: grey for LK, and a smoothed float copy for template fits."""

    grey: np.ndarray  # (H,W) uint8
    smooth: np.ndarray  # (H,W) float32, Gaussian-smoothed grey (see template_alignment.py)

    @classmethod
    def from_rgb(cls, rgb: np.ndarray, smooth_sigma: float = 1.0) -> FlowFrame:
        grey = to_grey(rgb)
        return cls(grey=grey, smooth=cv2.GaussianBlur(grey.astype(np.float32), (0, 0), smooth_sigma))

    @property
    def shape(self) -> tuple[int, int]:
        return self.grey.shape


@dataclass
class FlowResult:
    points: np.ndarray  # (M,2) float64 tracked positions in the next frame
    ok: np.ndarray  # (M,) bool: LK converged both ways and the FB error is below the threshold
    fb_error: np.ndarray  # (M,) float64 pixels (inf where LK failed)


def _lk(prev: FlowFrame, nxt: FlowFrame, pts: np.ndarray, init: np.ndarray, window: int, levels: int):
    p0 = np.ascontiguousarray(pts, np.float32).reshape(-1, 1, 2)
    p1 = np.ascontiguousarray(init, np.float32).reshape(-1, 1, 2)
    out, status, _ = cv2.calcOpticalFlowPyrLK(
        prev.grey, nxt.grey, p0, p1.copy(), winSize=(window, window), maxLevel=levels,
        criteria=_CRITERIA, flags=cv2.OPTFLOW_USE_INITIAL_FLOW,
    )
    return out.reshape(-1, 2).astype(np.float64), status.reshape(-1).astype(bool)


def track_forward_backward(
    prev: FlowFrame, nxt: FlowFrame, points: np.ndarray, guess: np.ndarray, *, window: int, levels: int,
    fb_threshold_px: float,
) -> FlowResult:
    """Track ``points`` (M,2) from ``prev`` to ``nxt`` starting at ``guess`` (M,2), then back again."""
    points = np.asarray(points, np.float64).reshape(-1, 2)
    if len(points) == 0:
        return FlowResult(np.zeros((0, 2)), np.zeros(0, bool), np.zeros(0))
    fwd, st_f = _lk(prev, nxt, points, guess, window, levels)
    # The backward pass gets the same prior as the forward one (the predicted motion, reversed), not
    # the answer: starting it at ``points`` would let it converge there and hide inconsistency.
    back, st_b = _lk(nxt, prev, fwd, fwd - (guess - points), window, levels)
    fb = np.linalg.norm(back - points, axis=1)
    good = st_f & st_b & np.isfinite(fb)
    fb = np.where(good, fb, np.inf)
    return FlowResult(points=fwd, ok=good & (fb <= fb_threshold_px), fb_error=fb)
