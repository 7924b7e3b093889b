"""Intrinsics for the stored frames: given by the user, from a field-of-view prior, or self-calibrated.

The camera model is a pinhole with square pixels and the principal point at the image centre. That
is all a monocular video constrains in practice (ViPE's own optimiser also refines only the focal);
a free principal point is nearly unobservable and makes self-calibration unstable.

Self-calibration of the focal works in two steps:

1. an initial value from epipolar geometry: for a fundamental matrix F between two views and a
   candidate focal f, E = K^T F K is a true essential matrix only for the right f, i.e. its two
   non-zero singular values are equal (Mendonca & Cipolla, CVPR 1999). The cost summed over
   several keyframe pairs is minimised over f by a log-spaced search plus golden-section refinement;
2. refinement by bundle adjustment with the focal as a shared unknown (see poses.py).

The focal is *not* observable from pure translation (scaling f and scene depth together leaves
every image unchanged); callers detect that through the curvature of the cost and fall back to a
prior, saying so in the quality report.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from y2r.artifacts import VideoMeta
from y2r.geometry import focal_from_fov, intrinsics_matrix


@dataclass
class IntrinsicsEstimate:
    K: np.ndarray  # (3,3) for the stored resolution
    source: str  # "config", "fov_prior", "self_calibrated", "fallback_prior"
    fixed: bool  # True when the focal must not be refined (given by the user)


def principal_point(width: int, height: int) -> np.ndarray:
    """The image centre in y2r's pixel convention (integer coordinates are pixel centres)."""
    return np.array([(width - 1) / 2.0, (height - 1) / 2.0])


def K_from_focal(focal: float, width: int, height: int) -> np.ndarray:
    c = principal_point(width, height)
    return intrinsics_matrix(focal, focal, c[0], c[1])


def source_to_stored(meta: VideoMeta, K_src: np.ndarray) -> np.ndarray:
    """``VideoMeta.source_to_stored_K``, treating an unrecorded crop as 'the whole source frame'."""
    if meta.crop[2] <= 0 or meta.crop[3] <= 0:
        meta = replace(meta, crop=(0.0, 0.0, float(meta.source_width), float(meta.source_height)))
    return meta.source_to_stored_K(K_src)


def K_from_config(intrinsics, meta: VideoMeta) -> np.ndarray:
    """User intrinsics (source-video pixels) -> K of the stored frames (crop and resize applied)."""
    K_src = intrinsics_matrix(intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy)
    return source_to_stored(meta, K_src)


def K_from_fov(fov_deg: float, meta: VideoMeta) -> np.ndarray:
    """A horizontal FOV prior describes the *source* camera; crop and resize then apply as for K."""
    f_src = focal_from_fov(meta.source_width, fov_deg)
    K_src = K_from_focal(f_src, meta.source_width, meta.source_height)
    return source_to_stored(meta, K_src)


def essential_cost(F: np.ndarray, focal: np.ndarray, pp: np.ndarray) -> np.ndarray:
    """Mendonca-Cipolla cost (s1 - s2) / s1 of E = K^T F K for each candidate focal (vectorised)."""
    focal = np.atleast_1d(np.asarray(focal, np.float64))
    K = np.zeros((len(focal), 3, 3))
    K[:, 0, 0] = focal
    K[:, 1, 1] = focal
    K[:, 0, 2], K[:, 1, 2] = pp
    K[:, 2, 2] = 1.0
    E = np.swapaxes(K, 1, 2) @ F @ K
    s = np.linalg.svd(E, compute_uv=False)
    return (s[:, 0] - s[:, 1]) / np.maximum(s[:, 0], 1e-300)


@dataclass
class FocalSearch:
    focal: float
    cost: float
    # Relative increase of the cost when the focal is off by +-10%: how well the data pin it down.
    sharpness: float
    pairs: int


def focal_from_fundamentals(fundamentals: list[np.ndarray], weights: list[float], pp: np.ndarray,
                            f_min: float, f_max: float) -> FocalSearch | None:
    """Minimise the weighted essential cost over f in [f_min, f_max] (log scale)."""
    if not fundamentals:
        return None
    Fs = [F / np.linalg.norm(F) for F in fundamentals]
    w = np.asarray(weights, np.float64)
    w = w / w.sum()

    def total(f: np.ndarray) -> np.ndarray:
        return sum(wi * essential_cost(F, f, pp) for wi, F in zip(w, Fs))

    grid = np.geomspace(f_min, f_max, 120)
    c = total(grid)
    i = int(np.argmin(c))
    lo, hi = np.log(grid[max(i - 1, 0)]), np.log(grid[min(i + 1, len(grid) - 1)])
    g = (np.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = total(np.exp([a]))[0], total(np.exp([b]))[0]
    for _ in range(40):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = total(np.exp([a]))[0]
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = total(np.exp([b]))[0]
    f = float(np.exp((lo + hi) / 2))
    c0 = float(total(np.array([f]))[0])
    side = total(np.array([0.9 * f, 1.1 * f]))
    sharp = float(np.min(side) - c0) / max(c0, 1e-6)
    return FocalSearch(focal=f, cost=c0, sharpness=sharp, pairs=len(Fs))
