from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import yaml

from y2r.artifacts import HAND_JOINT_ORDER
from y2r.dataset.episode_writer import write_episode
from y2r.dataset.sample_artifacts import sample_artifacts
from y2r.dataset.validate import validate_episode
from y2r.errors import SchemaError
from y2r.geometry import axis_angle_to_matrix

from episode_samples import write_sample


def test_roundtrip_values_and_layout(tmp_path):
    ingest, camera, tracks, hands = art = sample_artifacts(T=8, W=64, H=48, N=5)
    p = write_sample(tmp_path / "e.h5", artifacts=art)
    with h5py.File(p) as f:
        a = f.attrs
        assert a["schema"] == "y2r.episode" and a["schema_version"] == 1
        assert (a["num_frames"], a["width"], a["height"]) == (8, 64, 48)
        assert a["fps"] == pytest.approx(10.0)
        assert yaml.safe_load(a["config"])["episode"]["compression"] == "gzip"
        assert json.loads(a["backends"]) == {"camera": {"backend": "sample"}}
        assert f["time/frame_index"].dtype == np.int32
        np.testing.assert_array_equal(f["time/frame_index"][()], ingest.frame_index)
        np.testing.assert_array_equal(f["rgb"][()], ingest.frames)
        assert f["rgb"].chunks == (1, 48, 64, 3) and f["rgb"].compression == "gzip"
        assert f["depth/depth"].dtype == np.float16 and f["depth/depth"].chunks == (1, 48, 64)
        np.testing.assert_allclose(f["depth/depth"][()], camera.depth, rtol=1e-3)
        np.testing.assert_array_equal(f["depth/valid"][()], camera.depth_valid)
        np.testing.assert_allclose(f["camera/world_T_cam"][()], camera.world_T_cam)
        assert bool(f["camera/world_T_cam"].attrs["metric_scale"]) is True
        np.testing.assert_array_equal(f["tracks/visible"][()], tracks.visible)
        np.testing.assert_array_equal(f["tracks/xyz_world"][()], tracks.xyz_world)  # NaN positions equal too
        assert list(f["hands/right/joints_cam"].attrs["joint_order"].astype(str)) == list(HAND_JOINT_ORDER)
        np.testing.assert_array_equal(f["hands/left/valid"][()], hands.left.valid)
        assert "mano" in f["hands/right"] and "mano" not in f["hands/left"]
        # Quality flags as attrs
        assert a["quality.hands_left_frac"] == pytest.approx(hands.left.valid.mean())
        assert a["quality.tracks_visible_frac"] == pytest.approx(tracks.visible.mean())
        assert a["quality.depth_valid_frac"] == pytest.approx(camera.depth_valid.mean())
        assert a["quality.camera_degenerate"] == ""
    assert validate_episode(p) == []


def test_writer_enforces_nan_and_mask_conventions(tmp_path):
    ingest, camera, tracks, hands = sample_artifacts(T=8)
    camera.depth = camera.depth.copy()
    camera.depth[0, 10, 10] = np.nan  # marked valid but not finite
    camera.depth[0, 11, 11] = -1.0
    tracks.uv[3, 0] = [1000.0, 5.0]  # visible but outside the image
    hands.right.joints_cam[4, 7] = np.nan  # a valid frame with a hole
    camera.quality = {"degenerate": "pure_rotation"}
    p = tmp_path / "e.h5"
    summary = write_episode(
        p, ingest, camera, tracks, hands, config_yaml="episode: {compression: gzip}\n", backends={}
    )
    assert summary["corrections"] == {
        "depth_invalidated_px": 2,
        "tracks_visible_demoted": 1,
        "hands_right_invalidated": 1,
    }
    with h5py.File(p) as f:
        assert not f["depth/valid"][0, 10, 10] and f["depth/depth"][0, 10, 10] == 0
        assert not f["depth/valid"][0, 11, 11] and f["depth/depth"][0, 11, 11] == 0
        assert not f["tracks/visible"][3, 0]
        assert not f["hands/right/valid"][4]
        assert np.isnan(f["hands/right/joints_cam"][4]).all()
        assert np.isnan(f["hands/right/mano/hand_pose"][4]).all()
        assert f["hands/right/score"][4] == 0
        assert f.attrs["quality.camera_degenerate"] == "pure_rotation"
        assert json.loads(f.attrs["quality"])["writer_corrections"]["tracks_visible_demoted"] == 1


def test_parts_left_out(tmp_path):
    ingest, camera, tracks, hands = sample_artifacts(T=6)
    tracks.source = "none"
    p = tmp_path / "e.h5"
    s = write_episode(
        p,
        ingest,
        camera,
        tracks,
        None,
        config_yaml="episode: {compression: lzf}\n",
        backends={},
        compression="lzf",
        store_rgb=False,
        store_depth=False,
    )
    assert s["parts"] == ["time", "camera"]
    with h5py.File(p) as f:
        assert set(f) == {"time", "camera"}
        assert np.isnan(f.attrs["quality.tracks_visible_frac"]) and np.isnan(
            f.attrs["quality.hands_left_frac"]
        )
        # depth validity is still measured when depth is not stored
        assert f.attrs["quality.depth_valid_frac"] == pytest.approx(camera.depth_valid.mean())
    assert validate_episode(p) == []


def test_mano_rotation_matrices_and_single_betas_are_converted(tmp_path):
    ingest, camera, tracks, hands = sample_artifacts(T=5)
    T = 5
    aa = np.random.default_rng(1).normal(0, 0.4, (T, 16, 3))
    R = axis_angle_to_matrix(aa)
    R[1] = np.nan  # frame 1 of the right hand is not valid in the sample
    hands.right.mano = {"global_orient": R[:, 0], "hand_pose": R[:, 1:], "betas": np.arange(10.0)}
    p = tmp_path / "e.h5"
    write_episode(p, ingest, camera, tracks, hands, config_yaml="{}\n", backends={})
    with h5py.File(p) as f:
        valid = f["hands/right/valid"][()]
        go = f["hands/right/mano/global_orient"][()]
        np.testing.assert_allclose(go[valid], aa[valid, 0], atol=1e-5)
        np.testing.assert_allclose(f["hands/right/mano/hand_pose"][()][valid], aa[valid, 1:], atol=1e-5)
        np.testing.assert_array_equal(f["hands/right/mano/betas"][0], np.arange(10.0))
        assert np.isnan(go[~valid]).all()


def test_length_mismatch_is_refused(tmp_path):
    ingest, camera, tracks, hands = sample_artifacts(T=6)
    camera.K = camera.K[:5]
    with pytest.raises(SchemaError, match="camera K has shape"):
        write_episode(tmp_path / "e.h5", ingest, camera, tracks, hands, config_yaml="", backends={})


def test_incomplete_mano_is_refused(tmp_path):
    ingest, camera, tracks, hands = sample_artifacts(T=6)
    hands.left.mano = {"betas": np.zeros((6, 10))}
    with pytest.raises(SchemaError, match="incomplete"):
        write_episode(tmp_path / "e.h5", ingest, camera, tracks, hands, config_yaml="", backends={})
