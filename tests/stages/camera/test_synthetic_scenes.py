"""The backend on scenes of the synthetic renderer (small renders, a 70 degree lens so that the
60 degree fallback prior cannot pass for a calibration by coincidence)."""

from __future__ import annotations

import numpy as np
import pytest

from y2r.config import CameraConfig
from y2r.evaluation.camera_metrics import camera_report
from y2r.stages.camera.builtin import MAX_FOCAL_REL_STD, reconstruct
from y2r.synth import render

from .camera_clips import meta_for


def _run(scene: str):
    clip = render(scene, width=256, height=192, num_frames=24, seed=0, fov_deg=70.0)
    art = reconstruct(clip.rgb, meta_for(clip.rgb, name=scene), CameraConfig())
    return clip, art


def test_orbit_meets_the_targets_with_self_calibration():
    clip, art = _run("orbit")
    r = camera_report(art.K, art.world_T_cam, art.depth, art.depth_valid, clip.K, clip.c2w, clip.depth)
    assert art.quality["degenerate"] is None and art.quality["focal_source"] == "self_calibrated"
    # Measured: ATE 0.04% of the path, 0.012 deg/frame, focal 1.0%, AbsRel 0.017, 86% valid.
    assert r["ate_pct_path"] < 1.0 and r["rot_err_deg_per_frame"] < 0.2
    assert r["focal_err_pct"] < 5.0
    assert r["depth_abs_rel"] < 0.08 and r["depth_coverage"] > 0.7


def test_unobservable_focal_falls_back_and_says_so():
    # A sideways sweep with little rotation: focal and depth trade off, the focal is not pinned.
    clip, art = _run("pan")
    assert art.quality["degenerate"] is None
    assert art.quality["focal_source"] == "fallback_prior"
    assert art.quality["self_calibration_rejected"]["focal_rel_std_tracks"] > MAX_FOCAL_REL_STD
    assert any("self-calibration rejected" in w for w in art.quality["warnings"])  # never silently
    r = camera_report(art.K, art.world_T_cam, None, None, clip.K, clip.c2w)
    assert r["ate_pct_path"] < 2.0  # poses stay usable with the wrong focal


@pytest.mark.parametrize(
    "scene, case",
    [("rotation", "pure_rotation"), ("static_object", "static"), ("low_texture", "low_texture")],
)
def test_degenerate_scenes_are_flagged_without_depth(scene, case):
    clip, art = _run(scene)
    assert art.quality["degenerate"] == case
    assert not art.depth_valid.any() and not art.metric_scale
    if case == "pure_rotation":
        r = camera_report(art.K, art.world_T_cam, None, None, clip.K, clip.c2w)
        assert r["rot_err_deg_per_frame"] < 0.1 and r["focal_err_pct"] < 3.0
    if case == "static":
        assert np.allclose(art.world_T_cam, np.eye(4))
