"""Camera metrics: Sim(3)-aligned ATE, relative rotation error, focal error, depth errors."""

from __future__ import annotations

import numpy as np

from y2r.evaluation.camera_metrics import (
    ate,
    camera_report,
    depth_metrics,
    focal_error_pct,
    relative_rotation_error,
)
from y2r.geometry import axis_angle_to_matrix, make_se3


def _trajectory(T: int = 20) -> np.ndarray:
    s = np.linspace(0, 1, T)
    R = axis_angle_to_matrix(np.stack([0.1 * s, 0.4 * s, 0 * s], 1))
    c = np.stack([s, 0.2 * np.sin(3 * s), 0.1 * s], 1)
    return make_se3(R, c)


def test_ate_ignores_a_similarity_and_sees_an_error():
    gt = _trajectory()
    S = make_se3(axis_angle_to_matrix(np.array([0.3, -0.2, 0.5])), np.array([1.0, 2.0, -1.0]))
    est = S @ gt
    est[:, :3, 3] *= 0.37  # arbitrary monocular scale
    a = ate(est, gt)
    assert a["ate_rmse"] < 1e-9 and np.isclose(a["sim3_scale"], 1 / 0.37)
    assert np.isclose(a["path_length"], np.sum(np.linalg.norm(np.diff(gt[:, :3, 3], axis=0), axis=1)))
    noisy = gt.copy()
    noisy[5, 0, 3] += 0.1  # one camera 10 cm off
    b = ate(noisy, gt)
    assert 0.015 < b["ate_rmse"] < 0.0225  # 0.1 / sqrt(20), a little less after alignment
    assert np.isclose(b["ate_pct_path"], 100 * b["ate_rmse"] / b["path_length"])


def test_relative_rotation_error_per_frame():
    gt = _trajectory(11)
    assert relative_rotation_error(gt, gt) < 1e-6
    est = gt.copy()
    # An extra 0.1 degree of yaw per frame, accumulated.
    extra = axis_angle_to_matrix(np.array([[0, np.deg2rad(0.1) * i, 0] for i in range(11)]))
    est[:, :3, :3] = gt[:, :3, :3] @ extra
    assert np.isclose(relative_rotation_error(est, gt), 0.1, atol=1e-3)


def test_focal_error():
    K = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
    Ke = K.copy()
    Ke[0, 0] = Ke[1, 1] = 525.0
    assert np.isclose(focal_error_pct(Ke, K), 5.0)
    assert np.isclose(focal_error_pct(np.repeat(Ke[None], 3, 0), K), 5.0)


def test_depth_metrics_align_scale_once_for_the_clip():
    rng = np.random.default_rng(0)
    gt = rng.uniform(1, 4, (3, 10, 12))
    valid = np.ones_like(gt, bool)
    valid[:, :, :3] = False
    m = depth_metrics(gt * 0.5, valid, gt)
    assert m["abs_rel"] < 1e-12 and m["delta1"] == 1.0 and np.isclose(m["scale"], 2.0)
    assert np.isclose(m["coverage"], 9 / 12)
    # Metric depth is not rescaled: a 0.5x estimate is 50% off.
    assert np.isclose(depth_metrics(gt * 0.5, valid, gt, metric=True)["abs_rel"], 0.5)
    # Scale drift over the clip is not hidden by per-frame alignment.
    drift = gt * np.array([1.0, 1.2, 1.44])[:, None, None]
    assert depth_metrics(drift, valid, gt)["abs_rel"] > 0.1
    none = depth_metrics(gt, np.zeros_like(valid), gt)
    assert none["coverage"] == 0.0 and np.isnan(none["abs_rel"])


def test_camera_report_collects_everything():
    gt = _trajectory(5)
    K = np.eye(3)
    K[0, 0] = K[1, 1] = 100.0
    d = np.full((5, 4, 4), 2.0)
    r = camera_report(np.repeat(K[None], 5, 0), gt, d, np.ones_like(d, bool), K, gt, d)
    assert r["ate_rmse"] < 1e-9 and r["focal_err_pct"] == 0.0 and r["depth_abs_rel"] == 0.0
    assert r["depth_coverage"] == 1.0 and r["rot_err_deg_per_frame"] < 1e-6
