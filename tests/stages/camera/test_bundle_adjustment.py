"""Bundle adjustment on a synthetic problem with known answer: poses, points, focal, its std."""

from __future__ import annotations

import numpy as np

from y2r.geometry import axis_angle_to_matrix
from y2r.stages.camera.bundle_adjustment import bundle_adjust, reprojection


def _problem(seed: int, noise_px: float = 0.5, outliers: float = 0.0, C: int = 8, P: int = 300):
    rng = np.random.default_rng(seed)
    X = rng.uniform([-2, -1.5, 3], [2, 1.5, 6], (P, 3))
    ang = np.linspace(0, 0.25, C)
    R = axis_angle_to_matrix(np.stack([0.2 * ang, ang, 0.05 * ang], 1))  # cam_T_world
    centres = np.stack([np.linspace(0, 1, C), 0.1 * np.sin(6 * ang), 0.05 * ang], 1)
    t = -np.einsum("cij,cj->ci", R, centres)
    f, pp = 400.0, np.array([255.5, 191.5])
    ci, pi = (a.ravel() for a in np.meshgrid(np.arange(C), np.arange(P), indexing="ij"))
    proj, _, _ = reprojection(R, t, X, f, pp, ci, pi, np.zeros((len(ci), 2)))
    uv = proj + rng.normal(0, noise_px, proj.shape)
    bad = rng.random(len(uv)) < outliers
    uv[bad] += rng.normal(0, 25, (bad.sum(), 2))
    return R, t, X, f, pp, ci, pi, uv, centres, bad


def _centres(R, t):
    return -np.einsum("cji,cj->ci", R, t)


def test_recovers_cameras_points_and_focal_despite_outliers():
    R, t, X, f, pp, ci, pi, uv, centres, bad = _problem(0, outliers=0.05)
    rng = np.random.default_rng(1)
    R0 = axis_angle_to_matrix(rng.normal(0, 0.01, (len(R), 3))) @ R
    t0 = t + rng.normal(0, 0.02, t.shape)
    R0[0], t0[0] = R[0], t[0]
    fixed = np.zeros(len(R), bool)
    fixed[0] = True
    res = bundle_adjust(
        R0,
        t0,
        X + rng.normal(0, 0.05, X.shape),
        1.1 * f,
        pp,
        ci,
        pi,
        uv,
        fixed_cams=fixed,
        optimize_focal=True,
        huber_px=1.0,
    )
    assert res.converged
    # The gauge leaves one global scale free: compare camera centres after fixing it.
    c = _centres(res.R, res.t)
    s = np.linalg.norm(centres[-1] - centres[0]) / np.linalg.norm(c[-1] - c[0])
    assert np.abs(s * c - centres).max() < 0.01
    assert abs(res.focal - f) / f < 0.03
    # Inlier residuals end at the noise level: the median norm of 2D noise of 0.5 px per axis is
    # 0.59 px, a little less remains after the fit absorbs its degrees of freedom. Outliers stay out.
    assert 0.45 < np.median(res.residual_px[~bad]) < 0.62
    assert np.median(res.residual_px[bad]) > 10
    # The marginal std of the focal is of the right size (empirically ~14 px for this set-up).
    assert 5.0 < res.focal_std < 30.0


def test_fixed_cameras_do_not_move_and_exact_data_fits_exactly():
    R, t, X, f, pp, ci, pi, uv, _, _ = _problem(2, noise_px=0.0)
    fixed = np.zeros(len(R), bool)
    fixed[:2] = True
    Rp = R.copy()
    Rp[3] = axis_angle_to_matrix(np.array([0.0, 0.01, 0.0])) @ R[3]
    res = bundle_adjust(Rp, t, X, f, pp, ci, pi, uv, fixed_cams=fixed)
    assert np.allclose(res.R[:2], R[:2]) and np.allclose(res.t[:2], t[:2])
    assert res.residual_px.max() < 1e-6
    assert np.allclose(res.R[3], R[3], atol=1e-8)


def test_rotation_only_mode_recovers_rotations_and_focal():
    rng = np.random.default_rng(3)
    C, P = 6, 200
    dirs = rng.normal(size=(P, 3))
    dirs[:, 2] = np.abs(dirs[:, 2]) + 2.0
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    R = axis_angle_to_matrix(np.stack([np.linspace(0, 0.1, C), np.linspace(0, 0.3, C), np.zeros(C)], 1))
    f, pp = 350.0, np.array([159.5, 119.5])
    ci, pi = (a.ravel() for a in np.meshgrid(np.arange(C), np.arange(P), indexing="ij"))
    proj, _, _ = reprojection(R, np.zeros((C, 3)), dirs, f, pp, ci, pi, np.zeros((len(ci), 2)))
    uv = proj + rng.normal(0, 0.3, proj.shape)
    R0 = axis_angle_to_matrix(rng.normal(0, 0.02, (C, 3))) @ R
    R0[0] = R[0]
    fixed = np.zeros(C, bool)
    fixed[0] = True
    res = bundle_adjust(
        R0,
        np.zeros((C, 3)),
        dirs * 3.0,
        0.9 * f,
        pp,
        ci,
        pi,
        uv,
        fixed_cams=fixed,
        optimize_focal=True,
        rotation_only=True,
    )
    assert np.abs(res.t).max() == 0.0
    ang = np.rad2deg(
        np.arccos(np.clip((np.trace(np.swapaxes(res.R, 1, 2) @ R, axis1=1, axis2=2) - 1) / 2, -1, 1))
    )
    assert ang.max() < 0.05
    assert abs(res.focal - f) / f < 0.01


def test_dense_pairwise_and_iterative_schur_solvers_agree(monkeypatch):
    import y2r.stages.camera.bundle_adjustment as ba

    R, t, X, f, pp, ci, pi, uv, _, _ = _problem(4, noise_px=0.3)
    R0 = axis_angle_to_matrix(np.full((len(R), 3), 0.005)) @ R
    R0[0] = R[0]
    fixed = np.zeros(len(R), bool)
    fixed[0] = True

    def run():
        return bundle_adjust(
            R0, t, X, 1.05 * f, pp, ci, pi, uv, fixed_cams=fixed, optimize_focal=True, max_iterations=3
        )

    dense = run()
    monkeypatch.setattr(ba, "DENSE_SCHUR_MAX_ENTRIES", 0)
    pairs = run()  # few cameras: the reduced system is still formed, pair by pair
    monkeypatch.setattr(ba, "ITERATIVE_MIN_CAMERAS", 0)
    iterative = run()  # conjugate gradients on the implicit reduced system
    assert np.allclose(dense.R, pairs.R, atol=1e-9) and np.allclose(dense.X, pairs.X, atol=1e-7)
    assert np.isclose(dense.focal, pairs.focal) and np.isclose(dense.focal_std, pairs.focal_std)
    assert np.allclose(dense.R, iterative.R, atol=1e-6) and np.allclose(dense.X, iterative.X, atol=1e-4)
    assert abs(dense.focal - iterative.focal) < 1e-3
