"""TAPIP3D input/result formats and conventions, checked on TAPIP3D-format fixtures with ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from y2r.errors import InputError
from y2r.geometry import invert_se3, project, transform_points
from y2r.tools import tapip3d


@pytest.fixture(scope="module")
def files(shared):
    d = shared / "fixtures" / "tapip3d"
    with np.load(shared / "fixtures" / "room_orbit_gt.npz") as z:
        gt = {k: z[k] for k in z.files}
    with np.load(d / "room_orbit.input.npz") as z:
        inp = {k: z[k] for k in z.files}
    return d, gt, inp


def test_result_fixture_reads_to_ground_truth(files):
    d, gt, inp = files
    r = tapip3d.read_result(d / "room_orbit.result.npz")
    assert (r.num_frames, r.num_points) == (32, 64) and r.inference_hw == (24, 32)
    assert np.array_equal(r.coords, gt["track_xyz_world"].astype(np.float32))
    assert np.array_equal(r.visibs, gt["track_visible"])
    assert np.array_equal(r.query_points[:, 1:], r.coords[0]) and np.all(r.query_points[:, 0] == 0)
    # uv: world -> camera with the stored extrinsics, then the *input* K (64x48, every 5th pixel) x 5.
    K_full = np.diag([5.0, 5.0, 1.0]) @ inp["intrinsics"].astype(np.float64)
    uv = project(K_full, transform_points(r.extrinsics, r.coords.astype(np.float64)))
    assert np.abs(uv - gt["track_uv"]).max() < 3e-5
    np.testing.assert_allclose(r.extrinsics, invert_se3(gt["c2w"]), atol=1e-6)


def test_intrinsics_rescale_rule_matches_tapip3d(files):
    d, gt, inp = files
    r = tapip3d.read_result(d / "room_orbit.result.npz")
    K = tapip3d.rescale_intrinsics(inp["intrinsics"], (48, 64), (24, 32))
    np.testing.assert_allclose(K, r.intrinsics, rtol=1e-6)
    np.testing.assert_allclose(K[0, 0, 0], 51.9733 * 31 / 63, rtol=1e-5)
    back = tapip3d.rescale_intrinsics(K, (24, 32), (48, 64))
    np.testing.assert_allclose(back, inp["intrinsics"], rtol=1e-6)


def test_inference_resolution():
    assert tapip3d.inference_resolution(2) == (543, 724)
    assert tapip3d.inference_resolution(1) == (384, 512)
    assert tapip3d.inference_resolution(4) == (768, 1024)


def test_single_point_result_is_unsqueezed(tmp_path):
    T = 12
    coords = np.random.default_rng(0).normal(size=(T, 3)).astype(np.float32)
    vis = np.arange(T) % 3 > 0
    np.savez(tmp_path / "one.result.npz", coords=coords, visibs=vis, query_points=np.zeros((1, 4), np.float32),
             extrinsics=np.tile(np.eye(4, dtype=np.float32), (T, 1, 1)))
    r = tapip3d.read_result(tmp_path / "one.result.npz")
    assert r.coords.shape == (T, 1, 3) and r.visibs.shape == (T, 1)
    assert np.array_equal(r.coords[:, 0], coords) and np.array_equal(r.visibs[:, 0], vis)


def test_result_without_tracks_is_an_input_error(tmp_path):
    np.savez(tmp_path / "bad.result.npz", video=np.zeros((2, 3, 4, 4)))
    with pytest.raises(InputError, match="lack coords"):
        tapip3d.read_result(tmp_path / "bad.result.npz")


def test_input_writer_follows_tapip3d_layout(files, tmp_path):
    d, gt, inp = files
    depths = inp["depths"].copy()
    depths[0, 0, 0] = np.nan
    depths[0, 0, 1] = np.inf
    depths[0, 0, 2] = -1.0
    q = np.concatenate([np.zeros((4, 1)), gt["track_xyz_world"][0, :4]], axis=1)
    path = tapip3d.write_input(tmp_path / "room_orbit.npz", inp["video"], depths, inp["intrinsics"],
                               inp["extrinsics"], q)
    with np.load(path) as z:
        assert set(z.files) == {"video", "depths", "intrinsics", "extrinsics", "query_point"}
        for k in ("video", "depths", "intrinsics", "extrinsics"):
            assert z[k].dtype == inp[k].dtype and z[k].shape == inp[k].shape
        assert z["depths"][0, 0, :3].tolist() == [0.0, 0.0, 0.0]  # NaN/inf/negative -> 0 (invalid)
        assert np.all(np.isfinite(z["depths"]))
        assert z["query_point"].shape == (4, 4) and z["query_point"].dtype == np.float32
    assert tapip3d.result_name(path) == "room_orbit.result.npz"
    with pytest.raises(ValueError, match="uint8"):
        tapip3d.write_input(tmp_path / "x.npz", inp["video"].astype(np.float32), depths, inp["intrinsics"],
                            inp["extrinsics"], q)
