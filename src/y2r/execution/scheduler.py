"""The scheduler: an executor-agnostic, I/O-free state machine.

It knows tasks (video, stage), lanes (kinds of workers), workers and GPUs, and answers one question
-- "what should happen now?" -- with actions (start a worker, assign a task, stop a worker). An
executor (local processes, Ray actors, or the discrete-event simulator in ``simulator.py``) carries
the actions out and reports events back. Time is always passed in, so the same code runs in real
time and in simulated time.

Policies, in one place:

- **Streaming**: a video moves to its next stage as soon as the previous one finishes; ready tasks
  of later stages go first, and new videos are admitted only while the number of videos in flight
  is bounded -- by ``max_in_flight`` if given, else by the worker slots (CPU workers plus every GPU
  worker the placement targets) plus ``backlog`` -- which bounds the intermediate artifacts on disk.
- **Placement**: CPU tasks go to the shared ``cpu`` lane (``cpu_workers`` slots). A GPU lane's task
  goes to a worker whose GPU can hold the task's *predicted* peak next to what everything else on
  that GPU holds (each worker at the larger of its prediction and its last measurement), plus a
  margin (``MemoryModel``).
- **Lanes share GPUs by target**: every lane with work left gets a seat (room for one worker) if
  it fits -- lanes with ready work first, then those already running, later stages first -- and
  the rest of the memory is water-filled in proportion to each lane's measured task duration, so
  that all stages of the stream advance at the same rate (``_compute_targets``). A lane never runs more workers on a GPU than its target;
  when a lane below its target has work and no room, idle workers of lanes above their target on
  that GPU are stopped (busy workers are never preempted).
- **Worker counts from throughput**: a lane's target on a GPU is also capped where measured
  throughput stopped rising with the number of concurrently busy workers of that lane (compute
  saturates before memory on big GPUs); memory freed that way goes to the other lanes.
- **Failures**: each kind has its own attempt budget (``RetryPolicy``); an OOM raises the memory
  model's prediction for that work size (so the retry goes where there is more room) and, the
  second time, runs the task alone on a GPU (other work is drained from it first); a worker that
  crashed or hung is replaced; a GPU where several *different* tasks in a row crash or hang is
  taken out of service (a poison video that crashes everywhere does not retire GPUs); after the
  budget the task is dead-lettered (failed) and that video's later stages are skipped -- the other
  videos go on.
- **No starvation**: a GPU task that smaller tasks overtook three times (they fit where it did
  not) for longer than ``starvation_s`` gets a GPU reserved for it -- nothing new starts there
  until it fits; at most a quarter of the GPUs are held that way at once.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from typing import Literal

from y2r.errors import FailureKind
from y2r.execution.memory_model import MemoryModel
from y2r.stages.base import STAGE_ORDER, STAGES

CPU_LANE = "cpu"
TERMINAL = ("done", "failed", "skipped")
ACTIVE = ("waiting", "ready", "running")


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
    capacity_mb: float  # memory y2r may use on it (free memory at start, NVML; or a simulated size)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: dict[str, int]
    backoff_s: float = 1.0
    backoff_max_s: float = 60.0
    gpu_failure_limit: int = 3  # different tasks in a row that crashed/hung on one GPU retire it
    lane_start_failure_limit: int = 3  # worker starts that failed (not OOM) before a lane is given up
    lane_start_oom_limit: int = 6  # worker starts that ran out of GPU memory before a lane is given up

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
    busy_integral: float = 0.0  # integral of concurrently-busy workers of its lane on its GPU
    blocked_since: float | None = None  # first time a smaller task took the GPU it did not fit on
    passed_over: int = 0  # times that happened

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
        return all(t.state in TERMINAL for t in self.tasks.values())

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
    idle_since: float = 0.0
    stages_loaded: set = field(default_factory=set)
    measured_mb: float | None = None  # last sampled device memory of its process tree


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
                 margin_mb: float = 2048.0, max_workers_per_gpu: int = 8, max_in_flight: int | None = None,
                 backlog: int = 8, throughput_gain: float = 0.10, stages: tuple[str, ...] = STAGE_ORDER,
                 starvation_s: float = 120.0):
        self.lanes = lanes
        self.task_lanes = task_lanes  # (stage, backend) -> lane name
        self.retry = retry
        self.timeouts = timeouts
        self.cpu_workers = max(1, cpu_workers)
        self.gpus = {g.index: g for g in (gpus or [])}
        self.gpu_out_of_service: dict[int, str] = {}
        self.memory = memory or MemoryModel()
        self.margin_mb = margin_mb
        self.max_workers_per_gpu = max_workers_per_gpu
        self.max_in_flight = None if max_in_flight is None else max(1, max_in_flight)
        self.backlog = max(0, backlog)
        self.throughput_gain = throughput_gain
        self.stages = stages
        self.starvation_s = starvation_s
        self.videos: dict[str, Video] = {}
        self.workers: dict[str, Worker] = {}
        self._ids = itertools.count(1)
        self._seq = itertools.count()
        self.lane_broken: dict[str, str] = {}
        # Incremental bookkeeping, so one decision costs O(videos in flight), not O(all videos).
        self._fresh: dict[str, Video] = {}  # not terminal, nothing attempted yet (admission order)
        self._active: dict[str, Video] = {}  # not terminal, started
        self._remaining: Counter = Counter()  # lane -> tasks waiting/ready/running
        # Throughput per (lane, gpu) as a function of the lane's concurrency there: work/s per task.
        self._rate: dict[tuple[str, int], dict[int, deque]] = defaultdict(lambda: defaultdict(lambda: deque(maxlen=8)))
        self._duration: dict[str, float] = {}  # lane -> running mean task duration (s)
        self._work_sum = 0.0
        self._work_n = 0
        self.gpu_failures: Counter = Counter()  # consecutive distinct failing tasks per GPU
        self._gpu_fail_keys: dict[int, set] = defaultdict(set)
        self._reserved: dict[int, tuple[str, str]] = {}  # GPU -> task it is drained / kept for
        self._targets: dict[int, dict[str, int]] = {}
        self.completed_work: Counter = Counter()  # lane -> frames processed
        self.counters: Counter = Counter()
        self.pending_outcomes: list[Outcome] = []
        self._queued: list[Action] = []
        # Per-decision caches (valid inside one next_actions call only).
        self._pred_cache: dict[tuple[str, str], float] | None = None
        self._counts: Counter | None = None

    # ------------------------------------------------------------------ building
    def add_video(self, video_id: str, stages: dict[str, str], *, done: set[str] = frozenset(),
                  frames: int = 0, pixels: int = 0) -> None:
        """Register a video: ``stages`` maps each stage to run to its backend; ``done`` are already valid."""
        v = Video(video_id, next(self._seq))
        for stage in self.stages:
            if stage not in stages:
                continue
            backend = stages[stage]
            lane = self.task_lanes.get((stage, backend), CPU_LANE)
            t = Task(video_id, stage, backend, lane, v.seq)
            t.state = "done" if stage in done else "waiting"
            if t.state == "waiting":
                self._remaining[lane] += 1
            v.tasks[stage] = t
        self.videos[video_id] = v
        if frames:
            self.set_video_size(video_id, frames, pixels)
        if not v.terminal():
            (self._active if v.started() else self._fresh)[video_id] = v
        self._refresh_ready(v)

    def set_video_size(self, video_id: str, frames: int, pixels: int) -> None:
        v = self.videos[video_id]
        if v.frames and v.pixels:
            self._work_sum -= v.frames * v.pixels / 1e6
            self._work_n -= 1
        v.frames, v.pixels = int(frames), int(pixels)
        if v.frames and v.pixels:
            self._work_sum += v.frames * v.pixels / 1e6
            self._work_n += 1

    def _set_state(self, t: Task, state: str) -> None:
        if t.state in ACTIVE and state not in ACTIVE:
            self._remaining[t.lane] -= 1
        elif t.state not in ACTIVE and state in ACTIVE:
            self._remaining[t.lane] += 1
        t.state = state

    def _settle(self, v: Video) -> None:
        """Keep the fresh/active indexes right after a video's tasks changed."""
        if v.terminal():
            self._fresh.pop(v.video_id, None)
            self._active.pop(v.video_id, None)
        elif v.video_id in self._fresh and v.started():
            del self._fresh[v.video_id]
            self._active[v.video_id] = v

    def _refresh_ready(self, v: Video) -> None:
        for t in v.tasks.values():
            if t.state != "waiting":
                continue
            deps = [d for d in STAGES[t.stage].inputs if d in v.tasks]
            if all(v.tasks[d].state == "done" for d in deps):
                self._set_state(t, "ready")
            elif any(v.tasks[d].state in ("failed", "skipped") for d in deps):
                self._set_state(t, "skipped")
        self._settle(v)

    # ------------------------------------------------------------------ queries
    def finished(self) -> bool:
        return not self._fresh and not self._active

    def in_flight(self) -> int:
        return len(self._active)

    def admission_limit(self) -> int:
        if self.max_in_flight is not None:
            return self.max_in_flight
        gpu_slots = sum(sum(t.values()) for t in self._targets.values())
        return self.cpu_workers + gpu_slots + self.backlog

    def task(self, video_id: str, stage: str) -> Task:
        return self.videos[video_id].tasks[stage]

    def _work(self, t: Task) -> float:
        v = self.videos[t.video_id]
        return max(1.0, v.frames * max(v.pixels, 1) / 1e6)

    def _predict(self, t: Task) -> float:
        cache = self._pred_cache
        if cache is not None and t.key in cache:
            return cache[t.key]
        v = self.videos[t.video_id]
        p = self.memory.predict(t.stage, t.backend, v.frames, v.pixels)
        if cache is not None:
            cache[t.key] = p
        return p

    def _typical_mb(self, lane: Lane) -> float:
        """Predicted peak of an average video seen so far (the unit of a lane's share of a GPU)."""
        work = self._work_sum / self._work_n if self._work_n else 0.0
        return self.memory.predict_work(lane.stage, lane.backend, work)

    def _contribution(self, w: Worker) -> float:
        lane = self.lanes[w.lane]
        if w.state == "busy" and w.task is not None:
            pred = self.task(*w.task).predicted_mb
        else:
            pred = self.memory.base(lane.stage, lane.backend)
        return max(pred, w.measured_mb or 0.0)

    def gpu_usage(self, g: int, exclude: str | None = None) -> float:
        """Memory in use on GPU ``g``: busy workers at their task's predicted peak, others at their base
        (each at least what was last measured for it)."""
        return sum(self._contribution(w) for w in self.workers.values() if w.gpu == g and w.id != exclude)

    def gpu_measured(self, g: int) -> float | None:
        vals = [w.measured_mb for w in self.workers.values() if w.gpu == g and w.measured_mb is not None]
        return sum(vals) if vals else None

    def _fits(self, g: int, extra_mb: float, exclude: str | None = None) -> bool:
        return self.gpu_usage(g, exclude) + extra_mb + self.margin_mb <= self.gpus[g].capacity_mb

    def _busy_on_gpu(self, g: int, exclude: str | None = None) -> bool:
        return any(w.gpu == g and w.state == "busy" and w.id != exclude for w in self.workers.values())

    def _unplaceable(self, need: float) -> bool:
        """No usable GPU could hold this even alone: it may still run alone (and OOM within budget)."""
        usable = [self.gpus[g].capacity_mb for g in self.gpus if g not in self.gpu_out_of_service]
        return not usable or need + self.margin_mb > max(usable)

    # ------------------------------------------------------------------ targets
    def _lane_weight(self, lane: str) -> float:
        known = [d for d in self._duration.values() if d > 0]
        return self._duration.get(lane) or (sum(known) / len(known) if known else 1.0)

    def _compute_targets(self, ready_lanes: set[str]) -> dict[int, dict[str, int]]:
        """How many workers of each GPU lane every GPU should hold (see the module docstring).

        Greedy over all GPUs at once: first one seat per lane with work left (ready lanes first,
        later stages first), then water-filling -- the lane with the fewest workers per second of its
        mean task duration gets the next worker -- each placed where a worker of that lane already
        runs (so targets are stable and nothing restarts needlessly), else on the GPU with the most
        room. Memory is counted at each lane's typical predicted peak.
        """
        usable = [g for g in self.gpus if g not in self.gpu_out_of_service]
        gpu_lanes = [ln for ln in self.lanes.values()
                     if ln.gpu and ln.name not in self.lane_broken and self._remaining[ln.name] > 0]
        current: Counter = Counter()
        for w in self.workers.values():
            if w.gpu is not None and w.state != "stopping":
                current[(w.lane, w.gpu)] += 1
        running = {lane for lane, _ in current}
        # Seats: lanes with ready work first; among those, lanes that already have workers (when not
        # all fit, a lane keeps the GPU until its queue is empty instead of swapping every task);
        # then later stages first.
        order = sorted(gpu_lanes, key=lambda ln: (ln.name not in ready_lanes, ln.name not in running,
                                                  -self._stage_index(ln.stage)))
        mem = {ln.name: self._typical_mb(ln) for ln in order}
        weight = {ln.name: self._lane_weight(ln.name) for ln in order}
        room = {g: self.gpus[g].capacity_mb - self.margin_mb for g in usable}
        count = {g: 0 for g in usable}
        targets: dict[int, dict[str, int]] = {g: {ln.name: 0 for ln in order} for g in usable}
        total = {ln.name: 0 for ln in order}
        have = {ln.name: sum(current.get((ln.name, g), 0) for g in usable) for ln in order}
        caps = {(ln.name, g): self._lane_gpu_cap(ln, g) for ln in order for g in usable}

        def place(ln: Lane) -> bool:
            best, choice = None, None
            for g in usable:
                if count[g] >= self.max_workers_per_gpu or room[g] < mem[ln.name]:
                    continue
                if targets[g][ln.name] >= caps[(ln.name, g)]:
                    continue
                sticky = targets[g][ln.name] < current.get((ln.name, g), 0)
                key = (sticky, room[g], -g)
                if best is None or key > best:
                    best, choice = key, g
            if choice is None:
                return False
            targets[choice][ln.name] += 1
            room[choice] -= mem[ln.name]
            count[choice] += 1
            total[ln.name] += 1
            return True

        for ln in order:  # a seat for every lane with work, as far as they fit
            place(ln)
        cands = [ln for ln in order if total[ln.name] >= 1]
        while cands:
            # Hysteresis: a lane keeps the workers it has unless it is 25% better off than another,
            # so noise in measured durations does not stop and reload models back and forth.
            ln = min(cands, key=lambda x: ((total[x.name] + 1) / weight[x.name] * (0.75 if total[x.name] < have[x.name] else 1.0),
                                           order.index(x)))
            if not place(ln):
                cands.remove(ln)
        # A lane with ready work but no seat (small GPUs: not every model fits at once) waits: the
        # lanes seated before it run out of ready work -- admission control bounds the videos in
        # flight, so they do -- and then it is seated first and they give way.
        return targets

    def _stage_index(self, stage: str | None) -> int:
        return self.stages.index(stage) if stage in self.stages else -1

    def _lane_gpu_cap(self, lane: Lane, g: int) -> int:
        """How many workers of this lane the GPU should hold, from measured throughput."""
        cap = min(self.max_workers_per_gpu, lane.max_workers or self.max_workers_per_gpu)
        rates = self._rate.get((lane.name, g))
        if not rates:
            return cap
        measured = {k: sum(v) / len(v) for k, v in rates.items() if len(v) >= 2}
        if not measured:
            return cap
        # Throughput at concurrency k = k * per-task rate. Walk up from the lowest measured level
        # while it still rises by >= gain per added worker.
        k = min(measured)
        while k + 1 in measured:
            if (k + 1) * measured[k + 1] < (1 + self.throughput_gain) * k * measured[k]:
                # The (k+1)-th concurrent worker did not pay: cap at k (running workers finish their
                # tasks; memory goes to other lanes).
                return min(cap, max(1, k))
            k += 1
        # Concurrency k is measured and paid off: allow one more to probe k + 1.
        return min(cap, max(1, k + 1))

    # ------------------------------------------------------------------ actions
    def next_actions(self, now: float) -> list[Action]:
        self._pred_cache = {}
        self._counts = Counter((w.lane, w.gpu) for w in self.workers.values() if w.state != "stopping")
        try:
            return self._next_actions(now)
        finally:
            self._pred_cache = None
            self._counts = None

    def _next_actions(self, now: float) -> list[Action]:
        actions: list[Action] = self._queued
        self._queued = []
        ready_by_lane: dict[str, list[Task]] = defaultdict(list)
        for v in self._active.values():
            for t in v.tasks.values():
                if t.state == "ready" and t.not_before <= now:
                    ready_by_lane[t.lane].append(t)
        # Admission control: a new video enters the pipeline only while few are in flight.
        room = self.admission_limit() - len(self._active)
        if room > 0:
            for v in self._fresh.values():
                if room <= 0:
                    break
                ts = [t for t in v.tasks.values() if t.state == "ready" and t.not_before <= now]
                for t in ts:
                    ready_by_lane[t.lane].append(t)
                room -= 1 if ts else 0
        for lane_name in ready_by_lane:
            # Later stages first (drain videos through the pipeline), then admission order.
            ready_by_lane[lane_name].sort(key=lambda t: (-self._stage_index(t.stage), t.seq))

        ready_lanes = {name for name, ts in ready_by_lane.items() if ts and name not in self.lane_broken}
        if self.gpus:
            self._targets = self._compute_targets(ready_lanes)
        gpu_order = sorted((name for name in ready_lanes if self.lanes[name].gpu),
                           key=lambda n: -self._stage_index(self.lanes[n].stage))
        actions += self._rebalance(ready_by_lane, now)
        for lane_name in gpu_order:
            actions += self._place_gpu(self.lanes[lane_name], ready_by_lane[lane_name], now)
        for lane_name in ready_lanes:
            if not self.lanes[lane_name].gpu:
                actions += self._place_cpu(self.lanes[lane_name], ready_by_lane[lane_name], now)
        actions += self._retire_idle(now)
        return actions

    def _assign(self, w: Worker, t: Task, now: float) -> Assign:
        self._set_state(t, "running")
        t.attempts += 1
        t.worker = w.id
        t.started = now
        t.busy_integral = 0.0
        t.blocked_since = None
        t.passed_over = 0
        t.predicted_mb = self._predict(t) if self.lanes[w.lane].gpu else 0.0
        w.state = "busy"
        w.task = t.key
        w.busy_since = now
        v = self.videos[t.video_id]
        self._settle(v)
        if w.gpu is not None and self._reserved.get(w.gpu) == t.key and not t.exclusive:
            del self._reserved[w.gpu]
        return Assign(w.id, t.video_id, t.stage, t.backend, t.attempts, self.timeouts.for_frames(v.frames), t.predicted_mb)

    def _new_worker(self, lane: Lane, gpu: int | None, now: float) -> StartWorker:
        wid = f"{lane.name.replace('/', '-')}-{next(self._ids)}" + (f"@gpu{gpu}" if gpu is not None else "")
        self.workers[wid] = Worker(wid, lane.name, gpu, started_at=now)
        self.counters["workers_started"] += 1
        if self._counts is not None:
            self._counts[(lane.name, gpu)] += 1
        return StartWorker(wid, lane.name, gpu)

    def _stop(self, w: Worker, reason: str) -> StopWorker:
        if self._counts is not None and w.state != "stopping":
            self._counts[(w.lane, w.gpu)] -= 1
        w.state = "stopping"
        self.counters["workers_stopped"] += 1
        return StopWorker(w.id, reason)

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

    def _lane_count(self, lane: str, g: int) -> int:
        if self._counts is not None:
            return self._counts[(lane, g)]
        return sum(1 for w in self.workers.values() if w.lane == lane and w.gpu == g and w.state != "stopping")

    def _rebalance(self, ready_by_lane: dict[str, list[Task]], now: float) -> list[Action]:
        """Stop idle workers above their lane's target on GPUs where a lane below target has work."""
        out: list[Action] = []
        if not self.gpus:
            return out
        hungry = []
        for name, ready in ready_by_lane.items():
            lane = self.lanes[name]
            if not lane.gpu or name in self.lane_broken:
                continue
            waiting_for = sum(1 for w in self.workers.values() if w.lane == name and w.state in ("idle", "starting"))
            if len(ready) > waiting_for:
                hungry.append(name)
        for g, target in self._targets.items():
            short = [n for n in hungry if self._lane_count(n, g) < target.get(n, 0)]
            if not short:
                continue
            reserved_lane = self.task(*self._reserved[g]).lane if g in self._reserved else None
            for w in list(self.workers.values()):
                if w.gpu != g or w.state != "idle" or w.lane == reserved_lane:
                    continue  # a GPU kept for a task keeps that task's worker, whatever the targets
                if self._lane_count(w.lane, g) > target.get(w.lane, 0):
                    out.append(self._stop(w, f"GPU {g} rebalanced to {', '.join(short)}"))
        return out

    def _place_gpu(self, lane: Lane, ready: list[Task], now: float) -> list[Action]:
        out: list[Action] = []
        usable = [g for g in self.gpus if g not in self.gpu_out_of_service]
        if not usable:
            return out
        pending = list(ready)
        max_cap = max(self.gpus[g].capacity_mb for g in usable)
        # 0) a task that must run alone, cannot fit any GPU next to others, or kept being passed over
        #    for smaller ones gets a GPU reserved: nothing new starts there until it runs. Starving
        #    tasks hold at most a quarter of the GPUs at a time (draining a GPU costs throughput).
        starving_slots = max(1, len(self.gpus) // 4) - sum(
            1 for k in self._reserved.values() if not self.task(*k).exclusive)
        for t in pending:
            if t.key in self._reserved.values():
                continue
            starving = (t.passed_over >= 3 and t.blocked_since is not None
                        and now - t.blocked_since > self.starvation_s)
            if t.exclusive or self._predict(t) + self.margin_mb > max_cap:
                self._reserve_gpu(t, lane)
            elif starving and starving_slots > 0:
                self._reserve_gpu(t, lane)
                starving_slots -= 1
        # 1) idle workers of this lane take the first task that fits next to their GPU's load.
        idle = sorted((w for w in self.workers.values() if w.lane == lane.name and w.state == "idle"),
                      key=lambda w: (w.gpu, w.id))
        for w in idle:
            g = w.gpu
            if g in self.gpu_out_of_service:
                continue
            skipped: list[Task] = []
            for t in pending:
                if not self._may_run_on(t, g, w.id):
                    continue
                need = self._predict(t)
                if self._fits(g, need, exclude=w.id) or self._run_anyway(t, g, need, keep=w.id):
                    out.append(self._assign(w, t, now))
                    pending.remove(t)
                    for x in skipped:  # a later, smaller task took the place these did not fit in
                        x.passed_over += 1
                        if x.blocked_since is None:
                            x.blocked_since = now
                    break
                skipped.append(t)
                if self._reserved.get(g) == t.key:
                    # Its reserved GPU: idle workers of other lanes there hold what it needs.
                    out += self._clear_for(t, g, need, keep=w.id)
                    break
                if not self._busy_on_gpu(g, w.id):
                    # Nothing runs on this GPU, so nothing will free memory by itself: idle workers
                    # of other lanes give way (those above their target first).
                    stops = self._clear_for(t, g, need, keep=w.id)
                    if stops:
                        out += stops
                        break
        # 2) start workers for what is left, up to the lane's target per GPU, where memory allows.
        starting = sum(1 for w in self.workers.values() if w.lane == lane.name and w.state == "starting")
        unserved = pending[starting:]
        open_slots = sum(max(0, self._targets.get(g, {}).get(lane.name, 0) - self._lane_count(lane.name, g))
                         for g in usable)
        tried = 0
        for t in unserved:
            reserved_at = next((g for g, k in self._reserved.items() if k == t.key), None)
            if open_slots <= 0 and reserved_at is None:
                continue
            if tried >= open_slots + 4 and reserved_at is None:
                break  # bounded work per decision; the rest waits for the next round
            tried += 1
            need = self._predict(t)
            choice, best = None, None
            for g in usable:
                if not self._may_run_on(t, g, None):
                    continue
                have = self._lane_count(lane.name, g)
                target = self._targets.get(g, {}).get(lane.name, 0)
                if have >= target and not (reserved_at == g and have == 0):
                    continue
                total_on_g = sum(1 for w in self.workers.values() if w.gpu == g and w.state != "stopping")
                if total_on_g >= self.max_workers_per_gpu:
                    continue
                if not (self._fits(g, need) or self._run_anyway(t, g, need, keep=None)):
                    if reserved_at == g:
                        out += self._clear_for(t, g, need, keep=None)
                    continue
                # Most missing workers first, then most room.
                key = (target - have, self.gpus[g].capacity_mb - self.gpu_usage(g))
                if best is None or key > best:
                    best, choice = key, g
            if choice is None:
                continue
            out.append(self._new_worker(lane, choice, now))
            open_slots -= 1
        return out

    def _may_run_on(self, t: Task, g: int, worker_id: str | None) -> bool:
        """Reservations: a reserved GPU takes only its task; an exclusive task only its reserved GPU,
        and only once nothing else is busy there."""
        r = self._reserved.get(g)
        if r is not None and r != t.key:
            return False
        if t.exclusive and (r != t.key or self._busy_on_gpu(g, worker_id)):
            return False
        return True

    def _run_anyway(self, t: Task, g: int, need: float, keep: str | None) -> bool:
        """A task reserved on ``g`` that cannot fit even on an empty GPU runs when it has the GPU to
        itself: the prediction may be pessimistic, and the OOM budget bounds the attempts."""
        if self._reserved.get(g) != t.key:
            return False
        others = [w for w in self.workers.values() if w.gpu == g and w.id != keep]
        return not others and need + self.margin_mb > self.gpus[g].capacity_mb

    def _reserve_gpu(self, t: Task, lane: Lane) -> None:
        free = [g for g in self.gpus if g not in self.gpu_out_of_service and g not in self._reserved]
        if not free:
            return

        # Prefer a GPU where this lane already has a worker (no load), then the largest, then least busy.
        def key(g: int):
            has = any(w.lane == lane.name and w.gpu == g and w.state != "stopping" for w in self.workers.values())
            busy = sum(1 for w in self.workers.values() if w.gpu == g and w.state == "busy")
            return (not has, -self.gpus[g].capacity_mb, busy)

        g = min(free, key=key)
        self._reserved[g] = t.key
        self.counters["gpu_reservations"] += 1

    def _clear_for(self, t: Task, g: int, need: float, keep: str | None) -> list[Action]:
        """Stop idle workers of other lanes on GPU ``g`` until ``need`` fits there (once nothing is busy)."""
        out: list[Action] = []
        if self._busy_on_gpu(g, keep):
            return out
        idle = [w for w in self.workers.values() if w.gpu == g and w.state == "idle" and w.id != keep]
        if not idle:
            return out
        # Can it fit at all once every idle worker there is gone? If not, stop nobody.
        if not self._fits(g, need - sum(self._contribution(w) for w in idle), exclude=keep) and \
                self._reserved.get(g) != t.key:
            return out
        target = self._targets.get(g, {})
        freed = 0.0
        for w in sorted(idle, key=lambda w: (self._lane_count(w.lane, g) <= target.get(w.lane, 0),
                                             -self._contribution(w))):
            if self._fits(g, need - freed, exclude=keep):
                break
            freed += self._contribution(w)
            out.append(self._stop(w, f"making room for {t.video_id}/{t.stage}"))
        return out

    def next_wakeup(self, now: float) -> float | None:
        """The earliest future time at which a decision may change without any event (a retry's
        backoff ends, a blocked task becomes starving). Event-driven executors sleep until then."""
        times = []
        for v in self._active.values():
            for t in v.tasks.values():
                if t.state != "ready":
                    continue
                if t.not_before > now:
                    times.append(t.not_before)
                if t.blocked_since is not None and t.passed_over >= 3 and t.key not in self._reserved.values():
                    deadline = t.blocked_since + self.starvation_s + 1e-6
                    if deadline > now:  # a passed deadline was acted on already; events decide the rest
                        times.append(deadline)
        return min(times) if times else None

    def _retire_idle(self, now: float) -> list[Action]:
        """Stop idle workers whose lane has no work left at all (frees GPU memory and processes)."""
        out: list[Action] = []
        for w in self.workers.values():
            if w.state != "idle":
                continue
            if self._remaining[w.lane] == 0:
                out.append(self._stop(w, "no work left for its lane"))
            elif w.gpu is not None and w.gpu in self.gpu_out_of_service:
                out.append(self._stop(w, f"GPU {w.gpu} out of service"))
        return out

    # ------------------------------------------------------------------ events
    def worker_ready(self, worker_id: str, now: float) -> None:
        w = self.workers[worker_id]
        w.state = "idle"
        w.ready_at = now
        w.idle_since = now

    def worker_memory(self, worker_id: str, mb: float | None) -> None:
        """The executor's latest measurement of a worker's device memory (process tree)."""
        w = self.workers.get(worker_id)
        if w is not None and mb is not None:
            w.measured_mb = float(mb)

    def worker_start_failed(self, worker_id: str, kind: str, message: str, now: float) -> None:
        """A worker could not start (tool missing, load failed, no memory). Repeats break the lane."""
        w = self.workers.pop(worker_id)
        self.counters["worker_start_failures"] += 1
        lane = self.lanes[w.lane]
        if kind == FailureKind.OOM.value and lane.gpu:
            # Its load did not fit next to what is there. With no measured peak yet the seed's base is
            # a guess: raise it. With measurements, the neighbours were over their predictions (their
            # measured memory corrects the placement), so the model stays.
            if not self.memory.observed.get((lane.stage, lane.backend)):
                self.memory.observe_oom(lane.stage, lane.backend, 0, 0, self.memory.base(lane.stage, lane.backend))
            self.counters[f"startoom:{w.lane}"] += 1
            if self.counters[f"startoom:{w.lane}"] >= self.retry.lane_start_oom_limit:
                self._break_lane(w.lane, f"cannot load on any GPU: {message}")
            return
        self.counters[f"startfail:{w.lane}"] += 1
        if (kind in (FailureKind.USER_ERROR.value, FailureKind.BAD_INPUT.value)
                or self.counters[f"startfail:{w.lane}"] >= self.retry.lane_start_failure_limit):
            self._break_lane(w.lane, message)
        if w.gpu is not None:
            self._gpu_failed(w.gpu, ("start", worker_id), message)

    def _break_lane(self, lane: str, message: str) -> list[Outcome]:
        self.lane_broken[lane] = message
        outs = []
        for v in list(self._fresh.values()) + list(self._active.values()):
            changed = False
            for t in v.tasks.values():
                if t.lane == lane and t.state in ("waiting", "ready"):
                    self._set_state(t, "failed")
                    t.last_error = (FailureKind.USER_ERROR.value, message)
                    outs.append(Outcome(v.video_id, t.stage, True, "failed", FailureKind.USER_ERROR.value, message))
                    changed = True
            if changed:
                self._refresh_ready(v)
        self._reserved = {g: k for g, k in self._reserved.items() if self.task(*k).state in ("ready", "running")}
        self.pending_outcomes.extend(outs)
        return outs

    def drain_outcomes(self) -> list[Outcome]:
        """Outcomes decided without a task event (e.g. tasks failed because their lane broke)."""
        outs, self.pending_outcomes = self.pending_outcomes, []
        return outs

    def _release_reservation(self, t: Task) -> None:
        for g, k in list(self._reserved.items()):
            if k == t.key:
                del self._reserved[g]

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
            self._gpu_fail_keys[w.gpu].clear()
            prev = self._duration.get(w.lane)
            # A slow average (tasks vary with video length): the lanes' shares should not jitter.
            self._duration[w.lane] = dur if prev is None else 0.95 * prev + 0.05 * dur
        self._release_reservation(t)
        self._set_state(t, "done")
        t.worker = None
        w.state = "idle"
        w.task = None
        w.idle_since = now
        w.measured_mb = None  # its task's memory is released; the next sample says what stays
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
        busy: Counter = Counter()
        for w in self.workers.values():
            if w.state == "busy" and w.gpu is not None:
                busy[(w.lane, w.gpu)] += 1
        if not busy:
            return
        for w in self.workers.values():
            if w.state == "busy" and w.gpu is not None and w.task is not None:
                self.task(*w.task).busy_integral += dt * busy[(w.lane, w.gpu)]

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
        w.measured_mb = None
        self.counters[f"failed:{kind}"] += 1
        gpu_oom = kind == FailureKind.OOM.value and lane.gpu
        if worker_alive and not gpu_oom:
            w.state = "idle"
            w.idle_since = now
        elif worker_alive:
            # After a CUDA OOM the worker's allocator/context may be unusable: replace it.
            self._queued.append(self._stop(w, "CUDA out of memory: replacing the worker"))
        else:
            # Dead, or hung and killed by the executor: forget it (a new one starts on demand).
            self.workers.pop(worker_id, None)
        if gpu_oom:
            self.memory.observe_oom(t.stage, t.backend, v.frames, v.pixels, max(t.predicted_mb, peak_mb or 0.0))
            if t.kind_attempts[kind] >= 2:
                t.exclusive = True
        if w.gpu is not None and kind in (FailureKind.CRASH.value, FailureKind.HANG.value):
            self._gpu_failed(w.gpu, t.key, message)
        if not t.exclusive:
            self._release_reservation(t)
        if kind == FailureKind.USER_ERROR.value:
            self._set_state(t, "failed")
            outcome = Outcome(t.video_id, t.stage, True, "failed", kind, message)
            self._break_lane(t.lane, message)
        elif kind == FailureKind.BAD_INPUT.value or t.kind_attempts[kind] >= self.retry.budget(kind):
            self._set_state(t, "failed")
            self._release_reservation(t)
            outcome = Outcome(t.video_id, t.stage, True, "failed", kind, message)
        else:
            self._set_state(t, "ready")
            t.not_before = now + (self.retry.delay(t.kind_attempts[kind]) if kind != FailureKind.OOM.value else 0.0)
            outcome = Outcome(t.video_id, t.stage, False, "retry", kind, message)
        if outcome.final:
            before = {s: x.state for s, x in v.tasks.items()}
            self._refresh_ready(v)
            skipped = tuple((v.video_id, s) for s, x in v.tasks.items() if x.state == "skipped" and before[s] != "skipped")
            outcome = Outcome(outcome.video_id, outcome.stage, True, "failed", kind, message, skipped)
        else:
            self._settle(v)
        return outcome

    def _gpu_failed(self, g: int, key, message: str) -> None:
        """Count a crash/hang/start failure on GPU ``g``; different tasks failing in a row retire it."""
        self._gpu_fail_keys[g].add(key)
        self.gpu_failures[g] = len(self._gpu_fail_keys[g])
        if self.gpu_failures[g] >= self.retry.gpu_failure_limit and g not in self.gpu_out_of_service:
            healthy = [x for x in self.gpus if x not in self.gpu_out_of_service and x != g]
            if healthy:  # never retire the last GPU: failures then belong to the tasks, not the device
                self.gpu_out_of_service[g] = message
                self.counters["gpus_retired"] += 1
                self._reserved.pop(g, None)

    def worker_died(self, worker_id: str, now: float) -> None:
        """An idle (or stopping) worker went away."""
        w = self.workers.pop(worker_id, None)
        if w is not None and w.state == "idle" and w.gpu is not None:
            self._gpu_failed(w.gpu, ("idle", worker_id), f"idle worker {worker_id} died")

    def worker_stopped(self, worker_id: str, now: float) -> None:
        self.workers.pop(worker_id, None)

    def requeue_running(self) -> list[tuple[str, str]]:
        """Shutdown: every running task goes back to ready (not an attempt of its own)."""
        keys = []
        for v in list(self._active.values()):
            for t in v.tasks.values():
                if t.state == "running":
                    self._set_state(t, "ready")
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
            measured = self.gpu_measured(g)
            gpus.append({"index": g, "name": spec.name, "capacity_mb": spec.capacity_mb,
                         "predicted_mb": round(self.gpu_usage(g), 1),
                         "measured_mb": None if measured is None else round(measured, 1),
                         "workers": sorted(w.id for w in self.workers.values() if w.gpu == g),
                         "busy": sum(1 for w in self.workers.values() if w.gpu == g and w.state == "busy"),
                         "targets": dict(self._targets.get(g, {})),
                         "reserved_for": "/".join(self._reserved[g]) if g in self._reserved else None,
                         "out_of_service": self.gpu_out_of_service.get(g)})
        lanes = {}
        for name, lane in self.lanes.items():
            ws = [w for w in self.workers.values() if w.lane == name]
            lanes[name] = {"workers": len(ws), "busy": sum(w.state == "busy" for w in ws),
                           "starting": sum(w.state == "starting" for w in ws), "broken": self.lane_broken.get(name)}
            if lane.gpu:
                lanes[name]["memory_model"] = self.memory.describe(lane.stage, lane.backend)
                if name in self._duration:
                    lanes[name]["mean_task_s"] = round(self._duration[name], 2)
        return {"stages": {s: dict(c) for s, c in per_stage.items()}, "gpus": gpus, "lanes": lanes,
                "in_flight": self.in_flight(), "admission_limit": self.admission_limit(),
                "counters": dict(self.counters)}
