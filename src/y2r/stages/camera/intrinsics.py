"""Intrinsics for the stored frames: given by the user, from a field-of-view prior, or self-calibrated.

The camera model is a pinhole with square pixels and the principal point at the image centre. That
is all a monocular video constrains in practice (ViPE's own optimiser also refines only the focal);
a free principal point is nearly unobservable and makes self-calibration unstable.

Self-calibration of the focal (poses.py) starts from a 1-D search over candidate focals, each
scored by a quick reconstruction (``sfm_focal_search``; for a rotating camera
``rotation_focal_search``), and ends in bundle adjustment with the focal as a shared unknown.
Epipolar shortcuts (Kruppa equations, the Mendonca-Cipolla essential-matrix cost) were tried and
dropped: fundamental matrices of narrow, short-baseline video pairs barely constrain the focal
(on the fixture clip they put its minimum at 0.4x the true focal).

The focal is *not* observable from pure translation (scaling f and scene depth together leaves
every image unchanged); the backend detects that through the focal's marginal uncertainty after
bundle adjustment and falls back to a prior, saying so in the quality report.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from y2r.artifacts import VideoMeta
from y2r.geometry import focal_from_fov, intrinsics_matrix


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
