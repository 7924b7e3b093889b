"""--shard I/N for SLURM job arrays: disjoint shards that cover every video, one ledger per shard,
``y2r status`` merging them, and the indices to resubmit (``--unfinished --shards``)."""

from __future__ import annotations

import collections
import hashlib
import json
import os
import socket
import time

import pytest
from cli_runner import run_main as cli

from y2r import pipeline
from y2r.ledger import Ledger, ledger_name
from y2r.pipeline import shard_of
from y2r.status import array_ranges, collect_status, live_shards, shards_to_resubmit


@pytest.mark.parametrize("n", [1, 2, 3, 8, 16])
def test_shards_are_disjoint_cover_every_video_and_are_balanced(n):
    ids = [f"clip_{i:04d}" for i in range(600)] + ["Küche-01", "video (1)", "a.b.c", "x" * 120]
    shards = collections.defaultdict(set)
    for vid in ids:
        s = shard_of(vid, n)
        assert 0 <= s < n
        shards[s].add(vid)
    assert set().union(*shards.values()) == set(ids)
    assert sum(len(s) for s in shards.values()) == len(ids)  # disjoint
    mean = len(ids) / n
    assert all(0.5 * mean <= len(shards[i]) <= 1.5 * mean for i in range(n))


def test_shard_of_is_frozen():
    # Resubmitted array tasks must find their videos where the first submission put them: the hash
    # (first 16 hex digits of sha256(video_id), mod N) must never change between versions.
    assert [shard_of(f"v{i}", 3) for i in range(8)] == [1, 0, 2, 1, 2, 1, 2, 0]
    assert shard_of("clip", 2) == 1


def test_array_ranges_use_sbatch_syntax():
    assert array_ranges([7, 0, 1, 2, 5, 8, 2]) == "0-2,5,7-8"
    assert array_ranges([3]) == "3"
    assert array_ranges([]) == ""


def test_shards_split_the_work_and_status_merges_their_ledgers(tmp_path, video_factory, fast_config, capsys):
    vids = [video_factory(f"v{i}.mp4", seed=i) for i in range(4)]
    out = tmp_path / "out"
    for i in range(2):
        r = pipeline.run(vids, out, fast_config(), shard=(i, 2))
        mine = sorted(f"v{k}" for k in range(4) if shard_of(f"v{k}", 2) == i)
        assert r.videos == len(mine) == 2 and r.report.failed == 0
        with Ledger(out / ledger_name((i, 2)), readonly=True) as led:
            assert sorted(led.video_ids().values()) == mine  # this shard's videos and no other
    assert not (out / "ledger.sqlite").exists()
    # One live-status file per shard (concurrent shards would otherwise overwrite one another's).
    assert not (out / "status.json").exists()
    for i in range(2):
        snap = json.loads((out / f"status-shard-{i}-of-2.json").read_text())
        assert snap["final"] and snap["host"] == socket.gethostname()
    assert sorted(p.name for p in (out / "episodes").iterdir()) == ["v0.h5", "v1.h5", "v2.h5", "v3.h5"]
    st = collect_status(out)
    assert st["videos"] == 4 and st["ledgers"] == ["ledger-shard-0-of-2.sqlite", "ledger-shard-1-of-2.sqlite"]
    assert st["stages"]["episode"]["done"] == 4 and not st["unfinished"] and not st["failures"]
    assert shards_to_resubmit(out) == []
    code, text = cli(["status", str(out), "--unfinished", "--shards"], capsys)
    assert code == 0 and text == ""
    code, text = cli(["status", str(out)], capsys)
    assert code == 0 and "4 videos (2 shard ledgers)" in text


def test_unfinished_shards_are_listed_for_resubmission(tmp_path, video_factory, fast_config, capsys):
    # v1 -> shard 0, v0 -> shard 1, v2 -> shard 2 (of 3)
    vids = {f"v{i}": video_factory(f"v{i}.mp4", seed=i) for i in range(3)}
    out = tmp_path / "out"
    paths = list(vids.values())
    failing = fast_config("hands.synthetic.fail=error", "hands.synthetic.fail_videos=[v0]", "execution.retry.backoff_s=0")
    r1 = pipeline.run(paths, out, failing, shard=(1, 3))
    assert r1.report.failed == 1
    r0 = pipeline.run(paths, out, fast_config(), shard=(0, 3))
    assert r0.report.failed == 0 and r0.videos == 1
    # Shard 2's job died during discovery: its ledger exists with a run that never ended and no video.
    with Ledger(out / ledger_name((2, 3))) as led:
        led.start_run(["y2r", "run"], "", "test")
    assert shards_to_resubmit(out) == [1, 2]
    code, text = cli(["status", str(out), "--unfinished", "--shards"], capsys)
    assert code == 0 and text.strip() == "1-2"
    code, text = cli(["status", str(out), "--unfinished"], capsys)
    assert code == 0 and text.split() == [str(vids["v0"].resolve())]  # the videos the ledgers know of
    # The manifest is written by whichever shard finished last (shard 0 here) and lists every failure.
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    status = {r["id"]: r["status"] for r in rows}
    assert status["v0"] == "failed" and status["v1"] != "failed"
    code, text = cli(["status", str(out), "--shards"], capsys)
    assert code == 2 and "--shards goes with --unfinished" in text
    # Resubmit the listed indices: everything finishes and nothing is left to resubmit.
    for i in (1, 2):
        pipeline.run(paths, out, fast_config(), shard=(i, 3))
    assert shards_to_resubmit(out) == []
    assert sorted(p.name for p in (out / "episodes").iterdir()) == ["v0.h5", "v1.h5", "v2.h5"]


