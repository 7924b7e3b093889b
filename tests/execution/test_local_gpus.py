"""GPU lanes through the local executor on a CPU machine, with simulated GPUs (real processes, real
host memory measured as each worker's RSS growth, a shared capacity account per simulated GPU)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest
from worker_processes import tagged_workers

from y2r import pipeline
from y2r.artifacts import ArtifactStore
from y2r.execution.driver import WorkerReady
from y2r.execution.local import LocalTransport
from y2r.execution.scheduler import StartWorker
from y2r.execution.simulated_gpus import SimulatedDevice
from y2r.ledger import Ledger

# 12 frames of 64x48: 0.037 megapixel-frames per video
WORK = 12 * 64 * 48 / 1e6


def sim_sets(capacity_mb=(2000,), base=200, growth=100, s_per_frame=0.1, extra=()):
    return [
        f"execution.gpus.simulate={json.dumps(list(capacity_mb))}", "execution.gpus.margin_mb=50",
        "execution.gpus.sample_interval_s=0.05",
        "camera.synthetic.gpu=true", f"camera.synthetic.base_mb={base}",
        f"camera.synthetic.mb_per_mpix_frame={growth / WORK:.1f}", f"camera.synthetic.s_per_frame={s_per_frame}",
        *extra,
    ]


def attempts(out, video_id, stage):
    with Ledger(out / "ledger.sqlite", readonly=True) as led:
        return [(a["outcome"], a["error_kind"]) for a in led.attempts(video_id) if a["stage"] == stage]


def test_simulated_gpu_memory_is_measured_stored_and_loaded_by_the_next_run(tmp_path, video_factory, fast_config):
    vids = [video_factory(f"v{i}.mp4", seed=i) for i in range(2)]
    out = tmp_path / "out"
    r = pipeline.run(vids, out, fast_config(*sim_sets()))
    assert r.report.done == 10 and r.report.failed == 0
    with Ledger(out / "ledger.sqlite", readonly=True) as led:
        rows = [m for m in led.memory_samples("camera") if m["outcome"] == "ok"]
        workers = [w for w in led.worker_stats() if w["lane"] == "camera/synthetic"]
        assert len(rows) == 2 and all(w["device"] == "0" for w in workers)
    for m in rows:
        # host-RSS growth above the pre-load baseline: the 200 MB model + 100 MB growth, plus the
        # imports done at load (like a CUDA context on a real GPU)
        assert 300 <= m["peak_mb"] <= 300 + 250, m
    # the next run starts informed: the scheduler's memory model is fitted to these peaks
    cfg = fast_config(*sim_sets())
    with Ledger(out / "ledger.sqlite") as led:
        plan = pipeline.plan_videos(vids, cfg, ArtifactStore(out), led)
        sched = pipeline.build_scheduler(cfg, plan.plans, led, ArtifactStore(out), workers=2, gpus=pipeline.gpu_specs(cfg))
    assert sched.memory.describe("camera", "synthetic")["samples"] == 2
    # the seed said 200 MB + 100 MB; the prediction now covers what was measured
    assert sched.memory.predict("camera", "synthetic", 12, 64 * 48) >= max(m["peak_mb"] for m in rows) - 1e-6 > 300


def test_gpu_worker_gets_its_gpu_in_cuda_visible_devices_before_it_starts(tmp_path):
    events: list = []
    done = threading.Event()
    t = LocalTransport(tmp_path / "logs", extra_env={"Y2R_TEST_TAG": "cvd"})

    def post(ev):
        events.append(ev)
        done.set()

    from y2r.config import Config

    params = {"config": Config().model_dump(mode="json"), "worker_id": "w", "log_dir": str(tmp_path / "logs"),
              "gpu": 3, "threads": 1, "preload": []}
    try:
        t.start_worker(StartWorker("w@gpu3", "camera/x", 3), params, post)
        assert done.wait(60) and isinstance(events[0], WorkerReady), events
        env = psutil.Process(events[0].pid).environ()
        assert env["CUDA_VISIBLE_DEVICES"] == "3"
        assert t._env(None)["CUDA_VISIBLE_DEVICES"] == ""  # CPU workers see no GPU at all
    finally:
        t.shutdown()


def test_simulated_device_books_memory_and_refuses_what_does_not_fit(tmp_path):
    from y2r.errors import OutOfMemory

    dev = SimulatedDevice(tmp_path / "gpu0.json", 1000)
    a = dev.allocate(600)
    with pytest.raises(OutOfMemory, match="simulated GPU"):
        dev.allocate(500)
    dev.free(a)
    b = dev.allocate(900)
    assert dev.used_mb() == pytest.approx(900)
    dev.free(b)
    # bookings of a process that died are dropped
    code = (f"from y2r.execution.simulated_gpus import SimulatedDevice as D; "
            f"D({str(tmp_path / 'gpu0.json')!r}, 1000).allocate(700)")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert dev.used_mb() == 0.0


def test_over_packing_causes_real_ooms_that_are_recovered(tmp_path, video_factory, fast_config):
    # The seed says 50 MB per worker; the truth is 200 MB + 200 MB: three videos' workers cannot all
    # fit in 700 MB. Loads and tasks fail with OOM, the model learns, every video finishes.
    vids = [video_factory(f"v{i}.mp4", seed=i) for i in range(3)]
    out = tmp_path / "out"
    cfg = fast_config(*sim_sets(capacity_mb=(700,), base=200, growth=200, s_per_frame=0.08),
                      'execution.gpus.memory_models={"camera/synthetic": {"base_mb": 50, "mb_per_mpix_frame": 0}}')
    r = pipeline.run(vids, out, cfg)
    assert r.report.failed == 0 and len(list((out / "episodes").glob("*.h5"))) == 3
    with Ledger(out / "ledger.sqlite", readonly=True) as led:
        task_ooms = sum(1 for a in led.attempts() if a["error_kind"] == "oom")
        start_ooms = sum(1 for w in led.worker_stats() if w["exit_reason"] == "start failed: oom")
        ok_peaks = [m["peak_mb"] for m in led.memory_samples("camera") if m["outcome"] == "ok"]
    assert task_ooms + start_ooms >= 1
    assert ok_peaks and min(ok_peaks) >= 400  # learned from measurement, not from the seed


def test_crash_on_a_gpu_lane_restarts_the_worker_and_retries(tmp_path, video_factory, fast_config):
    v = video_factory("v.mp4")
    out = tmp_path / "out"
    r = pipeline.run([v], out, fast_config(*sim_sets(), "camera.synthetic.fail=crash", "camera.synthetic.fail_times=1"))
    assert r.report.failed == 0
    assert attempts(out, "v", "camera") == [("failed", "crash"), ("done", None)]


def test_a_video_that_kills_its_worker_every_time_is_dropped_after_three_deaths(tmp_path, video_factory, fast_config):
    vids = [video_factory(f"v{i}.mp4", seed=i) for i in range(2)]
    out = tmp_path / "out"
    cfg = fast_config(*sim_sets(capacity_mb=(2000, 2000), s_per_frame=0.02), "camera.synthetic.fail=crash",
                      "camera.synthetic.fail_videos=[v0]", "execution.retry.backoff_s=0")
    r = pipeline.run(vids, out, cfg)
    assert [a[1] for a in attempts(out, "v0", "camera")] == ["crash"] * 3
    assert r.report.failed == 1 and (out / "episodes" / "v1.h5").exists()
    status = json.loads((out / "status.json").read_text())
    assert not any(g["out_of_service"] for g in status["gpus"])  # a poison video does not retire GPUs


def test_stalled_task_is_killed_by_the_no_progress_watchdog(tmp_path, video_factory, fast_config):
    v = video_factory("v.mp4", T=40)
    out = tmp_path / "out"
    cfg = fast_config(*sim_sets(s_per_frame=0.05), "camera.synthetic.fail=stall", "camera.synthetic.fail_times=1",
                      "execution.no_progress_s=2", "execution.task_timeout_s=120", "execution.retry.backoff_s=0")
    t0 = time.monotonic()
    r = pipeline.run([v], out, cfg)
    assert r.report.failed == 0 and time.monotonic() - t0 < 45  # not the 120 s request timeout
    assert attempts(out, "v", "camera") == [("failed", "hang"), ("done", None)]
    log = (out / "logs" / "v" / "camera.log").read_text()
    assert "watchdog" in log


def test_status_reports_measured_and_predicted_memory_per_gpu(tmp_path, video_factory, fast_config):
    vids = [video_factory(f"v{i}.mp4", seed=i) for i in range(2)]
    out = tmp_path / "out"
    seen: list[dict] = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            try:
                snap = json.loads((out / "status.json").read_text())
            except (OSError, ValueError):
                snap = None
            if snap and snap.get("gpus"):
                seen.append(snap["gpus"][0])
            time.sleep(0.05)

    th = threading.Thread(target=watch, daemon=True)
    th.start()
    try:
        pipeline.run(vids, out, fast_config(*sim_sets(s_per_frame=0.4)))
    finally:
        stop.set()
        th.join()
    measured = [g["measured_mb"] for g in seen if g.get("measured_mb")]
    assert measured and max(measured) >= 300  # a busy worker's model + growth
    assert any(g.get("device_used_mb") for g in seen) and all(g["capacity_mb"] == 2000 for g in seen)
    assert any(g["predicted_mb"] >= 300 for g in seen)


def test_sigkill_of_a_simulated_gpu_worker_then_ctrl_c_leave_no_process(tmp_path, video_factory):
    vids = [video_factory(f"v{i}.mp4", seed=i) for i in range(4)]
    out = tmp_path / "out"
    tag = uuid.uuid4().hex
    args = [sys.executable, "-m", "y2r.cli", "run", *map(str, vids), "-o", str(out), "-w", "1", "-q"]
    for s in ["ingest.width=64", "ingest.height=48", "camera.backend=synthetic", "tracks.backend=synthetic",
              "hands.backend=synthetic", "tracks.synthetic.s_per_frame=0.3", *sim_sets(s_per_frame=0.3),
              # one camera worker on the GPU, so the worker found below is the one running v0 (with
              # more, the scheduler may pack a second one, and the victim could be idle or on v1)
              "execution.gpus.max_workers_per_gpu=1"]:
        args += ["--set", s]
    p = subprocess.Popen(args, env={**os.environ, "Y2R_TEST_TAG": tag}, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    try:
        def gpu_worker():
            for w in tagged_workers(tag):
                if w.environ().get("Y2R_SIMULATED_GPU_FILE") and (out / "logs" / "v0" / "camera.log").exists():
                    return w
            return None

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and gpu_worker() is None:
            time.sleep(0.1)
        time.sleep(0.5)
        victim = gpu_worker()
        assert victim is not None
        victim.send_signal(signal.SIGKILL)
        # the driver sees the crash, records it, re-queues the task and starts a new worker (poll the
        # ledger rather than sleep: on a loaded machine this can take more than a few seconds)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and ("failed", "crash") not in attempts(out, "v0", "camera"):
            time.sleep(0.2)
        time.sleep(0.5)
        assert p.poll() is None, "the run ended before Ctrl-C"
        p.send_signal(signal.SIGINT)
        log, _ = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, log
    assert ("failed", "crash") in attempts(out, "v0", "camera")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and tagged_workers(tag):
        time.sleep(0.2)
    assert not tagged_workers(tag)
    # and nothing stays booked on the simulated GPU
    assert SimulatedDevice(Path(out / "logs" / "simulated_gpus" / "gpu0.json"), 2000).used_mb() == 0.0
