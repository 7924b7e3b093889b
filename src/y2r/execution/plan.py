"""``y2r run --dry-run``: what would run, and where, without touching the output folder."""

from __future__ import annotations

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
    console.print(f"CPU workers: {workers}; GPUs: " + (", ".join(f"{g.index} {g.name} ({g.capacity_mb:.0f} MB free)"
                                                           for g in gpus) or "none"))
    starts, assigns = initial_placement(sched)
    if starts:
        w = Table("worker", "lane", "gpu", "first task", "predicted peak MB")
        first = {a.worker_id: a for a in assigns}
        for s in starts:
            a = first.get(s.worker_id)
            w.add_row(s.worker_id, s.lane, "-" if s.gpu is None else str(s.gpu),
                      f"{a.video_id}/{a.stage}" if a else "-", f"{a.predicted_mb:.0f}" if a and a.predicted_mb else "-")
        console.print(w)
    for g in sched.gpus:
        console.print(f"GPU {g}: predicted {sched.gpu_usage(g):.0f} / {sched.gpus[g].capacity_mb:.0f} MB "
                      f"(margin {sched.margin_mb:.0f} MB)")
    mem.close()
