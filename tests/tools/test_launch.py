"""Tool workers in their own interpreter: isolation, one model load per worker, failure classification.

The fake tool environment (``fake_envs``) is a separate venv with numpy/OpenEXR/OpenCV only; the
fake ViPE, TAPIP3D and WiLoR come in through PYTHONPATH / the checkout, like real installations.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tools import fake_envs
from tools.hand_scenes import make_scene, save_truth
from y2r.config import ToolEnv
from y2r.errors import OutOfMemory, ToolUnavailable, ToolUserError, WorkerCrashed, WorkerHung
from y2r.tools import tapip3d, vipe
from y2r.tools.launch import ToolSession, launch_spec

TOOL_MODULES = ("vipe", "wilor", "utils", "models", "datasets", "inference", "torch", "ultralytics", "annotation",
                "fake_truth")


def vipe_session(tmp_path, work) -> ToolSession:
    spec = launch_spec("vipe", ToolEnv(**fake_envs.tool_env(work)), "vipe_shim.py", root_required=False)
    return ToolSession(spec, tmp_path / "vipe-worker.log", {"pipeline": "default", "overrides": []})


def vipe_request(tmp_path, name: str, T: int = 5) -> dict:
    frames = np.random.default_rng(len(name)).integers(0, 256, (T, 24, 32, 3), dtype=np.uint8)
    video = vipe.write_lossless_video(tmp_path / f"{name}.mp4", frames, 10.0)
    return {"input": {"kind": "video", "path": str(video)}, "name": name, "output_root": str(tmp_path / "out" / name),
            "num_frames": T}


def tapip3d_session(tmp_path, work) -> ToolSession:
    root = fake_envs.tapip3d_root(tmp_path, (16, 20))
    spec = launch_spec("tapip3d", ToolEnv(**fake_envs.tool_env(work, root)), "tapip3d_shim.py", root_required=True)
    return ToolSession(spec, tmp_path / "tapip3d-worker.log", {
        "root": str(root), "checkpoint": str(root / "checkpoints" / "tapip3d_final.pth"), "resolution_factor": 1})


def tapip3d_request(tmp_path, name: str, T: int = 10) -> dict:
    K = np.array([[20.0, 0, 9.5], [0, 20.0, 7.5], [0, 0, 1]])
    video = np.zeros((T, 16, 20, 3), np.uint8)
    E = np.tile(np.eye(4), (T, 1, 1))
    q = np.array([[0, 0.0, 0.0, 2.0], [0, 0.2, 0.1, 2.0]])
    inp = tapip3d.write_input(tmp_path / f"{name}.npz", video, np.full((T, 16, 20), 3.0), K, E, q)
    return {"input": str(inp), "output": str(tmp_path / f"{name}.result.npz")}


def test_fake_tool_interpreter_cannot_import_y2r_even_with_y2rs_pythonpath(tmp_path, monkeypatch):
    import os

    import y2r

    src = str(Path(y2r.__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", src)  # y2r's own environment variable must not leak into the tool's
    spec = launch_spec("vipe", ToolEnv(python=fake_envs.fake_python()), "vipe_shim.py", root_required=False)
    env = dict(os.environ)
    for k, v in spec.env.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    probe = subprocess.run([spec.argv[0], "-c", "import importlib.util as u; print(u.find_spec('y2r'))"], env=env,
                           capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "None"
    leaky = subprocess.run([spec.argv[0], "-c", "import y2r; print(y2r.__file__)"], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": src})
    assert leaky.returncode == 0  # proves the scrubbing above is what keeps y2r out


def wilor_session(tmp_path, work, scene) -> ToolSession:
    root = fake_envs.wilor_root(tmp_path)
    env = fake_envs.tool_env(work, root, FAKE_WILOR_TRUTH=str(save_truth(scene, tmp_path / "truth.npz")))
    spec = launch_spec("wilor", ToolEnv(**env), "wilor_shim.py", root_required=True)
    pm = root / "pretrained_models"
    return ToolSession(spec, tmp_path / "wilor.log", {"root": str(root), "checkpoint": str(pm / "wilor_final.ckpt"),
                                                      "model_config": str(pm / "model_config.yaml"),
                                                      "detector": str(pm / "detector.pt")})


def test_workers_load_once_and_nothing_leaks_into_y2r(tmp_path):
    before = set(sys.modules)
    work = tmp_path / "w"
    scene = make_scene(T=2)
    np.save(tmp_path / "frames.npy", scene.frames)
    sessions = [vipe_session(tmp_path, work / "vipe"), tapip3d_session(tmp_path, work / "tapip3d"),
                wilor_session(tmp_path, work / "wilor", scene)]
    try:
        for s in sessions:
            assert s.ensure() is not None
            assert s.hello["y2r_importable"] is False and s.hello["executable"] == str(fake_envs.fake_python())
        v, t, w = sessions
        for i in range(3):
            w.run({"frames": str(tmp_path / "frames.npy"), "output": str(tmp_path / f"hands{i}.npz")}, timeout_s=60)
            r = v.run(vipe_request(tmp_path, f"clip{i}"), timeout_s=60)
            assert vipe.load_result(tmp_path / "out" / f"clip{i}", f"clip{i}").num_frames == 5
            assert r["slam_buffer"] == 5 + 16
            res = t.run(tapip3d_request(tmp_path, f"win{i}"), timeout_s=60)
            assert res["num_queries"] == 2 and res["padded_frames"] == 0
        assert v.starts == 1 and t.starts == 1 and w.starts == 1
    finally:
        for s in sessions:
            s.close()
    vipe_loads = fake_envs.loads(work / "vipe")
    # Stateless models: once per worker. TrackAnything keeps per-video state: once per video.
    for model in ("DroidNet", "make_depth_model:unidepth-l", "GeoCalib:pinhole", "PriorDAModel",
                  "VideoDepthAnything:vits"):
        assert vipe_loads.count(f"vipe {model}") == 1, (model, vipe_loads)
    assert vipe_loads.count("vipe TrackAnythingPipeline") == 3
    assert fake_envs.loads(work / "tapip3d") == ["tapip3d from_pretrained"]
    assert sorted(fake_envs.loads(work / "wilor")) == ["wilor YOLO", "wilor load_wilor"]
    leaked = {m.split(".")[0] for m in set(sys.modules) - before} & set(TOOL_MODULES)
    assert not leaked, leaked


def test_vipe_output_has_artifacts_but_no_viewer_viz_or_rgb(tmp_path):
    s = vipe_session(tmp_path, tmp_path / "w")
    try:
        req = vipe_request(tmp_path, "a b,c=d")  # a name and path Hydra's override grammar would choke on
        s.run(req, timeout_s=60)
    finally:
        s.close()
    out = tmp_path / "out" / "a b,c=d"
    p = vipe.ViPEPaths(out, "a b,c=d")
    assert p.info.exists() and p.depth.exists() and p.mask.exists()
    assert not p.rgb.exists() and not (out / "vipe" / "a b,c=d_vis.mp4").exists()


def test_crash_is_classified_and_a_new_worker_takes_over(tmp_path):
    work = tmp_path / "w"
    s = vipe_session(tmp_path, work)
    try:
        s.ensure()
        pid = s.pid
        fake_envs.fail_next(work, "crash")
        with pytest.raises(WorkerCrashed, match="SIGABRT"):
            s.run(vipe_request(tmp_path, "c1"), timeout_s=60)
        s.run(vipe_request(tmp_path, "c2"), timeout_s=60)
        assert s.pid != pid and s.starts == 2
    finally:
        s.close()
    assert fake_envs.loads(work).count("vipe DroidNet") == 2  # the new worker loaded its own models


def test_cuda_oom_is_classified_and_the_worker_survives(tmp_path):
    work = tmp_path / "w"
    s = tapip3d_session(tmp_path, work)
    try:
        s.ensure()
        pid = s.pid
        fake_envs.fail_next(work, "oom")
        with pytest.raises(OutOfMemory, match="CUDA out of memory"):
            s.run(tapip3d_request(tmp_path, "o1"), timeout_s=60)
        s.run(tapip3d_request(tmp_path, "o2"), timeout_s=60)
        assert s.pid == pid and s.starts == 1
    finally:
        s.close()


def test_request_timeout_and_missed_heartbeats_are_hangs(tmp_path):
    work = tmp_path / "w"
    s = tapip3d_session(tmp_path, work)
    try:
        s.ensure()
        fake_envs.fail_next(work, "hang")  # busy but heartbeating: caught by the request timeout
        with pytest.raises(WorkerHung, match="request timeout"):
            s.run(tapip3d_request(tmp_path, "h1"), timeout_s=2)
        fake_envs.fail_next(work, "freeze")  # SIGSTOP: not even heartbeats
        with pytest.raises(WorkerHung, match="no heartbeat"):
            s.run(tapip3d_request(tmp_path, "h2"), timeout_s=60)
        s.run(tapip3d_request(tmp_path, "h3"), timeout_s=60)
        assert s.starts == 3
    finally:
        s.close()


def test_short_clip_is_padded_not_silently_untracked(tmp_path):
    s = tapip3d_session(tmp_path, tmp_path / "w")
    try:
        res = s.run(tapip3d_request(tmp_path, "short", T=4), timeout_s=60)
    finally:
        s.close()
    assert res["padded_frames"] == 5
    r = tapip3d.read_result(tmp_path / "short.result.npz")
    assert r.num_frames == 4 and r.visibs.all()  # the fake, like TAPIP3D, returns all-invisible for T <= 8


def test_wilor_worker_runs_in_its_checkout(tmp_path):
    work = tmp_path / "w"
    scene = make_scene(T=3)
    np.save(tmp_path / "frames.npy", scene.frames)
    s = wilor_session(tmp_path, work, scene)
    try:
        assert s.ensure()["focal_length"] == 5000.0
        r = s.run({"frames": str(tmp_path / "frames.npy"), "output": str(tmp_path / "o.npz"), "batch_size": 4},
                  timeout_s=60)
        assert r["num_hands"] == 6 and r["focal_length"] == pytest.approx(5000 / 256 * 160)
    finally:
        s.close()
    with np.load(tmp_path / "o.npz") as z:
        assert z["is_right"].tolist() == [True, False] * 3  # the detector saw BGR: red = right
        assert z["global_orient"].shape == (6, 3, 3) and z["keypoints_2d"].shape == (6, 21, 2)


def test_vipe_reads_an_image_folder_at_the_real_fps(tmp_path):
    import cv2

    frames = np.random.default_rng(5).integers(0, 256, (4, 24, 32, 3), dtype=np.uint8)
    folder = tmp_path / "clip_frames"
    folder.mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:05d}.png"), f[..., ::-1])
    s = vipe_session(tmp_path, tmp_path / "w")
    try:
        s.run({"input": {"kind": "image_dir", "path": str(folder), "fps": 10.0}, "name": "clip",
               "output_root": str(tmp_path / "out"), "num_frames": 4}, timeout_s=60)
    finally:
        s.close()
    r = vipe.load_result(tmp_path / "out", "clip")
    expect = (0.5 + 3.0 * frames[..., 0] / 255.0).astype(np.float16).astype(np.float32)
    assert np.array_equal(r.depth, expect)


def test_misconfiguration_is_a_user_error_with_a_fix(tmp_path):
    with pytest.raises(ToolUnavailable, match="tools.vipe.python is not set"):
        launch_spec("vipe", ToolEnv(), "vipe_shim.py", root_required=False)
    with pytest.raises(ToolUnavailable, match="does not exist"):
        launch_spec("vipe", ToolEnv(python=tmp_path / "nope" / "python"), "vipe_shim.py", root_required=False)
    with pytest.raises(ToolUnavailable, match="tools.tapip3d.root is not set"):
        launch_spec("tapip3d", ToolEnv(python=fake_envs.fake_python()), "tapip3d_shim.py", root_required=True)
    s = tapip3d_session(tmp_path, tmp_path / "w")
    s.load_params = {**s.load_params, "checkpoint": str(tmp_path / "missing.pth")}
    with pytest.raises(ToolUserError, match="checkpoint not found"):
        s.ensure()
    s.close()
    no_cuda = fake_envs.tool_env(tmp_path / "w2", FAKE_TORCH_CUDA="0")
    v = ToolSession(launch_spec("vipe", ToolEnv(**no_cuda), "vipe_shim.py", root_required=False),
                    tmp_path / "v.log", {"pipeline": "default"})
    with pytest.raises(ToolUserError, match="CUDA is not available"):
        v.ensure()
    v.close()
