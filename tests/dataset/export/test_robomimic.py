from __future__ import annotations

import h5py
import numpy as np
import pytest

from y2r.dataset.export import export
from y2r.dataset.export.views import wrist_motion
from y2r.dataset.reader import Episode
from y2r.errors import UsageError


def test_robomimic_layout_and_values(out_root, tmp_path):
    path = export("robomimic", out_root, tmp_path / "rm", {"val_fraction": 0.34, "next_obs": True})
    assert path == tmp_path / "rm" / "robomimic.hdf5"
    with h5py.File(path) as f:
        data = f["data"]
        assert int(data.attrs["total"]) == 8 + 11 + 6
        assert sorted(data) == ["demo_0", "demo_1", "demo_2"]
        train = [x.decode() for x in f["mask/train"][()]]
        valid = [x.decode() for x in f["mask/valid"][()]]
        assert len(valid) == 1 and sorted(train + valid) == ["demo_0", "demo_1", "demo_2"]
        d = data["demo_1"]
        assert d.attrs["num_samples"] == 11 and d.attrs["y2r_episode_id"] == "clip1"
        obs = d["obs"]
        with Episode(out_root / "episodes" / "clip1.h5") as ep:
            np.testing.assert_array_equal(obs["camera_image"][()], ep.rgb())
            np.testing.assert_allclose(obs["camera_depth"][()][..., 0], ep.depth())
            np.testing.assert_allclose(obs["camera_pos"][()], ep.world_T_cam()[:, :3, 3])
            h = ep.hand("left")
            assert (obs["hand_left_valid"][()][:, 0] == h.valid).all()
            j = obs["hand_left_joints"][()]
            assert not np.isnan(j).any() and (j[~h.valid] == 0).all()
            np.testing.assert_allclose(j[h.valid], h.joints_cam[h.valid].reshape(-1, 63))
            np.testing.assert_allclose(
                obs["hand_left_wrist_quat"][()][~h.valid], [[0, 0, 0, 1]] * (~h.valid).sum()
            )
            tr = ep.tracks()
            np.testing.assert_allclose(obs["tracks_xyz"][()], np.nan_to_num(tr.xyz_world).reshape(11, -1))
            right_motion, _ = wrist_motion(ep.hand("right"), ep.world_T_cam())
            np.testing.assert_allclose(d["actions"][()][:, 3:], right_motion, atol=1e-7)
        assert d["dones"][()].tolist() == [0] * 10 + [1]
        # next_obs is obs shifted by one, the last frame repeated
        np.testing.assert_array_equal(d["next_obs/camera_pos"][()][:-1], obs["camera_pos"][()][1:])
        np.testing.assert_array_equal(d["next_obs/camera_image"][()][-1], obs["camera_image"][()][-1])


def test_robomimic_options_are_checked(out_root, tmp_path):
    with pytest.raises(UsageError, match="unknown options"):
        export("robomimic", out_root, tmp_path / "x.hdf5", {"bogus": 1})
    with pytest.raises(UsageError, match="unknown export format"):
        export("zarr", out_root, tmp_path / "x")
