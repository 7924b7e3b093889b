"""The ledger: an embedded SQLite database (WAL) in the output folder recording every task's state.

One row per (video, stage) in ``tasks`` holds the current state; ``attempts`` keeps the history of
every try (for debugging and for the memory model); ``videos`` maps source paths to stable video
ids; ``runs`` records each invocation; ``memory_samples`` feeds the GPU memory model.

Only the driver process writes (workers never touch the ledger), so there is exactly one writer;
``y2r status`` may read concurrently thanks to WAL. Schema changes are named migrations, each applied
in one transaction together with its record, so a failed migration stays pending.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from y2r.errors import UsageError

LEDGER_NAME = "ledger.sqlite"
STATES = ("pending", "running", "done", "failed", "skipped")

MIGRATIONS: list[tuple[str, str]] = [
    ("0001_initial", """
        CREATE TABLE videos (
            video_id TEXT PRIMARY KEY,
            source_path TEXT NOT NULL UNIQUE,
            size_bytes INTEGER,
            mtime REAL,
            added_utc REAL NOT NULL
        );
        CREATE TABLE tasks (
            video_id TEXT NOT NULL,
            stage TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('pending','running','done','failed','skipped')),
            attempts INTEGER NOT NULL DEFAULT 0,
            error_kind TEXT,
            error_message TEXT,
            backend TEXT,
            config_hash TEXT,
            started_utc REAL,
            finished_utc REAL,
            duration_s REAL,
            peak_rss_mb REAL,
            peak_gpu_mb REAL,
            worker TEXT,
            host TEXT,
            gpu TEXT,
            num_frames INTEGER,
            updated_utc REAL NOT NULL,
            PRIMARY KEY (video_id, stage)
        );
        CREATE INDEX tasks_state ON tasks(stage, state);
        CREATE TABLE attempts (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            video_id TEXT NOT NULL,
            stage TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            backend TEXT,
            started_utc REAL,
            finished_utc REAL,
            outcome TEXT,
            error_kind TEXT,
            error_message TEXT,
            worker TEXT,
            host TEXT,
            gpu TEXT,
            peak_rss_mb REAL,
            peak_gpu_mb REAL
        );
        CREATE TABLE runs (
            run_id INTEGER PRIMARY KEY AUTOINCREMENT,
            started_utc REAL NOT NULL,
            finished_utc REAL,
            argv TEXT,
            config_yaml TEXT,
            host TEXT,
            y2r_version TEXT,
            status TEXT
        );
        CREATE TABLE memory_samples (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            stage TEXT NOT NULL,
            backend TEXT NOT NULL,
            device TEXT,
            frames INTEGER NOT NULL,
            pixels INTEGER NOT NULL,
            peak_mb REAL NOT NULL,
            outcome TEXT NOT NULL,
            utc REAL NOT NULL
        );
    """),
    ("0002_worker_stats", """
        CREATE TABLE worker_stats (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id INTEGER,
            worker TEXT NOT NULL,
            lane TEXT NOT NULL,
            device TEXT,
            started_utc REAL,
            stopped_utc REAL,
            load_s REAL,
            tasks INTEGER,
            busy_s REAL,
            exit_reason TEXT
        );
    """),
]


@dataclass
class TaskRow:
    video_id: str
    stage: str
    state: str
    attempts: int
    error_kind: str | None
    error_message: str | None
    backend: str | None
    config_hash: str | None
    started_utc: float | None
    finished_utc: float | None
    duration_s: float | None
    peak_rss_mb: float | None
    peak_gpu_mb: float | None
    worker: str | None
    host: str | None
    gpu: str | None
    num_frames: int | None
    updated_utc: float


class Ledger:
    """The run's state in ``OUT/ledger.sqlite`` (or ``OUT/ledger-shard-I-of-N.sqlite``)."""

    def __init__(self, path: str | os.PathLike, *, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        if readonly:
            if not self.path.exists():
                raise UsageError(f"{self.path}: no ledger here (has `y2r run` been run with this output folder?)")
            self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives process crashes (not power loss); artifacts + markers are the
            # ground truth anyway, the ledger can be re-derived from them.
            self.db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        self.db.row_factory = sqlite3.Row
        self.host = socket.gethostname()

    # ------------------------------------------------------------------ schema
    def _migrate(self) -> None:
        self.db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_utc REAL NOT NULL)")
        done = {r[0] for r in self.db.execute("SELECT name FROM _migrations")}
        for name, sql in MIGRATIONS:
            if name in done:
                continue
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for stmt in (s.strip() for s in sql.split(";")):
                    if stmt:
                        self.db.execute(stmt)
                self.db.execute("INSERT INTO _migrations VALUES (?, ?)", (name, time.time()))
                self.db.execute("COMMIT")
            except Exception:
                self.db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ videos
    def video_ids(self) -> dict[str, str]:
        """source_path -> video_id for every known video."""
        return {r["source_path"]: r["video_id"] for r in self.db.execute("SELECT video_id, source_path FROM videos")}

    def add_video(self, video_id: str, source_path: str, size_bytes: int | None, mtime: float | None) -> None:
        self.db.execute(
            "INSERT INTO videos(video_id, source_path, size_bytes, mtime, added_utc) VALUES (?,?,?,?,?) "
            "ON CONFLICT(video_id) DO UPDATE SET size_bytes=excluded.size_bytes, mtime=excluded.mtime",
            (video_id, source_path, size_bytes, mtime, time.time()))

    def video(self, video_id: str) -> dict | None:
        r = self.db.execute("SELECT * FROM videos WHERE video_id=?", (video_id,)).fetchone()
        return dict(r) if r else None

    # ------------------------------------------------------------------ tasks
    def task(self, video_id: str, stage: str) -> TaskRow | None:
        r = self.db.execute("SELECT * FROM tasks WHERE video_id=? AND stage=?", (video_id, stage)).fetchone()
        return TaskRow(**dict(r)) if r else None

    def tasks(self, stage: str | None = None, state: str | None = None) -> list[TaskRow]:
        q, args = "SELECT * FROM tasks WHERE 1=1", []
        if stage:
            q += " AND stage=?"
            args.append(stage)
        if state:
            q += " AND state=?"
            args.append(state)
        return [TaskRow(**dict(r)) for r in self.db.execute(q + " ORDER BY video_id, stage", args)]

    def ensure_task(self, video_id: str, stage: str, backend: str, config_hash: str, *, done: bool) -> None:
        """Make a task row reflect this run's plan: done (artifact valid) or pending."""
        now = time.time()
        row = self.task(video_id, stage)
        if row is None:
            self.db.execute(
                "INSERT INTO tasks(video_id, stage, state, backend, config_hash, updated_utc) VALUES (?,?,?,?,?,?)",
                (video_id, stage, "done" if done else "pending", backend, config_hash, now))
        elif done and row.state != "done":
            self.db.execute("UPDATE tasks SET state='done', updated_utc=? WHERE video_id=? AND stage=?", (now, video_id, stage))
        elif not done and (row.state in ("done", "running", "skipped") or row.config_hash != config_hash
                           or row.backend != backend or row.state == "failed"):
            # Stale, interrupted, config changed, or failed before: schedule it again from scratch.
            self.db.execute(
                "UPDATE tasks SET state='pending', attempts=0, error_kind=NULL, error_message=NULL, backend=?, "
                "config_hash=?, updated_utc=? WHERE video_id=? AND stage=?", (backend, config_hash, now, video_id, stage))

    def mark_running(self, video_id: str, stage: str, *, attempt: int, worker: str, gpu: str | None, backend: str) -> None:
        now = time.time()
        self.db.execute(
            "UPDATE tasks SET state='running', attempts=?, started_utc=?, worker=?, host=?, gpu=?, backend=?, updated_utc=? "
            "WHERE video_id=? AND stage=?", (attempt, now, worker, self.host, gpu, backend, now, video_id, stage))

    def mark_done(self, video_id: str, stage: str, *, config_hash: str, duration_s: float, peak_rss_mb: float | None,
                  peak_gpu_mb: float | None, num_frames: int | None, attempt: int, worker: str | None = None,
                  gpu: str | None = None, backend: str | None = None) -> None:
        now = time.time()
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute(
            "UPDATE tasks SET state='done', config_hash=?, finished_utc=?, duration_s=?, peak_rss_mb=?, peak_gpu_mb=?, "
            "num_frames=?, error_kind=NULL, error_message=NULL, attempts=?, updated_utc=? WHERE video_id=? AND stage=?",
            (config_hash, now, duration_s, peak_rss_mb, peak_gpu_mb, num_frames, attempt, now, video_id, stage))
        self._attempt(video_id, stage, attempt, backend, now - duration_s, now, "done", None, None, worker, gpu,
                      peak_rss_mb, peak_gpu_mb)
        self.db.execute("COMMIT")

    def mark_failed(self, video_id: str, stage: str, *, kind: str, message: str, final: bool, attempt: int,
                    worker: str | None = None, gpu: str | None = None, backend: str | None = None,
                    peak_gpu_mb: float | None = None, started: float | None = None) -> None:
        now = time.time()
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute(
            "UPDATE tasks SET state=?, error_kind=?, error_message=?, attempts=?, finished_utc=?, updated_utc=? "
            "WHERE video_id=? AND stage=?",
            ("failed" if final else "pending", kind, message, attempt, now, now, video_id, stage))
        self._attempt(video_id, stage, attempt, backend, started, now, "failed", kind, message, worker, gpu, None, peak_gpu_mb)
        self.db.execute("COMMIT")

    def mark_skipped(self, video_id: str, stage: str, reason: str) -> None:
        self.db.execute("UPDATE tasks SET state='skipped', error_message=?, updated_utc=? WHERE video_id=? AND stage=?",
                        (reason, time.time(), video_id, stage))

    def requeue(self, video_id: str, stage: str) -> None:
        """A running task whose worker went away for reasons not its own (shutdown): back to pending."""
        self.db.execute("UPDATE tasks SET state='pending', updated_utc=? WHERE video_id=? AND stage=? AND state='running'",
                        (time.time(), video_id, stage))

    def _attempt(self, video_id, stage, attempt, backend, started, finished, outcome, kind, message, worker, gpu,
                 rss, gpu_mb) -> None:
        self.db.execute(
            "INSERT INTO attempts(video_id, stage, attempt, backend, started_utc, finished_utc, outcome, error_kind, "
            "error_message, worker, host, gpu, peak_rss_mb, peak_gpu_mb) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (video_id, stage, attempt, backend, started, finished, outcome, kind, message, worker, self.host, gpu, rss, gpu_mb))

    def attempts(self, video_id: str | None = None) -> list[dict]:
        q = "SELECT * FROM attempts" + (" WHERE video_id=?" if video_id else "") + " ORDER BY id"
        return [dict(r) for r in self.db.execute(q, (video_id,) if video_id else ())]

    # ------------------------------------------------------------------ summaries
    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for r in self.db.execute("SELECT stage, state, COUNT(*) AS n FROM tasks GROUP BY stage, state"):
            out.setdefault(r["stage"], {s: 0 for s in STATES})[r["state"]] = r["n"]
        return out

    def failures(self) -> list[TaskRow]:
        return self.tasks(state="failed")

    # ------------------------------------------------------------------ runs
    def start_run(self, argv: Iterable[str], config_yaml: str, version: str) -> int:
        cur = self.db.execute("INSERT INTO runs(started_utc, argv, config_yaml, host, y2r_version, status) VALUES (?,?,?,?,?,?)",
                              (time.time(), json.dumps(list(argv)), config_yaml, self.host, version, "running"))
        return int(cur.lastrowid)

    def finish_run(self, run_id: int, status: str) -> None:
        self.db.execute("UPDATE runs SET finished_utc=?, status=? WHERE run_id=?", (time.time(), status, run_id))

    def runs(self) -> list[dict]:
        return [dict(r) for r in self.db.execute("SELECT * FROM runs ORDER BY run_id")]

    # ------------------------------------------------------------------ memory model + workers
    def record_memory(self, stage: str, backend: str, device: str | None, frames: int, pixels: int, peak_mb: float,
                      outcome: str) -> None:
        self.db.execute(
            "INSERT INTO memory_samples(stage, backend, device, frames, pixels, peak_mb, outcome, utc) VALUES (?,?,?,?,?,?,?,?)",
            (stage, backend, device, frames, pixels, peak_mb, outcome, time.time()))

    def memory_samples(self, stage: str | None = None, backend: str | None = None) -> list[dict]:
        q, args = "SELECT * FROM memory_samples WHERE 1=1", []
        if stage:
            q += " AND stage=?"
            args.append(stage)
        if backend:
            q += " AND backend=?"
            args.append(backend)
        return [dict(r) for r in self.db.execute(q + " ORDER BY id", args)]

    def record_worker(self, run_id: int | None, worker: str, lane: str, device: str | None, started: float | None,
                      stopped: float | None, load_s: float | None, tasks: int, busy_s: float, exit_reason: str) -> None:
        self.db.execute(
            "INSERT INTO worker_stats(run_id, worker, lane, device, started_utc, stopped_utc, load_s, tasks, busy_s, exit_reason) "
            "VALUES (?,?,?,?,?,?,?,?,?,?)", (run_id, worker, lane, device, started, stopped, load_s, tasks, busy_s, exit_reason))

    def worker_stats(self, run_id: int | None = None) -> list[dict]:
        q = "SELECT * FROM worker_stats" + (" WHERE run_id=?" if run_id is not None else "") + " ORDER BY id"
        return [dict(r) for r in self.db.execute(q, (run_id,) if run_id is not None else ())]


def ledger_paths(out: Path) -> list[Path]:
    """Every ledger in an output folder: the main one and any per-shard ones (SLURM arrays)."""
    out = Path(out)
    paths = [out / LEDGER_NAME] if (out / LEDGER_NAME).exists() else []
    paths += sorted(out.glob("ledger-shard-*.sqlite"))
    return paths


def ledger_name(shard: tuple[int, int] | None) -> str:
    if shard is None:
        return LEDGER_NAME
    i, n = shard
    return f"ledger-shard-{i}-of-{n}.sqlite"
