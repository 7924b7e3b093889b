"""Camera backends on ViPE: the `vipe` backend driving a (fake) ViPE worker, and `vipe-results` on
files written by ViPE v1.1.0's own writer."""

from __future__ import annotations

import shutil
import zipfile

import numpy as np
import pytest
from tools import fake_envs
from tools.stage_inputs import config_with, ctx, make_job, meta_for, save_ingest

from y2r.config import Config
from y2r.errors import ConfigError, InputError, ToolError
from y2r.geometry import focal_from_fov, intrinsics_matrix
from y2r.stages.camera.vipe import ViPECamera, ViPEResultsCamera

T, H, W = 6, 48, 64


def frames_for(seed: int, T: int = T) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (T, H, W, 3), dtype=np.uint8)


def truth_pose(t: int) -> np.ndarray:
    a = 0.01 * t
    c, s = np.cos(a), np.sin(a)
    P = np.eye(4)
    P[:3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
    P[:3, 3] = [0.02 * t, -0.005 * t, 0.01 * t]
    return P


def job_for(tmp_path, vid: str, frames: np.ndarray, **meta_kw):
    meta = meta_for(vid, len(frames), H, W, **meta_kw)
    d = tmp_path / vid
    return make_job(d, vid, "camera", meta, {"ingest": save_ingest(d, frames, meta)}), meta


def test_vipe_backend_converts_every_output_and_loads_models_once(tmp_path):
    work = tmp_path / "vipe"
    cfg = config_with("vipe", fake_envs.tool_env(work), camera={"backend": "vipe"})
    backend = ViPECamera(cfg, ctx(tmp_path))
    try:
        for i in range(3):
            frames = frames_for(i)
            job, meta = job_for(tmp_path, f"vid{i}", frames)
            art = backend.process(job)
            assert not (job.out_dir / ".vipe").exists()  # the scratch (input video, raw output) is gone
            # GeoCalib-style estimate (fake: 0.9 max(W,H), principal point at W/2, H/2 as ViPE reports).
            assert np.array_equal(art.K, np.broadcast_to(intrinsics_matrix(57.6, 57.6, 32, 24).astype(np.float32),
                                                         (T, 3, 3)))
            np.testing.assert_allclose(art.world_T_cam, [truth_pose(t) for t in range(T)], atol=1e-6)
            # Depth is a function of the red channel: bit-exact float16 proves lossless frames end to end.
            expect = (0.5 + 3.0 * frames[..., 0].astype(np.float64) / 255.0).astype(np.float16).astype(np.float32)
            assert np.array_equal(art.depth, expect) and art.depth_valid.all() and art.metric_scale
            assert np.array_equal(art.instance_masks, (frames[..., 1] > 127.5).astype(np.uint8))
            assert art.instance_phrases == {0: "background", 1: "person"}
            assert art.source == "vipe" and art.quality["intrinsics"] == "geocalib+bundle_adjustment"
            assert art.quality["vipe"]["slam_buffer"] == T + 16
        assert backend.session.starts == 1
        assert backend.describe()["vipe_version"] == "1.1.0+fake"
    finally:
        backend.close()
    loads = fake_envs.loads(work)
    assert loads.count("vipe DroidNet") == 1 and loads.count("vipe make_depth_model:unidepth-l") == 1
    assert loads.count("vipe GeoCalib:pinhole") == 1 and loads.count("vipe TrackAnythingPipeline") == 3


def test_known_intrinsics_are_kept_and_a_fov_prior_is_refined(tmp_path):
    # The source is 2x the stored size with a horizontal crop: intrinsics are given in source pixels.
    src_kw = {"source_hw": (96, 160), "crop": (16.0, 0.0, 128.0, 96.0)}
    cfg = config_with("vipe", fake_envs.tool_env(tmp_path / "w"),
                      camera={"backend": "vipe", "intrinsics": {"fx": 150.0, "fy": 152.0, "cx": 80.0, "cy": 47.0}})
    backend = ViPECamera(cfg, ctx(tmp_path))
    try:
        job, meta = job_for(tmp_path, "given", frames_for(7), **src_kw)
        art = backend.process(job)
    finally:
        backend.close()
    expect = meta.source_to_stored_K(intrinsics_matrix(150.0, 152.0, 80.0, 47.0))
    np.testing.assert_allclose(art.K[0], expect, rtol=1e-6)
    assert art.quality["intrinsics"] == "given"

    cfg = config_with("vipe", fake_envs.tool_env(tmp_path / "w2"), camera={"backend": "vipe", "fov_deg": 70.0})
    backend = ViPECamera(cfg, ctx(tmp_path))
    try:
        job, meta = job_for(tmp_path, "fov", frames_for(8), **src_kw)
        art = backend.process(job)
    finally:
        backend.close()
    f_prior = focal_from_fov(160, 70.0) * 0.5  # source focal -> stored (crop keeps the scale of 1/2)
    # The fake ViPE's bundle adjustment moves an optimised focal halfway to its own estimate.
    np.testing.assert_allclose(art.K[0, 0, 0], 0.5 * (f_prior + 0.9 * W), rtol=1e-5)
    assert art.quality["intrinsics"] == "fov_prior+bundle_adjustment"


def test_vipe_backend_errors(tmp_path):
    cfg = config_with("vipe", fake_envs.tool_env(tmp_path / "w"), camera={"backend": "vipe", "vipe": {"slam_buffer": 16}})
    backend = ViPECamera(cfg, ctx(tmp_path))
    try:
        job, _ = job_for(tmp_path, "long", frames_for(9, T=8))
        with pytest.raises(ToolError, match="slam_buffer"):  # 4 keyframes + 16 infill slots > 16
            backend.process(job)
    finally:
        backend.close()
    with pytest.raises(ConfigError, match="wide_angle"):
        ViPECamera(config_with("vipe", fake_envs.tool_env(tmp_path / "w"),
                               camera={"backend": "vipe", "vipe": {"pipeline": "wide_angle"}}), ctx(tmp_path))


# ------------------------------------------------------------------------------ vipe-results
@pytest.fixture(scope="module")
def gt(shared):
    with np.load(shared / "fixtures" / "room_orbit_gt.npz") as z:
        return {k: z[k] for k in z.files}


def results_job(tmp_path, gt, *, stored_hw=(240, 320), frame_index=None, name="room_orbit"):
    idx = np.arange(32) if frame_index is None else np.asarray(frame_index)
    Hs, Ws = stored_hw
    frames = np.zeros((len(idx), Hs, Ws, 3), np.uint8)
    meta = meta_for(name, len(idx), Hs, Ws, fps=30.0 * len(idx) / 32, source=f"/data/demos/{name}.mp4",
                    source_hw=(240, 320), source_fps=30.0, source_frames=32)
    d = tmp_path / name
    return make_job(d, name, "camera", meta, {"ingest": save_ingest(d, frames, meta, idx)}), meta


@pytest.fixture
def results(shared, tmp_path):
    cfg = Config.model_validate({"camera": {"backend": "vipe-results",
                                            "results_dir": str(shared / "fixtures" / "vipe_v1.1.0")}})
    return ViPEResultsCamera(cfg, ctx(tmp_path))


def test_vipe_results_reproduce_ground_truth(results, gt, tmp_path):
    job, _ = results_job(tmp_path, gt)
    art = results.process(job)
    np.testing.assert_allclose(art.world_T_cam, gt["c2w"], rtol=0, atol=1e-6)
    assert np.array_equal(art.K, np.broadcast_to(gt["K"].astype(np.float32), (32, 3, 3)))
    assert art.depth_valid.all()
    assert (np.abs(art.depth.astype(np.float64) - gt["depth"]) / gt["depth"]).max() <= 2.0 ** -11
    assert np.array_equal(art.instance_masks == 1, gt["moving_mask"])
    assert art.instance_phrases == {0: "background", 1: "cube"} and art.source == "vipe-results"
    # The artifact survives its own save/load (float16 depth storage is ViPE's precision already).
    d = tmp_path / "saved"
    d.mkdir()
    art.save(d)
    back = type(art).load(d)
    assert np.array_equal(back.depth, art.depth) and np.array_equal(back.K, art.K)


def test_vipe_results_mapped_to_a_smaller_resampled_ingest(results, gt, tmp_path):
    """y2r stored every 2nd source frame at half size: frames, K and depth follow the source frames."""
    idx = np.arange(0, 32, 2)
    job, meta = results_job(tmp_path, gt, stored_hw=(120, 160), frame_index=idx)
    art = results.process(job)
    np.testing.assert_allclose(art.world_T_cam, gt["c2w"][idx], atol=1e-6)
    K = gt["K"]
    expect = np.array([[K[0, 0] / 2, 0, (K[0, 2] + 0.5) / 2 - 0.5], [0, K[1, 1] / 2, (K[1, 2] + 0.5) / 2 - 0.5], [0, 0, 1]])
    np.testing.assert_allclose(art.K[0], expect, rtol=1e-6)
    # Nearest resampling: each stored pixel holds one of the 2x2 source pixels it covers.
    src = gt["depth"][idx].astype(np.float16).astype(np.float32)
    cands = np.stack([src[:, dv::2, du::2] for dv in (0, 1) for du in (0, 1)])
    assert np.all(np.any(cands == art.depth[None], axis=0))


def test_vipe_results_errors(shared, gt, tmp_path, results):
    job, _ = results_job(tmp_path, gt, name="other_clip")
    with pytest.raises(InputError, match="no ViPE results for 'other_clip'.*room_orbit"):
        results.process(job)
    job, _ = results_job(tmp_path / "b", gt, frame_index=np.arange(0, 64, 2))  # needs source frames past 31
    with pytest.raises(InputError, match="has 32 frames but this video needs ViPE frame 62"):
        results.process(job)
    with pytest.raises(ConfigError, match="not a folder"):
        ViPEResultsCamera(Config.model_validate({"camera": {"backend": "vipe-results",
                                                            "results_dir": str(tmp_path / "nope")}}), ctx(tmp_path))
    # A sequence whose depth frames are missing one index is refused, not misaligned.
    root = tmp_path / "partial"
    shutil.copytree(shared / "fixtures" / "vipe_v1.1.0", root)
    src = root / "depth" / "room_orbit.zip"
    with zipfile.ZipFile(src) as z:
        members = {n: z.read(n) for n in z.namelist() if n != "00005.exr"}
    with zipfile.ZipFile(src, "w") as z:
        for n, b in members.items():
            z.writestr(n, b)
    backend = ViPEResultsCamera(Config.model_validate({"camera": {"backend": "vipe-results", "results_dir": str(root)}}),
                                ctx(tmp_path))
    job, _ = results_job(tmp_path / "c", gt)
    with pytest.raises(InputError, match="depth indices are not 0..31"):
        backend.process(job)

