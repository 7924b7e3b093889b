"""The built-in tracks backend end to end: artifacts on disk in, a TracksArtifact out."""

from pathlib import Path

import numpy as np
import pytest

from y2r.artifacts import CameraArtifact, IngestArtifact, TracksArtifact, VideoMeta
from y2r.config import Config
from y2r.errors import Y2RError
from y2r.geometry import invert_se3, project, transform_points
from y2r.stages.base import Job, WorkerContext, backend_class
from y2r.stages.tracks.builtin import BuiltinTracks, camera_model, track_video


@pytest.fixture(scope="module")
def gt(shared):
    z = np.load(shared / "fixtures" / "room_orbit_gt.npz")
    return {k: z[k] for k in ("rgb", "depth", "K", "c2w")}


def _meta(T, H, W):
    return VideoMeta(video_id="room_orbit", source_path="room_orbit.mp4", source_sha256="0" * 64,
                     source_fps=30.0, source_width=W, source_height=H, source_num_frames=T, codec="h264",
                     fps=30.0, width=W, height=H, num_frames=T, crop=(0.0, 0.0, float(W), float(H)))


def _camera(gt, **kw):
    T = len(gt["rgb"])
    return CameraArtifact(K=np.tile(gt["K"], (T, 1, 1)).astype(np.float32),
                          world_T_cam=gt["c2w"].astype(np.float32), depth=gt["depth"],
                          depth_valid=gt["depth"] > 0, metric_scale=True, source="gt", **kw)


def _job(tmp_path: Path, gt, camera: CameraArtifact) -> Job:
    T, H, W = gt["rgb"].shape[:3]
    meta = _meta(T, H, W)
    ing_dir, cam_dir = tmp_path / "ingest", tmp_path / "camera"
    ing_dir.mkdir()
    cam_dir.mkdir()
    IngestArtifact(frames=gt["rgb"], frame_index=np.arange(T, dtype=np.int32), timestamp=np.arange(T) / 30.0,
                   meta=meta).save(ing_dir)
    camera.save(cam_dir)
    return Job(video_id="room_orbit", stage="tracks", meta=meta, source_path=Path("room_orbit.mp4"),
               inputs={"ingest": ing_dir, "camera": cam_dir}, out_dir=tmp_path, log_path=tmp_path / "log.txt")


def test_registry_points_at_the_backends():
    assert backend_class("tracks", "builtin") is BuiltinTracks
    assert backend_class("tracks", "none").__name__ == "NoTracks"


def test_process_writes_a_grid_of_3d_tracks(tmp_path, gt):
    cfg = Config()
    cfg.tracks.grid_size = 8
    cfg.tracks.query_frame = 4
    job = _job(tmp_path, gt, _camera(gt))
    seen = []
    job.progress = lambda done, total: seen.append((done, total))
    art = BuiltinTracks(cfg, WorkerContext()).process(job)

    T, H, W = gt["rgb"].shape[:3]
    assert isinstance(art, TracksArtifact) and art.source == "builtin"
    assert art.uv.shape == (T, 64, 2) and art.xyz_world.shape == (T, 64, 3) and art.visible.shape == (T, 64)
    assert art.uv.dtype == np.float32 and art.xyz_world.dtype == np.float32 and art.visible.dtype == bool
    assert art.query.shape == (64, 3) and np.all(art.query[:, 0] == 4)
    assert np.allclose(art.uv[4], art.query[:, 1:]) and art.visible[4].all()
    assert seen[-1] == (T, T)
    assert art.quality["query_frame"] == 4 and art.quality["poses_used"] and art.quality["num_queries"] == 64

    # Every visible point lifted to 3D lies on the observed surface: its camera-frame depth is the
    # ground-truth depth at its pixel (float16 storage of the artifact: 2^-11 relative), and it
    # projects back onto its uv.
    K = gt["K"]
    Xc = transform_points(invert_se3(gt["c2w"]), art.xyz_world.astype(np.float64))
    vis = art.visible & np.isfinite(art.xyz_world).all(-1)
    assert vis.mean() > 0.8
    reproj = project(K, Xc)
    assert np.abs(reproj[vis] - art.uv[vis]).max() < 1e-3
    r, c = np.rint(art.uv[..., 1]).astype(int), np.rint(art.uv[..., 0]).astype(int)
    r, c = np.clip(r, 0, H - 1), np.clip(c, 0, W - 1)
    d_gt = gt["depth"][np.arange(T)[:, None], r, c]
    rel = np.abs(Xc[..., 2] - d_gt) / d_gt
    assert np.median(rel[vis]) < 0.01

    out = tmp_path / "out"
    out.mkdir()
    art.save(out)
    back = TracksArtifact.load(out)
    assert np.array_equal(back.visible, art.visible) and np.allclose(back.uv, art.uv, equal_nan=True)


def test_query_frame_past_the_end_is_clamped(gt):
    short = {k: v[:6] if k in ("rgb", "depth", "c2w") else v for k, v in gt.items()}
    art = track_video(short["rgb"], _camera(short), grid_size=3, query_frame=50)
    assert np.all(art.query[:, 0] == 5) and art.quality["query_frame_clamped"]


def test_grid_avoids_pixels_without_depth(gt):
    cam = _camera(gt)
    cam.depth_valid = cam.depth_valid.copy()
    cam.depth_valid[:, :, :120] = False  # left part of every frame without depth
    art = track_video(gt["rgb"][:4], CameraArtifact(
        K=cam.K[:4], world_T_cam=cam.world_T_cam[:4], depth=cam.depth[:4], depth_valid=cam.depth_valid[:4],
        metric_scale=True, source="gt"), grid_size=6, query_frame=0)
    assert 12 <= len(art.query) < 36
    assert np.all(art.query[:, 1] >= 120)


def test_mismatched_camera_is_an_error(gt):
    with pytest.raises(Y2RError, match="does not match"):
        track_video(gt["rgb"][:5], _camera(gt), grid_size=2, query_frame=0)


def test_camera_quality_sets_how_far_poses_are_trusted(gt):
    assert camera_model(_camera(gt)).projection_sigma_px == 1.0  # nothing reported
    assert camera_model(_camera(gt, quality={"reproj_px": 0.6})).projection_sigma_px == pytest.approx(0.6)
    assert not camera_model(_camera(gt, quality={"reproj_px": 12.0})).poses_usable
    assert camera_model(_camera(gt, quality={"reproj_px": None})).poses_usable


def test_a_rotating_camera_without_depth_still_predicts_static_points():
    from y2r.synth import render

    clip = render("rotation", width=192, height=144, num_frames=12, seed=2)
    T, H, W = clip.rgb.shape[:3]
    cam = CameraArtifact(K=np.tile(clip.K, (T, 1, 1)), world_T_cam=clip.c2w,
                         depth=np.zeros((T, H, W), np.float32), depth_valid=np.zeros((T, H, W), bool),
                         metric_scale=False, source="test",
                         quality={"degenerate": "pure_rotation", "reproj_px": 0.3})
    model = camera_model(cam)
    assert model.rotation_only_depth == 1.0 and model.poses_usable
    art = track_video(clip.rgb, cam, grid_size=6, query_frame=0)
    assert np.isnan(art.xyz_world).all()  # no depth: positions stay unknown ...
    assert art.quality["static_fraction"] > 0.5  # ... but the rotation predicts the scene
    assert art.visible.mean() > 0.8
