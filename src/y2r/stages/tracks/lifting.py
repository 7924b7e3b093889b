"""Lift 2D tracks to 3D: pixel + depth map + K + world_T_cam -> world xyz (NaN where unknown).

Depth is sampled *edge-aware*: bilinear interpolation between the four pixel centres around a
sub-pixel position is right on a smooth surface, but across a depth discontinuity it invents a
point floating between foreground and background. Where the four valid neighbours disagree by more
than ``edge_tol`` (relative), the nearest valid neighbour is used instead, so a lifted point always
lies on a surface that was observed. A position whose valid neighbours carry less than half the
bilinear weight has unknown depth (NaN).
"""

from __future__ import annotations

import numpy as np

from y2r.geometry import transform_points, unproject


def sample_depth(depth: np.ndarray, valid: np.ndarray, uv: np.ndarray, edge_tol: float = 0.05) -> np.ndarray:
    """z-depth at sub-pixel positions ``uv`` (N,2) of one frame; NaN where unknown (outside, invalid).

    Args:
        depth: (H,W) z-depth (any float dtype).
        valid: (H,W) bool validity of ``depth``.
        uv: (N,2) pixel positions (integer = pixel centre).
        edge_tol: relative spread of the four neighbours above which the nearest one is used.
    """
    H, W = depth.shape
    uv = np.asarray(uv, np.float64).reshape(-1, 2)
    out = np.full(len(uv), np.nan)
    u, v = uv[:, 0], uv[:, 1]
    inside = np.isfinite(u) & np.isfinite(v) & (u >= 0) & (u <= W - 1) & (v >= 0) & (v <= H - 1)
    if not inside.any():
        return out
    u, v = u[inside], v[inside]
    u0 = np.minimum(np.floor(u).astype(np.int64), W - 2 if W > 1 else 0)
    v0 = np.minimum(np.floor(v).astype(np.int64), H - 2 if H > 1 else 0)
    u1, v1 = np.minimum(u0 + 1, W - 1), np.minimum(v0 + 1, H - 1)
    du, dv = u - u0, v - v0
    corners = [(v0, u0, (1 - du) * (1 - dv)), (v0, u1, du * (1 - dv)),
               (v1, u0, (1 - du) * dv), (v1, u1, du * dv)]
    z = np.stack([np.asarray(depth[r, c], np.float64) for r, c, _ in corners], 1)  # (M,4)
    ok = np.stack([np.asarray(valid[r, c], bool) for r, c, _ in corners], 1) & np.isfinite(z) & (z > 0)
    w = np.stack([wc for _, _, wc in corners], 1) * ok
    zmin, zmax = np.where(ok, z, np.inf).min(1), np.where(ok, z, -np.inf).max(1)
    smooth = ok.any(1) & (zmax <= zmin * (1 + edge_tol))
    with np.errstate(invalid="ignore", divide="ignore"):
        # Renormalised over the valid corners, so an invalid neighbour does not pull z towards 0.
        bil = (np.where(ok, z, 0) * w).sum(1) / w.sum(1)
    # Nearest valid neighbour: the one with the largest bilinear weight among the valid ones.
    nearest = np.take_along_axis(z, np.argmax(np.where(ok, w, -1), 1)[:, None], 1)[:, 0]
    # Unknown where the valid corners carry less than half the weight: the position lies mostly
    # on pixels without depth, and borrowing a neighbour's would be a guess.
    known = w.sum(1) >= 0.5
    res = np.where(known, np.where(smooth, bil, nearest), np.nan)
    out[inside] = res
    return out


def lift(K: np.ndarray, world_T_cam: np.ndarray, uv: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Pixels (N,2) with z-depth (N,) of one frame -> world points (N,3); NaN where z is NaN."""
    X_cam = unproject(K, np.asarray(uv, np.float64).reshape(-1, 2), np.asarray(z, np.float64).reshape(-1))
    return transform_points(np.asarray(world_T_cam, np.float64), X_cam)


def lift_frame(depth: np.ndarray, valid: np.ndarray, K: np.ndarray, world_T_cam: np.ndarray, uv: np.ndarray,
               edge_tol: float = 0.05) -> np.ndarray:
    """One frame's pixels (N,2) -> world points (N,3) using that frame's depth; NaN where unknown."""
    return lift(K, world_T_cam, uv, sample_depth(depth, valid, uv, edge_tol))
