"""``y2r run --dry-run``: what would run, and where, without touching the output folder."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from rich.table import Table

from y2r.artifacts import ArtifactStore
from y2r.config import Config
from y2r.console import console
from y2r.errors import UsageError
from y2r.execution.scheduler import Assign, Scheduler, StartWorker
from y2r.ledger import Ledger, ledger_name
from y2r.stages.base import STAGE_ORDER


def initial_placement(sched: Scheduler, rounds: int = 4) -> tuple[list[StartWorker], list[Assign]]:
    """The first waves of worker starts and assignments, pretending every worker loads instantly."""
    starts: list[StartWorker] = []
    assigns: list[Assign] = []
    for _ in range(rounds):
        acts = sched.next_actions(0.0)
        if not acts:
            break
        for a in acts:
            if isinstance(a, StartWorker):
                starts.append(a)
                sched.worker_ready(a.worker_id, 0.0)
            elif isinstance(a, Assign):
                assigns.append(a)
    return starts, assigns


def estimate_sizes(paths: list[Path], config: Config, limit: int = 200) -> dict[Path, tuple[int, int]]:
    """(frames, stored pixels) per video from a container probe, as ingest would make them.

    Only the first ``limit`` videos are probed (probing reads headers, not frames); the others get
    the mean. Unreadable inputs are left out: their ingest will fail with the reason.
    """
    from y2r.video import ResizePlan, probe  # noqa: PLC0415 - PyAV only when planning

    ing = config.ingest
    out: dict[Path, tuple[int, int]] = {}
    for p in paths[:limit]:
        try:
            info = probe(p, max_pixels=ing.max_source_pixels)
        except Exception:  # noqa: BLE001 - a bad input is ingest's to report
            continue
        frames = info.num_frames or int(round(info.duration_s * (info.fps or 0)))
        if ing.fps and info.fps:
            frames = int(round(frames * ing.fps / info.fps))
        if ing.max_frames:
            frames = min(frames, ing.max_frames)
        rp = ResizePlan.make(info.width, info.height, ing.width, ing.height, ing.resize)
        out[p] = (max(frames, 1), rp.out_w * rp.out_h)
    if out and len(out) < len(paths):
        mean = (int(sum(f for f, _ in out.values()) / len(out)), int(sum(px for _, px in out.values()) / len(out)))
        for p in paths:
            out.setdefault(p, mean)
    return out


def gpu_plan(config: Config, plans: dict, mem: Ledger, out: Path, sizes: dict[str, tuple[int, int]], workers: int):
    """A what-if scheduler in which every video is ingested (sizes from the probe): where the GPU
    workers would go, with each GPU's targets and predicted memory."""
    from y2r import pipeline  # noqa: PLC0415

    what_if = {vid: replace(p, done=set(p.done) | {"ingest"}) for vid, p in plans.items()}
    sched = pipeline.build_scheduler(config, what_if, mem, ArtifactStore(out), workers=workers,
                                     gpus=pipeline.gpu_specs(config))
    for vid, (frames, pixels) in sizes.items():
        if vid in sched.videos:
            sched.set_video_size(vid, frames, pixels)
    starts, assigns = initial_placement(sched)
    return sched, [s for s in starts if s.gpu is not None], assigns


