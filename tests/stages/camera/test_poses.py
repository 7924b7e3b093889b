"""Keyframe SfM, rotation-only poses, focal search and their building blocks."""

from __future__ import annotations

import numpy as np
import pytest

from y2r.evaluation.camera_metrics import ate, relative_rotation_error
from y2r.geometry import axis_angle_to_matrix, invert_se3, make_se3
from y2r.stages.camera.features import track_frames
from y2r.stages.camera.poses import (
    PoseOptions,
    incremental_sfm,
    interpolate_poses,
    multiview_reprojection,
    outlier_points,
    rotation_only_poses,
    select_keyframes,
    sfm_focal_search,
    triangulate,
)


@pytest.fixture(scope="module")
def orbit_tracks(room_orbit):
    return track_frames(room_orbit["rgb"])


def _world_T_cam(rec):
    wTc = invert_se3(rec.cam_T_world)
    return invert_se3(wTc[0]) @ wTc


def test_keyframes_start_and_end_the_video(orbit_tracks):
    kfs = select_keyframes(orbit_tracks, parallax_px=12.0, min_shared=0.6)
    assert kfs[0] == 0 and kfs[-1] == orbit_tracks.num_frames - 1
    assert np.all(np.diff(kfs) > 0) and len(kfs) >= 3
    assert len(select_keyframes(orbit_tracks, 4.0, 0.6)) > len(kfs)


def test_sfm_with_known_K_matches_ground_truth(room_orbit, orbit_tracks):
    rec = incremental_sfm(orbit_tracks, room_orbit["K"], PoseOptions(), optimize_focal=False)
    assert rec is not None and rec.registered.all()
    est = _world_T_cam(rec)
    a = ate(est, room_orbit["c2w"])
    assert a["ate_pct_path"] < 0.5  # measured 0.13%
    assert relative_rotation_error(est, room_orbit["c2w"]) < 0.03  # deg/frame, measured 0.009
    assert rec.rms_px < 0.3
    # The moving cube's tracks are rejected: few map points lie on it.
    X0 = rec.points @ rec.cam_T_world[0, :3, :3].T + rec.cam_T_world[0, :3, 3]
    uv = X0[:, :2] / X0[:, 2:] * room_orbit["K"][0, 0] + room_orbit["K"][:2, 2]
    inside = (uv[:, 0] >= 0) & (uv[:, 0] <= 319) & (uv[:, 1] >= 0) & (uv[:, 1] <= 239)
    on_cube = room_orbit["moving_mask"][0][
        np.rint(uv[inside, 1]).astype(int), np.rint(uv[inside, 0]).astype(int)
    ]
    assert on_cube.mean() < 0.02


def test_self_calibration_finds_the_focal(room_orbit, orbit_tracks):
    K = room_orbit["K"]
    kfs = select_keyframes(orbit_tracks, 12.0, 0.6)
    found = sfm_focal_search(orbit_tracks, kfs, 320, 240, PoseOptions(), 0.18 * 320, 2.8 * 320)
    assert found is not None and abs(found[0] / K[0, 0] - 1) < 0.2
    Kg = K.copy()
    Kg[0, 0] = Kg[1, 1] = found[0]
    rec = incremental_sfm(orbit_tracks, Kg, PoseOptions(), optimize_focal=True, keyframes=kfs)
    assert abs(rec.focal / K[0, 0] - 1) < 0.03
    assert rec.focal_rel_std is not None and rec.focal_rel_std < 0.02


def test_rotation_only_poses_of_a_turning_camera(rotating, room_orbit):
    frames, gt = rotating
    tracks = track_frames(frames)
    rec = rotation_only_poses(tracks, room_orbit["K"], PoseOptions(), optimize_focal=False)
    est = invert_se3(rec.cam_T_world)
    assert np.abs(est[:, :3, 3]).max() == 0.0
    assert relative_rotation_error(est, gt) < 0.02
    ang = np.rad2deg(
        np.arccos(
            np.clip(
                (np.trace(np.swapaxes(est[:, :3, :3], 1, 2) @ gt[:, :3, :3], axis1=1, axis2=2) - 1) / 2, -1, 1
            )
        )
    )
    assert ang.max() < 0.1


def test_triangulation_checks_angle_and_cheirality():
    K = np.array([[300.0, 0, 160], [0, 300.0, 120], [0, 0, 1]])
    X = np.array([[0.1, 0.2, 4.0], [-0.3, 0.1, 5.0], [0.0, 0.0, 2000.0]])
    T1 = np.eye(4)
    T2 = make_se3(np.eye(3), np.array([-0.5, 0.0, 0.0]))
    uv1 = X[:, :2] / X[:, 2:] * 300 + [160, 120]
    X2 = X + T2[:3, 3]
    uv2 = X2[:, :2] / X2[:, 2:] * 300 + [160, 120]
    Xt, ok = triangulate(K, T1, T2, uv1, uv2, max_px=1.0, min_angle_deg=1.0)
    assert np.allclose(Xt[:2], X[:2], atol=1e-6)
    assert ok.tolist() == [True, True, False]  # the far point subtends ~0.01 degrees


def test_interpolation_is_exact_at_knots_and_halfway():
    R = axis_angle_to_matrix(np.array([[0, 0, 0], [0, 0.2, 0]], float))
    wTc = make_se3(R, np.array([[0, 0, 0], [1.0, 0, 0]]))
    q = interpolate_poses(np.array([0, 10]), invert_se3(wTc), np.array([0, 5, 10]))
    mid = invert_se3(q[1])
    assert np.allclose(invert_se3(q[[0, 2]]), wTc)
    assert np.allclose(mid[:3, 3], [0.5, 0, 0])
    assert np.allclose(mid[:3, :3], axis_angle_to_matrix(np.array([0, 0.1, 0])))


def test_chi_square_test_catches_a_consistently_biased_track():
    rng = np.random.default_rng(0)
    n_pts, views = 200, 8
    pt = np.repeat(np.arange(n_pts), views)
    res = np.linalg.norm(rng.normal(0, 0.2, (len(pt), 2)), axis=1)
    res[pt == 7] = 0.9  # every residual small, but all of them: a moving point
    kill = outlier_points(pt, res, n_pts, PoseOptions())
    assert kill[7] and kill.sum() <= 3


def test_multiview_reprojection_is_small_for_a_good_reconstruction(room_orbit, orbit_tracks):
    rec = incremental_sfm(orbit_tracks, room_orbit["K"], PoseOptions(), optimize_focal=False)
    frames = [int(k) for k in rec.keyframes]
    err = multiview_reprojection(orbit_tracks, frames, rec.cam_T_world, room_orbit["K"])
    assert len(err) > 500 and np.median(err) < 0.3
    bad = rec.cam_T_world.copy()
    bad[frames[1], :3, 3] += 0.05  # a wrong pose must show
    assert (
        np.median(multiview_reprojection(orbit_tracks, frames, bad, room_orbit["K"])) > np.median(err) * 1.5
    )
