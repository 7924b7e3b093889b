"""On a real NVIDIA GPU (``pytest -m gpu``): NVML measurement, GPU lanes end to end, and that no CUDA
context or worker process outlives y2r -- after a normal exit, Ctrl-C, SIGKILL of a worker and
SIGKILL of the driver -- checked against NVML's own process list."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import psutil
import pytest
from worker_processes import tagged_workers

from y2r import pipeline
from y2r.ledger import Ledger

pytestmark = pytest.mark.gpu

# A small emulated model: 1.5 GB after load, +~0.3 GB per video, real matmuls.
GPU_SETS = [
    "camera.backend=synthetic", "tracks.backend=synthetic", "hands.backend=synthetic",
    "ingest.width=64", "ingest.height=48", "execution.workers=2", "execution.gpus.sample_interval_s=0.1",
    "camera.synthetic.device=cuda", "camera.synthetic.base_mb=1500", "camera.synthetic.mb_per_mpix_frame=4000",
    "camera.synthetic.s_per_frame=0.05", "camera.synthetic.gpu_fraction=0.5",
    "hands.synthetic.device=cuda", "hands.synthetic.base_mb=800", "hands.synthetic.s_per_frame=0.02",
]


def nvml_pids() -> set[int]:
    import pynvml

    pynvml.nvmlInit()
    pids = set()
    for i in range(pynvml.nvmlDeviceGetCount()):
        h = pynvml.nvmlDeviceGetHandleByIndex(i)
        for fn in (pynvml.nvmlDeviceGetComputeRunningProcesses, pynvml.nvmlDeviceGetGraphicsRunningProcesses):
            try:
                pids |= {p.pid for p in fn(h)}
            except pynvml.NVMLError:
                pass
    return pids


def wait_for(cond, timeout: float, step: float = 0.1) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step)
    return cond()


def test_nvml_inventory_and_per_process_tree_memory():
    from y2r.execution.gpus import inventory, tree_gpu_memory_mb

    gpus = inventory("all")
    assert gpus and all(g.total_mb > 10_000 for g in gpus)
    code = ("import torch,sys,time;x=torch.empty(2*2**30,dtype=torch.uint8,device='cuda').fill_(1);"
            "torch.cuda.synchronize();print('ready',flush=True);time.sleep(60)")
    # the allocating process is a grandchild: the tree is what counts (a tool shim's children)
    p = subprocess.Popen([sys.executable, "-c", f"import subprocess,sys;subprocess.run([sys.executable,'-c',{code!r}])"],
                         env={**os.environ, "CUDA_VISIBLE_DEVICES": "0"}, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        mb = tree_gpu_memory_mb(p.pid, 0)
        assert 2048 <= mb <= 2048 + 1500, mb  # 2 GiB of tensors + the CUDA context
    finally:
        for c in psutil.Process(p.pid).children(recursive=True):
            c.kill()
        p.kill()
        p.wait()


def test_gpu_lanes_measure_memory_and_leave_no_cuda_context(tmp_path, video_factory):
    before = nvml_pids()
    vids = [video_factory(f"v{i}.mp4", T=30, seed=i) for i in range(3)]
    from y2r.config import load_config

    r = pipeline.run(vids, tmp_path / "out", load_config(None, GPU_SETS))
    assert r.report.done == 15 and r.report.failed == 0
    with Ledger(tmp_path / "out" / "ledger.sqlite", readonly=True) as led:
        cam = [m for m in led.memory_samples("camera") if m["outcome"] == "ok"]
        workers = led.worker_stats()
    growth = 4000 * 30 * 64 * 48 / 1e6  # ~370 MB
    assert len(cam) == 3
    for m in cam:  # measured by NVML over the worker's process tree: model + growth + CUDA context
        assert 1500 + 0.5 * growth <= m["peak_mb"] <= 1500 + growth + 1500, m
    from y2r.execution.gpus import inventory

    assert {w["device"] for w in workers if w["lane"] != "cpu"} <= {str(g.index) for g in inventory("all")}
    assert wait_for(lambda: nvml_pids() <= before, 10), nvml_pids() - before


def _run_cli(tmp_path, tag, vids, *extra):
    args = [sys.executable, "-m", "y2r.cli", "run", *map(str, vids), "-o", str(tmp_path / "out"), "-q"]
    for s in [*GPU_SETS, "camera.synthetic.s_per_frame=0.2", *extra]:
        args += ["--set", s]
    return subprocess.Popen(args, env={**os.environ, "Y2R_TEST_TAG": tag}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def nvml_pids_by_device() -> dict[int, set[int]]:
    import pynvml

    pynvml.nvmlInit()
    return {i: {p.pid for p in pynvml.nvmlDeviceGetComputeRunningProcesses(pynvml.nvmlDeviceGetHandleByIndex(i))}
            for i in range(pynvml.nvmlDeviceGetCount())}


def _busy_gpu_worker(tag: str, before: set[int]) -> psutil.Process | None:
    on_gpu = nvml_pids() - before
    for p in tagged_workers(tag):
        if p.pid in on_gpu:
            return p
    return None


def test_each_gpu_worker_sees_exactly_the_gpu_nvml_finds_it_on(tmp_path, video_factory):
    before = nvml_pids()
    vids = [video_factory(f"v{i}.mp4", T=30, seed=i) for i in range(2)]
    tag = uuid.uuid4().hex
    p = _run_cli(tmp_path, tag, vids)
    try:
        assert wait_for(lambda: _busy_gpu_worker(tag, before) is not None, 60)
        by_dev = nvml_pids_by_device()
        checked = 0
        for w in tagged_workers(tag):
            devs = [d for d, pids in by_dev.items() if w.pid in pids]
            if devs:  # CUDA_VISIBLE_DEVICES was set before the process started, to its one GPU
                assert w.environ()["CUDA_VISIBLE_DEVICES"] == str(devs[0]) and len(devs) == 1
                checked += 1
        assert checked >= 1
        p.send_signal(signal.SIGINT)
        p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert wait_for(lambda: nvml_pids() <= before, 20), nvml_pids() - before


def test_sigkill_of_a_gpu_worker_is_retried_and_leaves_nothing(tmp_path, video_factory):
    before = nvml_pids()
    vids = [video_factory(f"v{i}.mp4", T=30, seed=i) for i in range(2)]
    tag = uuid.uuid4().hex
    p = _run_cli(tmp_path, tag, vids)
    try:
        assert wait_for(lambda: _busy_gpu_worker(tag, before) is not None and
                        (tmp_path / "out" / "logs" / "v0" / "camera.log").exists(), 60)
        time.sleep(1.0)
        victim = _busy_gpu_worker(tag, before)
        victim.send_signal(signal.SIGKILL)
        log, _ = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, log
    with Ledger(tmp_path / "out" / "ledger.sqlite", readonly=True) as led:
        kinds = [a["error_kind"] for a in led.attempts() if a["outcome"] == "failed"]
    assert "crash" in kinds
    assert wait_for(lambda: nvml_pids() <= before, 10), nvml_pids() - before
    assert not tagged_workers(tag)


@pytest.mark.parametrize("how", ["ctrl-c", "sigkill-driver"])
def test_no_cuda_context_survives_interruption(tmp_path, video_factory, how):
    before = nvml_pids()
    vids = [video_factory(f"v{i}.mp4", T=30, seed=i) for i in range(3)]
    tag = uuid.uuid4().hex
    p = _run_cli(tmp_path, tag, vids)
    try:
        assert wait_for(lambda: _busy_gpu_worker(tag, before) is not None, 60)
        time.sleep(1.0)
        p.send_signal(signal.SIGINT if how == "ctrl-c" else signal.SIGKILL)
        p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    if how == "ctrl-c":
        assert p.returncode == 130
    # an orphaned worker notices its owner is gone (pipe EOF / parent change) and takes its group down
    assert wait_for(lambda: not tagged_workers(tag), 20)
    assert wait_for(lambda: nvml_pids() <= before, 10), nvml_pids() - before
