"""GPU benchmark on real GPUs: y2r's local executor against three ways people run such pipelines.

Three synthetic GPU stages with real allocations and real compute (``synthetic_backends.py``,
``device: cuda``), time scaled down 10x from the emulated tools:

=========  ========  =============================  ===========  =============  ============
stage      load      memory (base + growth)         solo/video   GPU fraction   emulates
=========  ========  =============================  ===========  =============  ============
camera     2.0 s     13 GB + 1-4 GB (length)        ~4.5 s       0.35           ViPE
tracks     1.5 s     9 GB + 1.5-6 GB (length)       ~2.5 s       0.5            TAPIP3D
hands      1.0 s     5 GB + 0.15-0.6 GB             ~1.5 s       0.25           WiLoR
=========  ========  =============================  ===========  =============  ============

(plus the CUDA context and torch import of every worker process, ~0.5 GB and a few seconds, which
are not scaled). "GPU fraction" is the share of a frame's time spent in GPU kernels when a worker
runs alone; the rest is host work, so several workers are needed to fill a GPU. Per-video memory
growth has a +-15% deterministic error around the linear model, so predictions are imperfect.

Contenders, each on the same pre-ingested videos (ingest runs once, before timing):

- ``y2r``: ``pipeline.run`` with the local executor (memory-aware packing, streaming, retries).
- ``a_one_per_gpu``: one worker per GPU, stage by stage (the SLURM-array habit).
- ``b_spawn_until_oom``: stage by stage; per stage, workers are spawned until one fails to load with
  an OOM, then that many run the stage (tasks that OOM at run time are re-queued).
- ``c_fractional``: Ray-Data-like fractional packing, 0.1 GPU per worker whatever its memory
  (10 workers per GPU), all stages streaming; free slots go to the stage with the longest queue
  (Ray Data's actor-pool autoscaling), an idle worker gives its slot back after 2 s; tasks that OOM
  are retried (Ray Data with retries on errors enabled; by default it would abort the run).

With two GPUs, baseline (a) runs on GPU 0 while y2r, (c) and (b) run one after another on GPU 1,
then y2r runs on both GPUs with twice the videos. ``--long N`` adds a y2r run of N videos on GPU 0. Writes ``results.json`` and ``results.md``.

    python benchmarks/gpu_bench.py --out /tmp/bench --videos 24
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from y2r import pipeline
from y2r.config import load_config
from y2r.errors import OutOfMemory, Y2RError
from y2r.execution.local import worker_argv
from y2r.ledger import Ledger
from y2r.tools.worker import LaunchSpec, WorkerProcess
from y2r.video import write_video

W, H, FPS = 128, 96, 10.0
STAGES = ("camera", "tracks", "hands")
PROFILE = {  # SyntheticBackendOptions per stage (time / 10; memory real)
    "camera": {"load_s": 2.0, "base_mb": 13000, "mb_per_mpix_frame": 813, "s_per_frame": 0.018, "gpu_fraction": 0.35},
    "tracks": {"load_s": 1.5, "base_mb": 9000, "mb_per_mpix_frame": 1220, "s_per_frame": 0.010, "gpu_fraction": 0.5},
    "hands": {"load_s": 1.0, "base_mb": 5000, "mb_per_mpix_frame": 120, "s_per_frame": 0.006, "gpu_fraction": 0.25},
}
MEM_NOISE = 0.15
# --gpu-share: scales every stage's GPU fraction (0.5 = tools whose kernels keep an idle H200 busy half
# as long per frame: host-bound pre/post-processing, or small-batch kernels that leave most SMs idle)
GPU_SHARE = {"scale": 1.0}
# --simulate: a rehearsal on a machine without a GPU (simulated GPUs, memory / SIM_SCALE, sleep compute)
SIM = {"on": False, "capacity_mb": 0.0}
SIM_SCALE = 100.0


def stage_sets(gpu_rate: float) -> list[str]:
    out = []
    for s, p in PROFILE.items():
        p = dict(p)
        p["gpu_fraction"] = round(p["gpu_fraction"] * GPU_SHARE["scale"], 4)
        if SIM["on"]:
            p["base_mb"] /= SIM_SCALE
            p["mb_per_mpix_frame"] /= SIM_SCALE
            out += [f"{s}.synthetic.gpu=true"]
        else:
            out += [f"{s}.synthetic.device=cuda", f"{s}.synthetic.gpu_rate={gpu_rate:.1f}"]
        out += [f"{s}.backend=synthetic", f"{s}.synthetic.mem_noise={MEM_NOISE}"]
        out += [f"{s}.synthetic.{k}={v}" for k, v in p.items()]
    return out


def gpu_sets(gpus: list[int]) -> list[str]:
    if SIM["on"]:
        return [f"execution.gpus.simulate={json.dumps([SIM['capacity_mb']] * (max(gpus) + 1))}",
                f"execution.gpus.margin_mb={2048 / SIM_SCALE}"]
    return [f"execution.gpus.devices={json.dumps(gpus)}"]


COMMON = [f"ingest.width={W}", f"ingest.height={H}", f"ingest.fps={FPS}", "ingest.max_frames=400",
          "episode.keep_intermediate=true"]


# ----------------------------------------------------------------------------- inputs
def make_videos(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """n small videos of 100-400 frames (10-40 s at 10 fps): work and memory grow with length."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        T = int(rng.integers(100, 401))
        base = rng.integers(0, 256, size=(H // 8, (W + 2 * T) // 8 + 2, 3), dtype=np.uint8)
        big = np.repeat(np.repeat(base, 8, 0), 8, 1)
        frames = np.stack([big[:H, 2 * t:2 * t + W] for t in range(T)])
        out.append(write_video(folder / f"vid{i:03d}.mp4", frames, FPS))
    return out


def prepare_ingest(videos: list[Path], prep: Path) -> None:
    """Ingest once (CPU), so every contender starts from the same decoded frames."""
    cfg = load_config(None, [*COMMON, "camera.backend=synthetic", "tracks.backend=synthetic",
                             "hands.backend=synthetic", "execution.workers=8"])
    pipeline.run(videos, prep, cfg)


def seed_out(prep: Path, out: Path, video_ids: list[str]) -> None:
    """A fresh output folder holding only the ingest artifacts (y2r resumes from them)."""
    shutil.rmtree(out, ignore_errors=True)
    for vid in video_ids:
        shutil.copytree(prep / "work" / vid / "ingest", out / "work" / vid / "ingest")


def calibrate(gpu: int) -> float:
    """bf16 4096^2 matmuls per second on an idle GPU (in a child process: no context stays here)."""
    if SIM["on"]:
        return 0.0
    code = ("import torch,time;m=torch.randn(4096,4096,device='cuda',dtype=torch.bfloat16)\n"
            "for _ in range(20): m@m\n"
            "torch.cuda.synchronize();t=time.perf_counter()\n"
            "for _ in range(200): m@m\n"
            "torch.cuda.synchronize();print(200/(time.perf_counter()-t))")
    r = subprocess.run([sys.executable, "-c", code], env={**os.environ, "CUDA_VISIBLE_DEVICES": str(gpu)},
                       capture_output=True, text=True, check=True)
    return float(r.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- measurement
class GpuMonitor:
    """Samples device memory and utilisation of some GPUs (NVML) every 0.25 s."""

    def __init__(self, gpus: list[int]):
        import pynvml

        self.peak = {g: 0.0 for g in gpus}
        self.util: dict[int, list[float]] = {g: [] for g in gpus}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)
        if SIM["on"]:
            self.handles = {}
            return
        pynvml.nvmlInit()
        self.nv = pynvml
        self.handles = {g: pynvml.nvmlDeviceGetHandleByIndex(g) for g in gpus}
        self.peak = {g: 0.0 for g in gpus}
        self.util: dict[int, list[float]] = {g: [] for g in gpus}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for g, h in self.handles.items():
                self.peak[g] = max(self.peak[g], self.nv.nvmlDeviceGetMemoryInfo(h).used / 2**20)
                self.util[g].append(float(self.nv.nvmlDeviceGetUtilizationRates(h).gpu))
            time.sleep(0.25)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


@dataclass
class Result:
    name: str
    gpus: list[int]
    videos: int
    wall_s: float = 0.0
    done_videos: int = 0
    ooms: int = 0
    workers_started: int = 0
    load_s: float = 0.0
    worker_s: float = 0.0
    peak_mem_mb: dict = field(default_factory=dict)
    mean_util: dict = field(default_factory=dict)
    notes: str = ""

    @property
    def throughput(self) -> float:
        return self.done_videos / self.wall_s if self.wall_s else 0.0


# ----------------------------------------------------------------------------- y2r
def run_y2r(name: str, prep: Path, root: Path, videos: list[Path], ids: list[str], gpus: list[int],
            gpu_rate: float) -> Result:
    out = root / name
    seed_out(prep, out, ids)
    cfg = load_config(None, [*COMMON, *stage_sets(gpu_rate), *gpu_sets(gpus),
                             "execution.workers=4", "execution.gpus.sample_interval_s=0.25"])
    res = Result(name, gpus, len(videos))
    with GpuMonitor(gpus) as mon:
        r = pipeline.run(videos, out, cfg)
    res.wall_s = r.report.elapsed_s
    with Ledger(out / "ledger.sqlite", readonly=True) as led:
        done = {t.video_id for t in led.tasks(state="done") if t.stage == "hands"} & \
               {t.video_id for t in led.tasks(state="done") if t.stage == "tracks"}
        res.done_videos = len(done)
        attempts = led.attempts()
        res.ooms = sum(1 for a in attempts if a["error_kind"] == "oom")
        stats = [w for w in led.worker_stats() if w["device"] is not None]
    res.ooms += sum(1 for w in stats if "oom" in (w["exit_reason"] or "") and "start failed" in (w["exit_reason"] or ""))
    res.workers_started = len(stats)
    res.load_s = sum(w["load_s"] or 0.0 for w in stats)
    res.worker_s = sum((w["stopped_utc"] or 0) - (w["started_utc"] or 0) for w in stats)
    res.peak_mem_mb = {g: round(v) for g, v in mon.peak.items()}
    res.mean_util = {g: round(float(np.mean(v)), 1) for g, v in mon.util.items() if v}
    res.notes = f"tasks done {r.report.done}, failed {r.report.failed}" + (" INTERRUPTED" if r.report.interrupted else "")
    lanes: dict[str, int] = {}
    for w in stats:
        lanes[w["lane"]] = lanes.get(w["lane"], 0) + 1
    res.notes += f"; workers per lane {lanes}"
    return res


# ----------------------------------------------------------------------------- baselines
class Harness:
    """Runs synthetic stages on worker processes without y2r's scheduler (for the baselines)."""

    def __init__(self, name: str, prep: Path, root: Path, ids: list[str], gpu: int, gpu_rate: float):
        self.out = root / name
        seed_out(prep, self.out, ids)
        self.ids = ids
        self.gpu = gpu
        self.cfg = load_config(None, [*COMMON, *stage_sets(gpu_rate)]).model_dump(mode="json")
        self.lock = threading.Lock()
        self.ooms = 0
        self.started = 0
        self.load_s = 0.0
        self.worker_s = 0.0
        self.n = 0
        self.done: dict[str, set[str]] = {s: set() for s in STAGES}

    def spawn(self, stage: str) -> WorkerProcess | None:
        """A loaded worker for ``stage``, or None if its load ran out of GPU memory."""
        with self.lock:
            self.n += 1
            wid = f"{stage}-{self.n}"
            self.started += 1
        env = {"CUDA_VISIBLE_DEVICES": str(self.gpu)}
        if SIM["on"]:
            from y2r.execution.simulated_gpus import SimulatedDevice  # noqa: PLC0415

            env = {"CUDA_VISIBLE_DEVICES": "", **SimulatedDevice(self.out / f"simgpu{self.gpu}.json", SIM["capacity_mb"],
                                                                 self.gpu).env()}
        spec = LaunchSpec(name=wid, argv=worker_argv(), env=env, startup_timeout_s=300, label="")
        w = WorkerProcess(spec, self.out / "logs" / f"{wid}.log")
        w.t0 = time.monotonic()
        try:
            w.start()
            w.call("load", {"config": self.cfg, "worker_id": wid, "log_dir": str(self.out / "logs"), "gpu": 0,
                            "threads": 1, "preload": [[stage, "synthetic"]]}, timeout_s=300)
        except Y2RError as e:
            self.retire(w, loaded=False)
            if isinstance(e, OutOfMemory):
                with self.lock:
                    self.ooms += 1
                return None
            raise
        with self.lock:
            self.load_s += time.monotonic() - w.t0
        return w

    def retire(self, w: WorkerProcess, loaded: bool = True) -> None:
        w.kill(grace_s=1.0)
        with self.lock:
            self.worker_s += time.monotonic() - w.t0

    def run(self, w: WorkerProcess, vid: str, stage: str, attempt: int) -> str:
        """'ok', 'oom' (the task is to be re-queued), or raises."""
        tmp = self.out / "work" / vid / f".tmp-{stage}-{attempt}"
        tmp.mkdir(parents=True, exist_ok=True)
        inputs = {"ingest": str(self.out / "work" / vid / "ingest")}
        if stage != "camera":
            inputs["camera"] = str(self.out / "work" / vid / "camera")
        try:
            w.call("run", {"video_id": vid, "stage": stage, "backend": "synthetic", "source_path": f"{vid}.mp4",
                           "inputs": inputs, "out_dir": str(tmp), "log_path": str(self.out / "logs" / f"{vid}.log"),
                           "attempt": attempt}, timeout_s=600)
        except OutOfMemory:
            shutil.rmtree(tmp, ignore_errors=True)
            with self.lock:
                self.ooms += 1
            return "oom"
        os.replace(tmp, self.out / "work" / vid / stage)
        with self.lock:
            self.done[stage].add(vid)
        return "ok"

    def result(self, name: str, wall: float, mon: GpuMonitor, notes: str) -> Result:
        r = Result(name, [self.gpu], len(self.ids), wall_s=wall,
                   done_videos=len(self.done["tracks"] & self.done["hands"]), ooms=self.ooms,
                   workers_started=self.started, load_s=self.load_s, worker_s=self.worker_s, notes=notes)
        r.peak_mem_mb = {self.gpu: round(mon.peak[self.gpu])}
        r.mean_util = {self.gpu: round(float(np.mean(mon.util[self.gpu])), 1)} if mon.util[self.gpu] else {}
        return r


DEADLINE_S = 240.0  # a baseline still running after this is stopped and scored on what it finished


def _drain(h: Harness, w: WorkerProcess, stage: str, q: queue.Queue, replace_on_oom: bool,
           deadline: float = float("inf")) -> None:
    """Run queued tasks of one stage on one worker until the queue is empty; retire the worker."""
    try:
        while time.monotonic() < deadline:
            try:
                vid, attempt = q.get_nowait()
            except queue.Empty:
                return
            try:
                if h.run(w, vid, stage, attempt) == "oom":
                    q.put((vid, attempt + 1))
                    if replace_on_oom:
                        h.retire(w)
                        w = None
                        while w is None:
                            w = h.spawn(stage)
                            if w is None:
                                time.sleep(0.5)
            except Y2RError:  # crashed, hung, or failed otherwise: retried on a fresh worker
                q.put((vid, attempt + 1))
                h.retire(w)
                w = h.spawn(stage)
                if w is None:
                    return
    finally:
        if w is not None:
            h.retire(w)


def baseline_a(prep: Path, root: Path, ids: list[str], gpu: int, gpu_rate: float) -> Result:
    h = Harness("a_one_per_gpu", prep, root, ids, gpu, gpu_rate)
    with GpuMonitor([gpu]) as mon:
        t0 = time.monotonic()
        for stage in STAGES:
            q: queue.Queue = queue.Queue()
            for vid in ids:
                q.put((vid, 1))
            _drain(h, h.spawn(stage), stage, q, replace_on_oom=True)
        wall = time.monotonic() - t0
    return h.result("a_one_per_gpu", wall, mon, "1 worker, stage by stage")


def baseline_b(prep: Path, root: Path, ids: list[str], gpu: int, gpu_rate: float, cap: int = 16) -> Result:
    """Per stage, the worker count is found once by spawning workers until loads OOM (not timed, as a
    user would find it by hand); then each stage runs with that many workers started together."""
    h = Harness("b_spawn_until_oom", prep, root, ids, gpu, gpu_rate)
    counts = {}
    for stage in STAGES:
        # spawn `cap` at once; those whose load ran out of memory tell how many fit
        probe: list = []
        ts = [threading.Thread(target=lambda st=stage: probe.append(h.spawn(st))) for _ in range(cap)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        loaded = [w for w in probe if w is not None]
        counts[stage] = len(loaded)
        for w in loaded:
            h.retire(w)
    h.ooms = h.started = 0
    h.load_s = h.worker_s = 0.0
    with GpuMonitor([gpu]) as mon:
        t0 = time.monotonic()
        for stage in STAGES:
            q: queue.Queue = queue.Queue()
            for vid in ids:
                q.put((vid, 1))

            def one(stage=stage, q=q) -> None:
                w = h.spawn(stage)
                while w is None:  # its load did not fit next to the others' this time: retry
                    time.sleep(0.5)
                    w = h.spawn(stage)
                _drain(h, w, stage, q, False, t0 + DEADLINE_S)

            threads = [threading.Thread(target=one) for _ in range(counts[stage])]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        wall = time.monotonic() - t0
    return h.result("b_spawn_until_oom", wall, mon, f"workers per stage {counts}")


def baseline_c(prep: Path, root: Path, ids: list[str], gpu: int, gpu_rate: float, slots: int = 10,
               idle_release_s: float = 2.0) -> Result:
    """Streaming, `slots` workers of 0.1 GPU each; free slots go to the stage with the longest queue."""
    h = Harness("c_fractional", prep, root, ids, gpu, gpu_rate)
    queues = {s: queue.Queue() for s in STAGES}
    for vid in ids:
        queues["camera"].put((vid, 1))
    lock = threading.Lock()
    active = {s: 0 for s in STAGES}
    finished = threading.Event()
    remaining = {s: len(ids) for s in STAGES}
    peak_workers = {s: 0 for s in STAGES}

    def worker_loop(stage: str) -> None:
        w = h.spawn(stage)
        try:
            if w is None:
                time.sleep(0.5)  # Ray retries the actor creation
                return
            idle_since = None
            while not finished.is_set():
                try:
                    vid, attempt = queues[stage].get(timeout=0.1)
                except queue.Empty:
                    idle_since = idle_since or time.monotonic()
                    with lock:
                        spare = active[stage] > 1  # an actor pool keeps min_size = 1
                    if spare and time.monotonic() - idle_since > idle_release_s:
                        return  # downscale: give the slot back
                    continue
                idle_since = None
                try:
                    outcome = h.run(w, vid, stage, attempt)
                except Y2RError:  # crashed, hung, or failed otherwise: the task is retried elsewhere
                    queues[stage].put((vid, attempt + 1))
                    return
                if outcome == "oom":
                    queues[stage].put((vid, attempt + 1))  # retried (the worker survives a CUDA OOM)
                    continue
                with lock:
                    remaining[stage] -= 1
                    if stage == "camera":
                        queues["tracks"].put((vid, 1))
                        queues["hands"].put((vid, 1))
                    if all(v == 0 for v in remaining.values()):
                        finished.set()
        finally:
            if w is not None:
                h.retire(w)
            with lock:
                active[stage] -= 1

    threads = []
    with GpuMonitor([gpu]) as mon:
        t0 = time.monotonic()
        with lock:  # every actor pool starts with min_size = 1
            for s in STAGES:
                active[s] += 1
                peak_workers[s] = 1
                threads.append(threading.Thread(target=worker_loop, args=(s,), daemon=True))
                threads[-1].start()
        while not finished.is_set():
            with lock:
                free = slots - sum(active.values())
                # Autoscaling: a free slot goes to the stage with the longest queue (at least one worker
                # per stage with queued work), as Ray Data's actor pools scale up on backlog.
                while free > 0:
                    backlog = {s: queues[s].qsize() - active[s] for s in STAGES if queues[s].qsize() > 0}
                    if not backlog:
                        break
                    s = max(backlog, key=lambda x: (active[x] == 0, backlog[x]))
                    if backlog[s] <= 0 and active[s] > 0:
                        break
                    active[s] += 1
                    peak_workers[s] = max(peak_workers[s], active[s])
                    free -= 1
                    t = threading.Thread(target=worker_loop, args=(s,), daemon=True)
                    t.start()
                    threads.append(t)
            time.sleep(0.1)
            if time.monotonic() - t0 > DEADLINE_S:
                finished.set()
        wall = time.monotonic() - t0
        for t in threads:
            t.join(timeout=60)
    return h.result("c_fractional", wall, mon, f"{slots} slots of 0.1 GPU; peak workers {peak_workers}")


# ----------------------------------------------------------------------------- main
def table(results: list[Result], ref: dict[str, Result]) -> str:
    lines = ["| run | GPUs | videos | wall s | videos/s | vs (a) | vs (c) | done | OOMs | workers | load % of worker time | peak MB | mean util % | notes |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        a, c = ref.get("a"), ref.get("c")
        va = f"{r.throughput / a.throughput:.2f}x" if a and a.throughput and len(r.gpus) == 1 else "-"
        vc = f"{r.throughput / c.throughput:.2f}x" if c and c.throughput and len(r.gpus) == 1 else "-"
        lp = 100 * r.load_s / r.worker_s if r.worker_s else 0.0
        lines.append(f"| {r.name} | {','.join(map(str, r.gpus))} | {r.videos} | {r.wall_s:.1f} | {r.throughput:.3f} | {va} | {vc} | "
                     f"{r.done_videos}/{r.videos} | {r.ooms} | {r.workers_started} | {lp:.1f} | "
                     f"{', '.join(str(v) for v in r.peak_mem_mb.values())} | {', '.join(str(v) for v in r.mean_util.values())} | {r.notes} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    global DEADLINE_S
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="folder for results.json / results.md")
    ap.add_argument("--work", default="/tmp/y2r_gpu_bench", help="scratch folder (videos, outputs)")
    ap.add_argument("--videos", type=int, default=24, help="videos per single-GPU run (2x for the two-GPU run)")
    ap.add_argument("--only", default="y2r,a,b,c,y2r2", help="which runs: y2r,a,b,c,y2r2")
    ap.add_argument("--videos2", type=int, default=None, help="videos for the two-GPU y2r run (default 2 x --videos)")
    ap.add_argument("--long", type=int, default=0, metavar="N",
                    help="with two GPUs: also run y2r on N videos on GPU 0 (model loading over a longer run), "
                         "alongside the runs on GPU 1")
    ap.add_argument("--deadline", type=float, default=240.0, help="baselines (b), (c) stop after this many seconds")
    ap.add_argument("--gpu-share", type=float, default=1.0,
                    help="scale every stage's GPU fraction (default 1: 0.35 / 0.5 / 0.25); 0.5 = lighter kernels")
    ap.add_argument("--simulate", type=str, default=None, metavar="NxMB",
                    help="rehearse without a GPU: N simulated GPUs of MB each (memory profiles / 100)")
    a = ap.parse_args(argv)
    out, work = Path(a.out), Path(a.work)
    out.mkdir(parents=True, exist_ok=True)
    if a.simulate:
        n, _, mb = a.simulate.partition("x")
        SIM.update(on=True, capacity_mb=float(mb))
        n_gpus, names = int(n), [f"simulated {mb} MB"] * int(n)
    else:
        import pynvml

        pynvml.nvmlInit()
        n_gpus = pynvml.nvmlDeviceGetCount()
        names = [str(pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i))) for i in range(n_gpus)]
    only = set(a.only.split(","))
    t_all = time.monotonic()
    DEADLINE_S = a.deadline
    GPU_SHARE["scale"] = a.gpu_share
    n2 = max(a.videos, (a.videos2 or 2 * a.videos) if n_gpus >= 2 and "y2r2" in only else a.videos, a.long)
    videos = make_videos(work / "videos", n2)
    prep = work / "prep"
    prepare_ingest(videos, prep)
    ids = [v.stem for v in videos]
    rates = {g: calibrate(g) for g in range(min(n_gpus, 2))}
    rate = float(np.mean(list(rates.values())))
    print(f"GPUs: {n_gpus} x {names[0]}; matmul rate {rates}; prep {time.monotonic() - t_all:.0f} s", flush=True)
    one = videos[:a.videos]
    one_ids = ids[:a.videos]
    results: list[Result] = []
    ref: dict[str, Result] = {}
    lock = threading.Lock()

    def write() -> str:
        fr = ", ".join(f"{s} {PROFILE[s]['gpu_fraction'] * a.gpu_share:.3g}" for s in STAGES)
        md = (f"Machine: {n_gpus} x {names[0]}; bf16 4096^2 matmul rate {rates} /s; {a.videos} videos per single-GPU "
              f"run (100-400 frames at {W}x{H}); GPU fractions {fr}; bench time so far {time.monotonic() - t_all:.0f} s\n\n"
              + table(results, ref) + "\n")
        (out / "results.md").write_text(md)
        (out / "results.json").write_text(json.dumps({"gpus": names, "rates": rates, "gpu_share": a.gpu_share,
                                                      "results": [asdict(r) for r in results]}, indent=1))
        return md

    def record(key: str, r: Result) -> None:
        with lock:
            results.append(r)
            ref[key] = r
            print(json.dumps(asdict(r)), flush=True)
            write()  # partial results survive a time limit

    def run_one(key: str, g: int) -> None:
        if key == "y2r":
            record("y2r", run_y2r("y2r", prep, work / "runs", one, one_ids, [g], rate))
        elif key == "a":
            record("a", baseline_a(prep, work / "runs", one_ids, g, rate))
        elif key == "b":
            record("b", baseline_b(prep, work / "runs", one_ids, g, rate))
        elif key == "c":
            record("c", baseline_c(prep, work / "runs", one_ids, g, rate))
        elif key == "long":
            record("long", run_y2r("y2r_long", prep, work / "runs", videos[:a.long], ids[:a.long], [g], rate))

    order = [k for k in ("y2r", "c", "b", "a") if k in only]
    if n_gpus >= 2:
        # GPUs are independent: the long stage-by-stage baselines run on GPU 0 while y2r and the
        # fractional baseline run on GPU 1 (32 CPU cores serve both).
        on0 = [k for k in ("a", "b") if k in only] + (["long"] if a.long else [])
        on1 = [k for k in order if k not in on0]
        t0 = threading.Thread(target=lambda: [run_one(k, 0) for k in on0])
        t0.start()
        for k in on1:
            run_one(k, 1)
        t0.join()
        if "y2r2" in only:
            m = a.videos2 or 2 * a.videos
            record("y2r2", run_y2r("y2r_2gpu", prep, work / "runs", videos[:m], ids[:m], [0, 1], rate))
    else:
        for k in order:
            run_one(k, 0)
    print(write())
    return 0


if __name__ == "__main__":
    sys.exit(main())
