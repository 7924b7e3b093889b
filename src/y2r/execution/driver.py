"""The run driver: the one process that owns the ledger and the artifacts' visibility.

It loops: ask the scheduler for actions, hand them to a *transport* (local worker processes, or Ray
actors), and turn the transport's events back into scheduler events, ledger rows and committed
artifacts. Workers compute into temporary folders; only the driver renames them into place and
writes completion markers, so a crash of anything but the driver loses at most the tasks in flight,
and a crash of the driver loses nothing finished.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from y2r.artifacts import ArtifactStore, write_json_atomic
from y2r.config import Config
from y2r.console import RunDisplay
from y2r.errors import FailureKind
from y2r.execution.scheduler import Assign, Scheduler, StartWorker, StopWorker
from y2r.ledger import Ledger
from y2r.stages.base import STAGES

DECIDE_AFTER_PROGRESS_S = 0.25  # the Ray transport forwards progress at this rate too


# ----------------------------------------------------------------------------- events
@dataclass
class WorkerReady:
    worker_id: str
    load_s: float
    pid: int | None = None


@dataclass
class WorkerStartFailed:
    worker_id: str
    kind: str
    message: str
    detail: str | None = None


@dataclass
class TaskProgress:
    worker_id: str
    video_id: str
    stage: str
    done: int
    total: int


@dataclass
class TaskResult:
    worker_id: str
    video_id: str
    stage: str
    ok: bool
    result: dict = field(default_factory=dict)
    kind: str | None = None
    message: str | None = None
    detail: str | None = None
    worker_alive: bool = True
    peak_rss_mb: float | None = None


@dataclass
class WorkerStopped:
    worker_id: str


Event = WorkerReady | WorkerStartFailed | TaskProgress | TaskResult | WorkerStopped
Post = Callable[[Event], None]


class Transport(Protocol):
    """How workers are started and talked to (local processes, Ray actors)."""

    def start_worker(self, action: StartWorker, load_params: dict, post: Post) -> None: ...
    def run_task(self, action: Assign, params: dict, post: Post) -> None: ...
    def stop_worker(self, worker_id: str, post: Post) -> None: ...
    def kill_worker(self, worker_id: str) -> None: ...
    def gpu_memory_mb(self, worker_id: str) -> float | None: ...
    def shutdown(self, wait: bool = True) -> None: ...
    def wait_closed(self) -> None: ...


@dataclass
class VideoPlan:
    video_id: str
    source_path: Path
    stages: dict[str, str]  # stage -> backend to run (all stages of the pipeline)
    fingerprints: dict[str, str]  # stage -> config hash
    done: set[str]


@dataclass
class RunReport:
    done: int = 0
    failed: int = 0
    skipped: int = 0
    interrupted: bool = False
    elapsed_s: float = 0.0
    failures: list[dict] = field(default_factory=list)


@dataclass
class _Running:
    worker_id: str
    tmp_dir: Path
    started: float
    attempt: int
    backend: str
    predicted_mb: float
    gpu: int | None
    peak_gpu_mb: float = 0.0
    last_progress: float | None = None


class Driver:
    def __init__(self, *, config: Config, out: Path, store: ArtifactStore, ledger: Ledger, scheduler: Scheduler,
                 transport: Transport, plans: dict[str, VideoPlan], display: RunDisplay, run_id: int | None = None,
                 cpu_threads: int = 1, status_name: str = "status.json", wait_for_workers: bool = True):
        self.config = config
        self.out = Path(out)
        self.logs = self.out / "logs"
        self.store = store
        self.ledger = ledger
        self.scheduler = scheduler
        self.transport = transport
        self.plans = plans
        self.display = display
        self.run_id = run_id
        self.cpu_threads = cpu_threads
        self.status_name = status_name  # shards of an array share OUT: one live status file each
        # False: run() returns once every worker has been told to die, and the caller must call
        # transport.wait_closed() (the pipeline writes the dataset files while the workers exit).
        self.wait_for_workers = wait_for_workers
        self.events: queue.Queue = queue.Queue()
        self.running: dict[tuple[str, str], _Running] = {}
        self.worker_task: dict[str, tuple[str, str]] = {}
        self.worker_meta: dict[str, dict] = {}
        self.watchdog_killed: set[str] = set()
        self.report = RunReport()
        self._stop = threading.Event()
        self._last_status = 0.0
        self._last_sample = 0.0
        self._t0 = time.monotonic()
        self.completed_frames: dict[str, int] = {}

    # ------------------------------------------------------------------ main loop
    def request_stop(self, *_args) -> None:
        self._stop.set()

    def run(self) -> RunReport:
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                handlers[sig] = signal.signal(sig, self.request_stop)
        self.logs.mkdir(parents=True, exist_ok=True)
        last = time.monotonic()
        progress_only = False
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                # Progress messages change nothing the scheduler decides on (they feed the watchdog and
                # the display), and busy workers send several per second: after a batch of only those,
                # decide again at most every DECIDE_AFTER_PROGRESS_S instead of after each one.
                if not progress_only or now - last >= DECIDE_AFTER_PROGRESS_S:
                    self.scheduler.tick(now, now - last)
                    last = now
                    for action in self.scheduler.next_actions(now):
                        self._dispatch(action)
                    for o in self.scheduler.drain_outcomes():
                        self._record_unattempted_failure(o.video_id, o.stage, o.kind or "user_error", o.message or "")
                    if self.scheduler.finished() and not self.running:
                        break
                self._housekeeping(now)
                try:
                    ev = self.events.get(timeout=0.2)
                except queue.Empty:
                    progress_only = False
                    continue
                self._handle(ev)
                progress_only = isinstance(ev, TaskProgress)
                # Drain whatever else arrived, so bursts of progress messages do not lag.
                while True:
                    try:
                        ev = self.events.get_nowait()
                    except queue.Empty:
                        break
                    self._handle(ev)
                    progress_only = progress_only and isinstance(ev, TaskProgress)
        finally:
            interrupted = self._stop.is_set()
            self._shutdown(interrupted)
            for sig, h in handlers.items():
                signal.signal(sig, h)
        self.report.interrupted = interrupted
        self.report.elapsed_s = time.monotonic() - self._t0
        return self.report

    def _shutdown(self, interrupted: bool) -> None:
        self.transport.shutdown(wait=self.wait_for_workers)  # kills every worker's process group (or Ray actor)
        # Workers still alive at the end never report WorkerStopped to this (finished) loop: record them
        # now, or the ledger's worker statistics (load time, busy time) would miss the last lanes.
        for worker_id in list(self.worker_meta):
            self._worker_gone(worker_id, "interrupted" if interrupted else "run finished")
        for key in self.scheduler.requeue_running():
            self.ledger.requeue(*key)
        for r in self.running.values():
            shutil.rmtree(r.tmp_dir, ignore_errors=True)
        self.running.clear()
        self._write_status(time.monotonic(), final=True)
        self.display.stop()

    # ------------------------------------------------------------------ actions
    def _dispatch(self, action) -> None:
        if isinstance(action, StartWorker):
            lane = self.scheduler.lanes[action.lane]
            params = {"config": self.config.model_dump(mode="json"), "worker_id": action.worker_id,
                      "log_dir": str(self.logs / "workers"), "gpu": action.gpu, "threads": self.cpu_threads,
                      "preload": [[lane.stage, lane.backend]] if lane.gpu else []}
            self.worker_meta[action.worker_id] = {"lane": action.lane, "gpu": action.gpu, "started": time.time(),
                                                  "tasks": 0, "busy_s": 0.0, "load_s": None}
            self.transport.start_worker(action, params, self.events.put)
        elif isinstance(action, Assign):
            self._assign(action)
        elif isinstance(action, StopWorker):
            self.transport.stop_worker(action.worker_id, self.events.put)

    def _assign(self, a: Assign) -> None:
        plan = self.plans[a.video_id]
        key = (a.video_id, a.stage)
        tmp = self.store.new_tmp_dir(a.video_id, a.stage)
        log = self.logs / a.video_id / f"{a.stage}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        inputs = {s: str(self.store.stage_dir(a.video_id, s)) for s in STAGES[a.stage].inputs if s in plan.stages}
        worker = self.scheduler.workers[a.worker_id]
        self.ledger.mark_running(a.video_id, a.stage, attempt=a.attempt, worker=a.worker_id,
                                 gpu=None if worker.gpu is None else str(worker.gpu), backend=a.backend)
        self.running[key] = _Running(a.worker_id, tmp, time.time(), a.attempt, a.backend, a.predicted_mb, worker.gpu)
        self.worker_task[a.worker_id] = key
        params = {"video_id": a.video_id, "stage": a.stage, "backend": a.backend, "source_path": str(plan.source_path),
                  "inputs": inputs, "out_dir": str(tmp), "log_path": str(log), "attempt": a.attempt}
        self.display.task_started(a.video_id, a.stage, a.worker_id)
        self.transport.run_task(a, params, self.events.put)

    # ------------------------------------------------------------------ events
    def _handle(self, ev: Event) -> None:
        now = time.monotonic()
        if isinstance(ev, WorkerReady):
            if ev.worker_id in self.scheduler.workers:
                self.scheduler.worker_ready(ev.worker_id, now)
                self.worker_meta[ev.worker_id]["load_s"] = ev.load_s
        elif isinstance(ev, WorkerStartFailed):
            if ev.worker_id in self.scheduler.workers:
                self.display.note(f"[red]worker {ev.worker_id} failed to start[/]: {ev.message}")
                self.scheduler.worker_start_failed(ev.worker_id, ev.kind, ev.message, now)
                self._worker_gone(ev.worker_id, f"start failed: {ev.kind}")
        elif isinstance(ev, TaskProgress):
            r = self.running.get((ev.video_id, ev.stage))
            if r is not None:
                r.last_progress = now
            self.display.task_progress(ev.video_id, ev.stage, ev.done, ev.total)
        elif isinstance(ev, TaskResult):
            self._task_result(ev, now)
        elif isinstance(ev, WorkerStopped):
            self.scheduler.worker_stopped(ev.worker_id, now)
            self._worker_gone(ev.worker_id, "stopped")

    def _worker_gone(self, worker_id: str, reason: str) -> None:
        m = self.worker_meta.pop(worker_id, None)
        if m is not None:
            self.ledger.record_worker(self.run_id, worker_id, m["lane"], None if m["gpu"] is None else str(m["gpu"]),
                                      m["started"], time.time(), m["load_s"], m["tasks"], m["busy_s"], reason)

    def _task_result(self, ev: TaskResult, now: float) -> None:
        key = (ev.video_id, ev.stage)
        r = self.running.pop(key, None)
        self.worker_task.pop(ev.worker_id, None)
        if r is None or ev.worker_id not in self.scheduler.workers:
            return
        plan = self.plans[ev.video_id]
        fp = plan.fingerprints[ev.stage]
        duration = time.time() - r.started
        if ev.worker_id in self.worker_meta:
            self.worker_meta[ev.worker_id]["tasks"] += 1
            self.worker_meta[ev.worker_id]["busy_s"] += duration
        peak_gpu = r.peak_gpu_mb or None
        if ev.ok:
            try:
                marker = {"video_id": ev.video_id, "stage": ev.stage, "backend": r.backend, "config_hash": fp,
                          "describe": ev.result.get("describe", {}), "quality": ev.result.get("quality", {}),
                          "duration_s": duration, "attempt": r.attempt, "worker": ev.worker_id}
                self.store.commit(r.tmp_dir, ev.video_id, ev.stage, marker)
            except OSError as e:
                ev = TaskResult(ev.worker_id, ev.video_id, ev.stage, False, kind=FailureKind.ERROR.value,
                                message=f"could not commit artifact: {e}", worker_alive=True)
            else:
                meta = ev.result.get("meta")
                frames = meta["num_frames"] if meta else None
                if meta:
                    self.scheduler.set_video_size(ev.video_id, meta["num_frames"], meta["width"] * meta["height"])
                self.ledger.mark_done(ev.video_id, ev.stage, config_hash=fp, duration_s=duration,
                                      peak_rss_mb=ev.peak_rss_mb, peak_gpu_mb=peak_gpu, num_frames=frames,
                                      attempt=r.attempt, worker=ev.worker_id,
                                      gpu=None if r.gpu is None else str(r.gpu), backend=r.backend)
                if peak_gpu and r.gpu is not None:
                    v = self.scheduler.videos[ev.video_id]
                    self.ledger.record_memory(ev.stage, r.backend, str(r.gpu), v.frames, v.pixels, peak_gpu, "ok")
                self.scheduler.task_done(ev.worker_id, now, peak_mb=peak_gpu)
                self.report.done += 1
                self.completed_frames[ev.stage] = self.completed_frames.get(ev.stage, 0) + self.scheduler.videos[ev.video_id].frames
                self.display.task_finished(ev.video_id, ev.stage, "done")
                if ev.stage == "episode" and not self.config.episode.keep_intermediate:
                    self.store.drop_intermediate(ev.video_id)
                return
        shutil.rmtree(r.tmp_dir, ignore_errors=True)
        kind = ev.kind or FailureKind.ERROR.value
        if ev.worker_id in self.watchdog_killed:
            self.watchdog_killed.discard(ev.worker_id)
            kind = FailureKind.HANG.value
            ev.message = f"no progress for {self.config.execution.no_progress_s:.0f} s (watchdog)"
        message = ev.message or "failed"
        self._append_log(ev.video_id, ev.stage, message, ev.detail)
        if kind == FailureKind.OOM.value and r.gpu is not None:
            v = self.scheduler.videos[ev.video_id]
            self.ledger.record_memory(ev.stage, r.backend, str(r.gpu), v.frames, v.pixels,
                                      max(r.predicted_mb, peak_gpu or 0.0), "oom")
        outcome = self.scheduler.task_failed(ev.worker_id, now, kind=kind, message=message,
                                             worker_alive=ev.worker_alive, peak_mb=peak_gpu)
        self.ledger.mark_failed(ev.video_id, ev.stage, kind=kind, message=message, final=outcome.final,
                                attempt=r.attempt, worker=ev.worker_id, gpu=None if r.gpu is None else str(r.gpu),
                                backend=r.backend, peak_gpu_mb=peak_gpu, started=r.started)
        if not ev.worker_alive:
            self._worker_gone(ev.worker_id, f"died: {kind}")
        if outcome.final:
            self.report.failed += 1
            self.report.failures.append({"video_id": ev.video_id, "stage": ev.stage, "kind": kind, "message": message,
                                         "source_path": str(plan.source_path)})
            self.display.task_finished(ev.video_id, ev.stage, "failed", message)
            for vid, stage in outcome.skipped:
                self.ledger.mark_skipped(vid, stage, f"not run: {ev.stage} failed")
                self.report.skipped += 1
                self.display.task_finished(vid, stage, "skipped")
        else:
            self.display.task_finished(ev.video_id, ev.stage, "retry", f"{message} (attempt {r.attempt})")

    def _record_unattempted_failure(self, video_id: str, stage: str, kind: str, message: str) -> None:
        self.ledger.mark_failed(video_id, stage, kind=kind, message=message, final=True, attempt=0)
        self.report.failed += 1
        self.report.failures.append({"video_id": video_id, "stage": stage, "kind": kind, "message": message,
                                     "source_path": str(self.plans[video_id].source_path)})
        self.display.task_finished(video_id, stage, "failed", None)
        v = self.scheduler.videos[video_id]
        for s, t in v.tasks.items():
            if t.state == "skipped":
                row = self.ledger.task(video_id, s)
                if row and row.state != "skipped":
                    self.ledger.mark_skipped(video_id, s, f"not run: {stage} failed")
                    self.report.skipped += 1
                    self.display.task_finished(video_id, s, "skipped")

    def _append_log(self, video_id: str, stage: str, message: str, detail: str | None) -> None:
        p = self.logs / video_id / f"{stage}.log"
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(p, "a") as f:
            f.write(f"\n[y2r {time.strftime('%Y-%m-%d %H:%M:%S')}] FAILED: {message}\n")
            if detail:
                f.write(detail.rstrip() + "\n")

    # ------------------------------------------------------------------ housekeeping
    def _housekeeping(self, now: float) -> None:
        # No-progress watchdog: a task that reported progress once and then went silent for too long.
        limit = self.config.execution.no_progress_s
        for key, r in list(self.running.items()):
            if r.last_progress is not None and now - r.last_progress > limit and r.worker_id not in self.watchdog_killed:
                self.watchdog_killed.add(r.worker_id)
                self.transport.kill_worker(r.worker_id)
        # GPU memory of every GPU worker: the placement counts each at least at what it holds, and
        # the peak of a busy worker's task feeds the memory model.
        if now - self._last_sample >= self.config.execution.gpus.sample_interval_s:
            self._last_sample = now
            running_by_worker = {r.worker_id: r for r in self.running.values()}
            for wid, w in list(self.scheduler.workers.items()):
                if w.gpu is None or w.state not in ("idle", "busy"):
                    continue
                mb = self.transport.gpu_memory_mb(wid)
                if mb is None:
                    continue
                self.scheduler.worker_memory(wid, mb)
                r = running_by_worker.get(wid)
                if r is not None:
                    r.peak_gpu_mb = max(r.peak_gpu_mb, mb)
        if now - self._last_status >= 2.0:
            self._write_status(now)

    def _write_status(self, now: float, final: bool = False) -> None:
        self._last_status = now
        snap = self.scheduler.snapshot(now)
        elapsed = max(1e-6, now - self._t0)
        snap["throughput_frames_per_s"] = {s: round(n / elapsed, 2) for s, n in self.completed_frames.items()}
        remaining = sum(c.get("ready", 0) + c.get("waiting", 0) + c.get("running", 0) for c in snap["stages"].values())
        finished_tasks = max(1, self.report.done)
        snap["eta_s"] = None if final or not self.report.done else round(remaining * elapsed / finished_tasks, 1)
        # Device-level memory (every process on the GPU, foreign ones too), when the transport knows it.
        device_mb = getattr(self.transport, "device_memory_mb", None)
        if callable(device_mb) and snap.get("gpus"):
            try:
                used = device_mb()
            except Exception:  # noqa: BLE001 - status is best effort
                used = {}
            for g in snap["gpus"]:
                g["device_used_mb"] = None if g["index"] not in used else round(used[g["index"]], 1)
        snap.update({"pid": os.getpid(), "host": socket.gethostname(), "updated_utc": time.time(), "elapsed_s": round(elapsed, 1), "final": final,
                     "running": [{"video_id": k[0], "stage": k[1], "worker": r.worker_id, "gpu": r.gpu,
                                  "predicted_mb": round(r.predicted_mb, 1), "peak_gpu_mb": round(r.peak_gpu_mb, 1)}
                                 for k, r in self.running.items()]})
        try:
            write_json_atomic(self.out / self.status_name, snap)
        except OSError:
            pass


def load_status(out: Path) -> dict | None:
    """The live status snapshot of a run in progress (None if no run is live)."""
    p = Path(out) / "status.json"
    try:
        snap = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    pid = snap.get("pid")
    alive = False
    if pid and not snap.get("final"):
        try:
            os.kill(pid, 0)
            alive = True
        except OSError:
            alive = False
    snap["live"] = alive
    return snap
