"""Executor benchmark: the local executor against the Ray executor on the same synthetic workload.

Runs the real pipeline (``y2r.pipeline.run``: ingest decodes real H.264, synthetic camera / tracks /
hands backends emulate the tools, episodes are real HDF5) once per executor and scenario, and
measures from inside the run:

- **throughput**: tasks/s and videos/s over the whole run (worker starts included);
- **round trip per task**: from the driver handing a task to the transport until the result is
  back, minus the backend's own time measured in the worker (``process_s``) -- what the executor
  adds per task (IPC, for Ray also the actor call and result polling);
- **dispatch gap**: from a worker's result reaching the driver to its next task being handed out
  (median; the driver loop, the scheduler, the ledger write and the artifact commit);
- **scheduler decision time**: time in ``Scheduler.next_actions`` per task, wall clock and the driver
  thread's own CPU time (the difference is the driver waiting for the GIL or a core), and how many
  decisions were taken per task (the driver decides after every batch of events, progress included);
- **worker start**: from the driver's StartWorker to the worker being ready (process spawn, for Ray
  also actor creation, and backend loading).

Scenarios: ``overhead`` (backends do no work: everything measured is executor cost), ``compute``
(each stage computes a few ms per frame, like a scaled-down ViPE / TAPIP3D / WiLoR), and ``gpu``
(``--gpus``: the synthetic backends allocate real GPU memory and run real matmuls with torch, so
placement, memory-aware packing and Ray's fractional GPUs are exercised on real devices).

Examples::

    python benchmarks/executor_bench.py                          # CPU, both executors, both scenarios
    python benchmarks/executor_bench.py --gpus --out results/    # on a machine with NVIDIA GPUs
    python benchmarks/executor_bench.py pack .devpkgs            # wheels for a Python 3.12 machine without PyPI

``pack`` builds ``DIR/y2r-deps-cp312.tar.xz``: the third-party packages y2r and Ray need beyond a
PyTorch image (Ray without its Java jar, RLlib, Data, Serve, Tune, Train and dashboard UI, binaries
stripped of symbols), unpacked on the target with ``tar -xJf ... -C /tmp/site`` and used through
``PYTHONPATH=/tmp/site:$PWD/src`` (y2r from the checkout, no install).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SCENARIOS = {
    # name: per-stage synthetic options (s_per_frame) -- frames and sizes come from the command line
    "overhead": {"camera": 0.0, "tracks": 0.0, "hands": 0.0},
    "compute": {"camera": 0.010, "tracks": 0.006, "hands": 0.004},
}
# GPU scenario, ViPE / TAPIP3D / WiLoR-like memory (MB) and time scaled down ~10x (synthetic_backends.py).
# The GPU work per frame is fixed by a reference rate (bf16 4096^2 matmuls/s of an idle H200, measured
# 5775-5997 in docs/benchmarks.md) rather than timed at each worker's load, where it would depend on what
# the other workers were doing at that moment; both executors then get exactly the same work.
GPU_RATE = 5900.0
GPU_PROFILES = {
    "camera": {"base_mb": 13000, "mb_per_mpix_frame": 60, "s_per_frame": 0.015, "load_s": 2.0, "gpu_fraction": 0.35},
    "tracks": {"base_mb": 6000, "mb_per_mpix_frame": 30, "s_per_frame": 0.010, "load_s": 1.0, "gpu_fraction": 0.5},
    "hands": {"base_mb": 3000, "mb_per_mpix_frame": 10, "s_per_frame": 0.005, "load_s": 1.0, "gpu_fraction": 0.25},
}


# ----------------------------------------------------------------------------- inputs
def make_videos(folder: Path, n: int, frames: int, width: int, height: int) -> list[Path]:
    """Textured clips translating 2 px per frame (cheap to encode, real H.264 to decode)."""
    from y2r.video import write_video

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        rng = np.random.default_rng(i)
        big = rng.integers(0, 256, size=(height // 4 + 2, (width + 2 * frames) // 4 + 2, 3), dtype=np.uint8)
        big = np.repeat(np.repeat(big, 4, 0), 4, 1)
        clip = np.stack([big[:height, 2 * t:2 * t + width] for t in range(frames)])
        out.append(write_video(folder / f"clip{i:03d}.mp4", clip, 10.0))
    return out


# ----------------------------------------------------------------------------- instrumentation
class Probe:
    """Timestamps taken at the transport boundary and in the scheduler, for one run."""

    def __init__(self) -> None:
        self.tasks: list[dict] = []
        self.starts: list[float] = []
        self.gaps: list[float] = []
        self.decide_s = 0.0
        self.decide_cpu_s = 0.0
        self.decide_calls = 0
        self._last_result: dict[str, float] = {}
        self.first_dispatch: float | None = None
        self.transport = None

    def wrap_transport(self, cls):
        from y2r.execution.driver import TaskResult, WorkerReady

        probe = self

        class Recording(cls):
            def __init__(self, *a, **k):
                super().__init__(*a, **k)
                probe.transport = self

            def start_worker(self, action, load_params, post):
                t0 = time.perf_counter()

                def post2(ev):
                    if isinstance(ev, WorkerReady):
                        probe.starts.append(time.perf_counter() - t0)
                    post(ev)

                super().start_worker(action, load_params, post2)

            def run_task(self, action, params, post):
                t0 = time.perf_counter()
                if probe.first_dispatch is None:
                    probe.first_dispatch = t0
                last = probe._last_result.pop(action.worker_id, None)
                if last is not None:
                    probe.gaps.append(t0 - last)

                def post2(ev):
                    if isinstance(ev, TaskResult):
                        now = time.perf_counter()
                        probe._last_result[action.worker_id] = now
                        probe.tasks.append({"stage": ev.stage, "ok": ev.ok, "rtt_s": now - t0,
                                            "process_s": (ev.result or {}).get("process_s")})
                    post(ev)

                super().run_task(action, params, post2)

        return Recording

    def wrap_decide(self, fn):
        probe = self

        def timed(sched, now):
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                return fn(sched, now)
            finally:
                probe.decide_s += time.perf_counter() - t0
                probe.decide_cpu_s += time.thread_time() - c0
                probe.decide_calls += 1

        return timed


@contextlib.contextmanager
def instrumented(executor: str, probe: Probe):
    from y2r.execution import local, ray_executor
    from y2r.execution.scheduler import Scheduler

    module, name = (ray_executor, "RayTransport") if executor == "ray" else (local, "LocalTransport")
    original, decide = getattr(module, name), Scheduler.next_actions
    setattr(module, name, probe.wrap_transport(original))
    Scheduler.next_actions = probe.wrap_decide(decide)
    try:
        yield
    finally:
        setattr(module, name, original)
        Scheduler.next_actions = decide


def _pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    return float(np.percentile(np.asarray(xs), q))


# ----------------------------------------------------------------------------- one run
def config_sets(scenario: str, a) -> list[str]:
    sets = ["camera.backend=synthetic", "tracks.backend=synthetic", "hands.backend=synthetic",
            f"ingest.width={a.width}", f"ingest.height={a.height}", f"execution.workers={a.workers}",
            "episode.compression=none"]
    if scenario == "gpu":
        for stage, prof in GPU_PROFILES.items():
            sets += [f"{stage}.synthetic.device=cuda", f"{stage}.synthetic.gpu_rate={GPU_RATE}"]
            sets += [f"{stage}.synthetic.{k}={v}" for k, v in prof.items()]
    else:
        sets += [f"{stage}.synthetic.s_per_frame={s}" for stage, s in SCENARIOS[scenario].items()]
    return sets


def run_once(executor: str, scenario: str, videos: list[Path], out: Path, a) -> dict:
    from y2r import pipeline
    from y2r.config import load_config
    from y2r.console import RunDisplay

    cfg = load_config(None, [*config_sets(scenario, a), f"execution.executor={executor}"])
    probe = Probe()
    t0 = time.perf_counter()
    with instrumented(executor, probe):
        result = pipeline.run(videos, out, cfg, display=RunDisplay(), argv=["executor_bench"])
    wall = time.perf_counter() - t0
    rep = result.report
    ok = [t for t in probe.tasks if t["ok"] and t["process_s"] is not None]
    overhead = [t["rtt_s"] - t["process_s"] for t in ok]
    n = max(1, rep.done)
    return {
        "executor": executor, "scenario": scenario, "wall_s": round(wall, 2), "tasks_done": rep.done,
        "failed": rep.failed, "tasks_per_s": round(rep.done / wall, 2), "videos_per_s": round(result.videos / wall, 3),
        "startup_s": round((probe.first_dispatch or t0) - t0, 2),
        "steady_tasks_per_s": round(rep.done / max(1e-6, wall - ((probe.first_dispatch or t0) - t0)), 2),
        "worker_start_s_median": _round(_pct(probe.starts, 50)), "workers_started": len(probe.starts),
        "roundtrip_overhead_ms_median": _round(_pct(overhead, 50), 1e3),
        "roundtrip_overhead_ms_p90": _round(_pct(overhead, 90), 1e3),
        "dispatch_gap_ms_median": _round(_pct(probe.gaps, 50), 1e3),
        "scheduler_ms_per_task": round(1e3 * probe.decide_s / n, 3),
        "scheduler_cpu_ms_per_task": round(1e3 * probe.decide_cpu_s / n, 3),
        "decisions_per_task": round(probe.decide_calls / n, 1),
        "backend_s_total": round(sum(t["process_s"] for t in ok), 2),
        "gpu_workers": gpu_workers(probe.transport),
    }


def gpu_workers(transport) -> dict:
    """Per GPU lane: how many workers ran and the Ray GPU shares they asked for (Ray runs)."""
    out: dict[str, dict] = {}
    for p in getattr(transport, "placements", {}).values():
        if p.get("bundle") is None:
            continue
        d = out.setdefault(p["lane"], {"workers": 0, "num_gpus": set(), "capped": 0})
        d["workers"] += 1
        d["num_gpus"].add(p.get("num_gpus"))
        d["capped"] += bool(p.get("capped"))
    return {k: {**v, "num_gpus": sorted(v["num_gpus"])} for k, v in out.items()}


def _round(x: float | None, scale: float = 1.0, nd: int = 2):
    return None if x is None else round(x * scale, nd)


# ----------------------------------------------------------------------------- main
def machine() -> dict:
    info = {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}
    try:
        info["cpu_affinity"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    from y2r.execution.gpus import inventory

    info["gpus"] = [f"{g.name} {g.total_mb:.0f} MB" for g in inventory("all")]
    try:
        import ray

        info["ray"] = ray.__version__
    except ImportError:
        info["ray"] = None
    return info


def medians(runs: list[dict]) -> list[dict]:
    """Per (scenario, executor): the median of every numeric field over the repeats."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in runs:
        groups.setdefault((r["scenario"], r["executor"]), []).append(r)
    out = []
    for (scenario, ex), rs in groups.items():
        row = {"scenario": scenario, "executor": ex, "repeats": len(rs)}
        for k, v in rs[0].items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "repeat":
                xs = [r[k] for r in rs if r.get(k) is not None]
                m = float(np.median(xs)) if xs else None
                row[k] = None if m is None else int(m) if all(isinstance(x, int) for x in xs) else round(m, 3)
        out.append(row)
    return out


