"""The built-in camera backend end to end: accuracy on the fixture, conventions, degenerate input."""

from __future__ import annotations

import numpy as np
import pytest

from y2r.artifacts import CameraArtifact, IngestArtifact
from y2r.config import CameraConfig, Config, Intrinsics
from y2r.errors import InputError
from y2r.evaluation.camera_metrics import camera_report
from y2r.stages.base import Job, WorkerContext, backend_class
from y2r.stages.camera.builtin import reconstruct

from .camera_clips import meta_for


@pytest.fixture(scope="module")
def orbit_result(room_orbit) -> CameraArtifact:
    return reconstruct(room_orbit["rgb"], meta_for(room_orbit["rgb"]), CameraConfig())


def test_self_calibrated_reconstruction_meets_the_accuracy_targets(orbit_result, room_orbit):
    art = orbit_result
    r = camera_report(
        art.K,
        art.world_T_cam,
        art.depth,
        art.depth_valid,
        room_orbit["K"],
        room_orbit["c2w"],
        room_orbit["depth"],
    )
    # Measured on this clip: ATE 0.1% of the path, 0.01 deg/frame, focal 1%, AbsRel 0.014, 75% valid.
    assert r["ate_pct_path"] < 2.0
    assert r["rot_err_deg_per_frame"] < 0.3
    assert r["focal_err_pct"] < 5.0
    assert r["depth_abs_rel"] < 0.1 and r["depth_delta1"] > 0.95
    assert r["depth_coverage"] > 0.6
    q = art.quality
    assert q["degenerate"] is None and q["focal_source"] == "self_calibrated"
    assert not art.metric_scale and art.source == "builtin"


def test_conventions_of_the_artifact(orbit_result, room_orbit):
    art = orbit_result
    T, H, W = room_orbit["rgb"].shape[:3]
    assert art.K.shape == (T, 3, 3) and art.world_T_cam.shape == (T, 4, 4)
    assert art.depth.shape == (T, H, W) and art.depth_valid.shape == (T, H, W)
    assert np.array_equal(art.world_T_cam[0], np.eye(4, dtype=np.float32))
    R = art.world_T_cam[:, :3, :3].astype(np.float64)
    assert np.allclose(R @ np.swapaxes(R, 1, 2), np.eye(3), atol=1e-5)
    assert (art.depth[~art.depth_valid] == 0).all() and (art.depth[art.depth_valid] > 0).all()
    # Scale: the median depth of frame 0 is 1 (dense depth agrees with the sparse points it is set by).
    assert abs(np.median(art.depth[0][art.depth_valid[0]]) - 1.0) < 0.1


def test_given_intrinsics_in_source_pixels_and_metric_scale(room_orbit):
    rgb = room_orbit["rgb"]
    K = room_orbit["K"]
    # The stored 320x240 frames are a 0.5x resize of a 640x480 source: give K in source pixels.
    Ks = K.copy()
    Ks[:2, :2] *= 2.0
    Ks[:2, 2] = (K[:2, 2] + 0.5) * 2.0 - 0.5
    cfg = CameraConfig(
        intrinsics=Intrinsics(fx=Ks[0, 0], fy=Ks[1, 1], cx=Ks[0, 2], cy=Ks[1, 2]),
        builtin={"metric_scale_m": 2.5, "depth": "none"},
    )
    art = reconstruct(rgb, meta_for(rgb, source_wh=(640, 480)), cfg)
    assert np.allclose(art.K[0], K, atol=1e-4)
    assert art.quality["focal_source"] == "config"
    # The user vouches for the scale (metric_scale_m): poses are metric even without depth.
    assert art.metric_scale and not art.depth_valid.any()
    r = camera_report(art.K, art.world_T_cam, None, None, K, room_orbit["c2w"])
    assert r["ate_pct_path"] < 1.0


def test_metric_scale_from_the_user(room_orbit):
    rgb = room_orbit["rgb"][::2]
    art = reconstruct(rgb, meta_for(rgb), CameraConfig(builtin={"metric_scale_m": 2.5}))
    assert art.metric_scale
    assert abs(np.median(art.depth[0][art.depth_valid[0]]) / 2.5 - 1.0) < 0.1


def test_pure_rotation_is_flagged_and_gets_no_depth(rotating, room_orbit):
    frames, gt = rotating
    art = reconstruct(frames, meta_for(frames), CameraConfig())
    q = art.quality
    assert q["degenerate"] == "pure_rotation" and not art.depth_valid.any() and not art.metric_scale
    assert np.abs(art.world_T_cam[:, :3, 3]).max() == 0.0
    r = camera_report(art.K, art.world_T_cam, None, None, room_orbit["K"], gt)
    assert r["rot_err_deg_per_frame"] < 0.05 and r["focal_err_pct"] < 3.0


def test_static_and_flat_videos_degrade_gracefully(room_orbit):
    static = np.repeat(room_orbit["rgb"][:1], 6, 0)
    art = reconstruct(static, meta_for(static), CameraConfig())
    assert art.quality["degenerate"] == "static" and art.quality["focal_source"] == "fallback_prior"
    assert np.allclose(art.world_T_cam, np.eye(4)) and not art.depth_valid.any()
    assert np.isclose(np.rad2deg(2 * np.arctan(160 / art.K[0, 0, 0])), 60.0, atol=0.5)  # fallback FOV
    flat = np.full((5, 60, 80, 3), 90, np.uint8)
    art = reconstruct(flat, meta_for(flat), CameraConfig())
    assert art.quality["degenerate"] == "low_texture" and not art.depth_valid.any()


def test_unusable_frames_are_bad_input():
    with pytest.raises(InputError, match="expected"):
        reconstruct(np.zeros((4, 8, 8), np.uint8), meta_for(np.zeros((4, 8, 8, 3), np.uint8)), CameraConfig())


def test_backend_runs_as_a_job(room_orbit, tmp_path):
    rgb = room_orbit["rgb"][:12]
    meta = meta_for(rgb, name="orbit12")
    ingest_dir = tmp_path / "ingest"
    ingest_dir.mkdir()
    IngestArtifact(
        frames=rgb, frame_index=np.arange(12, dtype=np.int32), timestamp=np.arange(12) / 30.0, meta=meta
    ).save(ingest_dir)
    calls = []
    job = Job(
        video_id="orbit12",
        stage="camera",
        meta=meta,
        source_path=tmp_path / "orbit12.mp4",
        inputs={"ingest": ingest_dir},
        out_dir=tmp_path / "out",
        log_path=tmp_path / "log.txt",
        progress=lambda done, total: calls.append((done, total)),
    )
    cls = backend_class("camera", "builtin")
    backend = cls(Config(), WorkerContext())
    art = backend.process(job)
    assert calls and calls[-1][0] == calls[-1][1] and all(d <= t for d, t in calls)
    out = tmp_path / "camera"
    out.mkdir()
    art.save(out)
    back = CameraArtifact.load(out)
    assert np.allclose(back.world_T_cam, art.world_T_cam) and back.quality == art.quality
    assert np.array_equal(back.depth_valid, art.depth_valid)
