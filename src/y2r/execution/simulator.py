"""A discrete-event simulation that drives the real ``Scheduler`` in simulated time.

The scheduler is the product's own state machine (no copy of its logic); this module plays the
executor: it starts and stops simulated workers, runs simulated tasks and reports events back, with
a model of the machine that is deliberately harsher than the scheduler's view of it:

- **Compute saturation** (processor sharing): a worker alone uses a fraction ``demand`` of its GPU's
  compute (``1 / demand`` workers saturate it). When the busy workers on a GPU demand ``D > 1`` in
  total, each progresses at ``1 / D`` of its solo speed -- so more workers stop paying beyond
  saturation, and lanes sharing a GPU slow each other down.
- **True memory differs from the model**: a task's true peak is the profile's base plus its growth
  with frames x pixels times a per-(video, stage) log-normal error. The scheduler only sees the
  nominal profile as its seed and measured peaks afterwards, so early packing under-predicts and
  real OOMs happen: when an allocation would exceed a GPU's capacity, the allocating task (or the
  loading worker) fails with ``oom`` exactly as a CUDA allocation would.
- Injected failures: worker crashes (the worker dies), hangs (no progress until the scheduler's
  per-task timeout kills it), and a faulty GPU on which most tasks crash.

``Simulation.run()`` returns the makespan, an ideal bound and counters. The **ideal bound** is the
largest of: total GPU compute (solo seconds x demand, summed over GPU tasks) / number of GPUs; for
each GPU stage, its compute / the GPU share it could use alone (memory-limited: ``floor((capacity -
margin) / mean peak)`` workers x demand, at most 1, summed over GPUs); total CPU work / CPU workers;
and the longest per-video chain of solo durations. Model loads, OOMs and queueing are all excluded,
so no schedule can beat it.
"""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from y2r.execution.memory_model import MemoryModel
from y2r.execution.scheduler import (
    CPU_LANE,
    Assign,
    GpuSpec,
    Lane,
    RetryPolicy,
    Scheduler,
    StartWorker,
    StopWorker,
    TimeoutPolicy,
)
from y2r.stages.base import STAGE_ORDER, MemoryProfile


class SimulationStuck(RuntimeError):
    """The scheduler stopped making progress with work left (a liveness bug)."""


@dataclass(frozen=True)
class StageProfile:
    """How one stage's backend behaves (seconds are solo seconds: alone on an idle GPU / core)."""

    stage: str
    gpu: bool
    s_per_frame: float
    load_s: float = 0.0
    base_mb: float = 0.0
    mb_per_mpix_frame: float = 0.0
    demand: float = 1.0  # fraction of a GPU's compute one worker uses alone
    mem_error: float = 0.15  # sigma of the log-normal error of the true growth vs the model
    growth_at: float = 0.2  # fraction of the task after which its growth is allocated

    @property
    def backend(self) -> str:
        return f"sim-{self.stage}"


# Emulated tool profiles (one H200-class GPU each; times are solo times at 512x384).
PROFILES: dict[str, StageProfile] = {
    "ingest": StageProfile("ingest", False, s_per_frame=0.02, load_s=1.0),
    # ViPE-like: ~13 GB after load, +1-4 GB growing with length (100-400 frames), ~45 s per video, 20 s load.
    "camera": StageProfile("camera", True, s_per_frame=0.18, load_s=20.0, base_mb=13_000, mb_per_mpix_frame=50.0,
                           demand=0.35),
    # TAPIP3D-like: ~8 GB after load, memory linear in T (features and point clouds of all frames stay on the GPU).
    "tracks": StageProfile("tracks", True, s_per_frame=0.10, load_s=15.0, base_mb=8_000, mb_per_mpix_frame=60.0,
                           demand=0.5),
    # WiLoR-like: ~4.5 GB (ViT-H + detector), per-frame crops, little growth, ~15 s per video.
    "hands": StageProfile("hands", True, s_per_frame=0.06, load_s=10.0, base_mb=4_500, mb_per_mpix_frame=5.0,
                          demand=0.25),
    "episode": StageProfile("episode", False, s_per_frame=0.01, load_s=1.0),
}


