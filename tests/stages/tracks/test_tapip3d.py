"""Track backends on TAPIP3D: windowing and stitching, the `tapip3d` backend driving a (fake) TAPIP3D
worker, and `tapip3d-results` on TAPIP3D-format files with ground truth."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from tools import fake_envs
from tools.stage_inputs import config_with, ctx, make_job, meta_for, save_camera, save_ingest

from y2r.artifacts import CameraArtifact
from y2r.config import Config
from y2r.errors import InputError
from y2r.geometry import invert_se3, project, transform_points
from y2r.stages.camera.vipe import ViPEResultsCamera
from y2r.stages.tracks.tapip3d import TAPIP3DResultsTracks, TAPIP3DTracks, plan_windows, stitch_chain


# ------------------------------------------------------------------------------ windows
def test_plan_windows_cover_everything_with_full_length_windows():
    assert plan_windows(50, 96, 16) == [(0, 50)]
    assert plan_windows(200, 96, 16) == [(0, 96), (80, 176), (104, 200)]
    assert plan_windows(176, 96, 16) == [(0, 96), (80, 176)]
    for L in range(10, 300, 7):
        w = plan_windows(L, 20, 5)
        assert w[0][0] == 0 and w[-1][1] == L
        assert all(e - s == min(20, L) for s, e in w)
        assert all(b[0] > a[0] and a[1] - b[0] >= 5 for a, b in zip(w, w[1:]))
    with pytest.raises(ValueError):
        plan_windows(100, 10, 10)


def test_stitching_carries_positions_across_windows_exactly():
    v = np.array([[0.01, 0.0, 0.0], [0.0, -0.02, 0.005], [0.0, 0.0, 0.0]])
    start = np.array([[0.0, 0.0, 1.0], [0.5, 0.5, 2.0], [1.0, 1.0, 1.0]])
    calls = []

    def tracker(s, e, q):  # a perfect tracker of points moving at constant velocity v
        calls.append((s, e, len(q)))
        ids = [int(np.argmin(np.abs(start + v * s - x).sum(1))) for x in q]
        local = np.arange(e - s)[:, None, None]
        return q[None] + local * v[ids][None], np.ones((e - s, len(q)), bool), {}

    out = stitch_chain(40, start, np.array([True, True, False]), window=12, overlap=4, track_window=tracker)
    t = np.arange(40)[:, None, None]
    np.testing.assert_allclose(out.coords[:, :2], start[None, :2] + t * v[None, :2], atol=1e-12)
    assert np.isnan(out.coords[:, 2]).all() and not out.visible[:, 2].any()  # not trackable: never queried
    assert calls == [(0, 12, 2), (8, 20, 2), (16, 28, 2), (24, 36, 2), (28, 40, 2)] and out.lost == 0


def test_stitching_blends_overlaps_and_drops_lost_points():
    def tracker(s, e, q):
        n = e - s
        bias = 0.1 if s else 0.0  # the second window disagrees by 0.1 everywhere
        vis = np.ones((n, len(q)), bool)
        if s == 0:
            vis[6:, 1] = False  # point 1 unseen in the whole overlap (frames 6..9) -> lost
        return np.repeat(q[None], n, 0) + bias, vis, {"padded_frames": 0}

    start = np.zeros((2, 3))
    out = stitch_chain(16, start, np.array([True, True]), window=10, overlap=4, track_window=tracker)
    # Overlap frames 6..9: weight of the new window ramps 1/5 .. 4/5.
    np.testing.assert_allclose(out.coords[6:10, 0, 0], 0.1 * np.arange(1, 5) / 5)
    np.testing.assert_allclose(out.coords[10:, 0], 0.1)
    assert np.all(out.coords[:10, 1] == 0) and np.isnan(out.coords[10:, 1]).all()
    assert not out.visible[6:, 1].any() and out.lost == 1


# ------------------------------------------------------------------------------ the tapip3d backend
@pytest.fixture(scope="module")
def scene(shared):
    """room_orbit at quarter resolution (every 4th pixel, so K/4 is exact)."""
    with np.load(shared / "fixtures" / "room_orbit_gt.npz") as z:
        K = z["K"].copy()
        K[:2] /= 4
        return {"rgb": z["rgb"][:, ::4, ::4].copy(), "depth": z["depth"][:, ::4, ::4].astype(np.float32), "K": K,
                "c2w": z["c2w"]}


def fake_rule(xyz, K, cam_T_world, depth):
    """The fake tracker's visibility of world points (T,N,3) (see fakes/tapip3d_checkout)."""
    H, W = depth.shape[1:]
    uv, z = project(K, transform_points(cam_T_world, xyz)), transform_points(cam_T_world, xyz)[..., 2]
    inside = (z > 0) & (uv[..., 0] >= 0) & (uv[..., 0] <= W - 1) & (uv[..., 1] >= 0) & (uv[..., 1] <= H - 1)
    ui = np.clip(np.rint(np.nan_to_num(uv[..., 0])), 0, W - 1).astype(int)
    vi = np.clip(np.rint(np.nan_to_num(uv[..., 1])), 0, H - 1).astype(int)
    d = depth[np.arange(len(xyz))[:, None], vi, ui]
    return inside & ((d <= 0) | (z <= d * 1.02))


