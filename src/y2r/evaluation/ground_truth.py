"""Ground-truth tracks for *any* query points of a synthetic clip.

The renderer's ground truth carries tracks for its own 64 points; a tracker run through the
pipeline queries its own grid. Because the synthetic scene is known exactly (depth, poses, the
rigid motion of every cube and of the occluder), the true 3D trajectory of any queried pixel can be
reconstructed: unproject the query with the true depth, find which rigid body it lies on, move it
with that body, project it with the true cameras.

Visibility is a depth test at the nearest pixel (1% relative tolerance). The fixture README notes
that this disagrees with the exact per-ray test for ~0.8% of (t, n) pairs, all at silhouettes and
on grazing faces; that is the accuracy of the visibility ground truth here.
"""

from __future__ import annotations

import numpy as np

from y2r.geometry import invert_se3, project, transform_points, unproject


def _moving_bodies(clip) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
    """(name, body_to_world (T,4,4), half extents (3,) or None) of every body that moves."""
    bodies = []
    c2w = np.asarray(clip.cubes_to_world)
    for c in range(c2w.shape[1]):
        if np.abs(c2w[:, c] - c2w[:1, c]).max() > 1e-9:
            bodies.append((f"cube{c}", c2w[:, c], np.full(3, float(clip.cube_sizes[c]) / 2)))
    if clip.occluder_to_world is not None:
        occ = np.asarray(clip.occluder_to_world)
        if np.abs(occ - occ[:1]).max() > 1e-9:
            size = None if clip.occluder_size is None else np.asarray(clip.occluder_size, float) / 2
            bodies.append(("occluder", occ, size))
    return bodies


def _depth_at(depth: np.ndarray, u: float, v: float, iu: int, iv: int) -> float:
    """Bilinear depth where the four neighbours lie on one surface (within 1%), else the nearest."""
    H, W = depth.shape
    u0, v0 = int(np.floor(u)), int(np.floor(v))
    if 0 <= u0 < W - 1 and 0 <= v0 < H - 1:
        quad = depth[v0:v0 + 2, u0:u0 + 2].astype(np.float64)
        if quad.max() <= 1.01 * quad.min():
            a, b = u - u0, v - v0
            return float(quad[0, 0] * (1 - a) * (1 - b) + quad[0, 1] * a * (1 - b) + quad[1, 0] * (1 - a) * b
                         + quad[1, 1] * a * b)
    return float(depth[iv, iu])


def tracks_for_queries(clip, query: np.ndarray, rel_tol: float = 0.01) -> dict[str, np.ndarray]:
    """True xyz_world (T,N,3), uv (T,N,2) and visibility (T,N) of queries ``[t, u, v]`` (N,3)."""
    q = np.asarray(query, np.float64)
    T, H, W = clip.depth.shape
    K = np.asarray(clip.K, np.float64)
    c2w = np.asarray(clip.c2w, np.float64)
    N = len(q)
    xyz = np.full((T, N, 3), np.nan)
    bodies = _moving_bodies(clip)
    for n, (t0, u, v) in enumerate(q):
        t0 = int(round(t0))
        iu, iv = int(np.clip(round(u), 0, W - 1)), int(np.clip(round(v), 0, H - 1))
        d = _depth_at(clip.depth[t0], u, v, iu, iv)
        X = transform_points(c2w[t0], unproject(K, np.array([[u, v]]), np.array([d])))[0]
        on_moving = bool(clip.moving_mask[t0, iv, iu]) or bool(
            clip.occluder_mask is not None and clip.occluder_mask[t0, iv, iu])
        body = None
        if on_moving:
            # The moving body whose box (in its own frame at t0) the point lies on: least excess.
            best = np.inf
            for _name, b2w, half in bodies:
                if half is None:
                    continue
                local = transform_points(invert_se3(b2w[t0]), X[None])[0]
                excess = float(np.max(np.abs(local) - half))
                if excess < best:
                    best, body = excess, b2w
        if body is None:
            xyz[:, n] = X
        else:
            local = transform_points(invert_se3(body[t0]), X[None])[0]
            xyz[:, n] = transform_points(body, np.broadcast_to(local, (T, 1, 3)))[:, 0]
    cam = transform_points(invert_se3(c2w), xyz)
    uv = project(K, cam)
    z = cam[..., 2]
    ui = np.clip(np.rint(uv[..., 0]), 0, W - 1).astype(int)
    vi = np.clip(np.rint(uv[..., 1]), 0, H - 1).astype(int)
    tt = np.broadcast_to(np.arange(T)[:, None], (T, N))
    inside = (uv[..., 0] >= 0) & (uv[..., 0] <= W - 1) & (uv[..., 1] >= 0) & (uv[..., 1] <= H - 1) & (z > 0)
    seen = np.abs(clip.depth[tt, vi, ui] - z) <= rel_tol * np.maximum(z, 1e-9)
    return {"xyz_world": xyz, "uv": uv, "visible": inside & seen}
