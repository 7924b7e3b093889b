"""The `wilor` hands backend driving a (fake) WiLoR worker: left hands un-mirrored, metric translation
re-solved with the camera stage's K and depth, tracks per side."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation, Slerp
from tools import fake_envs
from tools.hand_scenes import make_scene, save_truth
from tools.stage_inputs import config_with, ctx, make_job, meta_for, save_camera, save_ingest

from y2r.artifacts import HandsArtifact
from y2r.geometry import matrix_to_axis_angle
from y2r.stages.hands.lifting import wrist_frame
from y2r.stages.hands.wilor import WiLoRHands


def hands_job(tmp_path, scene, vid, metric=True):
    T, H, W = scene.frames.shape[:3]
    meta = meta_for(vid, T, H, W)
    d = tmp_path / vid
    ing = save_ingest(d, scene.frames, meta)
    cam = save_camera(d, scene.K, np.tile(np.eye(4), (T, 1, 1)), scene.depth, metric=metric)
    return make_job(d, vid, "hands", meta, {"ingest": ing, "camera": cam})


RAW = {"max_gap_frames": 0, "smoothing": 0.0}  # no gap filling, no smoothing: WiLoR's values as they are


def backend_for(tmp_path, scene, temporal=RAW, **wilor_opts) -> tuple[WiLoRHands, object]:
    work = tmp_path / "w"
    root = fake_envs.wilor_root(tmp_path)
    env = fake_envs.tool_env(work, root, FAKE_WILOR_TRUTH=str(save_truth(scene, tmp_path / "truth.npz")))
    cfg = config_with("wilor", env, hands={"backend": "wilor", "temporal": temporal,
                                           "wilor": {"batch_size": 3, **wilor_opts}})
    return WiLoRHands(cfg, ctx(tmp_path)), work


def truth_track(scene, side):
    rows = np.flatnonzero(scene.truth["is_right"] == (side == "right"))
    return {int(scene.truth["frame"][i]): i for i in rows}


def test_wilor_hands_are_unmirrored_and_placed_metrically(tmp_path):
    scene = make_scene(T=6, drop={"left": {2}, "right": {4}})
    backend, work = backend_for(tmp_path, scene)
    try:
        art = backend.process(hands_job(tmp_path, scene, "clip"))
        again = backend.process(hands_job(tmp_path, scene, "clip2"))
    finally:
        backend.close()
    assert isinstance(art, HandsArtifact) and art.source == "wilor"
    assert sorted(fake_envs.loads(work)) == ["wilor YOLO", "wilor load_wilor"]  # once for both videos
    assert np.array_equal(again.right.joints_cam, art.right.joints_cam, equal_nan=True)
    tr = scene.truth
    errors = []
    for side in ("left", "right"):
        h = art.side(side)
        assert np.array_equal(h.valid, scene.present[side])
        assert np.all(np.isnan(h.joints_cam[~h.valid])) and np.all(h.score[~h.valid] == 0)
        for t, i in truth_track(scene, side).items():
            # Shape and rotations are WiLoR's, exactly, on the true side (left hands un-mirrored).
            rel = h.joints_cam[t] - h.joints_cam[t, 0]
            np.testing.assert_allclose(rel, tr["joints_cam"][i] - tr["joints_cam"][i][0], atol=2e-6)
            # The wrist frame is the joints' (same definition as the built-in backend's).
            np.testing.assert_allclose(h.cam_T_wrist[t], wrist_frame(h.joints_cam[t], side == "right"), atol=1e-5)
            np.testing.assert_allclose(h.cam_T_wrist[t, :3, :3], wrist_frame(tr["joints_cam"][i], side == "right")[:3, :3],
                                       atol=1e-5)
            np.testing.assert_allclose(h.mano["global_orient"][t], matrix_to_axis_angle(tr["R"][i]), atol=1e-5)
            np.testing.assert_allclose(h.mano["hand_pose"][t], matrix_to_axis_angle(tr["hand_pose"][i]), atol=1e-5)
            np.testing.assert_allclose(h.mano["betas"][t], tr["betas"][i], atol=1e-6)
            # Translation re-solved with the real K and metric depth (WiLoR's own is ~20x too far). What
            # remains is WiLoR's near-orthographic camera: its 2D keypoints lack the perspective shift of
            # joints nearer / farther than the wrist, which grows with the hand's angle off the axis
            # (up to 15 degrees here).
            errors.append(np.linalg.norm(h.joints_cam[t] - tr["joints_cam"][i], axis=1).max())
            uvw = tr["joints_cam"][i] @ scene.K.T
            np.testing.assert_allclose(h.keypoints_2d[t], uvw[:, :2] / uvw[:, 2:3], atol=2.0)
    assert max(errors) < 0.01 and np.median(errors) < 0.003
    assert art.quality["depth_anchored_fraction"] == 1.0 and art.quality["detections"] == 10
    assert art.quality["association"]["handedness_corrected"] == 0
    assert art.quality["reproj_rms_px_median"] < 1.0


def test_without_metric_depth_the_hand_is_placed_from_the_image(tmp_path):
    scene = make_scene(T=2)
    backend, _ = backend_for(tmp_path, scene, save_vertices=True)
    try:
        job = hands_job(tmp_path, scene, "nometric", metric=False)
        art = backend.process(job)
    finally:
        backend.close()
    assert art.quality["depth_anchored_fraction"] == 0.0
    for side in ("left", "right"):
        for t, i in truth_track(scene, side).items():
            err = np.linalg.norm(art.side(side).joints_cam[t] - scene.truth["joints_cam"][i], axis=1)
            assert err.max() < 0.03  # MANO's metric size alone fixes the depth, to a few cm
    with np.load(job.out_dir / "vertices.npz") as z:
        j = int(np.flatnonzero((z["frame"] == 0) & ~z["is_right"])[0])
        v = z["vertices_cam"][j]
    i = truth_track(scene, "left")[0]
    template = np.random.default_rng(0).normal(size=(778, 3)) * 0.03  # the fake model's (wilor.models)
    rel = template @ scene.truth["R"][i].T  # the true left hand's vertices about its MANO origin
    got = v - art.left.joints_cam[0, 0] + (scene.truth["joints_cam"][i][0] - scene.truth["origin"][i])
    np.testing.assert_allclose(got, rel, atol=1e-5)


def test_gaps_are_filled_with_interpolated_mano(tmp_path):
    scene = make_scene(T=5, drop={"right": {2}})
    backend, _ = backend_for(tmp_path, scene, temporal={"max_gap_frames": 2, "smoothing": 0.0})
    try:
        art = backend.process(hands_job(tmp_path, scene, "gap"))
    finally:
        backend.close()
    h = art.right
    assert h.valid.all() and art.quality["right"]["filled"] == 1
    a, b = truth_track(scene, "right")[1], truth_track(scene, "right")[3]
    Ra, Rb = (Rotation.from_matrix(scene.truth["R"][k]) for k in (a, b))
    mid = Slerp([0, 1], Rotation.concatenate([Ra, Rb]))([0.5])
    np.testing.assert_allclose(h.mano["global_orient"][2], mid.as_rotvec()[0], atol=1e-5)
    np.testing.assert_allclose(h.mano["betas"][2], 0.5 * (scene.truth["betas"][a] + scene.truth["betas"][b]), atol=1e-5)
    assert np.isfinite(h.mano["hand_pose"]).all() and np.isfinite(h.cam_T_wrist).all()