def tracks_job(tmp_path, scene, vid, frames=None):
    T, H, W = scene["rgb"].shape[:3] if frames is None else (frames, *scene["rgb"].shape[1:3])
    meta = meta_for(vid, T, H, W)
    d = tmp_path / vid
    ing = save_ingest(d, scene["rgb"][:T], meta)
    cam = save_camera(d, scene["K"], scene["c2w"][:T], scene["depth"][:T])
    return make_job(d, vid, "tracks", meta, {"ingest": ing, "camera": cam}), CameraArtifact.load(cam)


def test_tapip3d_backend_windows_stitching_and_query_frame(tmp_path, scene):
    root = fake_envs.tapip3d_root(tmp_path, (60, 80))  # inference size = stored size: exact comparisons
    work = tmp_path / "w"
    cfg = config_with("tapip3d", fake_envs.tool_env(work, root),
                      tracks={"backend": "tapip3d", "grid_size": 6, "query_frame": 10,
                              "tapip3d": {"window_frames": 12, "window_overlap": 4, "resolution_factor": 1}})
    backend = TAPIP3DTracks(cfg, ctx(tmp_path))
    try:
        job, cam = tracks_job(tmp_path, scene, "orbit")
        art = backend.process(job)
        job2, _ = tracks_job(tmp_path, scene, "orbit_short", frames=6)
        cfg.tracks.query_frame = 0
        short = backend.process(job2)
    finally:
        backend.close()
    assert backend.session.starts == 1 and fake_envs.loads(work) == ["tapip3d from_pretrained"]
    q = art.query
    assert q.shape == (36, 3) and np.all(q[:, 0] == 10)
    assert art.quality["windows"] == {"forward": [[0, 12], [8, 20], [10, 22]], "backward": [[0, 11]]}
    K = cam.K.astype(np.float64)
    E = invert_se3(cam.world_T_cam.astype(np.float64))
    depth = np.where(cam.depth_valid, cam.depth, 0).astype(np.float32)
    xyz = art.xyz_world.astype(np.float64)
    known = np.isfinite(xyz).all(-1)
    x0 = xyz[10]
    assert known[10].all()
    # The fake tracker keeps world points fixed: every known position is the lifted query.
    assert np.abs(np.where(known[..., None], xyz - x0[None], 0)).max() < 1e-5
    # Visibility is the fake model's, frame by frame, wherever the point is still tracked.
    rule = fake_rule(np.repeat(x0[None], 32, 0), K, E, depth)
    assert np.array_equal(art.visible, rule & known)
    # uv is the projection with the camera stage's K and pose; the query pixel at the query frame.
    np.testing.assert_allclose(art.uv[known], project(K, transform_points(E, xyz))[known], atol=1e-3)
    np.testing.assert_allclose(art.uv[10], q[:, 1:], atol=2e-3)
    # A point is dropped only at a window boundary where it was unseen in all shared frames.
    lost = ~known.all(0)
    assert art.quality["lost_at_window_boundaries"] == lost.sum()
    # Forward windows (chain-local) [0,12) [8,20) [10,22) are frames 10..21, 18..29, 20..31: a point
    # unseen in frames 18..21 disappears at 22, one unseen in 20..29 (of window 2) at 30.
    boundaries = {22: (18, 22), 30: (20, 30)}
    for n in np.flatnonzero(lost):
        first_nan = int(np.flatnonzero(~known[:, n])[0])
        assert first_nan in boundaries and known[:first_nan, n].all() and not known[first_nan:, n].any()
        s, e = boundaries[first_nan]
        assert not rule[s:e, n].any()
    # A 6-frame clip is padded to TAPIP3D's minimum (9) in the worker, so it is really tracked.
    assert short.quality["padded_frames"] == 3 and short.visible.any()


