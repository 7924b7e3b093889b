from __future__ import annotations

import pickle

import numpy as np
import pytest

from y2r.dataset.reader import Episode, EpisodeDataset, find_episode_files
from y2r.dataset.sample_artifacts import sample_artifacts
from y2r.errors import SchemaError, ToolUnavailable, UsageError


def test_episode_accessors_match_artifacts(tmp_path):
    from episode_samples import write_sample

    ingest, camera, tracks, hands = art = sample_artifacts(T=8)
    p = write_sample(tmp_path / "e.h5", artifacts=art)
    with Episode(p) as ep:
        assert (ep.episode_id, ep.num_frames, ep.width, ep.height) == ("sample", 8, 64, 48)
        assert ep.duration_s == pytest.approx(0.8)
        assert ep.metric_scale is True
        np.testing.assert_array_equal(ep.rgb(3), ingest.frames[3])
        np.testing.assert_array_equal(ep.rgb([5, 1, 5]), ingest.frames[[5, 1, 5]])  # any order, repeats
        d = ep.depth(slice(0, 2), invalid=np.nan)
        assert d.dtype == np.float32 and np.isnan(d[:, 0, 0]).all()
        np.testing.assert_allclose(d[:, 10:, 10:], camera.depth[:2, 10:, 10:], rtol=1e-3)
        np.testing.assert_allclose(
            ep.cam_T_world() @ ep.world_T_cam(), np.broadcast_to(np.eye(4), (8, 4, 4)), atol=1e-5
        )
        tr = ep.tracks()
        np.testing.assert_array_equal(tr.visible, tracks.visible)
        assert tr.query.shape == (5, 3)
        right = ep.hand("right", slice(2, 4))
        np.testing.assert_allclose(right.joints_cam, hands.right.joints_cam[2:4], rtol=1e-6)
        assert right.mano is not None and right.mano["betas"].shape == (2, 10)
        assert ep.hand("left").mano is None
        assert ep.quality_flags()["hands_left_frac"] == pytest.approx(0.5)
        assert ep.config()["episode"]["compression"] == "gzip"
        assert "rgb" in ep.keys() and "hands/left/mano/betas" not in ep.keys()
        with pytest.raises(KeyError, match="no dataset '/hands/left/mano/betas'"):
            ep.read("hands/left/mano/betas")


def test_episode_reopens_after_pickling(episode):
    ep = Episode(episode)
    assert ep.num_frames == 8
    clone = pickle.loads(pickle.dumps(ep))
    np.testing.assert_array_equal(clone.K(), ep.K())
    ep.close()
    clone.close()


def test_reader_refuses_other_versions(episode):
    import h5py

    with h5py.File(episode, "r+") as f:
        f.attrs["schema_version"] = np.int64(3)
    with pytest.raises(SchemaError, match="upgrade y2r"):
        Episode(episode).K()


def test_dataset_windows(out_root):
    # episodes of 8, 11 and 6 frames; window 4, stride 3 -> 2 + 3 + 1 windows
    ds = EpisodeDataset(
        out_root, window=4, stride=3, keys=["rgb", "tracks/xyz_world", "tracks/query", "hands/right/valid"]
    )
    assert len(ds) == 6
    got = [(ds[i]["episode_id"], ds[i]["start"]) for i in range(len(ds))]
    assert got == [("clip0", 0), ("clip0", 3), ("clip1", 0), ("clip1", 3), ("clip1", 6), ("clip2", 0)]
    item = ds[-2]
    assert item["rgb"].shape == (4, 48, 64, 3) and item["rgb"].dtype == np.uint8
    assert item["tracks/xyz_world"].shape == (4, 5, 3)
    assert item["tracks/query"].shape == (5, 3)  # per-episode key comes whole
    with Episode(out_root / "episodes" / "clip1.h5") as ep:
        np.testing.assert_array_equal(item["rgb"], ep.rgb(slice(6, 10)))
    with pytest.raises(IndexError):
        ds[6]
    # a window longer than an episode skips it
    assert [ds2["episode_id"] for ds2 in EpisodeDataset(out_root, window=7, keys=["rgb"])] == [
        "clip0",
        "clip1",
    ]


def test_dataset_requires_keys_everywhere(out_root, tmp_path):
    from episode_samples import write_sample

    write_sample(out_root / "episodes" / "nodepth.h5", store_depth=False, video_id="nodepth")
    with pytest.raises(UsageError, match="nodepth.h5: lacks /depth/depth"):
        EpisodeDataset(out_root, window=2, keys=["depth/depth"])
    with pytest.raises(UsageError, match="unknown keys"):
        EpisodeDataset(out_root, keys=["depth"])


def test_to_torch_without_torch_says_how_to_install(out_root):
    ds = EpisodeDataset(out_root, window=2, keys=["camera/K"])
    try:
        import torch  # noqa: F401
    except ImportError:
        with pytest.raises(ToolUnavailable, match=r"pip install 'y2r\[torch\]'"):
            ds.to_torch()
    else:  # pragma: no cover - torch is optional
        t = ds.to_torch()
        assert tuple(t[0]["camera/K"].shape) == (2, 3, 3)


def test_find_episode_files(out_root):
    (out_root / "episodes" / ".clip9.h5.tmp").write_bytes(b"")
    assert [p.name for p in find_episode_files(out_root)] == ["clip0.h5", "clip1.h5", "clip2.h5"]
    assert find_episode_files([out_root / "x.h5"]) == [out_root / "x.h5"]
