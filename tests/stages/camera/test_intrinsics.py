"""Intrinsics of the stored frames: from source-pixel K, from a FOV prior, epipolar focal cost."""

from __future__ import annotations

import numpy as np

from y2r.config import Intrinsics
from y2r.geometry import focal_from_fov, intrinsics_matrix
from y2r.stages.camera.intrinsics import K_from_config, K_from_fov, principal_point, source_to_stored

from .camera_clips import meta_for


def _meta(W=512, H=384, source=(1920, 1080), crop=(240.0, 0.0, 1440.0, 1080.0)):
    return meta_for(np.zeros((2, H, W, 3), np.uint8), source_wh=source, crop=crop)


def test_config_K_follows_crop_and_resize_of_pixel_centres():
    # 1920x1080 centre-cropped to 1440x1080 (4:3), resized to 512x384: scale 512/1440.
    meta = _meta()
    K = K_from_config(Intrinsics(fx=1500.0, fy=1500.0, cx=959.5, cy=539.5), meta)
    s = 512 / 1440
    assert np.isclose(K[0, 0], 1500 * s) and np.isclose(K[1, 1], 1500 * (384 / 1080))
    # The source's centre pixel (959.5, 539.5) is the stored centre (255.5, 191.5).
    assert np.allclose(K[:2, 2], [255.5, 191.5])
    # A source pixel maps to the stored pixel that sees the same ray.
    u_src = np.array([300.0, 1700.0])
    u_st = (u_src - 240.0 + 0.5) * s - 0.5
    assert np.allclose((u_src - 959.5) / 1500, (u_st - K[0, 2]) / K[0, 0])


def test_unrecorded_crop_means_whole_source_frame():
    meta = _meta(source=(1024, 768), crop=(0.0, 0.0, 0.0, 0.0))
    K = source_to_stored(meta, intrinsics_matrix(800.0, 800.0, 511.5, 383.5))
    assert np.allclose(K, intrinsics_matrix(400.0, 400.0, 255.5, 191.5))


def test_fov_prior_describes_the_source_camera():
    meta = _meta()
    K = K_from_fov(70.0, meta)
    assert np.isclose(K[0, 0], focal_from_fov(1920, 70.0) * 512 / 1440)
    # Without a crop the stored horizontal FOV is the prior itself.
    meta2 = _meta(source=(1024, 768), crop=(0.0, 0.0, 1024.0, 768.0))
    K2 = K_from_fov(70.0, meta2)
    assert np.isclose(np.rad2deg(2 * np.arctan(256 / K2[0, 0])), 70.0)
    assert np.allclose(K2[:2, 2], principal_point(512, 384))
