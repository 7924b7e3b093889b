"""Plane-sweep depth with ground-truth poses, its validity mask and upsampling."""

from __future__ import annotations

import cv2
import numpy as np

from y2r.evaluation.camera_metrics import depth_metrics
from y2r.geometry import invert_se3
from y2r.stages.camera.depth import DepthOptions, consistency_mask, plane_sweep_video, scaled_K, upsample


def _grey(rgb):
    return np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in rgb])


def test_depth_from_true_poses_is_accurate_and_dense(room_orbit):
    rgb, D, K, c2w = room_orbit["rgb"], room_orbit["depth"], room_orbit["K"], room_orbit["c2w"]
    T = 16  # frames 8..23: both neighbours exist within the default frame gap
    sl = slice(8, 8 + T)
    ranges = np.tile([1.56 / 1.5, 4.06 * 1.5], (T, 1))
    res = plane_sweep_video(_grey(rgb[sl]), K, invert_se3(c2w[sl]), ranges, DepthOptions())
    m = depth_metrics(res.depth, res.valid, D[sl], metric=True)
    assert m["abs_rel"] < 0.05 and m["delta1"] > 0.97  # measured ~0.015 and 0.99
    assert m["coverage"] > 0.6
    assert np.isnan(res.depth[~res.valid]).all() and (res.depth[res.valid] > 0).all()
    # The moving cube is mostly rejected by the multi-view consistency check.
    cube = room_orbit["moving_mask"][sl]
    assert res.valid[cube].mean() < res.valid[~cube].mean()


def test_no_neighbour_with_baseline_means_no_depth(room_orbit):
    rgb = room_orbit["rgb"][:1].repeat(4, 0)
    poses = np.tile(np.eye(4), (4, 1, 1))
    res = plane_sweep_video(_grey(rgb), room_orbit["K"], poses, np.tile([1.0, 5.0], (4, 1)), DepthOptions())
    assert not res.valid.any() and res.stats["frames_with_neighbours"] == 0


def test_consistency_check_rejects_disagreeing_depth():
    K = np.array([[100.0, 0, 31.5], [0, 100.0, 23.5], [0, 0, 1]])
    T = np.tile(np.eye(4), (2, 1, 1))
    T[1, 0, 3] = -0.1
    depth = np.full((2, 48, 64), 2.0, np.float32)
    valid = np.ones((2, 48, 64), bool)
    ok = consistency_mask(depth, valid, K, T, [[1], [0]], tol=0.05, need=1)
    assert ok[:, 10:40, 10:50].all()
    depth[1] = 2.5  # the neighbour now disagrees by 25%
    assert not consistency_mask(depth, valid, K, T, [[1], [0]], tol=0.05, need=1)[0].any()


def test_upsampling_never_blends_across_invalid_pixels():
    d = np.full((4, 4), 2.0, np.float32)
    d[:, 2:] = 8.0
    v = np.ones((4, 4), bool)
    v[:, 1] = False
    up, ok = upsample(np.where(v, d, np.nan), v, 8, 8)
    # The 2 m and 8 m regions are only adjacent across the invalid column: nothing in between appears.
    assert set(np.round(up[ok], 4).tolist()) == {2.0, 8.0}
    assert not ok[:, 2:4].any()  # the invalid column stays invalid at the higher resolution
    assert np.isnan(up[~ok]).all()


def test_scaled_K_keeps_pixel_centres():
    K = np.array([[200.0, 0, 159.5], [0, 200.0, 119.5], [0, 0, 1]])
    Ks = scaled_K(K, 0.5, 0.5)
    assert np.allclose(Ks, [[100.0, 0, 79.5], [0, 100.0, 59.5], [0, 0, 1]])
