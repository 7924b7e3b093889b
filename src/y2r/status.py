"""What ``y2r status`` shows: per-stage counts from every ledger in OUT (shards merged), failed
videos with their one-line errors, and -- when a run is live -- GPUs, workers, throughput and ETA."""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import time
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from y2r.console import console
from y2r.errors import UsageError
from y2r.execution.driver import load_status
from y2r.ledger import STATES, Ledger, ledger_name, ledger_paths
from y2r.stages.base import STAGE_ORDER


def collect_status(out: Path) -> dict:
    paths = ledger_paths(out)
    if not paths:
        raise UsageError(f"{out}: no ledger here (run `y2r run ... -o {out}` first)")
    counts = {s: {st: 0 for st in STATES} for s in STAGE_ORDER}
    failures, unfinished = [], []
    videos = 0
    for p in paths:
        with Ledger(p, readonly=True) as led:
            for stage, c in led.counts().items():
                for st, n in c.items():
                    counts.setdefault(stage, {x: 0 for x in STATES})[st] += n
            rows = led.tasks()
            sources = {v: led.video(v)["source_path"] for v in {r.video_id for r in rows}}
            videos += len(sources)
            by_video: dict[str, dict[str, str]] = {}
            for r in rows:
                by_video.setdefault(r.video_id, {})[r.stage] = r.state
                if r.state == "failed":
                    failures.append({"video_id": r.video_id, "stage": r.stage, "kind": r.error_kind,
                                     "message": r.error_message, "attempts": r.attempts,
                                     "source_path": sources[r.video_id], "ledger": p.name})
            for vid, states in by_video.items():
                if states.get("episode") != "done":
                    unfinished.append({"video_id": vid, "source_path": sources[vid], "states": states})
    return {"out": str(out), "ledgers": [p.name for p in paths], "videos": videos, "stages": counts,
            "failures": failures, "unfinished": unfinished, "live": load_status(out), "live_shards": live_shards(out)}


_SHARD_STATUS = re.compile(r"status-shard-(\d+)-of-(\d+)\.json$")
STALE_S = 30.0  # a driver rewrites its status every 2 s; silence this long means it is gone


def live_shards(out: Path) -> list[dict]:
    """The status snapshots of shard drivers still running (SLURM arrays: one file per shard).

    Shards usually run on other nodes, where their pid means nothing here: a snapshot on this host
    is live if its process is; one from another host if it was rewritten in the last ``STALE_S``.
    """
    found = []
    for p in sorted(Path(out).glob("status-shard-*-of-*.json")):
        m = _SHARD_STATUS.match(p.name)
        try:
            snap = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if not m or snap.get("final"):
            continue
        if snap.get("host") == socket.gethostname():
            try:
                os.kill(int(snap.get("pid") or 0), 0)
                alive = bool(snap.get("pid"))
            except OSError:
                alive = False
        else:
            alive = time.time() - float(snap.get("updated_utc") or 0) < STALE_S
        if alive:
            found.append({**snap, "shard": int(m.group(1)), "of": int(m.group(2))})
    return sorted(found, key=lambda s: s["shard"])


_SHARD_LEDGER = re.compile(r"ledger-shard-(\d+)-of-(\d+)\.sqlite$")


def shards_to_resubmit(out: Path) -> list[int]:
    """SLURM array indices whose shard is not finished: to pass to ``sbatch --array`` again.

    A shard needs another run when its ledger is missing (the job never started, or died before
    creating it), when its last run did not end (killed by the scheduler's time limit, node failure,
    Ctrl-C), or when any of its videos has no finished episode (failed ones included, as with
    ``--unfinished``). Run it once the array has left the queue: a shard still running looks
    unfinished too.
    """
    found: dict[int, set[int]] = {}
    for p in Path(out).glob("ledger-shard-*-of-*.sqlite"):
        m = _SHARD_LEDGER.match(p.name)
        if m:
            found.setdefault(int(m.group(2)), set()).add(int(m.group(1)))
    if not found:
        raise UsageError(f"{out}: no shard ledgers here (was it run with --shard I/N?)")
    if len(found) > 1:
        raise UsageError(f"{out}: ledgers of different shard counts ({', '.join(map(str, sorted(found)))}); "
                         "resubmit with the count used originally")
    (n,) = found
    todo = []
    for i in range(n):
        p = Path(out) / ledger_name((i, n))
        if not p.exists():
            todo.append(i)
            continue
        try:
            with Ledger(p, readonly=True) as led:
                runs = led.runs()
                last = max(runs, key=lambda r: r["run_id"])["status"] if runs else None
                unfinished = any(t.state != "done" for t in led.tasks(stage="episode"))
        except sqlite3.Error:
            todo.append(i)  # unreadable (it was being created when its job died)
            continue
        if last not in ("ok", "failed") or unfinished:
            todo.append(i)
    return todo