def test_status_shards_needs_shard_ledgers(tmp_path, video_factory, fast_config, capsys):
    out = tmp_path / "out"
    pipeline.run([video_factory("v.mp4")], out, fast_config())
    code, text = cli(["status", str(out), "--unfinished", "--shards"], capsys)
    assert code == 2 and "no shard ledgers here" in text


def test_a_shard_does_not_sweep_another_shards_work_in_progress(tmp_path, video_factory, fast_config):
    vids = [video_factory(f"v{i}.mp4", seed=i) for i in range(2)]  # v0 -> shard 1, v1 -> shard 0 (of 2)
    out = tmp_path / "out"
    theirs = out / "work" / "v0" / ".camera.tmp-4242-deadbeef"  # shard 1 is computing v0's camera now
    mine = out / "work" / "v1" / ".camera.tmp-1111-cafecafe"  # left by a killed run of shard 0
    for d in (theirs, mine):
        d.mkdir(parents=True)
        (d / "partial.npy").write_bytes(b"x")
    r = pipeline.run(vids, out, fast_config(), shard=(0, 2))
    assert r.videos == 1 and r.report.failed == 0
    assert theirs.exists() and (theirs / "partial.npy").exists()
    assert not mine.exists()


def test_ids_stay_consistent_across_shards_when_inputs_grow(tmp_path, video_factory, fast_config):
    first = shard_of("clip", 2)
    # Pick a folder for the first clip whose colliding id ("clip-<hash of its path>", what a shard
    # that does not know it would call it) belongs to the *other* shard: the case that duplicates work.
    folder = next(tmp_path / f"a{k}" for k in range(64)
                  if shard_of(f"clip-{hashlib.sha1(str((tmp_path / f'a{k}' / 'clip.mp4').resolve()).encode()).hexdigest()[:6]}", 2)
                  != first)
    a = video_factory("clip.mp4", folder=folder, seed=1)
    out = tmp_path / "out"
    pipeline.run([a], out, fast_config(), shard=(first, 2))
    # A second clip.mp4 joins the list: both stems now collide. The shard that did not see the first
    # run must still know a/clip.mp4 as "clip" (owned by the other shard), not re-id and redo it.
    b = video_factory("clip.mp4", folder=tmp_path / "b", seed=2)
    for i in range(2):
        pipeline.run([a, b], out, fast_config(), shard=(i, 2))
    ids_of = collections.defaultdict(set)
    for i in range(2):
        with Ledger(out / ledger_name((i, 2)), readonly=True) as led:
            for path, vid in led.video_ids().items():
                ids_of[path].add(vid)
    assert ids_of[str(a.resolve())] == {"clip"}
    (b_id,) = ids_of[str(b.resolve())]
    assert b_id.startswith("clip-") and shard_of(b_id, 2) in (0, 1)
    assert sorted(p.stem for p in (out / "episodes").iterdir()) == sorted(["clip", b_id])


def test_status_shows_the_shards_running_now_on_any_host(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    Ledger(out / ledger_name((0, 4))).close()
    now = time.time()
    base = {"stages": {}, "gpus": [], "lanes": {}, "elapsed_s": 12.0, "eta_s": 30.0, "final": False,
            "running": [{"video_id": "v", "stage": "camera"}]}
    snaps = {
        0: {**base, "host": "node-a", "pid": 1234, "updated_utc": now - 3},  # another node, fresh: live
        1: {**base, "host": "node-b", "pid": 1234, "updated_utc": now - 300},  # another node, silent: gone
        2: {**base, "host": socket.gethostname(), "pid": os.getpid(), "updated_utc": now - 300},  # here, alive
        3: {**base, "host": "node-c", "pid": 1, "updated_utc": now, "final": True},  # finished
    }
    for i, snap in snaps.items():
        (out / f"status-shard-{i}-of-4.json").write_text(json.dumps(snap))
    assert [(s["shard"], s["host"]) for s in live_shards(out)] == [(0, "node-a"), (2, socket.gethostname())]
    code, text = cli(["status", str(out)], capsys)
    assert code == 0 and "shards running now" in text and "node-a" in text and "node-b" not in text
