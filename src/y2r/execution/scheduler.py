"""The scheduler: an executor-agnostic, I/O-free state machine.

It knows tasks (video, stage), lanes (kinds of workers), workers and GPUs, and answers one question
-- "what should happen now?" -- with actions (start a worker, assign a task, stop a worker). An
executor (local processes, Ray actors, or the discrete-event simulator in benchmarks/) carries the
actions out and reports events back. Time is always passed in, so the same code runs in real time
and in simulated time.

Policies, in one place:
- **Streaming**: a video moves to its next stage as soon as the previous one finishes; ready tasks
  of later stages go first, and new videos are admitted only while the number of videos in flight
  is bounded (``max_in_flight``), which bounds memory and disk.
- **Placement**: CPU tasks go to the shared ``cpu`` lane (``cpu_workers`` slots). A GPU lane's task
  goes to a worker whose GPU can hold the task's *predicted* peak next to the predicted peaks of
  everything else on that GPU, plus a margin (``MemoryModel``). Workers of different lanes share a
  GPU when they fit.
- **Worker counts**: on a GPU, a lane gets another worker only while measured throughput still
  rises with the number of concurrently busy workers (compute saturates before memory on big GPUs);
  never fewer than one worker for a lane with work.
- **Failures** (``execution/failures.py``): each kind has its own attempt budget and handling;
  OOM retries with a raised prediction and, the second time, alone on a GPU; a worker that crashed
  or hung is replaced; a GPU where tasks keep dying is taken out of service; after the budget the
  task is dead-lettered (failed) and that video's later stages are skipped -- the other videos go on.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from typing import Literal

from y2r.errors import FailureKind
from y2r.execution.memory_model import MemoryModel
from y2r.stages.base import STAGE_ORDER, STAGES

CPU_LANE = "cpu"


# ----------------------------------------------------------------------------- declarations
@dataclass(frozen=True)
class Lane:
    """A kind of worker. The shared ``cpu`` lane runs every built-in stage; GPU lanes one (stage, backend)."""

    name: str
    stages: frozenset[str]
    gpu: bool = False
    stage: str | None = None  # for GPU lanes: the stage / backend the worker loads
    backend: str | None = None
    max_workers: int | None = None


@dataclass(frozen=True)
class GpuSpec:
    index: int
    name: str
    capacity_mb: float  # memory y2r may use on it (free memory at start, NVML)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: dict[str, int]
    backoff_s: float = 1.0
    backoff_max_s: float = 60.0
    gpu_failure_limit: int = 3  # consecutive crash/hang/oom failures on one GPU that retire it

    def budget(self, kind: str) -> int:
        return max(1, int(self.max_attempts.get(kind, 1)))

    def delay(self, attempt: int) -> float:
        return min(self.backoff_max_s, self.backoff_s * (2 ** max(0, attempt - 1)))


@dataclass(frozen=True)
class TimeoutPolicy:
    base_s: float = 600.0
    per_frame_s: float = 2.0

    def for_frames(self, frames: int) -> float:
        return self.base_s + self.per_frame_s * max(frames, 0)


# ----------------------------------------------------------------------------- state
TaskStateName = Literal["waiting", "ready", "running", "done", "failed", "skipped"]


@dataclass
class Task:
    video_id: str
    stage: str
    backend: str
    lane: str
    seq: int  # admission order of the video (priority among equals)
    state: TaskStateName = "waiting"
    attempts: int = 0
    kind_attempts: Counter = field(default_factory=Counter)
    not_before: float = 0.0
    exclusive: bool = False  # after repeated OOM: run alone on a GPU
    worker: str | None = None
    started: float = 0.0
    predicted_mb: float = 0.0
    last_error: tuple[str, str] | None = None
    busy_integral: float = 0.0  # integral of concurrently-busy workers on its GPU lane (for throughput)

    @property
    def key(self) -> tuple[str, str]:
        return (self.video_id, self.stage)


@dataclass
class Video:
    video_id: str
    seq: int
    frames: int = 0
    pixels: int = 0
    tasks: dict[str, Task] = field(default_factory=dict)

    def terminal(self) -> bool:
        return all(t.state in ("done", "failed", "skipped") for t in self.tasks.values())

    def started(self) -> bool:
        return any(t.state not in ("waiting", "ready") or t.attempts > 0 for t in self.tasks.values())


@dataclass
class Worker:
    id: str
    lane: str
    gpu: int | None
    state: Literal["starting", "idle", "busy", "stopping"] = "starting"
    task: tuple[str, str] | None = None
    started_at: float = 0.0
    ready_at: float | None = None
    tasks_done: int = 0
    busy_s: float = 0.0
    busy_since: float = 0.0
    stages_loaded: set = field(default_factory=set)


# ----------------------------------------------------------------------------- actions
@dataclass(frozen=True)
class StartWorker:
    worker_id: str
    lane: str
    gpu: int | None


@dataclass(frozen=True)
class Assign:
    worker_id: str
    video_id: str
    stage: str
    backend: str
    attempt: int
    timeout_s: float
    predicted_mb: float


@dataclass(frozen=True)
class StopWorker:
    worker_id: str
    reason: str


Action = StartWorker | Assign | StopWorker


@dataclass(frozen=True)
class Outcome:
    """What the scheduler decided about a finished attempt (the executor records it)."""

    video_id: str
    stage: str
    final: bool  # no more attempts for this task
    state: str  # done | failed | retry
    kind: str | None = None
    message: str | None = None
    skipped: tuple[tuple[str, str], ...] = ()  # downstream tasks given up because of this failure


class Scheduler:
    """Decides what runs where. Feed it events; ask it for actions."""

    def __init__(self, *, lanes: dict[str, Lane], task_lanes: dict[tuple[str, str], str],
                 retry: RetryPolicy, timeouts: TimeoutPolicy, cpu_workers: int,
                 gpus: list[GpuSpec] | None = None, memory: MemoryModel | None = None,
                 margin_mb: float = 2048.0, max_workers_per_gpu: int = 8, max_in_flight: int = 16,
                 throughput_gain: float = 0.10, stages: tuple[str, ...] = STAGE_ORDER):
        self.lanes = lanes
        self.task_lanes = task_lanes  # (stage, backend) -> lane name
        self.retry = retry
        self.timeouts = timeouts
        self.cpu_workers = max(1, cpu_workers)
        self.gpus = {g.index: g for g in (gpus or [])}
        self.gpu_out_of_service: dict[int, str] = {}
        self.gpu_failures: Counter = Counter()
        self.memory = memory or MemoryModel()
        self.margin_mb = margin_mb
        self.max_workers_per_gpu = max_workers_per_gpu
        self.max_in_flight = max(1, max_in_flight)
        self.throughput_gain = throughput_gain
        self.stages = stages
        self.videos: dict[str, Video] = {}
        self.workers: dict[str, Worker] = {}
        self._ids = itertools.count(1)
        self._seq = itertools.count()
        self.lane_broken: dict[str, str] = {}
        # Throughput per (lane, gpu) as a function of concurrency: samples of work/s per task.
        self._rate: dict[tuple[str, int], dict[int, deque]] = defaultdict(lambda: defaultdict(lambda: deque(maxlen=8)))
        self._lane_cap: dict[tuple[str, int], int] = {}
        self.completed_work: Counter = Counter()  # lane -> frames processed
        self.counters: Counter = Counter()
        self.pending_outcomes: list[Outcome] = []
        self._queued: list[Action] = []

    # ------------------------------------------------------------------ building
    def add_video(self, video_id: str, stages: dict[str, str], *, done: set[str] = frozenset(),
                  frames: int = 0, pixels: int = 0) -> None:
        """Register a video: ``stages`` maps each stage to run to its backend; ``done`` are already valid."""
        v = Video(video_id, next(self._seq), frames, pixels)
        for stage in self.stages:
            if stage not in stages:
                continue
            backend = stages[stage]
            lane = self.task_lanes.get((stage, backend), CPU_LANE)
            t = Task(video_id, stage, backend, lane, v.seq)
            t.state = "done" if stage in done else "waiting"
            v.tasks[stage] = t
        self.videos[video_id] = v
        self._refresh_ready(v)

    def set_video_size(self, video_id: str, frames: int, pixels: int) -> None:
        v = self.videos[video_id]
        v.frames, v.pixels = int(frames), int(pixels)

    def _refresh_ready(self, v: Video) -> None:
        for t in v.tasks.values():
            if t.state != "waiting":
                continue
            deps = [d for d in STAGES[t.stage].inputs if d in v.tasks]
            if all(v.tasks[d].state == "done" for d in deps):
                t.state = "ready"
            elif any(v.tasks[d].state in ("failed", "skipped") for d in deps):
                t.state = "skipped"

    # ------------------------------------------------------------------ queries
    def finished(self) -> bool:
        return all(v.terminal() for v in self.videos.values())

    def in_flight(self) -> int:
        return sum(1 for v in self.videos.values() if v.started() and not v.terminal())

    def task(self, video_id: str, stage: str) -> Task:
        return self.videos[video_id].tasks[stage]

    def _work(self, t: Task) -> float:
        v = self.videos[t.video_id]
        return max(1.0, v.frames * max(v.pixels, 1) / 1e6)

    def _predict(self, t: Task) -> float:
        v = self.videos[t.video_id]
        return self.memory.predict(t.stage, t.backend, v.frames, v.pixels)

    def gpu_usage(self, g: int, exclude: str | None = None) -> float:
        """Predicted memory in use on GPU ``g``: busy workers at their task's peak, others at their base."""
        used = 0.0
        for w in self.workers.values():
            if w.gpu != g or w.id == exclude:
                continue
            lane = self.lanes[w.lane]
            if w.state == "busy" and w.task is not None:
                used += self.task(*w.task).predicted_mb
            else:
                used += self.memory.base(lane.stage, lane.backend)
        return used

    def _gpu_exclusive_busy(self, g: int) -> bool:
        return any(w.gpu == g and w.state == "busy" and w.task and self.task(*w.task).exclusive
                   for w in self.workers.values())

    def _fits(self, g: int, extra_mb: float, exclude: str | None = None) -> bool:
        spec = self.gpus[g]
        return self.gpu_usage(g, exclude) + extra_mb + self.margin_mb <= spec.capacity_mb

    # ------------------------------------------------------------------ actions
    def next_actions(self, now: float) -> list[Action]:
        actions: list[Action] = self._queued
        self._queued = []
        ready_by_lane: dict[str, list[Task]] = defaultdict(list)
        admitted = self.in_flight()
        for v in sorted(self.videos.values(), key=lambda v: v.seq):
            if v.terminal():
                continue
            fresh = not v.started()
            for t in v.tasks.values():
                if t.state == "ready" and t.not_before <= now:
                    if fresh:
                        # Admission control: a new video enters the pipeline only while few are in flight.
                        if admitted >= self.max_in_flight:
                            break
                        admitted += 1
                        fresh = False
                    ready_by_lane[t.lane].append(t)
        for lane_name in ready_by_lane:
            # Later stages first (drain videos through the pipeline), then admission order.
            ready_by_lane[lane_name].sort(key=lambda t: (-self.stages.index(t.stage), t.seq))

        for lane_name, ready in ready_by_lane.items():
            if lane_name in self.lane_broken:
                continue
            lane = self.lanes[lane_name]
            if lane.gpu:
                actions += self._place_gpu(lane, ready, now)
            else:
                actions += self._place_cpu(lane, ready, now)
        actions += self._retire_idle(ready_by_lane, now)
        return actions

    def _assign(self, w: Worker, t: Task, now: float) -> Assign:
        t.state = "running"
        t.attempts += 1
        t.worker = w.id
        t.started = now
        t.predicted_mb = self._predict(t) if self.lanes[w.lane].gpu else 0.0
        w.state = "busy"
        w.task = t.key
        w.busy_since = now
        v = self.videos[t.video_id]
        return Assign(w.id, t.video_id, t.stage, t.backend, t.attempts, self.timeouts.for_frames(v.frames), t.predicted_mb)

    def _new_worker(self, lane: Lane, gpu: int | None, now: float) -> StartWorker:
        wid = f"{lane.name.replace('/', '-')}-{next(self._ids)}" + (f"@gpu{gpu}" if gpu is not None else "")
        self.workers[wid] = Worker(wid, lane.name, gpu, started_at=now)
        self.counters["workers_started"] += 1
        return StartWorker(wid, lane.name, gpu)

    def _place_cpu(self, lane: Lane, ready: list[Task], now: float) -> list[Action]:
        out: list[Action] = []
        idle = [w for w in self.workers.values() if w.lane == lane.name and w.state == "idle"]
        starting = sum(1 for w in self.workers.values() if w.lane == lane.name and w.state == "starting")
        queue = deque(ready)
        while queue and idle:
            t = queue.popleft()
            # Prefer a worker that already loaded this stage's backend (models load once per worker).
            idle.sort(key=lambda w: t.stage not in w.stages_loaded)
            out.append(self._assign(idle.pop(0), t, now))
        cap = lane.max_workers or self.cpu_workers
        n = sum(1 for w in self.workers.values() if w.lane == lane.name and w.state != "stopping")
        want = len(queue) - starting
        while want > 0 and n < cap:
            out.append(self._new_worker(lane, None, now))
            n += 1
            want -= 1
        return out

    def _lane_gpu_cap(self, lane: Lane, g: int) -> int:
        """How many workers of this lane the GPU should hold, from measured throughput."""
        cap = min(self.max_workers_per_gpu, lane.max_workers or self.max_workers_per_gpu)
        rates = self._rate.get((lane.name, g))
        if not rates:
            return cap
        measured = {k: sum(v) / len(v) for k, v in rates.items() if v}
        # Throughput at concurrency k = k * per-task rate. Grow while it rises by >= gain.
        best_k = 1
        k = 1
        while k in measured:
            thr = k * measured[k]
            if k > 1 and thr < (1 + self.throughput_gain) * (k - 1) * measured[k - 1]:
                # The k-th concurrent worker did not pay: cap at k - 1 (running workers finish their
                # tasks; the lane is not grown again, and a retired worker is not replaced).
                return min(cap, max(1, k - 1))
            best_k = k
            k += 1
        # Concurrency best_k is measured and paid off: allow one more to probe best_k + 1.
        return min(cap, best_k + 1)

    def _place_gpu(self, lane: Lane, ready: list[Task], now: float) -> list[Action]:
        out: list[Action] = []
        usable = [g for g in self.gpus if g not in self.gpu_out_of_service]
        if not usable:
            return out
        workers = [w for w in self.workers.values() if w.lane == lane.name and w.state != "stopping"]
        starting = [w for w in workers if w.state == "starting"]
        pending = list(ready)
        # 1) idle workers of this lane take the largest task that fits next to their GPU's load.
        for w in sorted((w for w in workers if w.state == "idle"), key=lambda w: w.gpu):
            if self._gpu_exclusive_busy(w.gpu):
                continue
            for t in pending:
                need = self._predict(t)
                base = self.memory.base(lane.stage, lane.backend)
                others_busy = any(o.gpu == w.gpu and o.state == "busy" for o in self.workers.values())
                if t.exclusive and others_busy:
                    continue
                if self._fits(w.gpu, need - base) or (not others_busy and self._alone_fits(w.gpu, w.id, need)):
                    out.append(self._assign(w, t, now))
                    pending.remove(t)
                    break
        # 2) start workers for what is left, on the GPU with the most room, while throughput allows.
        unserved = len(pending) - len(starting)
        if unserved <= 0:
            return out
        for t in pending[:max(0, unserved)]:
            need = self._predict(t)
            choice = None
            best_room = -math.inf
            for g in usable:
                if self._gpu_exclusive_busy(g):
                    continue
                on_g = [w for w in workers if w.gpu == g]
                if len(on_g) >= self._lane_gpu_cap(lane, g):
                    continue
                total_on_g = sum(1 for w in self.workers.values() if w.gpu == g and w.state != "stopping")
                if total_on_g >= self.max_workers_per_gpu:
                    continue
                if not self._fits(g, need):
                    continue
                room = self.gpus[g].capacity_mb - self.gpu_usage(g)
                if room > best_room:
                    best_room, choice = room, g
            if choice is None:
                # Never fewer than one worker for a lane with work: make room by retiring idle
                # workers of other lanes on the emptiest GPU.
                if not workers and not starting:
                    out += self._make_room(lane, need, now)
                break
            w_action = self._new_worker(lane, choice, now)
            out.append(w_action)
            workers.append(self.workers[w_action.worker_id])
        return out

    def _alone_fits(self, g: int, wid: str, need: float) -> bool:
        """Would the task fit if only idle workers (at base) share the GPU with it?"""
        return self.gpu_usage(g, exclude=wid) + need + self.margin_mb <= self.gpus[g].capacity_mb

    def _make_room(self, lane: Lane, need: float, now: float) -> list[Action]:
        out: list[Action] = []
        for g in sorted(self.gpus, key=lambda g: -(self.gpus[g].capacity_mb - self.gpu_usage(g))):
            if g in self.gpu_out_of_service:
                continue
            idle = [w for w in self.workers.values() if w.gpu == g and w.state == "idle" and w.lane != lane.name]
            freed = 0.0
            victims = []
            for w in idle:
                if self._fits(g, need + 0 - freed):
                    break
                lw = self.lanes[w.lane]
                freed += self.memory.base(lw.stage, lw.backend)
                victims.append(w)
            if victims and self.gpu_usage(g) - freed + need + self.margin_mb <= self.gpus[g].capacity_mb:
                for w in victims:
                    w.state = "stopping"
                    out.append(StopWorker(w.id, f"making room for {lane.name}"))
                return out
        return out

    def _retire_idle(self, ready_by_lane: dict[str, list[Task]], now: float) -> list[Action]:
        """Stop idle workers whose lane has no work left at all (frees GPU memory and processes)."""
        out: list[Action] = []
        remaining = Counter()
        for v in self.videos.values():
            for t in v.tasks.values():
                if t.state in ("waiting", "ready", "running"):
                    remaining[t.lane] += 1
        for w in self.workers.values():
            if w.state == "idle" and remaining[w.lane] == 0:
                w.state = "stopping"
                out.append(StopWorker(w.id, "no work left for its lane"))
            elif w.state == "idle" and w.gpu is not None and w.gpu in self.gpu_out_of_service:
                w.state = "stopping"
                out.append(StopWorker(w.id, f"GPU {w.gpu} out of service"))
        return out

    # ------------------------------------------------------------------ events
    def worker_ready(self, worker_id: str, now: float) -> None:
        w = self.workers[worker_id]
        w.state = "idle"
        w.ready_at = now

    def worker_start_failed(self, worker_id: str, kind: str, message: str, now: float) -> None:
        """A worker could not start (tool missing, load failed). A user error breaks the lane."""
        w = self.workers.pop(worker_id)
        self.counters["worker_start_failures"] += 1
        if kind in (FailureKind.USER_ERROR.value, FailureKind.BAD_INPUT.value) or self.counters[f"startfail:{w.lane}"] >= 2:
            self._break_lane(w.lane, message)
        self.counters[f"startfail:{w.lane}"] += 1
        if w.gpu is not None:
            self._gpu_failed(w.gpu, message)

    def _break_lane(self, lane: str, message: str) -> list[Outcome]:
        self.lane_broken[lane] = message
        outs = []
        for v in self.videos.values():
            for t in v.tasks.values():
                if t.lane == lane and t.state in ("waiting", "ready"):
                    t.state = "failed"
                    t.last_error = (FailureKind.USER_ERROR.value, message)
                    outs.append(Outcome(v.video_id, t.stage, True, "failed", FailureKind.USER_ERROR.value, message))
            self._refresh_ready(v)
        self.pending_outcomes.extend(outs)
        return outs

    def drain_outcomes(self) -> list[Outcome]:
        """Outcomes decided without a task event (e.g. tasks failed because their lane broke)."""
        outs, self.pending_outcomes = self.pending_outcomes, []
        return outs

    def task_done(self, worker_id: str, now: float, *, peak_mb: float | None = None) -> Outcome:
        w = self.workers[worker_id]
        t = self.task(*w.task)
        v = self.videos[t.video_id]
        lane = self.lanes[w.lane]
        dur = max(1e-6, now - t.started)
        if lane.gpu and w.gpu is not None:
            conc = max(1, round(t.busy_integral / dur)) if t.busy_integral > 0 else self._busy_on(w.lane, w.gpu)
            self._rate[(w.lane, w.gpu)][conc].append(self._work(t) / dur)
            if peak_mb is not None and peak_mb > 0:
                self.memory.observe(t.stage, t.backend, v.frames, v.pixels, peak_mb)
            self.gpu_failures[w.gpu] = 0
        t.state = "done"
        t.worker = None
        w.state = "idle"
        w.task = None
        w.tasks_done += 1
        w.busy_s += dur
        w.stages_loaded.add(t.stage)
        self.completed_work[w.lane] += v.frames
        self._refresh_ready(v)
        return Outcome(t.video_id, t.stage, True, "done")

    def _busy_on(self, lane: str, g: int) -> int:
        return max(1, sum(1 for w in self.workers.values() if w.lane == lane and w.gpu == g and w.state == "busy"))

    def tick(self, now: float, dt: float) -> None:
        """Accumulate concurrency for throughput measurement (call with the time since the last tick)."""
        if dt <= 0:
            return
        for w in self.workers.values():
            if w.state == "busy" and w.gpu is not None and w.task is not None:
                self.task(*w.task).busy_integral += dt * self._busy_on(w.lane, w.gpu)

    def task_failed(self, worker_id: str, now: float, *, kind: str, message: str, worker_alive: bool,
                    peak_mb: float | None = None) -> Outcome:
        w = self.workers[worker_id]
        t = self.task(*w.task)
        v = self.videos[t.video_id]
        lane = self.lanes[w.lane]
        t.kind_attempts[kind] += 1
        t.last_error = (kind, message)
        t.worker = None
        w.busy_s += max(0.0, now - t.started)
        w.task = None
        self.counters[f"failed:{kind}"] += 1
        gpu_oom = kind == FailureKind.OOM.value and lane.gpu
        if worker_alive and not gpu_oom:
            w.state = "idle"
        elif worker_alive:
            # After a CUDA OOM the worker's allocator/context may be unusable: replace it.
            w.state = "stopping"
            self._queued.append(StopWorker(w.id, "CUDA out of memory: replacing the worker"))
        else:
            # Dead, or hung and killed by the executor: forget it (a new one starts on demand).
            self.workers.pop(worker_id, None)
        if kind == FailureKind.OOM.value and lane.gpu:
            self.memory.observe_oom(t.stage, t.backend, v.frames, v.pixels, max(t.predicted_mb, peak_mb or 0.0))
            if t.kind_attempts[kind] >= 2:
                t.exclusive = True
        if w.gpu is not None and kind in (FailureKind.CRASH.value, FailureKind.HANG.value, FailureKind.OOM.value):
            self._gpu_failed(w.gpu, message)
        if kind == FailureKind.USER_ERROR.value:
            t.state = "failed"
            outcome = Outcome(t.video_id, t.stage, True, "failed", kind, message)
            self._break_lane(t.lane, message)
        elif kind == FailureKind.BAD_INPUT.value or t.kind_attempts[kind] >= self.retry.budget(kind):
            t.state = "failed"
            outcome = Outcome(t.video_id, t.stage, True, "failed", kind, message)
        else:
            t.state = "ready"
            t.not_before = now + (self.retry.delay(t.kind_attempts[kind]) if kind != FailureKind.OOM.value else 0.0)
            outcome = Outcome(t.video_id, t.stage, False, "retry", kind, message)
        if outcome.final:
            before = {s: x.state for s, x in v.tasks.items()}
            self._refresh_ready(v)
            skipped = tuple((v.video_id, s) for s, x in v.tasks.items() if x.state == "skipped" and before[s] != "skipped")
            outcome = Outcome(outcome.video_id, outcome.stage, True, "failed", kind, message, skipped)
        return outcome

    def _gpu_failed(self, g: int, message: str) -> None:
        self.gpu_failures[g] += 1
        if self.gpu_failures[g] >= self.retry.gpu_failure_limit and g not in self.gpu_out_of_service:
            healthy = [x for x in self.gpus if x not in self.gpu_out_of_service and x != g]
            if healthy:  # never retire the last GPU: failures then belong to the tasks, not the device
                self.gpu_out_of_service[g] = message
                self.counters["gpus_retired"] += 1

    def worker_died(self, worker_id: str, now: float) -> None:
        """An idle (or stopping) worker went away."""
        self.workers.pop(worker_id, None)

    def worker_stopped(self, worker_id: str, now: float) -> None:
        self.workers.pop(worker_id, None)

    def requeue_running(self) -> list[tuple[str, str]]:
        """Shutdown: every running task goes back to ready (not an attempt of its own)."""
        keys = []
        for v in self.videos.values():
            for t in v.tasks.values():
                if t.state == "running":
                    t.state = "ready"
                    t.attempts = max(0, t.attempts - 1)
                    keys.append(t.key)
        return keys

    # ------------------------------------------------------------------ observability
    def snapshot(self, now: float) -> dict:
        per_stage: dict[str, Counter] = defaultdict(Counter)
        for v in self.videos.values():
            for t in v.tasks.values():
                per_stage[t.stage][t.state] += 1
        gpus = []
        for g, spec in self.gpus.items():
            gpus.append({"index": g, "name": spec.name, "capacity_mb": spec.capacity_mb,
                         "predicted_mb": round(self.gpu_usage(g), 1),
                         "workers": sorted(w.id for w in self.workers.values() if w.gpu == g),
                         "out_of_service": self.gpu_out_of_service.get(g)})
        lanes = {}
        for name in self.lanes:
            ws = [w for w in self.workers.values() if w.lane == name]
            lanes[name] = {"workers": len(ws), "busy": sum(w.state == "busy" for w in ws),
                           "starting": sum(w.state == "starting" for w in ws), "broken": self.lane_broken.get(name)}
        return {"stages": {s: dict(c) for s, c in per_stage.items()}, "gpus": gpus, "lanes": lanes,
                "in_flight": self.in_flight(), "counters": dict(self.counters)}
