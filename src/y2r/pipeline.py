"""From command-line inputs to a finished dataset: discovery, planning, execution, dataset outputs.

- **Discovery**: inputs are video files, folders (searched recursively by extension) or text files
  listing paths (one per line, ``#`` comments, relative to the list file). A path that does not
  exist still becomes a video, whose ingest fails with a clear error, so it shows up in ``status``.
- **Video ids** are stable: a path seen before keeps its id (from the ledger); otherwise the file
  stem (made filesystem-safe), with a short hash of the full path added when two inputs share a stem.
- **Fingerprints**: each stage's config hash chains its upstream stages' hashes, so changing one
  stage's config re-runs exactly that stage and the ones after it.
- **Resume**: a stage is done when its artifact's completion marker exists with the current
  fingerprint; the ledger is reconciled to that truth at the start of every run.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from y2r import __version__
from y2r.artifacts import ArtifactStore
from y2r.config import Config
from y2r.console import RunDisplay
from y2r.errors import ToolUnavailable, UsageError
from y2r.execution.driver import Driver, RunReport, VideoPlan
from y2r.execution.memory_model import MemoryModel
from y2r.execution.scheduler import CPU_LANE, GpuSpec, Lane, RetryPolicy, Scheduler, TimeoutPolicy
from y2r.ledger import Ledger, ledger_name, ledger_paths
from y2r.stages.base import STAGE_ORDER, STAGES, MemoryProfile, backend_class, backend_name

LIST_SUFFIXES = (".txt", ".list", ".lst")


# ----------------------------------------------------------------------------- discovery
def discover(inputs: list[str | Path], extensions: list[str]) -> list[Path]:
    """Expand inputs into an ordered, de-duplicated list of video paths."""
    exts = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}
    out: list[Path] = []
    seen: set[str] = set()

    def add(p: Path) -> None:
        key = str(p.resolve()) if p.exists() else str(p.absolute())
        if key not in seen:
            seen.add(key)
            out.append(p)

    for raw in inputs:
        p = Path(raw).expanduser()
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in exts)
            for f in found:
                add(f)
        elif p.is_file() and p.suffix.lower() in LIST_SUFFIXES:
            for line in p.read_text(errors="replace").splitlines():
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                q = Path(line).expanduser()
                add(q if q.is_absolute() else (p.parent / q))
        else:
            add(p)
    return out


_SAFE = re.compile(r"[^\w.\-]+", re.UNICODE)


def safe_stem(path: Path) -> str:
    """A filesystem- and HDF5-friendly id from a file name (unicode letters kept, spaces -> '_')."""
    stem = unicodedata.normalize("NFC", path.stem)
    s = _SAFE.sub("_", stem).strip("._") or "video"
    return s[:120]


def assign_ids(paths: list[Path], known: dict[str, str]) -> dict[Path, str]:
    """Stable ids: known paths keep theirs; colliding stems get a short hash of the absolute path."""
    ids: dict[Path, str] = {}
    taken = set(known.values())
    keyed = [(p, str(p.resolve()) if p.exists() else str(p.absolute())) for p in paths]
    stems: dict[str, int] = {}
    for p, key in keyed:
        if key not in known:
            stems[safe_stem(p)] = stems.get(safe_stem(p), 0) + 1
    for p, key in keyed:
        if key in known:
            ids[p] = known[key]
            continue
        vid = safe_stem(p)
        if stems[vid] > 1 or vid in taken:
            vid = f"{vid}-{hashlib.sha1(key.encode()).hexdigest()[:6]}"
        taken.add(vid)
        ids[p] = vid
    return ids


def shard_of(video_id: str, n: int) -> int:
    """SLURM-array shard of a video (stable across runs and machines)."""
    return int(hashlib.sha256(video_id.encode()).hexdigest()[:16], 16) % n


# ----------------------------------------------------------------------------- fingerprints
_BACKEND_OPTION_KEYS = {"builtin", "vipe", "synthetic", "tapip3d", "wilor"}
_SECTIONS = {"ingest": ("ingest",), "camera": ("camera",), "tracks": ("tracks",), "hands": ("hands",),
             "episode": ("episode",)}


def stage_backends(config: Config) -> dict[str, str]:
    return {s: backend_name(config, s) for s in STAGE_ORDER}


def fingerprints(config: Config) -> dict[str, str]:
    """Per stage: hash of its own config section, its backend's version and its inputs' fingerprints."""
    backends = stage_backends(config)
    out: dict[str, str] = {}
    for stage in STAGE_ORDER:
        cls = backend_class(stage, backends[stage])
        own = {sec: getattr(config, sec).model_dump(mode="json") for sec in _SECTIONS[stage]}
        # Only the chosen backend's options matter: changing an unused backend's option re-runs nothing.
        for sec in _SECTIONS[stage]:
            for key in _BACKEND_OPTION_KEYS - {backends[stage]}:
                own[sec].pop(key, None)
        payload = {"stage": stage, "backend": backends[stage], "backend_version": getattr(cls, "version", "1"),
                   "config": own, "inputs": {d: out[d] for d in STAGES[stage].inputs}}
        out[stage] = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return out


# ----------------------------------------------------------------------------- lanes
def build_lanes(config: Config) -> tuple[dict[str, Lane], dict[tuple[str, str], str], dict[tuple[str, str], MemoryProfile]]:
    """One shared CPU lane for built-in backends; one lane per GPU (stage, backend)."""
    lanes = {CPU_LANE: Lane(CPU_LANE, frozenset(STAGE_ORDER))}
    task_lanes: dict[tuple[str, str], str] = {}
    seeds: dict[tuple[str, str], MemoryProfile] = {}
    for stage, backend in stage_backends(config).items():
        cls = backend_class(stage, backend)
        res = cls.resources_for(config)
        if res.gpu:
            name = f"{stage}/{backend}"
            lanes[name] = Lane(name, frozenset({stage}), gpu=True, stage=stage, backend=backend)
            task_lanes[(stage, backend)] = name
            seed = config.execution.gpus.memory_models.get(name)
            seeds[(stage, backend)] = MemoryProfile(**seed) if seed else res.gpu_memory
        else:
            task_lanes[(stage, backend)] = CPU_LANE
    return lanes, task_lanes, seeds


@dataclass
class Plan:
    plans: dict[str, VideoPlan]
    skipped_other_shards: int


def plan_videos(paths: list[Path], config: Config, store: ArtifactStore, ledger: Ledger,
                shard: tuple[int, int] | None = None) -> Plan:
    fps = fingerprints(config)
    backends = stage_backends(config)
    # Ids every ledger of OUT already gave: the shards of an array must agree on them (a video's id
    # decides its shard), even when the input list changed between submissions.
    known: dict[str, str] = {}
    for p in _other_ledgers(store.root, ledger):
        try:
            with Ledger(p, readonly=True) as other:
                known.update(other.video_ids())
        except (UsageError, sqlite3.Error):
            continue
    known.update(ledger.video_ids())
    ids = assign_ids(paths, known)
    plans: dict[str, VideoPlan] = {}
    skipped = 0
    for p in paths:
        vid = ids[p]
        if shard is not None and shard_of(vid, shard[1]) != shard[0]:
            skipped += 1
            continue
        resolved = p.resolve() if p.exists() else p.absolute()
        st = p.stat() if p.exists() else None
        ledger.add_video(vid, str(resolved), st.st_size if st else None, st.st_mtime if st else None)
        done = set()
        for stage in STAGE_ORDER:
            m = store.marker(vid, stage)
            if m is not None and m.get("config_hash") == fps[stage]:
                done.add(stage)
        if "episode" in done and store.episode_path(vid).exists():
            # A finished episode satisfies its inputs even if intermediates were dropped.
            done = set(STAGE_ORDER)
        else:
            done.discard("episode")
            # A stage is only reusable if everything it was computed from is too.
            for stage in STAGE_ORDER:
                if stage in done and not all(d in done for d in STAGES[stage].inputs):
                    done.discard(stage)
        for stage in STAGE_ORDER:
            ledger.ensure_task(vid, stage, backends[stage], fps[stage], done=stage in done)
        plans[vid] = VideoPlan(vid, resolved, backends, fps, done)
    return Plan(plans, skipped)


def build_scheduler(config: Config, plans: dict[str, VideoPlan], ledger: Ledger, store: ArtifactStore, *,
                    workers: int, gpus: list[GpuSpec]) -> Scheduler:
    lanes, task_lanes, seeds = build_lanes(config)
    memory = MemoryModel(seeds)
    memory.load_samples(ledger.memory_samples())
    ex = config.execution
    sched = Scheduler(
        lanes=lanes, task_lanes=task_lanes,
        retry=RetryPolicy(ex.retry.max_attempts, ex.retry.backoff_s, ex.retry.backoff_max_s),
        timeouts=TimeoutPolicy(ex.task_timeout_s, ex.task_timeout_s_per_frame), cpu_workers=workers,
        gpus=gpus, memory=memory, margin_mb=ex.gpus.margin_mb, max_workers_per_gpu=ex.gpus.max_workers_per_gpu,
        max_in_flight=None, backlog=ex.backlog_per_stage,  # bound: worker slots (CPU + targeted GPU) + backlog
    )
    for vid, plan in plans.items():
        frames = pixels = 0
        if "ingest" in plan.done:
            m = ledger.task(vid, "ingest")
            meta_path = store.stage_dir(vid, "ingest") / "meta.json"
            try:
                meta = json.loads(meta_path.read_text())
                frames, pixels = meta["num_frames"], meta["width"] * meta["height"]
            except (OSError, ValueError, KeyError):
                frames = (m.num_frames if m else 0) or 0
        sched.add_video(vid, plan.stages, done=plan.done, frames=frames, pixels=pixels)
    return sched


def gpu_specs(config: Config) -> list[GpuSpec]:
    """The GPUs to place on: NVML's (capacity = free memory now), or ``execution.gpus.simulate``."""
    from y2r.execution.gpus import inventory, simulated_inventory  # noqa: PLC0415

    sim = config.execution.gpus.simulate
    devices = simulated_inventory(sim) if sim else inventory(config.execution.gpus.devices)
    return [GpuSpec(d.index, d.name, d.free_mb) for d in devices]


