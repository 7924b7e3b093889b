from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from episode_samples import write_sample

from y2r.dataset.reader import Episode
from y2r.dataset.stats import QUANTILES, RunningStats, quantile_key, write_stats


def _numpy_reference(values: np.ndarray) -> dict:
    return {
        "count": len(values),
        "mean": values.mean(0),
        "std": values.std(0),
        "min": values.min(0),
        "max": values.max(0),
    }


def test_stats_json_matches_numpy(out_root):
    path = write_stats(out_root)
    assert path == out_root / "stats.json"
    doc = json.loads(path.read_text())
    assert doc["episodes"] == 3 and doc["frames"] == 8 + 11 + 6
    depth, xyz, joints = [], [], []
    for p in sorted((out_root / "episodes").glob("*.h5")):
        with Episode(p) as ep:
            depth.append(ep.depth()[ep.depth_valid()].astype(np.float64))
            tr = ep.tracks()
            xyz.append(tr.xyz_world[tr.visible].astype(np.float64))
            h = ep.hand("left")
            joints.append(h.joints_cam[h.valid].reshape(-1, 3).astype(np.float64))
    for key, vals in (
        ("depth/depth", np.concatenate(depth)[:, None]),
        ("tracks/xyz_world", np.concatenate(xyz)),
        ("hands/left/joints_cam", np.concatenate(joints)),
    ):
        got = doc["keys"][key]
        ref = _numpy_reference(vals)
        assert got["count"] == [ref["count"]] * vals.shape[1]
        for stat in ("mean", "std", "min", "max"):
            np.testing.assert_allclose(got[stat], ref[stat], rtol=1e-9, atol=1e-12, err_msg=f"{key} {stat}")
        if got["exact_quantiles"]:
            for q in QUANTILES:
                np.testing.assert_allclose(got[quantile_key(q)], np.quantile(vals, q, axis=0), rtol=1e-12)
    # depth has more valid pixels (3 episodes x ~25 frames x 3068) than the reservoir: approximate quantiles
    d = doc["keys"]["depth/depth"]
    assert d["exact_quantiles"] is False and d["sampled_rows"] == 65536
    allz = np.concatenate(depth)
    for q in QUANTILES:
        # tolerance: a few standard errors of the sample quantile, in value units
        assert abs(d[quantile_key(q)][0] - np.quantile(allz, q)) < 0.02
    assert doc["keys"]["tracks/xyz_world"]["exact_quantiles"] is True


def test_merge_equals_single_pass():
    rng = np.random.default_rng(0)
    x = rng.normal([1.0, -2.0], [0.5, 3.0], (5000, 2))
    x[::7, 1] = np.nan  # skipped per component
    whole = RunningStats(["a", "b"], reservoir=100_000)
    whole.update(x)
    parts = [RunningStats(["a", "b"], reservoir=100_000, rng=np.random.default_rng(i)) for i in range(3)]
    for p, chunk in zip(parts, np.array_split(x, 3), strict=True):
        p.update(chunk)
    merged = parts[0].merge(parts[1]).merge(parts[2])
    np.testing.assert_array_equal(merged.count, whole.count)
    np.testing.assert_array_equal(merged.count, [5000, 5000 - len(range(0, 5000, 7))])
    np.testing.assert_allclose(merged.mean, np.nanmean(x, 0), rtol=1e-12)
    np.testing.assert_allclose(merged.std, np.nanstd(x, 0), rtol=1e-10)
    np.testing.assert_allclose(merged.min, np.nanmin(x, 0))
    np.testing.assert_allclose(merged.max, np.nanmax(x, 0))
    # exact quantiles while everything fits in the reservoir
    np.testing.assert_allclose(merged.quantiles()["q25"], np.nanquantile(x, 0.25, axis=0), rtol=1e-12)


def test_reservoir_merge_is_uniform():
    """Merging a reservoir of 1,000 rows with one of 9,000 keeps ~10 % of its rows from the first."""
    from_a = []
    for seed in range(200):
        a = RunningStats(["v"], reservoir=500, rng=np.random.default_rng(seed))
        b = RunningStats(["v"], reservoir=500, rng=np.random.default_rng(seed + 1000))
        a.update(np.zeros(1000))
        b.update(np.ones(9000))
        a.merge(b)
        assert len(a.sample) == 500 and a.rows_seen == 10_000
        from_a.append(float((a.sample == 0).mean()))
    assert np.mean(from_a) == pytest.approx(0.1, abs=0.005)


def test_approximate_quantiles_of_a_large_stream():
    rng = np.random.default_rng(3)
    s = RunningStats(["v"], reservoir=4096, rng=rng)
    data = rng.standard_normal(200_000)
    for chunk in np.array_split(data, 50):
        s.update(chunk)
    q = s.quantiles()
    for level in (0.05, 0.5, 0.95):
        assert q[quantile_key(level)][0] == pytest.approx(np.quantile(data, level), abs=0.08)
    assert s.to_dict()["exact_quantiles"] is False


def test_empty_out_root(tmp_path):
    doc = json.loads(write_stats(tmp_path).read_text())
    assert doc["episodes"] == 0 and doc["keys"] == {}


def _moments(doc: dict, key: str) -> dict:
    return {k: doc["keys"][key][k] for k in ("count", "mean", "std", "min", "max")}