def print_plan(inputs, out: Path, config: Config, shard) -> None:
    from y2r import pipeline  # noqa: PLC0415

    paths = pipeline.discover(list(inputs), config.ingest.extensions)
    if not paths:
        raise UsageError("no input videos found")
    mem = Ledger(":memory:")
    existing = out / ledger_name(shard)
    if existing.exists():
        with Ledger(existing, readonly=True) as old:
            for src, vid in old.video_ids().items():
                mem.add_video(vid, src, None, None)
            # the memory the GPU models were measured at in earlier runs informs this plan too
            for r in old.memory_samples():
                mem.record_memory(r["stage"], r["backend"], r["device"], r["frames"], r["pixels"], r["peak_mb"], r["outcome"])
    plan = pipeline.plan_videos(paths, config, ArtifactStore(out), mem, shard)
    gpus = pipeline.gpu_specs(config)
    workers = config.execution.workers or pipeline._default_workers()
    sched = pipeline.build_scheduler(config, plan.plans, mem, ArtifactStore(out), workers=workers, gpus=gpus)
    t = Table("stage", "backend", "lane", "to run", "already done", title=f"{len(plan.plans)} videos -> {out}")
    backends = pipeline.stage_backends(config)
    for s in STAGE_ORDER:
        lane = sched.task_lanes.get((s, backends[s]), "cpu")
        todo = sum(1 for p in plan.plans.values() if s not in p.done)
        t.add_row(s, backends[s], lane, str(todo), str(len(plan.plans) - todo))
    console.print(t)
    if plan.skipped_other_shards:
        console.print(f"{plan.skipped_other_shards} videos belong to other shards")
    sim = " (simulated)" if config.execution.gpus.simulate else ""
    console.print(f"CPU workers: {workers}; GPUs{sim}: " + (", ".join(f"{g.index} {g.name} ({g.capacity_mb:.0f} MB free)"
                                                                   for g in gpus) or "none"))
    starts, assigns = initial_placement(sched)
    if starts:
        w = Table("worker", "lane", "gpu", "first task", "predicted peak MB", title="first workers")
        first = {a.worker_id: a for a in assigns}
        for s in starts:
            a = first.get(s.worker_id)
            w.add_row(s.worker_id, s.lane, "-" if s.gpu is None else str(s.gpu),
                      f"{a.video_id}/{a.stage}" if a else "-", f"{a.predicted_mb:.0f}" if a and a.predicted_mb else "-")
        console.print(w)
    gpu_lanes = [ln for ln in sched.lanes.values() if ln.gpu]
    if not gpu_lanes:
        return
    if not gpus:
        console.print("[yellow]GPU lanes but no GPU[/]: " + ", ".join(ln.name for ln in gpu_lanes)
                      + " (set execution.gpus.simulate to rehearse on this machine)")
        return
    # GPU placement once the videos are ingested (their sizes drive the memory predictions).
    sizes_by_path = estimate_sizes([p.source_path for p in plan.plans.values()], config)
    sizes = {vid: sizes_by_path[p.source_path] for vid, p in plan.plans.items() if p.source_path in sizes_by_path}
    what_if, gstarts, gassigns = gpu_plan(config, plan.plans, mem, out, sizes, workers)
    m = Table("GPU lane", "memory model", "typical peak MB", "samples", title="memory model (seed or measured)")
    for ln in gpu_lanes:
        d = what_if.memory.describe(ln.stage, ln.backend)
        m.add_row(ln.name, f"{d['base_mb']:.0f} MB + {d['mb_per_mpix_frame']:.1f} MB/Mpix-frame",
                  f"{what_if._typical_mb(ln):.0f}", str(d["samples"]))
    console.print(m)
    first = {a.worker_id: a for a in gassigns}
    console.print("GPU placement once the videos are ingested (sizes probed from the inputs):")
    for idx, spec in what_if.gpus.items():
        targets = ", ".join(f"{k} x{v}" for k, v in what_if._targets.get(idx, {}).items() if v) or "nothing"
        wave = [first[s.worker_id] for s in gstarts if s.gpu == idx and s.worker_id in first]
        console.print(f"  GPU {idx} ({spec.name}, {spec.capacity_mb:.0f} MB): workers {targets}; first tasks: "
                      + (", ".join(f"{a.video_id}/{a.stage} {a.predicted_mb:.0f} MB" for a in wave) or "none")
                      + f"; predicted in use {what_if.gpu_usage(idx):.0f} MB + margin {what_if.margin_mb:.0f} MB",
                      soft_wrap=True, highlight=False)
    mem.close()