# ----------------------------------------------------------------------------- run
@dataclass
class RunResult:
    report: RunReport
    out: Path
    videos: int
    already_done: int


def run(inputs: list[str | Path], out: str | Path, config: Config, *, display: RunDisplay | None = None,
        shard: tuple[int, int] | None = None, argv: list[str] | None = None) -> RunResult:
    """Run the pipeline on ``inputs`` into ``out`` (resumable: run it again to finish)."""
    out = Path(out)
    if config.execution.executor == "ray":
        from y2r.execution.ray_executor import require_ray  # noqa: PLC0415

        require_ray()  # the optional extra: a one-line error before anything is written
    paths = discover(inputs, config.ingest.extensions)
    if not paths:
        raise UsageError("no input videos found (give video files, folders, or a text file listing paths)")
    out.mkdir(parents=True, exist_ok=True)
    store = ArtifactStore(out)
    if shard is None:
        store.clean_stale()
    (out / "config.yaml").write_text(config.to_yaml())
    ledger = Ledger(out / ledger_name(shard))
    display = display or RunDisplay()
    try:
        run_id = ledger.start_run(argv if argv is not None else sys.argv, config.to_yaml(), __version__)
        plan = plan_videos(paths, config, store, ledger, shard)
        if shard is not None:
            # Shards share OUT and run concurrently: sweep only this shard's videos (planning reads
            # completion markers only, so it is unaffected by leftovers).
            store.clean_stale(plan.plans)
        need_gpus = any(l.gpu for l in build_lanes(config)[0].values())
        if config.execution.executor == "ray":
            from y2r.execution.ray_executor import RayTransport  # noqa: PLC0415

            # The cluster's GPUs and CPUs, not this machine's: the transport reserves and measures them.
            transport = RayTransport(config, out / "logs",
                                     input_dirs=[p.source_path.parent for p in plan.plans.values()])
            try:
                gpus = transport.gpu_specs() if need_gpus else []
                workers = config.execution.workers or transport.default_cpu_workers(len(gpus))
            except BaseException:
                transport.shutdown()
                raise
        else:
            from y2r.execution.local import LocalTransport  # noqa: PLC0415

            gpus = gpu_specs(config) if need_gpus else []
            workers = config.execution.workers or _default_workers()
            transport = LocalTransport(out / "logs", threads_per_worker=max(1, (_default_workers() // workers)),
                                       simulated_gpus=config.execution.gpus.simulate)
        try:
            if need_gpus and not gpus:
                # Without this, GPU tasks would wait forever for a device that never comes.
                lanes = ", ".join(n for n, l in build_lanes(config)[0].items() if l.gpu)
                raise ToolUnavailable(
                    f"{lanes} need{'s' if ',' not in lanes else ''} an NVIDIA GPU but none is visible "
                    "(NVML found no device, or execution.gpus.devices is empty); choose a built-in backend, "
                    "or set execution.gpus.simulate to test GPU scheduling on the CPU")
            sched = build_scheduler(config, plan.plans, ledger, store, workers=workers, gpus=gpus)
            if hasattr(transport, "bind"):
                transport.bind(sched)  # GPU shares on Ray are sized by the scheduler's memory model
        except BaseException:
            transport.shutdown()
            raise
        totals = {s: len(plan.plans) for s in STAGE_ORDER}
        done_counts = {s: sum(1 for p in plan.plans.values() if s in p.done) for s in STAGE_ORDER}
        display.start(totals, done_counts)
        driver = Driver(config=config, out=out, store=store, ledger=ledger, scheduler=sched, transport=transport,
                        plans=plan.plans, display=display, run_id=run_id,
                        status_name="status.json" if shard is None else f"status-shard-{shard[0]}-of-{shard[1]}.json",
                        wait_for_workers=False)
        try:
            report = driver.run()
            ledger.finish_run(run_id, "interrupted" if report.interrupted else ("failed" if report.failed else "ok"))
            # the workers have been told to die; the dataset files are written while they exit
            finalize_dataset(out, ledger)
        finally:
            transport.wait_closed()  # no worker process outlives run(), whatever happened
        return RunResult(report, out, len(plan.plans), done_counts["episode"])
    finally:
        ledger.close()


def _failures(ledger: Ledger) -> list[dict]:
    return [{"video_id": t.video_id, "stage": t.stage, "kind": t.error_kind, "message": t.error_message,
             "source_path": (ledger.video(t.video_id) or {}).get("source_path")} for t in ledger.failures()]


def _other_ledgers(out: Path, ledger: Ledger) -> list[Path]:
    """The other ledgers of OUT (the other shards of a SLURM array, or a run without --shard)."""
    mine = ledger.path.resolve()
    return [p for p in ledger_paths(out) if p.resolve() != mine]


def finalize_dataset(out: Path, ledger: Ledger) -> None:
    """Dataset-level outputs from whatever episodes exist: manifest, stats, report."""
    failed = _failures(ledger)
    # Shards share OUT: whichever finishes last writes the manifest, so it lists every shard's failures.
    for p in _other_ledgers(out, ledger):
        try:
            with Ledger(p, readonly=True) as other:
                failed += _failures(other)
        except (UsageError, sqlite3.Error):  # a shard still creating its ledger: its failures come later
            continue
    try:
        from y2r.dataset.manifest import write_manifest  # noqa: PLC0415
        from y2r.dataset.stats import write_stats  # noqa: PLC0415
        from y2r.viz.report import write_report  # noqa: PLC0415
    except ImportError:  # pragma: no cover - during bootstrap of the dataset package
        return
    write_manifest(out, failed)
    write_stats(out)
    write_report(out)


def _default_workers() -> int:
    from y2r.execution.local import default_cpu_workers  # noqa: PLC0415

    return default_cpu_workers()
