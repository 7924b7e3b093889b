"""Bundle adjustment: Levenberg-Marquardt on reprojection error, points eliminated by the Schur complement.

Unknowns: per camera a rotation and translation (``cam_T_world``), per point its world position,
and optionally one focal length shared by all cameras (square pixels, principal point fixed: the
only intrinsic that monocular video reliably constrains). Residuals: pixel reprojection errors,
robustified with a Huber kernel by iteratively reweighting.

Why not ``scipy.optimize.least_squares``: its sparse trust-region solver (LSMR) treats the normal
equations as a generic sparse system, while BA has a known structure: the point block is 3x3
block-diagonal. Eliminating the points gives a small dense system in the camera parameters
(6 per camera + focal), solved exactly; points are then back-substituted. That is the standard
approach (Triggs et al., "Bundle Adjustment - A Modern Synthesis", 2000, sec. 6.1), exact where
LSMR is approximate, and an order of magnitude faster here. The sparse Jacobian *pattern* is what
makes it cheap: the Jacobian is kept as one 2x(6+3+1) block per observation and never formed as a
matrix; the reduced camera system is accumulated from pairs of observations of the same point.

Rotations are updated on the manifold, ``R <- exp([d]x) R``, and the problem is re-linearised at
d = 0 each iteration, so the analytic Jacobian is exact (no finite differences).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg, sparse

from y2r.geometry import axis_angle_to_matrix


@dataclass
class BundleResult:
    R: np.ndarray  # (C,3,3) cam_T_world rotations
    t: np.ndarray  # (C,3)
    X: np.ndarray  # (P,3) world points
    focal: float
    residual_px: np.ndarray  # (M,) reprojection error norm per observation, after optimisation
    rms_px: float  # RMS over observations under 3x the Huber scale
    iterations: int
    converged: bool
    focal_std: float | None = None  # marginal std of the focal (pixels) when it was optimised
    # ... and its cluster-robust version, points as clusters (see ``bundle_adjust``)
    focal_std_tracks: float | None = None


def reprojection(R, t, X, focal, pp, cam_idx, pt_idx, uv):
    """Residuals (M,2) = projection - observation, camera-frame points (M,3), rotated points (M,3)."""
    Y = np.einsum("mij,mj->mi", R[cam_idx], X[pt_idx])
    Xc = Y + t[cam_idx]
    z = np.maximum(Xc[:, 2], 1e-9)
    proj = focal * Xc[:, :2] / z[:, None] + pp
    return proj - uv, Xc, Y


# Self-calibration (see ``focal_predictor_corrector``): LM iterations of each corrector, and the
# relative focal change under which the outer iteration stops.
INNER_ITERATIONS = 2
FOCAL_TOLERANCE = 2e-4
# Largest camera-by-point matrix G (entries) for which the Schur complement is formed as a dense
# G G^T (one BLAS product); above it G is a sparse matrix (one block per observation), whose
# product costs the sum over points of (observations x dof)^2 instead. Measured on one core with
# video-like (banded) visibility: 21 keyframes x 2400 points, dense 7 ms, sparse 22 ms; 51 x 5500,
# both ~57 ms; 190 x 7500, sparse 77 ms (dense would take seconds).
DENSE_SCHUR_MAX_ENTRIES = 3_000_000
# Above this many free cameras the reduced system is solved iteratively (PCG, never formed).
ITERATIVE_MIN_CAMERAS = 400


def _pcg(matvec, b: np.ndarray, precondition, rel_tol: float = 1e-6, max_iter: int = 300) -> np.ndarray:
    """Preconditioned conjugate gradients for a symmetric positive definite operator."""
    x = np.zeros_like(b)
    r = b.copy()
    z = precondition(r)
    p = z.copy()
    rz = float(r @ z)
    stop = rel_tol * float(np.linalg.norm(b))
    for _ in range(max_iter):
        Ap = matvec(p)
        pAp = float(p @ Ap)
        if pAp <= 0:
            break
        alpha = rz / pAp
        x += alpha * p
        r -= alpha * Ap
        if np.linalg.norm(r) <= stop:
            break
        z = precondition(r)
        rz_new = float(r @ z)
        p = z + (rz_new / rz) * p
        rz = rz_new
    return x


class _Segments:
    """Sum per group of rows sorted into contiguous segments (np.add.reduceat: one pass in C)."""

    def __init__(self, idx: np.ndarray, n: int):
        self.order = np.argsort(idx, kind="stable")
        counts = np.bincount(idx, minlength=n)
        self.present = np.flatnonzero(counts)
        self.starts = np.concatenate([[0], np.cumsum(counts[self.present])[:-1]]).astype(np.int64)
        self.n = n

    def sum(self, vals: np.ndarray) -> np.ndarray:
        out = np.zeros((self.n,) + vals.shape[1:])
        if len(vals):
            out[self.present] = np.add.reduceat(vals[self.order], self.starts, axis=0)
        return out


def _huber_weights(norm: np.ndarray, delta: float) -> np.ndarray:
    w = np.ones_like(norm)
    big = norm > delta
    w[big] = delta / norm[big]
    return w


def _robust_cost(norm: np.ndarray, delta: float) -> float:
    small = norm <= delta
    return float(np.sum(np.where(small, 0.5 * norm**2, delta * (norm - 0.5 * delta))))


class _Structure:
    """Index bookkeeping that depends only on which camera sees which point (fixed during a solve)."""

    def __init__(self, cam_idx, pt_idx, fixed, dof, P, optimize_focal):
        C = len(fixed)
        self.free = np.flatnonzero(~fixed)
        slot = np.full(C, -1)
        slot[self.free] = np.arange(len(self.free))
        self.nf = len(self.free)
        self.nc = self.nf * dof + (1 if optimize_focal else 0)
        self.fcol = self.nc - 1 if optimize_focal else -1
        self.m_free = np.flatnonzero(slot[cam_idx] >= 0)  # observations by free cameras
        self.slot = slot[cam_idx[self.m_free]]
        self.by_point = _Segments(pt_idx, P)
        self.by_free_point = _Segments(pt_idx[self.m_free], P)
        self.by_slot = _Segments(self.slot, self.nf)
        self.dof, self.P = dof, P
        self.pf = pt_idx[self.m_free]
        # S -= sum_p W_p V_p^-1 W_p^T is computed as G G^T with G = W V^-T/2 stored densely when it
        # is small (one BLAS product), else by accumulating the blocks of all ordered pairs of
        # observations of the same point.
        self.dense = self.nf * dof * 3 * P <= DENSE_SCHUR_MAX_ENTRIES
        e = np.arange(dof)
        self.g_rows = np.broadcast_to((self.slot[:, None] * dof + e)[:, :, None], (len(self.slot), dof, 3))
        self.g_cols = np.broadcast_to((3 * self.pf[:, None] + np.arange(3))[:, None, :], (len(self.slot), dof, 3))
        self._pairs = None

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """All ordered pairs (i, j) of free observations of the same point (indices into m_free)."""
        if self._pairs is None:
            pf = self.pf
            order = np.argsort(pf, kind="stable")
            counts = np.bincount(pf, minlength=self.P)
            starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
            k = counts[pf[order]]
            first = np.repeat(np.arange(len(order)), k)
            within = np.arange(len(first)) - np.repeat(np.cumsum(k) - k, k)
            second = starts[pf[order]][first] + within
            self._pairs = (order[first], order[second])
        return self._pairs

    def pair_reduction(self, Y: np.ndarray, W: np.ndarray, chunk: int = 100_000) -> np.ndarray:
        """sum over pairs of W_i V^-1 W_j^T (with Y = W V^-1), accumulated in chunks so that memory
        stays bounded however long the tracks are."""
        dof, n = self.dof, self.nf * self.dof
        out = np.zeros(n * n)
        pi, pj = self.pairs()
        e = np.arange(dof)
        for a in range(0, len(pi), chunk):
            i, j = pi[a : a + chunk], pj[a : a + chunk]
            blocks = np.matmul(Y[i], np.swapaxes(W[j], 1, 2))  # (pairs,dof,dof)
            si, sj = self.slot[i], self.slot[j]
            flat = (
                (si[:, None, None] * dof + e[None, :, None]) * n + sj[:, None, None] * dof + e[None, None, :]
            )
            out += np.bincount(flat.reshape(-1), weights=blocks.reshape(-1), minlength=n * n)
        return out.reshape(n, n)


def bundle_adjust(
    R: np.ndarray,
    t: np.ndarray,
    X: np.ndarray,
    focal: float,
    pp: np.ndarray,
    cam_idx: np.ndarray,
    pt_idx: np.ndarray,
    uv: np.ndarray,
    *,
    fixed_cams: np.ndarray | None = None,
    optimize_focal: bool = False,
    rotation_only: bool = False,
    huber_px: float = 1.0,
    max_iterations: int = 30,
    tolerance: float = 1e-5,
) -> BundleResult:
    """Refine cameras (and points, and optionally the shared focal) to minimise reprojection error.

    ``R, t`` are ``cam_T_world`` per camera; observation m is point ``pt_idx[m]`` seen by camera
    ``cam_idx[m]`` at pixel ``uv[m]``. ``fixed_cams`` (bool, C) holds cameras constant (the gauge:
    fix at least the first). With ``rotation_only`` translations stay at their given values and
    points act as directions (their scale along the ray is a free gauge, damped to stay put).
    """
    R = np.array(R, np.float64)
    t = np.array(t, np.float64)
    X = np.array(X, np.float64)
    pp = np.asarray(pp, np.float64)
    cam_idx = np.asarray(cam_idx, np.int64)
    pt_idx = np.asarray(pt_idx, np.int64)
    uv = np.asarray(uv, np.float64)
    C, P, M = len(R), len(X), len(uv)
    fixed = np.zeros(C, bool) if fixed_cams is None else np.asarray(fixed_cams, bool)
    dof = 3 if rotation_only else 6
    st = _Structure(cam_idx, pt_idx, fixed, dof, P, optimize_focal)
    nf, nc, fcol, mf = st.nf, st.nc, st.fcol, st.m_free

    def evaluate(R, t, X, f):
        res, Xc, Y = reprojection(R, t, X, f, pp, cam_idx, pt_idx, uv)
        norm = np.linalg.norm(res, axis=1)
        norm[Xc[:, 2] <= 1e-9] = 1e3 * huber_px  # a point behind a camera costs like a gross outlier
        return res, Xc, Y, norm

    def linearize(R, X, focal, res, Xc, Y, norm):
        """Normal-equation blocks at the current estimate (Huber weights from the residuals).

        Per observation the Jacobian is kept as small dense blocks (2 x dof camera, 2 x 3 point,
        2 x 1 focal); their products are batched matrix products, summed per camera / point.
        """
        w = _huber_weights(norm, huber_px)
        w[Xc[:, 2] <= 1e-9] = 0.0
        iz = 1.0 / np.maximum(Xc[:, 2], 1e-9)
        xn, yn = Xc[:, 0] * iz, Xc[:, 1] * iz
        fz = focal * iz
        # d(u,v)/d(Xc), rows P0 = f/z [1, 0, -x/z] and P1 = f/z [0, 1, -y/z].
        Pj = np.zeros((M, 2, 3))
        Pj[:, 0, 0] = fz
        Pj[:, 1, 1] = fz
        Pj[:, 0, 2] = -fz * xn
        Pj[:, 1, 2] = -fz * yn
        # Left rotation perturbation: d(Xc)/dd = -[Y]x, so each row P [-Y]x = Y x P.
        Jrot = np.cross(Y[:, None, :], Pj)
        Jc = Jrot if rotation_only else np.concatenate([Jrot, Pj], 2)  # (M,2,dof)
        Jp = np.matmul(Pj, R[cam_idx])  # (M,2,3)
        wJp = Jp * w[:, None, None]
        wr = res * w[:, None]
        JpT = np.swapaxes(wJp, 1, 2)  # (M,3,2), weighted

        V = st.by_point.sum(np.matmul(JpT, Jp))
        if rotation_only:
            # A direction's length is a gauge (no residual depends on it): stiffen V along the
            # point itself so that eliminating the points stays well conditioned. (A bare 1e-9
            # regulariser left the reduced system indefinite in floating point, and the focal's
            # marginal with it.)
            u = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-300)
            V = V + (np.einsum("pii->p", V) / 3.0)[:, None, None] * (u[:, :, None] * u[:, None, :])
        g_p = st.by_point.sum(np.matmul(JpT, res[:, :, None])[:, :, 0])
        Jcf = Jc[mf]
        JcT = np.swapaxes(Jcf, 1, 2)  # (Mf,dof,2)
        Ablk = st.by_slot.sum(np.matmul(JcT * w[mf, None, None], Jcf))
        g_c = np.zeros(nc)
        g_c[: nf * dof] = st.by_slot.sum(np.matmul(JcT, wr[mf, :, None])[:, :, 0]).reshape(-1)
        Wobs = np.matmul(JcT, wJp[mf])  # (Mf,dof,3)
        A = np.zeros((nc, nc))
        for k in range(nf):
            A[k * dof : (k + 1) * dof, k * dof : (k + 1) * dof] = Ablk[k]
        lin = {"A": A, "g_c": g_c, "V": V, "g_p": g_p, "W": Wobs, "w": w, "Jc": Jc, "Jp": Jp}
        if optimize_focal:
            Jf = np.stack([xn, yn], 1)  # d(u,v)/df
            lin["Jf"] = Jf
            wJf = Jf * w[:, None]
            A[fcol, : nf * dof] = st.by_slot.sum(np.matmul(JcT, wJf[mf, :, None])[:, :, 0]).reshape(-1)
            A[: nf * dof, fcol] = A[fcol, : nf * dof]
            A[fcol, fcol] = np.sum(wJf * Jf)
            g_c[fcol] = np.sum(Jf * wr)
            lin["Wf"] = st.by_point.sum(np.matmul(wJf[:, None, :], Jp)[:, 0, :])  # (P,3)
        return lin

    def step(R, t, X, f, dc, dp, h=1.0):
        """The state moved by h times the step (rotations on the manifold)."""
        R_new, t_new, f_new = R.copy(), t.copy(), f
        if nf:
            d = dc[: nf * dof].reshape(nf, dof)
            R_new[st.free] = axis_angle_to_matrix(h * d[:, :3]) @ R[st.free]
            if not rotation_only:
                t_new[st.free] = t[st.free] + h * d[:, 3:]
        if optimize_focal:
            f_new = f + h * dc[fcol]
        return R_new, t_new, X + h * dp, f_new

    def reduced(lin, lam, explicit=False, freeze_focal=False):
        """The reduced camera system (S = A - W V^-1 W^T, rhs) with Marquardt damping ``lam``.

        Returns (solve, S or None, Vinv); ``solve(g_c, g_p)`` is the camera (+focal) step for
        the gradients (``lin["g_c"], lin["g_p"]``). ``freeze_focal`` damps the focal's equation
        so much that it does not move. Small systems are formed explicitly (S = G G^T with
        G = W V^-T/2 dense, or by pairs of observations of a point) and solved directly; large
        ones (many keyframes) are solved by preconditioned conjugate gradients on S applied
        implicitly, W (V^-1 (W^T x)), never forming it: the "iterative Schur" of Ceres / Agarwal
        et al., "Bundle Adjustment in the Large", ECCV 2010. The tiny absolute term keeps gauge
        directions with no curvature at all (global scale, the depth of a ray in rotation-only
        mode) invertible; damping then holds them still.
        """
        V = lin["V"]
        Vd = V + lam * np.einsum("pii->pi", V)[:, :, None] * np.eye(3) + 1e-9 * np.eye(3)
        Vinv = np.linalg.inv(Vd)
        A = lin["A"]
        Ad = A + lam * np.diag(np.diag(A)) + 1e-9 * np.eye(nc)
        if freeze_focal:
            Ad[fcol, fcol] += 1e12 * (A[fcol, fcol] + 1.0)
        W = lin["W"]
        pf = pt_idx[mf]
        Y = np.matmul(W, Vinv[pf])  # (Mf,dof,3) = W_o V_p^-1
        if optimize_focal:
            Wf = lin["Wf"]
            VWf = np.einsum("pij,pj->pi", Vinv, Wf)
            cf = st.by_slot.sum(np.einsum("mij,mj->mi", Y, Wf[pf])).reshape(-1)  # sum W_o V^-1 Wf_p^T
            sff = float(np.sum(Wf * VWf))

        def rhs_of(g_c, g_p):
            Vg = np.einsum("pij,pj->pi", Vinv, g_p)  # V^-1 g_p
            rhs = -g_c.copy()
            rhs[: nf * dof] += st.by_slot.sum(np.einsum("mij,mj->mi", W, Vg[pf])).reshape(-1)
            if optimize_focal:
                rhs[fcol] += np.sum(Wf * Vg)
            return rhs

        if explicit or nf <= ITERATIVE_MIN_CAMERAS:
            S = Ad.copy()
            try:
                L = np.linalg.cholesky(Vd) if nf else None
            except np.linalg.LinAlgError:
                L = None
            if L is not None:
                Gobs = np.matmul(W, np.swapaxes(np.linalg.inv(L), 1, 2)[pf])  # W_o L_p^-T
                if st.dense:
                    G = np.zeros((nf * dof, 3 * P))
                    G[st.g_rows, st.g_cols] = Gobs
                    S[: nf * dof, : nf * dof] -= G @ G.T
                else:
                    # Sparse G (one dof x 3 block per observation): its product with itself costs
                    # the sum over points of (observations x dof)^2, in compiled code.
                    G = sparse.csr_matrix((Gobs.reshape(-1), (st.g_rows.reshape(-1), st.g_cols.reshape(-1))),
                                          shape=(nf * dof, 3 * P))
                    S[: nf * dof, : nf * dof] -= (G @ G.T).toarray()
            elif nf:
                S[: nf * dof, : nf * dof] -= st.pair_reduction(Y, W)
            if optimize_focal:
                S[: nf * dof, fcol] -= cf
                S[fcol, : nf * dof] -= cf
                S[fcol, fcol] -= sff
            if not nc:
                return (lambda g_c, g_p: np.zeros(0)), S, Vinv
            try:
                factor = linalg.cho_factor(S, check_finite=False)
            except linalg.LinAlgError:
                factor = None  # not positive definite (numerically): LU instead

            def solve(g_c, g_p):
                rhs = rhs_of(g_c, g_p)
                if factor is not None:
                    return linalg.cho_solve(factor, rhs, check_finite=False)
                return np.linalg.solve(S, rhs)

            return solve, S, Vinv

        def matvec(x):
            y = st.by_free_point.sum(np.einsum("mij,mi->mj", W, x[: nf * dof].reshape(nf, dof)[st.slot]))
            if optimize_focal:
                y += Wf * x[fcol]
            z = np.einsum("pij,pj->pi", Vinv, y)
            out = Ad @ x
            out[: nf * dof] -= st.by_slot.sum(np.einsum("mij,mj->mi", W, z[pf])).reshape(-1)
            if optimize_focal:
                out[fcol] -= np.sum(Wf * z)
            return out

        # Block-Jacobi preconditioner: the exact diagonal blocks of S.
        blocks = np.stack([Ad[k * dof : (k + 1) * dof, k * dof : (k + 1) * dof] for k in range(nf)])
        blocks -= st.by_slot.sum(np.matmul(Y, np.swapaxes(W, 1, 2)))
        inv_blocks = np.linalg.inv(blocks)
        inv_ff = 1.0 / (Ad[fcol, fcol] - sff) if optimize_focal else 0.0

        def precondition(r):
            out = np.empty_like(r)
            out[: nf * dof] = np.einsum("kij,kj->ki", inv_blocks, r[: nf * dof].reshape(nf, dof)).reshape(-1)
            if optimize_focal:
                out[fcol] = inv_ff * r[fcol]
            return out

        return (lambda g_c, g_p: _pcg(matvec, rhs_of(g_c, g_p), precondition)), None, Vinv

    def back_substitute(lin, Vinv, dc, g_p):
        """Point updates dp = V^-1 (-g_p - sum_o W_o^T dc_cam(o) - Wf^T df)."""
        rhs_p = -g_p
        if nf:
            d = dc[: nf * dof].reshape(nf, dof)
            rhs_p = rhs_p - st.by_free_point.sum(np.einsum("mij,mi->mj", lin["W"], d[st.slot]))
        if optimize_focal:
            rhs_p = rhs_p - lin["Wf"] * dc[fcol]
        return np.einsum("pij,pj->pi", Vinv, rhs_p)

    def focal_predictor_corrector(state, lm, max_iterations):
        """Self-calibration as an outer Newton iteration on the focal, predictor-corrector style.

        Focal and scene depth trade off along a long, curved valley (f times the lateral
        coordinates stays about constant): joint LM steps are straight lines that leave it, so LM
        crawled along it (0.3% of the focal per iteration on slow sideways video, and stopped far
        from the minimum when the cost decrease per iteration fell under the tolerance). Here the
        cameras and points are first converged with the focal held (few iterations: that problem
        is well conditioned), then each outer step takes the joint Gauss-Newton step (predictor:
        the focal's Newton step on the profile cost, with the first-order motion of everything
        else) and re-converges the rest with the new focal held (corrector: back onto the valley
        floor). A predictor is kept when the corrected cost is lower, else it is halved.
        """
        used = 0
        state, n, converged = lm(state, INNER_ITERATIONS, freeze_focal=True)
        used += n
        prev = None  # (focal, Gauss-Newton focal step) of the previous outer iteration
        while used < max_iterations:
            R, t, X, focal, res, Xc, Y, norm, cost = state
            lin = linearize(R, X, focal, res, Xc, Y, norm)
            solve, _, Vinv = reduced(lin, 1e-6)
            try:
                dc = solve(lin["g_c"], lin["g_p"])
            except np.linalg.LinAlgError:
                break
            dp = back_substitute(lin, Vinv, dc, lin["g_p"])
            q = float(dc[fcol])
            # The Gauss-Newton curvature of the profile overestimates the true one along the
            # valley (the residuals' second derivatives matter where the cost is this flat): its
            # steps fell short by a constant factor (6x on the synthetic occluder clip). The secant
            # of the GN steps measures that factor (they are proportional to the profile gradient).
            scale = 1.0
            if prev is not None and (prev[1] - q) * (focal - prev[0]) > 0:
                scale = float(np.clip((focal - prev[0]) / (prev[1] - q), 0.5, 16.0))
            accepted = False
            while scale >= 1.0 / 16 and used < max_iterations:
                trial = step(R, t, X, focal, scale * dc, scale * dp)
                if trial[3] <= 0:
                    scale /= 2
                    continue
                trial = (*trial, *evaluate(*trial))
                trial = (*trial, _robust_cost(trial[-1], huber_px))
                corrected, n, _ = lm(trial, INNER_ITERATIONS, freeze_focal=True)
                used += n + 1
                if corrected[-1] < cost:
                    state, accepted = corrected, True
                    break
                scale /= 2
            if not accepted:
                converged = True
                break
            prev = (focal, q)
            rel = (cost - state[-1]) / max(cost, 1e-12)
            if abs(scale * q) < FOCAL_TOLERANCE * focal and rel < tolerance:
                converged = True
                break
        return state, used, converged

    def levenberg_marquardt(state, iterations, freeze_focal):
        """Damped Gauss-Newton iterations from ``state``; returns (state, iterations, converged).

        ``state`` is (R, t, X, focal, res, Xc, Y, norm, cost). With ``freeze_focal`` the focal
        stays where it is (its normal equation is damped to a standstill).
        """
        R, t, X, focal, res, Xc, Y, norm, cost = state
        lam = 1e-3
        it, converged = 0, False
        for it in range(1, iterations + 1):
            lin = linearize(R, X, focal, res, Xc, Y, norm)
            improved, rel = False, 0.0
            for _ in range(10):
                solve, _, Vinv = reduced(lin, lam, freeze_focal=freeze_focal)
                try:
                    dc = solve(lin["g_c"], lin["g_p"])
                except np.linalg.LinAlgError:
                    lam *= 10
                    continue
                dp = back_substitute(lin, Vinv, dc, lin["g_p"])
                if freeze_focal:
                    dc[fcol] = 0.0
                R_new, t_new, X_new, f_new = step(R, t, X, focal, dc, dp)
                if f_new > 0:
                    res_n, Xc_n, Y_n, norm_n = evaluate(R_new, t_new, X_new, f_new)
                    cost_n = _robust_cost(norm_n, huber_px)
                    if cost_n < cost:
                        rel = (cost - cost_n) / max(cost, 1e-12)
                        R, t, X, focal = R_new, t_new, X_new, f_new
                        res, Xc, Y, norm, cost = res_n, Xc_n, Y_n, norm_n, cost_n
                        lam = max(lam / 3, 1e-9)
                        improved = True
                        break
                lam *= 10
            if not improved or rel < tolerance:
                converged = True
                break
        return (R, t, X, focal, res, Xc, Y, norm, cost), it, converged

    state = (R, t, X, focal, *evaluate(R, t, X, focal))
    state = (*state, _robust_cost(state[-1], huber_px))
    if not optimize_focal or not nc:
        state, it, converged = levenberg_marquardt(state, max_iterations, freeze_focal=False)
    else:
        state, it, converged = focal_predictor_corrector(state, levenberg_marquardt, max_iterations)
    R, t, X, focal, res, Xc, Y, norm, cost = state

    focal_std = focal_std_tracks = None
    if optimize_focal and nc:
        lin = linearize(R, X, focal, res, Xc, Y, norm)
        _, S, Vinv = reduced(lin, 0.0, explicit=True)
        h_c = _focal_row(S, t, st.free, dof, rotation_only, fcol)
        if h_c is None or h_c[fcol] <= 0:
            focal_std = focal_std_tracks = float("inf")
        else:
            # Classic marginal: (H^-1)_ff sigma^2, sigma^2 from the weighted residuals.
            sigma2 = float(np.sum(lin["w"] * norm**2) / max(2 * M - nc - 3 * P, 1))
            focal_std = float(np.sqrt(h_c[fcol] * sigma2))
            # Cluster-robust ("sandwich") marginal with one cluster per point: e_f^T H^-1 B H^-1 e_f,
            # B = sum over points of g_p g_p^T, g_p the gradient of point p's observations. It
            # does not assume that observations are independent (a KLT track's errors along its
            # life are not) nor that the model is right for every point (a slowly sliding object
            # pulls the focal, and its few points then carry most of the sum).
            h_p = back_substitute(lin, Vinv, h_c, np.zeros((P, 3)))
            Jh = np.matmul(lin["Jp"], h_p[pt_idx][:, :, None])[:, :, 0]
            if nf:
                Jh[mf] += np.matmul(lin["Jc"][mf], h_c[: nf * dof].reshape(nf, dof)[st.slot][:, :, None])[:, :, 0]
            Jh += lin["Jf"] * h_c[fcol]
            score = np.bincount(pt_idx, np.sum(res * Jh, 1) * lin["w"], minlength=P)
            focal_std_tracks = float(np.sqrt(np.sum(score**2)))
    inl = norm < 3 * huber_px
    rms = float(np.sqrt(np.mean(norm[inl] ** 2))) if inl.any() else float("inf")
    return BundleResult(
        R=R,
        t=t,
        X=X,
        focal=float(focal),
        residual_px=norm,
        rms_px=rms,
        iterations=it,
        converged=converged,
        focal_std=focal_std,
        focal_std_tracks=focal_std_tracks,
    )


def _focal_row(S, t, free, dof, rotation_only, fcol) -> np.ndarray | None:
    """The focal's column of the inverse reduced Hessian, S^-1 e_f (None if S is singular).

    S is the undamped reduced Hessian (points eliminated). With free translations one direction
    of S is the global scale, which no data constrain; fixing the translation coordinate that moves
    most under it removes that gauge without changing anything about the focal (a gauge-invariant
    quantity); that coordinate gets 0. S is Jacobi-scaled before solving: focal and translation
    entries differ by ~1e9.
    """
    keep = np.ones(len(S), bool)
    if not rotation_only and len(free):
        tcols = (np.arange(len(free)) * dof)[:, None] + 3 + np.arange(3)
        j = int(np.argmax(np.abs(t[free]).reshape(-1)))
        keep[tcols.reshape(-1)[j]] = False
    Sk = S[np.ix_(keep, keep)]
    d = 1.0 / np.sqrt(np.maximum(np.diag(Sk), 1e-300))
    fk = int(np.count_nonzero(keep[:fcol]))
    e = np.zeros(len(Sk))
    e[fk] = 1.0
    try:
        x = np.linalg.solve(Sk * d[:, None] * d[None, :], e * d) * d
    except np.linalg.LinAlgError:
        return None
    out = np.zeros(len(S))
    out[keep] = x
    return out
