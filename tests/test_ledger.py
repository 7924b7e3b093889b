import sqlite3

import pytest

from y2r.errors import UsageError
from y2r.ledger import MIGRATIONS, Ledger, ledger_name, ledger_paths


def test_migrations_apply_once_and_wal(tmp_path):
    p = tmp_path / "ledger.sqlite"
    Ledger(p).close()
    led = Ledger(p)  # re-open: nothing re-applied
    names = [r[0] for r in led.db.execute("SELECT name FROM _migrations ORDER BY name")]
    assert names == [m[0] for m in MIGRATIONS]
    assert led.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    led.close()


def test_task_lifecycle_and_counts(tmp_path):
    led = Ledger(tmp_path / "l.sqlite")
    led.add_video("a", "/v/a.mp4", 10, 1.0)
    led.ensure_task("a", "ingest", "builtin", "h1", done=False)
    led.mark_running("a", "ingest", attempt=1, worker="w1", gpu=None, backend="builtin")
    assert led.task("a", "ingest").state == "running"
    led.mark_failed("a", "ingest", kind="crash", message="worker died", final=False, attempt=1, worker="w1")
    t = led.task("a", "ingest")
    assert (t.state, t.error_kind, t.attempts) == ("pending", "crash", 1)
    led.mark_running("a", "ingest", attempt=2, worker="w2", gpu="0", backend="builtin")
    led.mark_done("a", "ingest", config_hash="h1", duration_s=1.5, peak_rss_mb=100, peak_gpu_mb=None, num_frames=12,
                  attempt=2, worker="w2")
    t = led.task("a", "ingest")
    assert (t.state, t.error_kind, t.num_frames, t.attempts) == ("done", None, 12, 2)
    hist = led.attempts("a")
    assert [h["outcome"] for h in hist] == ["failed", "done"]
    assert led.counts()["ingest"]["done"] == 1
    led.close()


def test_ensure_task_resets_on_config_change_and_interrupted_runs(tmp_path):
    led = Ledger(tmp_path / "l.sqlite")
    led.ensure_task("a", "camera", "builtin", "h1", done=False)
    led.mark_running("a", "camera", attempt=1, worker="w", gpu=None, backend="builtin")
    # a killed run leaves 'running' behind: the next plan makes it pending again
    led.ensure_task("a", "camera", "builtin", "h1", done=False)
    assert led.task("a", "camera").state == "pending"
    led.mark_failed("a", "camera", kind="error", message="x", final=True, attempt=3)
    led.ensure_task("a", "camera", "builtin", "h2", done=False)
    t = led.task("a", "camera")
    assert (t.state, t.attempts, t.config_hash, t.error_message) == ("pending", 0, "h2", None)
    led.ensure_task("a", "camera", "builtin", "h2", done=True)
    assert led.task("a", "camera").state == "done"
    led.close()


def test_readonly_reader_while_writer_open(tmp_path):
    p = tmp_path / "l.sqlite"
    w = Ledger(p)
    w.ensure_task("a", "ingest", "builtin", "h", done=True)
    r = Ledger(p, readonly=True)
    assert r.counts()["ingest"]["done"] == 1
    with pytest.raises(sqlite3.OperationalError):
        r.db.execute("DELETE FROM tasks")
    r.close()
    w.close()
    with pytest.raises(UsageError, match="no ledger here"):
        Ledger(tmp_path / "missing.sqlite", readonly=True)


def test_memory_samples_and_shard_names(tmp_path):
    led = Ledger(tmp_path / ledger_name((2, 8)))
    led.record_memory("camera", "vipe", "0", 300, 512 * 384, 15000.0, "ok")
    led.record_memory("camera", "vipe", "0", 900, 512 * 384, 18000.0, "oom")
    rows = led.memory_samples("camera", "vipe")
    assert [(r["frames"], r["outcome"]) for r in rows] == [(300, "ok"), (900, "oom")]
    led.close()
    Ledger(tmp_path / "ledger.sqlite").close()
    assert [p.name for p in ledger_paths(tmp_path)] == ["ledger.sqlite", "ledger-shard-2-of-8.sqlite"]
