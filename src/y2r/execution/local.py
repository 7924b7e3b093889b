"""The local executor's transport: persistent worker processes on this machine.

Each worker is ``python -m y2r.execution.worker_host`` started fresh (never forked, so CUDA works
in it), in its own process group, with ``CUDA_VISIBLE_DEVICES`` set to its one GPU (or empty for
CPU workers) *before* it starts. One thread per in-flight request blocks on the worker's pipe and
posts the outcome to the driver's queue; the driver stays single-threaded.

GPU memory of a worker is the sum over its process tree of NVML's per-process usage on its GPU
(one NVML query per GPU serves every worker sampled in the same instant). On a simulated GPU
(``execution.gpus.simulate``) it is the host-RSS growth of the tree above the baseline taken before
the worker loaded its backend (see ``simulated_gpus.py``).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

from y2r.errors import FailureKind, WorkerCrashed, WorkerHung, Y2RError
from y2r.execution import gpus as gpu_mod
from y2r.execution.driver import Post, TaskProgress, TaskResult, WorkerReady, WorkerStartFailed, WorkerStopped
from y2r.execution.scheduler import Assign, StartWorker
from y2r.execution.simulated_gpus import SimulatedDevice
from y2r.tools.worker import LaunchSpec, WorkerProcess


def worker_argv() -> list[str]:
    return [sys.executable, "-u", "-m", "y2r.execution.worker_host"]


class LocalTransport:
    def __init__(self, log_dir: Path, *, threads_per_worker: int = 1, heartbeat_s: float = 5.0,
                 startup_timeout_s: float = 900.0, extra_env: dict[str, str] | None = None,
                 simulated_gpus: list[float] | None = None):
        self.log_dir = Path(log_dir)
        # Simulated GPUs: one shared memory account per device (a fresh one per run).
        self.simulated: dict[int, SimulatedDevice] = {}
        for i, cap in enumerate(simulated_gpus or []):
            dev = SimulatedDevice(self.log_dir / "simulated_gpus" / f"gpu{i}.json", cap, i)
            dev.path.parent.mkdir(parents=True, exist_ok=True)
            dev.path.write_text("{}")
            self.simulated[i] = dev
        self.baseline_mb: dict[str, float] = {}
        self._nvml_cache: dict[int, tuple[float, dict[int, float]]] = {}
        self.threads = threads_per_worker
        self.heartbeat_s = heartbeat_s
        self.startup_timeout_s = startup_timeout_s
        self.extra_env = dict(extra_env or {})
        self.workers: dict[str, WorkerProcess] = {}
        self.gpu_of: dict[str, int | None] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._starting: list[threading.Thread] = []
        self._stopping: dict[str, WorkerProcess] = {}  # being stopped politely; shutdown kills them
        self._closing: list[tuple[list[WorkerProcess], list[threading.Thread]]] = []  # killed, maybe not gone yet

    def _env(self, gpu: int | None) -> dict[str, str]:
        t = str(self.threads)
        sim = self.simulated.get(gpu) if gpu is not None else None
        # The GPU is chosen before the process exists: CUDA reads CUDA_VISIBLE_DEVICES once, at init.
        # PCI_BUS_ID: CUDA then numbers devices as NVML does (its default, fastest-first, may not).
        env = {"CUDA_VISIBLE_DEVICES": "" if gpu is None or sim is not None else str(gpu),
               "CUDA_DEVICE_ORDER": "PCI_BUS_ID", "OMP_NUM_THREADS": t,
               "OPENBLAS_NUM_THREADS": t, "MKL_NUM_THREADS": t, "PYTHONUNBUFFERED": "1"}
        if sim is not None:
            env.update(sim.env())
        env.update(self.extra_env)
        return env

    def start_worker(self, action: StartWorker, load_params: dict, post: Post) -> None:
        spec = LaunchSpec(name=action.worker_id, argv=worker_argv(), env=self._env(action.gpu),
                          startup_timeout_s=self.startup_timeout_s, heartbeat_s=self.heartbeat_s, label="")
        w = WorkerProcess(spec, self.log_dir / "workers" / f"{action.worker_id}.log")
        with self._lock:
            self.workers[action.worker_id] = w
            self.gpu_of[action.worker_id] = action.gpu

        def go() -> None:
            t0 = time.monotonic()
            try:
                if self._closed:
                    return
                w.start()
                if self._closed:  # shut down while we were starting: do not leave the process behind
                    w.kill()
                    return
                params = load_params
                if action.gpu is not None and action.gpu in self.simulated:
                    # Baseline before the backend loads: what grows from here is the "GPU" memory.
                    self.baseline_mb[action.worker_id] = gpu_mod.tree_rss_mb(w.pid)
                    params = {**load_params, "simulated_gpu": True}
                w.call("load", params, timeout_s=self.startup_timeout_s)
            except Y2RError as e:
                w.kill()
                post(WorkerStartFailed(action.worker_id, e.kind.value, e.one_line(), getattr(e, "log_tail", None)))
                return
            except Exception as e:  # noqa: BLE001 - any start failure must reach the driver as an event
                w.kill()
                post(WorkerStartFailed(action.worker_id, FailureKind.ERROR.value, f"{type(e).__name__}: {e}"))
                return
            post(WorkerReady(action.worker_id, time.monotonic() - t0, w.pid))

        t = threading.Thread(target=go, daemon=True, name=f"start-{action.worker_id}")
        self._starting.append(t)
        t.start()

    def run_task(self, action: Assign, params: dict, post: Post) -> None:
        w = self.workers[action.worker_id]

        def progress(done: int, total: int) -> None:
            post(TaskProgress(action.worker_id, action.video_id, action.stage, done, total))

        def go() -> None:
            try:
                result = w.call("run", params, timeout_s=action.timeout_s, log_path=Path(params["log_path"]),
                                on_progress=progress)
            except Y2RError as e:
                alive = w.alive() and not isinstance(e, (WorkerCrashed, WorkerHung))
                post(TaskResult(action.worker_id, action.video_id, action.stage, False, kind=e.kind.value,
                                message=e.one_line(), detail=getattr(e, "detail", None) or getattr(e, "log_tail", None),
                                worker_alive=alive))
                return
            except Exception as e:  # noqa: BLE001
                post(TaskResult(action.worker_id, action.video_id, action.stage, False, kind=FailureKind.ERROR.value,
                                message=f"{type(e).__name__}: {e}", worker_alive=w.alive()))
                return
            meta = getattr(w, "last_result_meta", {}) or {}
            post(TaskResult(action.worker_id, action.video_id, action.stage, True, result=result,
                            peak_rss_mb=meta.get("peak_rss_mb")))

        threading.Thread(target=go, daemon=True, name=f"run-{action.worker_id}").start()

    def stop_worker(self, worker_id: str, post: Post) -> None:
        with self._lock:
            w = self.workers.pop(worker_id, None)
            self.gpu_of.pop(worker_id, None)
            if w is not None:
                self._stopping[worker_id] = w

        def go() -> None:
            if w is not None:
                w.stop()
            with self._lock:
                self._stopping.pop(worker_id, None)
            post(WorkerStopped(worker_id))

        threading.Thread(target=go, daemon=True, name=f"stop-{worker_id}").start()

    def kill_worker(self, worker_id: str) -> None:
        w = self.workers.get(worker_id)
        if w is not None:
            w.kill(grace_s=2.0)

    def gpu_memory_mb(self, worker_id: str) -> float | None:
        w = self.workers.get(worker_id)
        g = self.gpu_of.get(worker_id)
        if w is None or g is None or w.pid is None:
            return None
        if g in self.simulated:
            base = self.baseline_mb.get(worker_id)
            return None if base is None else max(0.0, gpu_mod.tree_rss_mb(w.pid) - base)
        try:
            now = time.monotonic()
            cached = self._nvml_cache.get(g)
            if cached is None or now - cached[0] > 0.2:
                cached = (now, gpu_mod.gpu_memory_by_pid(g))
                self._nvml_cache[g] = cached
            pids = gpu_mod.process_tree(w.pid)
            return sum(mb for p, mb in cached[1].items() if p in pids)
        except Exception:  # noqa: BLE001 - sampling is best effort; NVML can fail transiently
            return None

    def device_memory_mb(self) -> dict[int, float]:
        """Memory in use per device this run's workers use, every process included (for status)."""
        gpus = {g for g in self.gpu_of.values() if g is not None} | set(self.simulated)
        out = {}
        for g in sorted(gpus):
            used = self.simulated[g].used_mb() if g in self.simulated else gpu_mod.device_used_mb(g)
            if used is not None:
                out[g] = used
        return out

    def pids(self) -> dict[str, int]:
        return {k: w.pid for k, w in self.workers.items() if w.pid}

    def shutdown(self, wait: bool = True) -> None:
        """Kill every worker's process group; with ``wait=False`` return at once (then ``wait_closed``).

        Workers take ~1 s to exit (interpreter teardown, tool children): the pipeline writes the
        dataset-level files meanwhile instead of after.
        """
        self._closed = True
        with self._lock:
            workers = list(self.workers.values()) + list(self._stopping.values())
            self.workers.clear()
        threads = [threading.Thread(target=w.kill, kwargs={"grace_s": 2.0}, daemon=True) for w in workers]
        for t in threads:
            t.start()
        self._closing.append((workers, threads))
        if wait:
            self.wait_closed()

    def wait_closed(self) -> None:
        """Return when every worker process started by this transport is gone."""
        while self._closing:
            workers, threads = self._closing.pop()
            for t in threads:
                t.join(timeout=15)
            for t in self._starting:
                t.join(timeout=5)
            for w in workers:  # a start that raced the first kill
                if w.alive():
                    w.kill(grace_s=1.0)


def default_cpu_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)