def _assert_same_moments(doc: dict, ref: dict) -> None:
    for key in ("depth/depth", "tracks/xyz_world", "hands/left/joints_cam", "camera/K"):
        got, want = _moments(doc, key), _moments(ref, key)
        assert got["count"] == want["count"], key
        for stat in ("mean", "std", "min", "max"):
            np.testing.assert_allclose(got[stat], want[stat], rtol=1e-9, err_msg=f"{key} {stat}")


def _copy_episodes(src_root: Path, dst_root: Path) -> Path:
    """Another output folder with the same episode files (nothing else: no state, no stage folders)."""
    (dst_root / "episodes").mkdir(parents=True)
    for p in (src_root / "episodes").glob("*.h5"):
        (dst_root / "episodes" / p.name).write_bytes(p.read_bytes())
    return dst_root


def test_a_rerun_reads_only_new_episodes_and_equals_a_full_pass(out_root, tmp_path, monkeypatch):
    from y2r.dataset import stats as stats_mod
    from y2r.dataset.stats import STATE_FILE

    # the reference: all four episodes in one pass
    ref_root = _copy_episodes(out_root, tmp_path / "REF")
    write_sample(ref_root / "episodes" / "clip3.h5", T=9, seed=3, video_id="clip3")
    ref = json.loads(write_stats(ref_root).read_text())

    write_stats(out_root)
    assert (out_root / STATE_FILE).exists()
    read: list[str] = []
    real = stats_mod.episode_stats
    monkeypatch.setattr(stats_mod, "episode_stats", lambda p, r: read.append(Path(p).name) or real(p, r))
    # nothing new: nothing read, same document
    before = (out_root / "stats.json").read_text()
    write_stats(out_root)
    assert read == [] and json.loads((out_root / "stats.json").read_text())["keys"] == json.loads(before)["keys"]
    # one new episode: only it is read, and the moments equal a full pass over all four
    (out_root / "episodes" / "clip3.h5").write_bytes((ref_root / "episodes" / "clip3.h5").read_bytes())
    doc = json.loads(write_stats(out_root).read_text())
    assert read == ["clip3.h5"]
    assert doc["episodes"] == ref["episodes"] == 4 and doc["frames"] == ref["frames"]
    _assert_same_moments(doc, ref)
    # exact quantiles survive the state: equal to the full pass
    xyz = doc["keys"]["tracks/xyz_world"]
    assert xyz["exact_quantiles"] is True
    np.testing.assert_allclose(xyz["q50"], ref["keys"]["tracks/xyz_world"]["q50"], rtol=1e-12)


def test_a_replaced_or_removed_episode_triggers_a_full_recompute(out_root, monkeypatch):
    from y2r.dataset import stats as stats_mod

    write_stats(out_root)
    read: list[str] = []
    real = stats_mod.episode_stats
    monkeypatch.setattr(stats_mod, "episode_stats", lambda p, r: read.append(Path(p).name) or real(p, r))
    # re-written episode (new content, new size/mtime): moments cannot be un-merged, so all are read
    write_sample(out_root / "episodes" / "clip1.h5", T=5, seed=7, video_id="clip1")
    doc = json.loads(write_stats(out_root).read_text())
    assert sorted(read) == ["clip0.h5", "clip1.h5", "clip2.h5"] and doc["frames"] == 8 + 5 + 6
    read.clear()
    (out_root / "episodes" / "clip2.h5").unlink()
    doc = json.loads(write_stats(out_root).read_text())
    assert sorted(read) == ["clip0.h5", "clip1.h5"] and doc["episodes"] == 2 and doc["frames"] == 8 + 5


def test_statistics_saved_by_the_episode_stage_are_merged_unless_the_file_changed(out_root, tmp_path, monkeypatch):
    from y2r.artifacts import ArtifactStore
    from y2r.dataset import stats as stats_mod
    from y2r.dataset.stats import EPISODE_STATS_FILE, save_episode_stats

    ref_root = _copy_episodes(out_root, tmp_path / "REF")  # nothing saved there: every file is read
    ref = json.loads(write_stats(ref_root).read_text())
    store = ArtifactStore(out_root)
    for i in range(3):
        store.stage_dir(f"clip{i}", "episode").mkdir(parents=True)
        save_episode_stats(store.episode_path(f"clip{i}"), store.stage_dir(f"clip{i}", "episode") / EPISODE_STATS_FILE)
    read: list[str] = []
    real = stats_mod.episode_stats
    monkeypatch.setattr(stats_mod, "episode_stats", lambda p, r: read.append(Path(p).name) or real(p, r))
    doc = json.loads(write_stats(out_root).read_text())
    assert read == []  # every episode's statistics came from its stage folder
    assert doc["episodes"] == ref["episodes"] == 3 and doc["frames"] == ref["frames"]
    _assert_same_moments(doc, ref)
    # a file re-written after its statistics were saved (by hand, by another tool): they are stale
    write_sample(out_root / "episodes" / "clip1.h5", T=5, seed=7, video_id="clip1")
    doc = json.loads(write_stats(out_root).read_text())
    assert read == ["clip1.h5"] and doc["frames"] == 8 + 5 + 6


def test_a_corrupt_state_is_recomputed_not_trusted(out_root):
    from y2r.dataset.stats import STATE_FILE

    first = json.loads(write_stats(out_root).read_text())
    (out_root / STATE_FILE).write_bytes(b"not an npz")
    doc = json.loads(write_stats(out_root).read_text())
    assert doc["episodes"] == first["episodes"] == 3
    assert _moments(doc, "depth/depth") == _moments(first, "depth/depth")