# ------------------------------------------------------------------------------ tapip3d-results
@pytest.fixture(scope="module")
def gt(shared):
    with np.load(shared / "fixtures" / "room_orbit_gt.npz") as z:
        return {k: z[k] for k in z.files}


def vipe_camera_job(tmp_path, shared, name="room_orbit"):
    """Camera artifact from the ViPE fixture (vipe-results), then a tracks job on it."""
    meta = meta_for(name, 32, 240, 320, fps=30.0, source=f"/data/{name}.mp4")
    d = tmp_path / name
    ing = save_ingest(d, np.zeros((32, 240, 320, 3), np.uint8), meta)
    cam_job = make_job(d, name, "camera", meta, {"ingest": ing})
    cfg = Config.model_validate({"camera": {"backend": "vipe-results",
                                            "results_dir": str(shared / "fixtures" / "vipe_v1.1.0")}})
    art = ViPEResultsCamera(cfg, ctx(tmp_path)).process(cam_job)
    (d / "camera").mkdir()
    art.save(d / "camera")
    return make_job(d, name, "tracks", meta, {"ingest": ing, "camera": d / "camera"})


def results_backend(folder, tmp_path):
    cfg = Config.model_validate({"tracks": {"backend": "tapip3d-results", "results_dir": str(folder)}})
    return TAPIP3DResultsTracks(cfg, ctx(tmp_path))


def test_tapip3d_results_on_vipe_camera_reproduce_ground_truth(tmp_path, shared, gt):
    job = vipe_camera_job(tmp_path, shared)
    art = results_backend(shared / "fixtures" / "tapip3d", tmp_path).process(job)
    assert np.array_equal(art.xyz_world, gt["track_xyz_world"].astype(np.float32))
    assert np.array_equal(art.visible, gt["track_visible"])
    # 3e-5 px (the fixture's bound for K x 5 in float64) plus float32 storage of uv: half an ulp at
    # 320 px is 1.5e-5 px.
    assert np.abs(art.uv - gt["track_uv"]).max() < 3e-5 + 1.5e-5
    np.testing.assert_allclose(art.query[:, 1:], gt["track_uv"][0], atol=3e-5 + 1.5e-5)
    assert np.all(art.query[:, 0] == 0) and art.quality["world_offset_max"] < 1e-5


def test_tapip3d_results_lookup_and_mismatches(tmp_path, shared, gt):
    job = vipe_camera_job(tmp_path, shared)
    nested = tmp_path / "outputs" / "2026-01-02_03-04-05"
    nested.mkdir(parents=True)
    shutil.copy(shared / "fixtures" / "tapip3d" / "room_orbit.result.npz", nested)
    art = results_backend(tmp_path / "outputs", tmp_path).process(job)  # TAPIP3D's timestamped folder
    assert art.xyz_world.shape == (32, 64, 3)
    with np.load(shared / "fixtures" / "tapip3d" / "room_orbit.result.npz") as z:
        short = {k: z[k][:20] if k in ("coords", "visibs", "extrinsics", "intrinsics") else z[k] for k in z.files}
    (tmp_path / "short").mkdir()
    np.savez(tmp_path / "short" / "room_orbit.result.npz", **short)
    with pytest.raises(InputError, match="has 20 frames, this video has 32"):
        results_backend(tmp_path / "short", tmp_path).process(job)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no TAPIP3D result 'room_orbit.result.npz'"):
        results_backend(tmp_path / "empty", tmp_path).process(job)


def test_tapip3d_results_in_another_world_are_mapped_into_y2rs(tmp_path, shared, gt):
    """Tracks made with identity extrinsics (camera-frame tracking) land in y2r's world."""
    job = vipe_camera_job(tmp_path, shared)
    with np.load(shared / "fixtures" / "tapip3d" / "room_orbit.result.npz") as z:
        data = {k: z[k] for k in z.files}
    E = invert_se3(gt["c2w"])
    data["coords"] = transform_points(E, gt["track_xyz_world"]).astype(np.float32)  # camera frame of each frame
    data["extrinsics"] = np.tile(np.eye(4, dtype=np.float32), (32, 1, 1))
    (tmp_path / "camframe").mkdir()
    np.savez(tmp_path / "camframe" / "room_orbit.result.npz", **data)
    art = results_backend(tmp_path / "camframe", tmp_path).process(job)
    np.testing.assert_allclose(art.xyz_world, gt["track_xyz_world"], atol=2e-5)
    assert np.abs(art.uv - gt["track_uv"]).max() < 2e-3 and art.quality["world_offset_max"] > 0.1
