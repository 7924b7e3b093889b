import numpy as np
import pytest

from y2r.evaluation.track_metrics import camera_depth, evaluate_tracks, evaluation_mask


def _gt(T=5, N=4, seed=0):
    rng = np.random.default_rng(seed)
    uv = rng.uniform(0, 100, (T, N, 2))
    vis = np.ones((T, N), bool)
    vis[2:4, 1] = False
    return uv, vis


def test_perfect_prediction():
    uv, vis = _gt()
    m = evaluate_tracks(uv, vis, uv, vis, query_t=np.zeros(4))
    assert m.median_px == 0 and m.p90_px == 0 and m.delta_avg == 1
    assert m.vis_accuracy == 1 and m.vis_f1 == 1
    assert np.isnan(m.err3d_median_pct) and np.isnan(m.xyz_coverage)


def test_position_error_is_measured_on_gt_visible_points_outside_the_query_frame():
    uv, vis = _gt()
    pred = uv.copy()
    pred[1:, :, 0] += 3.0  # every evaluated point is 3 px off ...
    pred[2:4, 1] += 100.0  # ... except where the GT says hidden: not counted
    pred[0] += 50  # the query frame: not counted
    m = evaluate_tracks(pred, vis, uv, vis, query_t=np.zeros(4))
    assert m.num_evaluated == 4 * 4 - 2
    assert m.median_px == pytest.approx(3.0) and m.p90_px == pytest.approx(3.0)
    assert m.delta_avg == pytest.approx(np.mean([0, 0, 1, 1, 1]))


def test_missing_positions_count_as_infinitely_wrong():
    uv, vis = _gt(T=11, N=2)
    vis[:] = True
    pred = uv.copy()
    pred[1:4, 0] = np.nan  # 3 of the 20 evaluated points have no position
    m = evaluate_tracks(pred, vis, uv, vis, query_t=np.zeros(2))
    assert m.median_px == 0 and m.p90_px == np.inf


def test_visibility_scores():
    uv, vis = _gt(T=3, N=4)
    vis[:] = [[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 1]]
    pred_vis = np.array([[1, 1, 1, 1], [1, 0, 1, 0], [1, 0, 0, 0]], bool)
    m = evaluate_tracks(uv, pred_vis, uv, vis, query_t=np.zeros(4))
    # frames 1-2: TP 2 (1,0)(2,0); FP 1 (1,2); FN 2 (1,1)(2,3); TN 3
    assert m.vis_precision == pytest.approx(2 / 3) and m.vis_recall == pytest.approx(2 / 4)
    assert m.vis_f1 == pytest.approx(2 * 2 / (2 * 2 + 1 + 2)) and m.vis_accuracy == pytest.approx(5 / 8)


def test_3d_error_is_relative_to_the_points_depth_in_each_camera():
    T, N = 3, 2
    world_T_cam = np.tile(np.eye(4), (T, 1, 1))
    world_T_cam[:, 2, 3] = [0.0, -1.0, -2.0]  # the camera moves back: depth grows by 1 m a frame
    gt_xyz = np.tile(np.array([[0.0, 0.0, 2.0], [0.5, 0.0, 4.0]]), (T, 1, 1))
    assert np.allclose(camera_depth(gt_xyz, world_T_cam)[:, 0], [2, 3, 4])
    pred = gt_xyz.copy()
    pred[:, :, 0] += 0.03  # 3 cm off everywhere
    pred[2, 1] = np.nan
    uv = np.zeros((T, N, 2))
    vis = np.ones((T, N), bool)
    m = evaluate_tracks(uv, vis, uv, vis, query_t=np.zeros(N), pred_xyz=pred, gt_xyz=gt_xyz,
                        world_T_cam=world_T_cam)
    # evaluated (frames 1-2): 3/3, 3/5, 3/4 (pct) and one missing
    assert m.xyz_coverage == pytest.approx(3 / 4)
    assert m.err3d_median_pct == pytest.approx(0.75)
    assert m.err3d_p90_pct == pytest.approx(1.0)


def test_evaluation_mask_and_errors():
    mask = evaluation_mask((3, 2), np.array([0, 2]))
    assert mask.tolist() == [[False, True], [True, True], [True, False]]
    uv, vis = _gt()
    with pytest.raises(ValueError, match="shape mismatch"):
        evaluate_tracks(uv[:, :2], vis, uv, vis)
    with pytest.raises(ValueError, match="world_T_cam"):
        evaluate_tracks(uv, vis, uv, vis, pred_xyz=np.zeros((5, 4, 3)), gt_xyz=np.ones((5, 4, 3)))