def array_ranges(indices: list[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``"0-2,5,7-8"`` (the syntax of ``sbatch --array``)."""
    parts: list[str] = []
    xs = sorted(set(indices))
    i = 0
    while i < len(xs):
        j = i
        while j + 1 < len(xs) and xs[j + 1] == xs[j] + 1:
            j += 1
        parts.append(str(xs[i]) if i == j else f"{xs[i]}-{xs[j]}")
        i = j + 1
    return ",".join(parts)


def print_status(st: dict) -> None:
    t = Table("stage", *STATES, title=f"{st['out']}: {st['videos']} videos" +
              (f" ({len(st['ledgers'])} shard ledgers)" if len(st["ledgers"]) > 1 else ""))
    colours = {"done": "green", "failed": "red", "running": "cyan", "skipped": "yellow", "pending": ""}
    for stage in STAGE_ORDER:
        c = st["stages"].get(stage, {})
        t.add_row(stage, *[(f"[{colours[s]}]{c.get(s, 0)}[/]" if c.get(s, 0) and colours[s] else str(c.get(s, 0)))
                           for s in STATES])
    console.print(t)
    live = st.get("live")
    if live and live.get("live"):
        console.print(f"[cyan]run in progress[/] (pid {live['pid']}, {live['elapsed_s']:.0f} s elapsed"
                      + (f", ETA {live['eta_s']:.0f} s" if live.get("eta_s") else "") + ")")
        thr = live.get("throughput_frames_per_s") or {}
        if thr:
            console.print("throughput (frames/s): " + ", ".join(f"{k} {v}" for k, v in thr.items()))
        lanes = Table("workers", "total", "busy", "starting", "note")
        for name, ln in live.get("lanes", {}).items():
            if ln["workers"] or ln.get("broken"):
                lanes.add_row(name, str(ln["workers"]), str(ln["busy"]), str(ln["starting"]), escape(ln.get("broken") or ""))
        console.print(lanes)
        if live.get("gpus"):
            # measured: what y2r's workers hold now (NVML per process tree); device: every process on
            # the GPU; predicted: what placement reserves (peaks of running tasks + idle models).
            g = Table("gpu", "measured", "device", "predicted", "capacity", "workers", "busy",
                      title=f"GPU memory, MB ({escape(live['gpus'][0]['name'])})")
            g.add_column("state", overflow="fold")
            mb = lambda v: "-" if v is None else f"{v:.0f}"  # noqa: E731
            for x in live["gpus"]:
                state = "[red]out of service[/]" if x.get("out_of_service") else (
                    f"kept for {escape(x['reserved_for'])}" if x.get("reserved_for") else "ok")
                g.add_row(str(x["index"]), mb(x.get("measured_mb")), mb(x.get("device_used_mb")),
                          mb(x["predicted_mb"]), mb(x["capacity_mb"]), str(len(x["workers"])), str(x.get("busy", "-")),
                          state)
            console.print(g)
    if st.get("live_shards"):
        sh = Table("shard", "host", "pid", "elapsed s", "running", "ETA s", title="shards running now")
        for x in st["live_shards"]:
            sh.add_row(f"{x['shard']}/{x['of']}", escape(str(x.get("host") or "?")), str(x.get("pid")),
                       f"{x.get('elapsed_s', 0):.0f}", str(len(x.get("running") or [])),
                       "" if x.get("eta_s") is None else f"{x['eta_s']:.0f}")
        console.print(sh)
    if st["failures"]:
        console.print(f"[red]{len(st['failures'])} failed[/] (full logs: OUT/logs/<video>/<stage>.log):")
        for f in st["failures"]:
            where = escape(f"[{f['stage']}, {f['kind']}, {f['attempts']} attempts]")
            console.print(f"  {escape(f['video_id'])} {where}: {escape(f['message'] or '')}", highlight=False)
