"""The local executor end to end, with synthetic backends that inject failures (real processes)."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from worker_processes import tagged_workers

from y2r import pipeline
from y2r.ledger import Ledger
from y2r.stages.base import STAGE_ORDER


def attempts(out, video_id, stage):
    with Ledger(out / "ledger.sqlite", readonly=True) as led:
        return [(a["outcome"], a["error_kind"]) for a in led.attempts(video_id) if a["stage"] == stage]


def test_run_then_rerun_does_no_work(tmp_path, video_factory, fast_config):
    vids = [video_factory(f"v{i}.mp4", seed=i) for i in range(3)]
    out = tmp_path / "out"
    r = pipeline.run(vids, out, fast_config())
    assert r.report.done == 15 and r.report.failed == 0
    assert sorted(p.name for p in (out / "episodes").iterdir()) == ["v0.h5", "v1.h5", "v2.h5"]
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "episodes").iterdir()}
    r2 = pipeline.run(vids, out, fast_config())
    assert r2.report.done == 0 and r2.already_done == 3
    assert {p: p.stat().st_mtime_ns for p in (out / "episodes").iterdir()} == mtimes


def test_every_worker_is_in_the_ledger_statistics_including_those_alive_at_the_end(tmp_path, video_factory,
                                                                                   fast_config):
    vids = [video_factory(f"v{i}.mp4", seed=i) for i in range(2)]
    out = tmp_path / "out"
    r = pipeline.run(vids, out, fast_config())
    assert r.report.done == 10
    with Ledger(out / "ledger.sqlite", readonly=True) as led:
        ran = {}
        for a in led.attempts():
            if a["outcome"] == "done":
                ran[a["worker"]] = ran.get(a["worker"], 0) + 1
        stats = {w["worker"]: w for w in led.worker_stats()}
    # Each worker that ran a task has one row, with its task count and a lifetime spanning its load.
    assert set(ran) <= set(stats)
    for wid, n in ran.items():
        w = stats[wid]
        assert w["tasks"] == n
        assert w["exit_reason"] in ("stopped", "run finished")
        assert w["stopped_utc"] - w["started_utc"] >= (w["load_s"] or 0.0) > 0.0
    assert sum(w["tasks"] for w in stats.values()) == 10


def test_progress_messages_do_not_each_wake_the_scheduler(tmp_path, video_factory, fast_config, monkeypatch):
    from y2r.execution import driver
    from y2r.execution.scheduler import Scheduler

    calls, progress = [0], [0]
    decide, handle = Scheduler.next_actions, driver.Driver._handle

    def counted_decide(self, now):
        calls[0] += 1
        return decide(self, now)

    def counted_handle(self, ev):
        progress[0] += isinstance(ev, driver.TaskProgress)
        return handle(self, ev)

    monkeypatch.setattr(Scheduler, "next_actions", counted_decide)
    monkeypatch.setattr(driver.Driver, "_handle", counted_handle)
    v = video_factory("v.mp4")
    r = pipeline.run([v], tmp_path / "out", fast_config(*(f"{s}.synthetic.s_per_frame=0.03" for s in ("camera", "tracks", "hands"))))
    assert r.report.done == 5
    # The three synthetic stages report progress after every frame; the scheduler decides after
    # results, starts and stops, and at most every 0.25 s while only progress arrives.
    assert progress[0] >= 30
    assert calls[0] < progress[0] / 2


def test_changing_one_stage_reruns_only_it_and_later_stages(tmp_path, video_factory, fast_config):
    v = video_factory("v.mp4")
    out = tmp_path / "out"
    pipeline.run([v], out, fast_config())
    marker = lambda s: json.loads((out / "work" / "v" / s / "_COMPLETE.json").read_text())["committed_utc"]
    before = {s: marker(s) for s in STAGE_ORDER}
    r = pipeline.run([v], out, fast_config("tracks.grid_size=4"))
    assert r.report.done == 2  # tracks + episode
    after = {s: marker(s) for s in STAGE_ORDER}
    assert [s for s in STAGE_ORDER if after[s] != before[s]] == ["tracks", "episode"]


def test_crash_is_retried_on_a_fresh_worker(tmp_path, video_factory, fast_config):
    v = video_factory("v.mp4")
    out = tmp_path / "out"
    r = pipeline.run([v], out, fast_config("camera.synthetic.fail=crash", "camera.synthetic.fail_times=1"))
    assert r.report.failed == 0 and (out / "episodes" / "v.h5").exists()
    assert attempts(out, "v", "camera") == [("failed", "crash"), ("done", None)]


def test_hang_is_killed_classified_and_retried(tmp_path, video_factory, fast_config):
    v = video_factory("v.mp4")
    out = tmp_path / "out"
    cfg = fast_config("camera.synthetic.fail=hang", "camera.synthetic.fail_times=1", "execution.task_timeout_s=3",
                      "execution.task_timeout_s_per_frame=0", "execution.retry.backoff_s=0")
    t0 = time.monotonic()
    r = pipeline.run([v], out, cfg)
    assert r.report.failed == 0 and time.monotonic() - t0 < 30
    assert attempts(out, "v", "camera") == [("failed", "hang"), ("done", None)]


def test_error_budget_dead_letters_one_video_and_the_others_finish(tmp_path, video_factory, fast_config):
    vids = [video_factory(f"v{i}.mp4", seed=i) for i in range(3)]
    out = tmp_path / "out"
    cfg = fast_config("hands.synthetic.fail=error", "hands.synthetic.fail_videos=[v1]", "execution.retry.backoff_s=0")
    r = pipeline.run(vids, out, cfg)
    assert r.report.failed == 1 and r.report.skipped == 1  # v1 hands failed -> v1 episode skipped
    assert [a[1] for a in attempts(out, "v1", "hands")] == ["error"] * 3
    assert sorted(p.name for p in (out / "episodes").iterdir()) == ["v0.h5", "v2.h5"]
    f = r.report.failures[0]
    assert f["video_id"] == "v1" and f["stage"] == "hands" and "synthetic failure" in f["message"]


def test_oom_on_cpu_is_retried(tmp_path, video_factory, fast_config):
    v = video_factory("v.mp4")
    out = tmp_path / "out"
    r = pipeline.run([v], out, fast_config("tracks.synthetic.fail=oom", "tracks.synthetic.fail_times=2"))
    assert r.report.failed == 0
    assert attempts(out, "v", "tracks") == [("failed", "oom"), ("failed", "oom"), ("done", None)]


def _y2r(args, env):
    return subprocess.Popen([sys.executable, "-m", "y2r.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_sigkill_of_the_driver_loses_nothing_and_leaves_no_process(tmp_path, video_factory):
    vids = [video_factory(f"v{i}.mp4", seed=i) for i in range(4)]
    out = tmp_path / "out"
    tag = uuid.uuid4().hex
    env = {**os.environ, "Y2R_TEST_TAG": tag}
    args = ["run", *map(str, vids), "-o", str(out), "-w", "2", "-q", "--set", "ingest.width=64", "--set",
            "ingest.height=48", "--set", "camera.backend=synthetic", "--set", "tracks.backend=synthetic",
            "--set", "hands.backend=synthetic", "--set", "camera.synthetic.s_per_frame=0.08"]
    p = _y2r(args, env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list((out / "episodes").glob("*.h5")):
        time.sleep(0.1)
    assert list((out / "episodes").glob("*.h5")), "no episode finished before the kill"
    p.send_signal(signal.SIGKILL)
    p.wait()
    # orphaned workers notice their owner is gone (pipe EOF / parent change) and take their group down
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and tagged_workers(tag):
        time.sleep(0.2)
    assert not tagged_workers(tag)
    # nothing half-written is visible: every stage folder has its marker, every episode is complete
    for d in (out / "work").glob("*/*"):
        assert d.name.startswith(".") or (d / "_COMPLETE.json").exists(), d
    finished = {e.stem for e in (out / "episodes").glob("*.h5")}
    with Ledger(out / "ledger.sqlite", readonly=True) as led:
        done_before = {(t.video_id, t.stage) for t in led.tasks(state="done")}
    p2 = _y2r(args, env)
    log, _ = p2.communicate(timeout=120)
    assert p2.returncode == 0, log
    with Ledger(out / "ledger.sqlite", readonly=True) as led:
        redone = [(a["video_id"], a["stage"]) for a in led.attempts() if a["outcome"] == "done"]
    assert not any(redone.count(k) > 1 for k in done_before), "finished work was redone"
    assert finished <= {e.stem for e in (out / "episodes").glob("*.h5")} and len(list((out / "episodes").glob("*.h5"))) == 4


def test_sigint_stops_cleanly_with_exit_130_and_resumes(tmp_path, video_factory):
    vids = [video_factory(f"v{i}.mp4", seed=i) for i in range(2)]
    out = tmp_path / "out"
    tag = uuid.uuid4().hex
    env = {**os.environ, "Y2R_TEST_TAG": tag}
    args = ["run", *map(str, vids), "-o", str(out), "-w", "1", "-q", "--set", "ingest.width=64", "--set",
            "ingest.height=48", "--set", "camera.backend=synthetic", "--set", "tracks.backend=synthetic",
            "--set", "hands.backend=synthetic", "--set", "camera.synthetic.s_per_frame=0.5"]
    p = _y2r(args, env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not tagged_workers(tag):
        time.sleep(0.1)
    time.sleep(1.0)
    p.send_signal(signal.SIGINT)
    log, _ = p.communicate(timeout=60)
    assert p.returncode == 130, log
    assert "interrupted" in log
    assert not tagged_workers(tag)
    with Ledger(out / "ledger.sqlite", readonly=True) as led:
        assert not led.tasks(state="running")  # requeued, not left 'running'
