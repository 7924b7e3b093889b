"""Query points: a regular grid on the query frame.

The grid keeps a margin from the image border so every query's matching window lies inside the
image (a window hanging over the border has fewer pixels to match and drifts first). Where the
camera stage gave depth, a grid point on a pixel without valid depth is moved to the nearest pixel
with valid depth within half a grid cell, or dropped if there is none: such a point could never be
lifted to 3D. When the frame has no valid depth at all (a camera backend run with ``depth: none``)
the grid is kept as is and the tracks stay 2D (xyz NaN).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import distance_transform_edt


def grid_points(shape: tuple[int, int], grid_size: int, margin_px: float) -> np.ndarray:
    """(G*G, 2) pixel positions (u, v), row-major, evenly spaced inside the margin."""
    H, W = shape
    mx = min(float(margin_px), (W - 1) / 2)
    my = min(float(margin_px), (H - 1) / 2)
    if grid_size == 1:
        us, vs = np.array([(W - 1) / 2]), np.array([(H - 1) / 2])
    else:
        us = np.linspace(mx, W - 1 - mx, grid_size)
        vs = np.linspace(my, H - 1 - my, grid_size)
    vv, uu = np.meshgrid(vs, us, indexing="ij")
    return np.stack([uu.ravel(), vv.ravel()], axis=1)


def snap_to_valid_depth(points: np.ndarray, depth_valid: np.ndarray, max_shift_px: float) -> np.ndarray:
    """Move points on invalid-depth pixels to the nearest valid pixel centre; drop those too far.

    Returns the kept points (M,2), M <= N, in their original order. A frame without any valid
    depth returns the points unchanged.
    """
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    valid = np.asarray(depth_valid, bool)
    if not valid.any():
        return pts
    H, W = valid.shape
    r = np.clip(np.rint(pts[:, 1]).astype(int), 0, H - 1)
    c = np.clip(np.rint(pts[:, 0]).astype(int), 0, W - 1)
    if valid[r, c].all():
        return pts
    dist, (ir, ic) = distance_transform_edt(~valid, return_indices=True)
    out = pts.copy()
    bad = ~valid[r, c]
    out[bad, 0] = ic[r[bad], c[bad]]
    out[bad, 1] = ir[r[bad], c[bad]]
    keep = ~bad | (dist[r, c] <= max_shift_px)
    return out[keep]


def grid_queries(
    shape: tuple[int, int], grid_size: int, query_frame: int, margin_px: float,
    depth_valid: np.ndarray | None = None,
) -> np.ndarray:
    """Query points as (N,3) float32 ``[t, u, v]`` on frame ``query_frame``.

    Args:
        shape: (H, W) of the frames.
        grid_size: the grid has ``grid_size x grid_size`` points before invalid-depth points are dropped.
        query_frame: frame index written into column 0.
        margin_px: distance of the outermost grid lines from the image border.
        depth_valid: (H, W) bool validity of the query frame's depth, or None to keep every point.
    """
    H, W = shape
    pts = grid_points(shape, grid_size, margin_px)
    if depth_valid is not None:
        cell = min((W - 1 - 2 * margin_px), (H - 1 - 2 * margin_px)) / max(grid_size - 1, 1)
        pts = snap_to_valid_depth(pts, depth_valid, max_shift_px=max(cell / 2, 1.0))
    t = np.full((len(pts), 1), float(query_frame))
    return np.concatenate([t, pts], axis=1).astype(np.float32)