def parse_gpus(spec: str) -> list[float]:
    """'8x141' or '2x80,1x24' -> capacities in MB (GB = 1000 MB, as GPU vendors count)."""
    out: list[float] = []
    for part in spec.split(","):
        part = part.strip().lower()
        if not part:
            continue
        n, _, gb = part.partition("x")
        if not gb:
            n, gb = "1", n
        out += [float(gb) * 1000.0] * int(n)
    return out


@dataclass
class SimVideo:
    video_id: str
    frames: int
    pixels: int


@dataclass
class _Run:
    """A task running on a simulated worker."""

    worker_id: str
    video_id: str
    stage: str
    gpu: int | None
    solo_s: float
    demand: float
    growth_mb: float
    growth_at_s: float
    crash_at_s: float | None
    hang: bool
    started: float
    timeout_at: float
    done_s: float = 0.0  # solo seconds of progress
    grown: bool = False
    token: int = 0


@dataclass
class _SimWorker:
    worker_id: str
    lane: str
    stage: str | None
    gpu: int | None
    mem_mb: float = 0.0  # device memory it holds now
    loaded: bool = False


@dataclass
class SimResult:
    makespan_s: float
    ideal_s: float
    bounds: dict[str, float]
    ooms: int
    lost: int
    failed_tasks: int
    gpu_compute_busy: list[float]  # per GPU: time-average of min(1, demand of busy workers)
    gpu_occupied: list[float]  # per GPU: fraction of time at least one task ran there
    load_s_total: float
    worker_s_total: float
    counters: dict[str, int] = field(default_factory=dict)
    max_in_flight: int = 0
    events: int = 0

    @property
    def ideal_ratio(self) -> float:
        return self.ideal_s / self.makespan_s if self.makespan_s > 0 else 0.0


