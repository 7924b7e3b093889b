from __future__ import annotations

import json
import sys

import av
import numpy as np
import pytest

from y2r.dataset.export import export
from y2r.dataset.export.views import episode_state_action
from y2r.dataset.reader import Episode
from y2r.errors import ToolUnavailable, UsageError

pq = pytest.importorskip("pyarrow.parquet")


def test_lerobot_v3_layout_and_values(out_root, tmp_path):
    root = export("lerobot", out_root, tmp_path / "lr", {"task": "pick up the cup"})
    info = json.loads((root / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0"
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"], info["fps"]) == (3, 25, 1, 10)
    assert info["splits"] == {"train": "0:3"}
    feats = info["features"]
    assert feats["observation.images.rgb"]["shape"] == [48, 64, 3]
    assert feats["observation.tracks.xyz_world"]["shape"] == [5, 3]
    assert feats["observation.state"]["shape"] == [20] and len(feats["observation.state"]["names"]) == 20

    data = pq.read_table(root / "data/chunk-000/file-000.parquet").to_pydict()
    assert data["index"] == list(range(25))
    assert data["episode_index"] == [0] * 8 + [1] * 11 + [2] * 6
    np.testing.assert_allclose(data["timestamp"][8:19], np.arange(11) / 10, rtol=1e-6)
    episodes = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    e1 = episodes[1]
    assert (e1["length"], e1["dataset_from_index"], e1["dataset_to_index"]) == (11, 8, 19)
    assert e1["tasks"] == ["pick up the cup"] and e1["y2r/episode_id"] == "clip1"
    assert e1["videos/observation.images.rgb/from_timestamp"] == pytest.approx(0.8)
    assert e1["videos/observation.images.rgb/to_timestamp"] == pytest.approx(1.9)
    assert np.asarray(e1["stats/observation.state/mean"]).shape == (20,)
    assert np.asarray(e1["stats/observation.images.rgb/mean"]).shape == (3, 1, 1)

    with Episode(out_root / "episodes" / "clip1.h5") as ep:
        tr = ep.tracks()
        got = np.asarray(data["observation.tracks.xyz_world"][8:19], dtype=np.float32)
        np.testing.assert_array_equal(got, tr.xyz_world)  # NaN where unknown, as in the episode
        state, action = episode_state_action(ep)
        np.testing.assert_allclose(np.asarray(data["observation.state"][8:19]), state)
        np.testing.assert_allclose(np.asarray(data["action"][8:19]), action)
        np.testing.assert_allclose(np.asarray(data["observation.camera.K"][8:19]), ep.K())
        rgb = ep.rgb()

    # The video holds all 25 frames; episode 1's frame 3 is at from_timestamp + 0.3 s.
    with av.open(str(root / "videos/observation.images.rgb/chunk-000/file-000.mp4")) as c:
        frames = [(f.time, f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
    assert len(frames) == 25
    t_query = e1["videos/observation.images.rgb/from_timestamp"] + 0.3
    time, img = min(frames, key=lambda x: abs(x[0] - t_query))
    assert abs(time - t_query) < 1e-4
    # Lossy codec on a tiny, high-frequency texture: check it is the right frame (the scene moves).
    mad = [np.abs(img.astype(int) - f.astype(int)).mean() for f in rgb]
    assert int(np.argmin(mad)) == 3 and mad[3] < 30

    stats = json.loads((root / "meta/stats.json").read_text())
    all_state = np.asarray(data["observation.state"], dtype=np.float64)
    np.testing.assert_allclose(stats["observation.state"]["mean"], all_state.mean(0), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(stats["observation.state"]["max"], all_state.max(0), rtol=1e-6)
    assert stats["observation.state"]["count"] == [25]
    assert set(stats["observation.state"]) >= {"q01", "q10", "q50", "q90", "q99", "std", "min"}

    tasks = pq.read_table(root / "meta/tasks.parquet")
    assert tasks.to_pydict() == {"task_index": [0], "task": ["pick up the cup"]}
    assert json.loads(tasks.schema.metadata[b"pandas"])["index_columns"] == ["task"]


def test_files_roll_over_between_episodes(out_root, tmp_path):
    root = export(
        "lerobot",
        out_root,
        tmp_path / "lr",
        {"data_files_size_in_mb": 0, "video_files_size_in_mb": 0, "include_tracks": False, "vcodec": "mpeg4"},
    )
    episodes = [
        r for p in sorted((root / "meta/episodes").rglob("*.parquet")) for r in pq.read_table(p).to_pylist()
    ]
    assert [e["data/file_index"] for e in episodes] == [0, 1, 2]
    assert [e["meta/episodes/file_index"] for e in episodes] == [0, 1, 2]
    assert [e["videos/observation.images.rgb/file_index"] for e in episodes] == [0, 1, 2]
    assert all(e["videos/observation.images.rgb/from_timestamp"] == 0 for e in episodes)
    for i, n in enumerate((8, 11, 6)):
        assert pq.read_table(root / f"data/chunk-000/file-{i:03d}.parquet").num_rows == n
    info = json.loads((root / "meta/info.json").read_text())
    assert "observation.tracks.xyz_world" not in info["features"]
    assert info["features"]["observation.images.rgb"]["info"]["video.codec"] == "mpeg4"


def test_refusals(out_root, tmp_path, monkeypatch):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(UsageError, match="not empty"):
        export("lerobot", out_root, tmp_path / "full")
    from episode_samples import write_sample

    write_sample(out_root / "episodes" / "fast.h5", fps=30.0, video_id="fast")
    with pytest.raises(UsageError, match="one fps"):
        export("lerobot", out_root, tmp_path / "lr")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ToolUnavailable, match=r"pip install 'y2r\[export\]'"):
        export("lerobot", out_root, tmp_path / "lr2")
    assert not (tmp_path / "lr").exists()
