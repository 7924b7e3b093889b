"""Discovery, stable ids, and a whole run over the bad-input zoo: every bad file gets a clear
one-line error naming it, and every good file becomes an episode."""

import pytest

from y2r import pipeline
from y2r.config import load_config
from y2r.ledger import Ledger
from y2r.pipeline import assign_ids, discover, fingerprints, safe_stem, shard_of


def test_discover_files_folders_lists_and_dedup(tmp_path, video_factory):
    a = video_factory("a.mp4", folder=tmp_path / "d")
    b = video_factory("b.MOV", folder=tmp_path / "d" / "sub")
    (tmp_path / "d" / "notes.txt").write_text("not listed")  # not a video extension, not a list arg
    lst = tmp_path / "list.txt"
    lst.write_text(f"# my videos\n{a}\n\nd/sub/b.MOV\n")
    found = discover([tmp_path / "d", lst, a], [".mp4", ".mov"])
    assert found == [a, b]  # recursive, case-insensitive, de-duplicated across inputs
    assert discover([tmp_path / "missing.mp4"], [".mp4"]) == [tmp_path / "missing.mp4"]


def test_ids_are_safe_unique_and_stable(tmp_path):
    p1 = tmp_path / "x" / "clip.mp4"
    p2 = tmp_path / "y" / "clip.mp4"
    p3 = tmp_path / "my vidéo (1).mp4"
    ids = assign_ids([p1, p2, p3], {})
    assert ids[p1] != ids[p2] and ids[p1].startswith("clip-") and ids[p2].startswith("clip-")
    assert ids[p3] == "my_vidéo_1" == safe_stem(p3)
    # a path seen before keeps its id even if a new colliding file appears
    again = assign_ids([p1, p2, p3, tmp_path / "z" / "clip.mp4"], {str(p1.absolute()): "clip"})
    assert again[p1] == "clip" and again[tmp_path / "z" / "clip.mp4"] != "clip"


def test_fingerprints_chain_downstream_only():
    base = fingerprints(load_config())
    cam = fingerprints(load_config(None, ["camera.builtin.depth_planes=32"]))
    assert [s for s in base if base[s] != cam[s]] == ["camera", "tracks", "hands", "episode"]
    hands = fingerprints(load_config(None, ["hands.temporal.max_gap_frames=9"]))
    assert [s for s in base if base[s] != hands[s]] == ["hands", "episode"]
    # options of a backend that is not selected do not matter
    unused = fingerprints(load_config(None, ["camera.vipe.pipeline=no_vda"]))
    assert unused == base


def test_shards_partition_videos():
    ids = [f"video{i}" for i in range(200)]
    shards = [shard_of(v, 4) for v in ids]
    assert set(shards) == {0, 1, 2, 3} and all(30 < shards.count(k) < 70 for k in range(4))


def test_bad_input_zoo_run_completes(tmp_path, video_factory, fast_config):
    zoo = tmp_path / "zoo"
    video_factory("good.mp4", folder=zoo)
    video_factory("clip with spaces é.mp4", folder=zoo, seed=1)
    video_factory("same.mp4", folder=zoo / "day1", seed=2)
    video_factory("same.mp4", folder=zoo / "day2", seed=3)
    (zoo / "empty.mp4").write_bytes(b"")
    (zoo / "text.mp4").write_text("hello " * 100)
    one = video_factory("one_frame.mp4", T=1, folder=zoo)
    trunc = video_factory("truncated.mp4", T=30, folder=zoo, seed=4)
    trunc.write_bytes(trunc.read_bytes()[:2000])
    missing = tmp_path / "not_there.mp4"
    out = tmp_path / "out"
    r = pipeline.run([zoo, missing], out, fast_config())
    eps = sorted(p.name for p in (out / "episodes").iterdir())
    assert len(eps) == 4 and "good.h5" in eps and "clip_with_spaces_é.h5" in eps
    assert sum(e.startswith("same-") for e in eps) == 2
    msgs = {f["video_id"]: f["message"] for f in r.report.failures}
    assert msgs["empty"] == f"{zoo / 'empty.mp4'}: empty file (0 bytes)"
    assert msgs["text"].startswith(f"{zoo / 'text.mp4'}: not a readable video")
    assert msgs["one_frame"] == f"{one}: only 1 frame decoded; need at least 2"
    assert msgs["truncated"].startswith(str(trunc))
    assert msgs["not_there"] == f"{missing}: file not found"
    assert all("\n" not in m for m in msgs.values())
    assert all(f["kind"] == "bad_input" for f in r.report.failures)
    with Ledger(out / "ledger.sqlite", readonly=True) as led:
        # bad input is not retried
        assert all(a["attempt"] == 1 for a in led.attempts() if a["outcome"] == "failed")


def test_gpu_backend_without_a_gpu_fails_fast_with_a_fix(tmp_path, video_factory, fast_config):
    from y2r.errors import ToolUnavailable

    v = video_factory("v.mp4")
    cfg = fast_config("camera.synthetic.gpu=true", "execution.gpus.devices=[]")
    with pytest.raises(ToolUnavailable, match="camera/synthetic needs an NVIDIA GPU but none is visible"):
        pipeline.run([v], tmp_path / "out", cfg)