def table(rows: list[dict]) -> str:
    cols = [("scenario", "scenario"), ("executor", "executor"), ("repeats", "runs"), ("wall_s", "wall s"), ("tasks_per_s", "tasks/s"),
            ("videos_per_s", "videos/s"), ("steady_tasks_per_s", "tasks/s after 1st"), ("startup_s", "to 1st task s"),
            ("worker_start_s_median", "worker start s"),
            ("roundtrip_overhead_ms_median", "round trip ms (p50)"), ("roundtrip_overhead_ms_p90", "(p90)"),
            ("dispatch_gap_ms_median", "dispatch gap ms"), ("scheduler_ms_per_task", "scheduler ms/task"),
            ("scheduler_cpu_ms_per_task", "(CPU)"), ("decisions_per_task", "decisions/task"),
            ("failed", "failed")]
    lines = ["| " + " | ".join(h for _, h in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join("" if r.get(k) is None else str(r.get(k)) for k, _ in cols) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "pack":
        return pack(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--executors", default="local,ray", help="comma list of local, ray")
    ap.add_argument("--scenarios", default=None, help="comma list of overhead, compute (default: both; gpu with --gpus)")
    ap.add_argument("--gpus", action="store_true", help="GPU scenario: synthetic backends on CUDA (needs torch + GPUs)")
    ap.add_argument("--videos", type=int, default=None, help="videos per run (default 16 on CPU, 48 with --gpus)")
    ap.add_argument("--frames", type=int, default=None, help="frames per video (default 24 on CPU, 96 with --gpus)")
    ap.add_argument("--width", type=int, default=None)
    ap.add_argument("--height", type=int, default=None)
    ap.add_argument("--workers", type=int, default=None, help="CPU workers (default 2 on CPU, cores with --gpus)")
    ap.add_argument("--repeats", type=int, default=None, help="runs per executor and scenario (default 3 on CPU, 1 with --gpus)")
    ap.add_argument("--out", type=Path, default=None, help="write results.json and results.md here")
    ap.add_argument("--keep", action="store_true", help="keep the run folders (in --out, or a temp dir)")
    a = ap.parse_args(argv)
    a.repeats = a.repeats or (1 if a.gpus else 3)
    a.videos = a.videos or (48 if a.gpus else 16)
    a.frames = a.frames or (96 if a.gpus else 24)
    a.width = a.width or (256 if a.gpus else 64)
    a.height = a.height or (192 if a.gpus else 48)
    a.workers = a.workers or (max(2, (os.cpu_count() or 4) // 2) if a.gpus else 2)
    scenarios = (a.scenarios or ("gpu" if a.gpus else "overhead,compute")).split(",")
    executors = a.executors.split(",")
    work = Path(tempfile.mkdtemp(prefix="y2r-executor-bench-"))
    results = {"machine": machine(), "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
               "runs": [], "errors": []}
    try:
        videos = make_videos(work / "videos", a.videos, a.frames, a.width, a.height)
        if "ray" in executors:
            try:
                results["ray_init_s"] = ray_start(a)
            except Exception as e:  # noqa: BLE001 - report and still measure the local executor
                results["errors"].append(f"ray: {type(e).__name__}: {e}")
                executors = [x for x in executors if x != "ray"]
        for rep in range(a.repeats):
            # Alternate the order, so neither executor always runs first (cold page cache, imports).
            order = executors if rep % 2 == 0 else executors[::-1]
            for scenario in scenarios:
                for ex in order:
                    out = work / f"{scenario}-{ex}-{rep}"
                    try:
                        r = run_once(ex, scenario, videos, out, a)
                    except Exception as e:  # noqa: BLE001
                        results["errors"].append(f"{scenario}/{ex}: {type(e).__name__}: {e}")
                        continue
                    r["repeat"] = rep
                    results["runs"].append(r)
                    print(json.dumps(r), flush=True)
                    if not a.keep:
                        shutil.rmtree(out, ignore_errors=True)
    finally:
        if "ray" in sys.modules:
            import ray

            if ray.is_initialized():
                ray.shutdown()
        if a.keep:
            print(f"run folders kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    results["medians"] = medians(results["runs"])
    md = table(results["medians"])
    print(md)
    if results.get("ray_init_s") is not None:
        print(f"Ray local instance start: {results['ray_init_s']:.1f} s (not included above)")
    for e in results["errors"]:
        print("error:", e)
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "results.json").write_text(json.dumps(results, indent=1))
        (a.out / "results.md").write_text(md + "\n")
    return 1 if results["errors"] else 0


def ray_start(a) -> float:
    """Start one local Ray instance for every Ray run (timed separately: it is paid once per run of y2r)."""
    import logging

    import ray

    t0 = time.perf_counter()
    kw = {} if a.gpus else {"num_gpus": 0}
    ray.init(address="local", num_cpus=max(a.workers, os.cpu_count() or 1), include_dashboard=False,
             log_to_driver=False, logging_level=logging.WARNING, **kw)
    return round(time.perf_counter() - t0, 2)


# ----------------------------------------------------------------------------- pack
# Beyond a PyTorch image (numpy, scipy, opencv, h5py, pyyaml, click, rich, psutil, nvidia-ml-py,
# requests, protobuf, msgpack, filelock, packaging, attrs are there): what y2r and Ray still need.
PACK_REQUIREMENTS = ["ray==2.60.0", "av>=12,<19", "pydantic>=2.6,<3", "pydantic-core", "annotated-types",
                     "typing-inspection", "typing-extensions>=4.14", "OpenEXR>=3.3,<4", "jsonschema", "jsonschema-specifications",
                     "referencing", "rpds-py"]
# Parts of Ray a y2r run never imports (Java, RLlib, Data, Serve, Tune, Train, LLM, the dashboard UI).
RAY_UNUSED = ["ray/jars", "ray/rllib", "ray/data", "ray/serve", "ray/tune", "ray/train", "ray/llm",
              "ray/dashboard/client/build", "bin"]
RAY_BINARIES = ["ray/_raylet.so", "ray/core/src/ray/gcs/gcs_server", "ray/core/src/ray/raylet/raylet"]


def pack(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="executor_bench.py pack",
                                 description="Build DIR/y2r-deps-cpXY.tar.xz for a machine without PyPI.")
    ap.add_argument("dir", type=Path)
    ap.add_argument("--python-version", default="3.12", help="the target's Python (the device image has 3.12)")
    a = ap.parse_args(argv)
    tag = "cp" + a.python_version.replace(".", "")
    platforms = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile", "--target", str(site),
               "--only-binary=:all:", "--python-version", a.python_version, "--implementation", "cp"]
        for p in platforms:
            cmd += ["--platform", p]
        subprocess.run([*cmd, *PACK_REQUIREMENTS], check=True)
        for rel in RAY_UNUSED:
            shutil.rmtree(site / rel, ignore_errors=True)
        for pattern in ("*.pyi", "*.pxd", "*.pyx"):
            for f in site.rglob(pattern):
                f.unlink()
        strip = shutil.which("strip")
        if strip:  # symbols only: ~30% of Ray's binaries, never needed to run them
            subprocess.run([strip, "--strip-unneeded", *(str(site / b) for b in RAY_BINARIES)], check=True)
        a.dir.mkdir(parents=True, exist_ok=True)
        dest = a.dir / f"y2r-deps-{tag}.tar.xz"
        subprocess.run(["tar", "-cJf", str(dest), "-C", str(site), "."], check=True, env={**os.environ, "XZ_OPT": "-9e"})
    print(f"wrote {dest} ({dest.stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