class Simulation:
    def __init__(self, gpus_mb: list[float], n_videos: int, *, seed: int = 0, cpu_workers: int | None = None,
                 profiles: dict[str, StageProfile] | None = None, margin_mb: float = 2048.0,
                 max_workers_per_gpu: int = 8, backlog: int = 8, max_in_flight: int | None = None,
                 frames: tuple[int, int] = (100, 400), pixels: int = 512 * 384,
                 crash_rate: float = 0.0, hang_rate: float = 0.0, faulty_gpu: int | None = None,
                 faulty_crash_rate: float = 0.7, seed_scale: float = 1.0,
                 retry: RetryPolicy | None = None, timeouts: TimeoutPolicy | None = None):
        self.rng = np.random.default_rng(seed)
        self.profiles = dict(profiles or PROFILES)
        self.gpus_mb = list(gpus_mb)
        self.margin_mb = margin_mb
        self.cpu_workers = cpu_workers or max(2, 4 * max(1, len(gpus_mb)))
        self.crash_rate = crash_rate
        self.hang_rate = hang_rate
        self.faulty_gpu = faulty_gpu
        self.faulty_crash_rate = faulty_crash_rate
        self.videos = [SimVideo(f"v{i:05d}", int(self.rng.integers(frames[0], frames[1] + 1)), pixels)
                       for i in range(n_videos)]
        # Per (video, stage): the true memory growth error and the failure draws, fixed up front so a
        # retry of the same task sees the same true memory (a long video is long every time).
        self._mem_err = {(v.video_id, s): float(self.rng.lognormal(0.0, self.profiles[s].mem_error))
                         for v in self.videos for s in STAGE_ORDER}
        lanes = {CPU_LANE: Lane(CPU_LANE, frozenset(STAGE_ORDER))}
        task_lanes: dict[tuple[str, str], str] = {}
        seeds: dict[tuple[str, str], MemoryProfile] = {}
        for s, p in self.profiles.items():
            if p.gpu:
                name = f"{s}/{p.backend}"
                lanes[name] = Lane(name, frozenset({s}), gpu=True, stage=s, backend=p.backend)
                task_lanes[(s, p.backend)] = name
                # The scheduler's seed is the nominal profile (optionally mis-scaled): never the truth.
                seeds[(s, p.backend)] = MemoryProfile(p.base_mb * seed_scale, p.mb_per_mpix_frame * seed_scale)
        self.sched = Scheduler(
            lanes=lanes, task_lanes=task_lanes,
            retry=retry or RetryPolicy({"error": 3, "oom": 4, "crash": 3, "hang": 2, "bad_input": 1, "user_error": 1},
                                       backoff_s=1.0, backoff_max_s=60.0),
            timeouts=timeouts or TimeoutPolicy(120.0, 2.0), cpu_workers=self.cpu_workers,
            gpus=[GpuSpec(i, "simulated", c) for i, c in enumerate(self.gpus_mb)], memory=MemoryModel(seeds),
            margin_mb=margin_mb, max_workers_per_gpu=max_workers_per_gpu, max_in_flight=max_in_flight,
            backlog=backlog)
        self.stage_backend = {s: (p.backend if p.gpu else "builtin") for s, p in self.profiles.items()}
        for v in self.videos:
            self.sched.add_video(v.video_id, self.stage_backend)
        self.by_id = {v.video_id: v for v in self.videos}
        # simulation state
        self.now = 0.0
        self._events: list = []
        self._seq = itertools.count()
        self._tokens = itertools.count(1)
        self.workers: dict[str, _SimWorker] = {}
        self.runs: dict[str, _Run] = {}
        self.ooms = 0
        self.load_s_total = 0.0
        self.worker_born: dict[str, float] = {}
        self.worker_s_total = 0.0
        self._compute_area = [0.0] * len(self.gpus_mb)
        self._occupied_area = [0.0] * len(self.gpus_mb)
        self.max_in_flight_seen = 0
        self.n_events = 0

    # ------------------------------------------------------------------ truth
    def solo_s(self, video_id: str, stage: str) -> float:
        v = self.by_id[video_id]
        return self.profiles[stage].s_per_frame * v.frames * (v.pixels / (512 * 384))

    def true_growth_mb(self, video_id: str, stage: str) -> float:
        v = self.by_id[video_id]
        p = self.profiles[stage]
        return p.mb_per_mpix_frame * v.frames * v.pixels / 1e6 * self._mem_err[(video_id, stage)]

    def gpu_mem(self, g: int) -> float:
        return sum(w.mem_mb for w in self.workers.values() if w.gpu == g)

    # ------------------------------------------------------------------ event plumbing
    def _at(self, t: float, kind: str, *args) -> None:
        heapq.heappush(self._events, (t, next(self._seq), kind, args))

    def _speed(self) -> dict[int, float]:
        demand = [0.0] * len(self.gpus_mb)
        for r in self.runs.values():
            if r.gpu is not None and not r.hang:
                demand[r.gpu] += r.demand
        return {g: 1.0 / max(1.0, d) for g, d in enumerate(demand)}

    def _next_milestone(self, r: _Run, speed: float) -> float:
        if r.hang:
            return r.timeout_at
        marks = [r.solo_s]
        if not r.grown:
            marks.append(r.growth_at_s)
        if r.crash_at_s is not None:
            marks.append(r.crash_at_s)
        nxt = min(m for m in marks if m >= r.done_s - 1e-12)
        return min(r.timeout_at, self.now + max(0.0, nxt - r.done_s) / speed)

    # ------------------------------------------------------------------ actions
    def _dispatch(self, a) -> None:
        s = self.sched
        if isinstance(a, StartWorker):
            lane = s.lanes[a.lane]
            stage = lane.stage
            w = _SimWorker(a.worker_id, a.lane, stage, a.gpu)
            self.workers[a.worker_id] = w
            self.worker_born[a.worker_id] = self.now
            if lane.gpu:
                p = self.profiles[stage]
                # The load allocates the model's weights: an OOM here is a failed start.
                if self.gpu_mem(a.gpu) + p.base_mb > self.gpus_mb[a.gpu]:
                    self._at(self.now + 0.3 * p.load_s, "start_oom", a.worker_id)
                    return
                w.mem_mb = p.base_mb
                self._at(self.now + p.load_s, "ready", a.worker_id, p.load_s)
            else:
                self._at(self.now + self.profiles["ingest"].load_s, "ready", a.worker_id, self.profiles["ingest"].load_s)
        elif isinstance(a, Assign):
            w = self.workers[a.worker_id]
            p = self.profiles[a.stage]
            solo = self.solo_s(a.video_id, a.stage)
            crash_p = self.crash_rate
            if w.gpu is not None and w.gpu == self.faulty_gpu:
                crash_p = max(crash_p, self.faulty_crash_rate)
            crash_at = float(self.rng.uniform(0.05, 0.95)) * solo if self.rng.random() < crash_p else None
            hang = bool(self.rng.random() < self.hang_rate)
            r = _Run(a.worker_id, a.video_id, a.stage, w.gpu, solo, p.demand if p.gpu else 0.0,
                     self.true_growth_mb(a.video_id, a.stage) if p.gpu else 0.0, p.growth_at * solo, crash_at, hang,
                     self.now, self.now + a.timeout_s, token=next(self._tokens))
            if not p.gpu:
                r.grown = True
            self.runs[a.worker_id] = r
        elif isinstance(a, StopWorker):
            self._at(self.now + 0.5, "stopped", a.worker_id)

    # ------------------------------------------------------------------ events
    def _finish_worker(self, wid: str) -> None:
        w = self.workers.pop(wid, None)
        if w is not None:
            self.worker_s_total += self.now - self.worker_born.pop(wid, self.now)

    def _handle(self, kind: str, args) -> None:
        s = self.sched
        if kind == "ready":
            wid, load_s = args
            if wid in self.workers and wid in s.workers:
                self.workers[wid].loaded = True
                self.load_s_total += load_s
                s.worker_ready(wid, self.now)
                s.worker_memory(wid, self.workers[wid].mem_mb)
        elif kind == "start_oom":
            (wid,) = args
            self.ooms += 1
            self._finish_worker(wid)
            if wid in s.workers:
                s.worker_start_failed(wid, "oom", "CUDA out of memory while loading the model", self.now)
        elif kind == "stopped":
            (wid,) = args
            self._finish_worker(wid)
            s.worker_stopped(wid, self.now)
        elif kind == "wake":
            pass

    def _task_milestones(self) -> None:
        s = self.sched
        for wid, r in list(self.runs.items()):
            w = self.workers[wid]
            if r.hang:
                if self.now >= r.timeout_at - 1e-9:
                    del self.runs[wid]
                    self._finish_worker(wid)
                    o = s.task_failed(wid, self.now, kind="hang", message="no result (request timeout)",
                                      worker_alive=False)
                    self._after_outcome(o)
                continue
            if r.crash_at_s is not None and r.done_s >= r.crash_at_s - 1e-9:
                del self.runs[wid]
                self._finish_worker(wid)
                o = s.task_failed(wid, self.now, kind="crash", message="worker died (SIGSEGV)", worker_alive=False)
                self._after_outcome(o)
                continue
            if not r.grown and r.done_s >= r.growth_at_s - 1e-9:
                r.grown = True
                if self.gpu_mem(r.gpu) + r.growth_mb > self.gpus_mb[r.gpu]:
                    del self.runs[wid]
                    self.ooms += 1
                    o = s.task_failed(wid, self.now, kind="oom", message="CUDA out of memory (simulated)",
                                      worker_alive=True, peak_mb=w.mem_mb)
                    self._after_outcome(o)
                    continue
                w.mem_mb += r.growth_mb
                s.worker_memory(wid, w.mem_mb)
            if r.done_s >= r.solo_s - 1e-9:
                del self.runs[wid]
                peak = w.mem_mb if r.gpu is not None else None
                if r.gpu is not None:
                    w.mem_mb -= r.growth_mb
                if r.stage == "ingest":  # as the driver does: ingest's metadata sizes the video
                    v = self.by_id[r.video_id]
                    s.set_video_size(r.video_id, v.frames, v.pixels)
                s.task_done(wid, self.now, peak_mb=peak)
                if r.gpu is not None:
                    s.worker_memory(wid, w.mem_mb)
            elif self.now >= r.timeout_at - 1e-9:
                del self.runs[wid]
                self._finish_worker(wid)
                o = s.task_failed(wid, self.now, kind="hang", message="no result (request timeout)", worker_alive=False)
                self._after_outcome(o)

    def _after_outcome(self, o) -> None:
        if not o.final:
            t = self.sched.task(o.video_id, o.stage)
            if t.not_before > self.now:
                self._at(t.not_before, "wake")

    # ------------------------------------------------------------------ main loop
    def run(self, max_sim_s: float = 1e7) -> SimResult:
        s = self.sched
        idle_rounds = 0
        while True:
            for a in s.next_actions(self.now):
                self._dispatch(a)
            s.drain_outcomes()
            self.max_in_flight_seen = max(self.max_in_flight_seen, s.in_flight())
            if s.finished() and not self.runs:
                break
            speed = self._speed()
            t_next = math.inf
            for r in self.runs.values():
                t_next = min(t_next, self._next_milestone(r, speed.get(r.gpu, 1.0) if r.gpu is not None else 1.0))
            if self._events:
                t_next = min(t_next, self._events[0][0])
            wake = s.next_wakeup(self.now)
            if wake is not None:
                t_next = min(t_next, wake)
            if t_next == math.inf:
                idle_rounds += 1
                if idle_rounds > 2:
                    raise SimulationStuck(f"no event at t={self.now:.1f} s with work left: {s.snapshot(self.now)}")
                continue
            idle_rounds = 0
            if t_next > max_sim_s:
                raise SimulationStuck(f"simulated time exceeded {max_sim_s} s")
            dt = max(0.0, t_next - self.now)
            if dt > 0:
                demand = [0.0] * len(self.gpus_mb)
                occupied = [False] * len(self.gpus_mb)
                for r in self.runs.values():
                    sp = speed.get(r.gpu, 1.0) if r.gpu is not None else 1.0
                    if not r.hang:
                        r.done_s += dt * sp
                    if r.gpu is not None and not r.hang:
                        demand[r.gpu] += r.demand
                        occupied[r.gpu] = True
                for g in range(len(self.gpus_mb)):
                    self._compute_area[g] += dt * min(1.0, demand[g])
                    self._occupied_area[g] += dt * occupied[g]
                s.tick(t_next, dt)
            self.now = t_next
            self.n_events += 1
            while self._events and self._events[0][0] <= self.now + 1e-12:
                _, _, kind, args = heapq.heappop(self._events)
                self._handle(kind, args)
            self._task_milestones()
        for wid in list(self.workers):
            self._finish_worker(wid)
        return self._result()

    # ------------------------------------------------------------------ results
    def ideal_bounds(self) -> dict[str, float]:
        n_gpu = max(1, len(self.gpus_mb))
        gpu_work: dict[str, float] = {}
        cpu_work = 0.0
        chain = 0.0
        for v in self.videos:
            d = {s: self.solo_s(v.video_id, s) for s in STAGE_ORDER}
            chain = max(chain, d["ingest"] + d["camera"] + max(d["tracks"], d["hands"]) + d["episode"])
            for s in STAGE_ORDER:
                p = self.profiles[s]
                if p.gpu:
                    gpu_work[s] = gpu_work.get(s, 0.0) + d[s] * p.demand
                else:
                    cpu_work += d[s]
        bounds = {"gpu_compute": sum(gpu_work.values()) / n_gpu, "cpu": cpu_work / self.cpu_workers, "chain": chain}
        for s, work in gpu_work.items():
            p = self.profiles[s]
            mean_peak = float(np.mean([p.base_mb + self.true_growth_mb(v.video_id, s) for v in self.videos]))
            share = 0.0
            for cap in self.gpus_mb:
                k = max(1, int((cap - self.margin_mb) // mean_peak))
                share += min(1.0, k * p.demand)
            bounds[f"{s}_memory"] = work / share
        return bounds

    def _result(self) -> SimResult:
        s = self.sched
        lost = sum(1 for v in s.videos.values() if v.tasks["episode"].state != "done")
        failed = sum(1 for v in s.videos.values() for t in v.tasks.values() if t.state == "failed")
        bounds = self.ideal_bounds()
        span = max(self.now, 1e-9)
        return SimResult(
            makespan_s=self.now, ideal_s=max(bounds.values()), bounds=bounds, ooms=self.ooms, lost=lost,
            failed_tasks=failed, gpu_compute_busy=[a / span for a in self._compute_area],
            gpu_occupied=[a / span for a in self._occupied_area], load_s_total=self.load_s_total,
            worker_s_total=self.worker_s_total, counters=dict(s.counters), max_in_flight=self.max_in_flight_seen,
            events=self.n_events)
