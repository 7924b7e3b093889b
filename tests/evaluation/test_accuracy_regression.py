"""Accuracy regression of the built-in camera and tracks backends through the real pipeline (issue 3).

Synthetic scenes with exact ground truth are rendered with the suite's 66 degree lens, encoded with
H.264, run through ``y2r run`` (ingest, built-in camera with self-calibration, built-in tracks,
episode) and compared with the ground truth (``evaluation.suite``). The bounds below sit a little
above the values measured when they were set (in the comments, three runs; the H.264 encoder is
not bit-exact from run to run, which moves the last digit), so a change that makes the built-in
backends measurably worse fails here instead of passing silently.

- orbit, 320x240, 30 frames: the easy textured case, small and fast.
- occluder, 512x384, 40 frames: a slow sideways sweep with an object sliding and a pole crossing
  the view; the focal is only weakly observable (at 320x240 its cluster-robust uncertainty is ~2%,
  the acceptance limit, so it would flip between calibrated and fallback); it must self-calibrate.
- rotation, 320x240, 30 frames: a degenerate camera that must be flagged, with no depth invented.
"""

from __future__ import annotations

import math

import pytest

from y2r.dataset.reader import Episode
from y2r.evaluation.suite import run_suite

# metric -> (comparison, bound); measured values in the comments.
PINNED = {
    "orbit": {
        "ate_pct_path": ("<=", 0.2),  # 0.06
        "rot_err_deg_per_frame": ("<=", 0.05),  # 0.014-0.020
        "focal_err_pct": ("<=", 1.5),  # 0.15-0.26
        "depth_abs_rel": ("<=", 0.025),  # 0.014
        "depth_coverage": (">=", 0.80),  # 0.87
        "tracks_median_px": ("<=", 0.2),  # 0.125
        "tracks_p90_px": ("<=", 1.0),  # 0.62-0.65
        "tracks_vis_f1": (">=", 0.98),  # 0.991-0.992 (0.987 before re-acquisition was checked)
        "tracks_err3d_median_pct": ("<=", 2.5),  # 0.9-1.3
    },
    "occluder": {
        "ate_pct_path": ("<=", 0.25),  # 0.086
        "rot_err_deg_per_frame": ("<=", 0.03),  # 0.006
        "focal_err_pct": ("<=", 4.0),  # 2.06
        "depth_abs_rel": ("<=", 0.04),  # 0.024
        "depth_coverage": (">=", 0.72),  # 0.775
        "tracks_median_px": ("<=", 0.25),  # 0.169
        "tracks_p90_px": ("<=", 1.2),  # 0.77 (0.82-0.84 before re-acquisition was checked)
        # 0.983 (0.979 before re-acquisition was checked against the projection; 0.974 before the
        # depth tests allowed for depth noise)
        "tracks_vis_f1": (">=", 0.975),
        "tracks_err3d_median_pct": ("<=", 5.0),  # 2.9
    },
    "rotation": {
        "rot_err_deg_per_frame": ("<=", 0.03),  # 0.004-0.008
        "focal_err_pct": ("<=", 1.0),  # 0.05-0.06 (the rotation model self-calibrates)
        "tracks_median_px": ("<=", 0.2),  # 0.113
        "tracks_p90_px": ("<=", 0.75),  # 0.39-0.40 (0.43-0.45 before re-acquisition was checked)
        "tracks_vis_f1": (">=", 0.985),  # 0.995 (0.985 before re-acquisition was checked)
    },
}


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """{scene: (SceneResult, camera quality from the episode)} for the three scenes (~25 s)."""
    small, large = tmp_path_factory.mktemp("small"), tmp_path_factory.mktemp("large")
    runs = [(small, run_suite(small, ("orbit", "rotation"), width=320, height=240, frames=30, workers=2)),
            (large, run_suite(large, ("occluder",), width=512, height=384, frames=40, workers=1))]
    out = {}
    for folder, results in runs:
        for r in results:
            with Episode(folder / "out" / "episodes" / f"{r.scene}.h5") as ep:
                out[r.scene] = (r, ep.quality()["camera"])
    return out


@pytest.mark.parametrize("scene", sorted(PINNED))
def test_metrics_stay_within_their_pinned_bounds(suite, scene):
    result, _ = suite[scene]
    assert result.frames > 0, result.failures
    off = []
    for key, (op, bound) in PINNED[scene].items():
        v = result.metrics.get(key)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            off.append(f"{key} missing")
        elif (op == "<=" and v > bound) or (op == ">=" and v < bound):
            off.append(f"{key} = {v:.4g}, pinned {op} {bound}")
    assert not off, f"{scene}: " + "; ".join(off)


@pytest.mark.parametrize("scene", ["orbit", "occluder"])
def test_textured_scenes_self_calibrate_and_meet_the_issue_targets(suite, scene):
    result, camera = suite[scene]
    assert camera["focal_source"] == "self_calibrated", camera.get("warnings")
    assert camera["focal_rel_std_tracks"] <= 0.02
    assert not camera.get("warnings")
    assert result.metrics["degenerate"] is None
    assert result.failures == []  # suite.TARGETS


def test_pure_rotation_is_flagged_without_depth(suite):
    result, camera = suite["rotation"]
    assert result.metrics["degenerate"] == "pure_rotation" == camera["degenerate"]
    assert result.metrics["depth_coverage"] == 0.0 and math.isnan(result.metrics["depth_abs_rel"])
    assert camera["scale"] is None  # no parallax: no scale, no depth
    assert result.failures == []
