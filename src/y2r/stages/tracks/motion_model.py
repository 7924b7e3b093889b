"""Where a point that is not seen has gone: the motion of its neighbours.

A hidden point's own last velocity says little after a few frames (the camera or the object
accelerates, turns, stops). Its neighbours -- the query points nearest to it, in 3D where the query
frame has depth (so they lie on the same surface or object), else in the image -- are mostly still
tracked, and a surface moves coherently: an affine map fitted from the neighbours' query positions
to their current positions carries the hidden point along (the classic local-affine motion model;
exact for a plane under an affine camera, a good approximation for a small patch otherwise).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

# Neighbours whose spread across their main direction is below this fraction of the spread along it
# are treated as collinear.
MIN_SPREAD_RATIO = 0.2
# Largest scale change of a patch (either way) that the affine fit may imply.
MAX_PATCH_SCALE = 4.0


class NeighbourMotion:
    """Affine motion of each point's ``k`` nearest query neighbours.

    Args:
        query_uv: (N,2) query positions.
        query_xyz: (N,3) their 3D positions (NaN where unknown), or None: neighbours are chosen in
            3D among points with a position, in the image otherwise.
        k: neighbours per point.
    """

    def __init__(self, query_uv: np.ndarray, query_xyz: np.ndarray | None = None, k: int = 8):
        self.query_uv = np.asarray(query_uv, np.float64).reshape(-1, 2)
        N = len(self.query_uv)
        self.k = int(min(k, max(N - 1, 0)))
        self.neighbours = np.zeros((N, self.k), int)
        if self.k == 0:
            return
        have = np.zeros(N, bool) if query_xyz is None else np.isfinite(query_xyz).all(1)
        in2d = cKDTree(self.query_uv).query(self.query_uv, self.k + 1)[1][:, 1:]
        self.neighbours[:] = in2d
        if have.sum() > self.k:
            idx3 = np.flatnonzero(have)
            nb3 = cKDTree(query_xyz[idx3]).query(query_xyz[idx3], self.k + 1)[1][:, 1:]
            self.neighbours[idx3] = idx3[nb3]

    def predict(self, idx: np.ndarray, positions: np.ndarray, known: np.ndarray,
                min_neighbours: int = 3) -> np.ndarray:
        """Positions (M,2) of points ``idx`` carried by their neighbours' motion; NaN where too few known.

        ``positions`` (N,2) are every point's current positions, ``known`` (N,) which of them are
        measured (visible) and may serve as neighbours.
        """
        idx = np.asarray(idx)
        out = np.full((len(idx), 2), np.nan)
        if self.k == 0 or idx.size == 0:
            return out
        for j, n in enumerate(idx):
            nb = self.neighbours[n]
            nb = nb[known[nb]]
            if len(nb) < min_neighbours:
                continue
            src = self.query_uv[nb] - self.query_uv[n]  # relative to the point: well conditioned
            dst = positions[nb]
            X = np.column_stack([src, np.ones(len(nb))])
            shift = np.median(dst - src, axis=0)
            # The affine part is trusted only where the neighbours span two directions (collinear
            # neighbours leave it under-determined, nearly collinear ones make it explode when it
            # extrapolates to a grid corner) and the map it finds is a plausible change of a surface
            # patch's shape; otherwise the neighbours' median translation carries the point.
            spread = np.linalg.svd(src - src.mean(0), compute_uv=False)
            if spread[1] < MIN_SPREAD_RATIO * spread[0]:
                out[j] = shift
                continue
            M, _, rank, _ = np.linalg.lstsq(X, dst, rcond=None)
            sv = np.linalg.svd(M[:2], compute_uv=False)
            plausible = rank == 3 and sv[1] > 1.0 / MAX_PATCH_SCALE and sv[0] < MAX_PATCH_SCALE
            out[j] = M[2] if plausible else shift
        return out
