import numpy as np
import pytest

from y2r.stages.hands.temporal import (TrackArrays, clean_track, fill_gaps, reject_outliers, rms_acceleration,
                                       rts_smooth)

from .synthetic_hand import trajectory

FPS = 10.0


def noisy_track(T=60, noise=0.004, seed=0):
    joints, kp, _, _ = trajectory(T, FPS)
    rng = np.random.default_rng(seed)
    tr = TrackArrays(valid=np.ones(T, bool), joints_cam=joints + rng.normal(scale=noise, size=joints.shape),
                     keypoints_2d=kp + rng.normal(scale=1.0, size=kp.shape), score=np.full(T, 0.9), is_right=True)
    return tr, joints


def test_speed_and_size_outliers_are_rejected_and_only_them():
    tr, truth = noisy_track()
    tr.joints_cam[10] += np.array([0.0, 0.0, 0.6])  # a depth spike: 6 m/s there and back
    tr.joints_cam[33] = (tr.joints_cam[33] - tr.joints_cam[33].mean(0)) * 1.8 + tr.joints_cam[33].mean(0)  # wrong size
    rejected = reject_outliers(tr, FPS, max_speed_mps=2.0)
    assert set(np.flatnonzero(rejected)) == {10, 33}
    assert not tr.valid[10] and np.isnan(tr.joints_cam[10]).all() and tr.score[10] == 0


def test_real_fast_move_between_two_runs_is_kept():
    tr, _ = noisy_track(T=20, noise=0.0)
    tr.joints_cam[10:] += np.array([0.3, 0.0, 0.0])  # one jump, then the hand stays there
    assert not reject_outliers(tr, FPS, max_speed_mps=2.0).any()


def test_short_gaps_are_interpolated_and_long_ones_are_not():
    tr, truth = noisy_track(noise=0.0)
    tr.invalidate(np.isin(np.arange(60), [20, 21, 22]))  # short gap
    tr.invalidate(np.isin(np.arange(60), np.arange(40, 50)))  # long gap
    filled = fill_gaps(tr, max_gap_frames=5)
    assert set(np.flatnonzero(filled)) == {20, 21, 22}
    assert np.isnan(tr.joints_cam[40:50]).all() and not tr.valid[40:50].any()
    # Smooth motion over 0.4 s: rigid interpolation (lerp position, slerp rotation) is within a few mm.
    err = np.linalg.norm(tr.joints_cam[20:23] - truth[20:23], axis=-1)
    assert err.max() < 0.01
    assert tr.score[21] == pytest.approx(0.45)


def test_rts_smoother_removes_white_noise_without_lag():
    t = np.arange(200) / FPS
    truth = np.stack([0.1 * np.sin(2 * np.pi * 0.5 * t), 0.05 * np.cos(2 * np.pi * 0.3 * t)], axis=1)
    rng = np.random.default_rng(3)
    noisy = truth + rng.normal(scale=0.005, size=truth.shape)
    smooth = rts_smooth(noisy, FPS, smoothing=0.5)
    rmse_noisy = np.sqrt(((noisy - truth) ** 2).mean())
    rmse_smooth = np.sqrt(((smooth - truth) ** 2).mean())
    assert rmse_smooth < 0.6 * rmse_noisy
    # zero lag: the smoothed signal is best aligned with the truth at shift 0
    errs = [np.sqrt(((np.roll(smooth, s, axis=0) - truth)[5:-5] ** 2).mean()) for s in (-1, 0, 1)]
    assert int(np.argmin(errs)) == 1
    np.testing.assert_allclose(rts_smooth(noisy, FPS, 0.0), noisy)


def test_clean_track_reduces_jitter_and_keeps_accuracy():
    tr, truth = noisy_track(T=80, noise=0.004)
    clean, stats = clean_track(tr, FPS, max_speed_mps=2.0, max_gap_frames=5, smoothing=0.5)
    assert stats["jitter_after_mps2"] < 0.5 * stats["jitter_before_mps2"]
    assert rms_acceleration(truth, np.ones(80, bool), FPS) < stats["jitter_after_mps2"] + 0.5
    err_before = np.linalg.norm(tr.joints_cam - truth, axis=-1).mean()
    err_after = np.linalg.norm(clean.joints_cam - truth, axis=-1).mean()
    assert err_after < err_before
    assert stats["rejected"] == 0 and clean.valid.all()


def test_a_hand_never_seen_has_null_jitter_so_quality_stays_valid_json():
    import json

    tr, _ = noisy_track(T=20)
    tr.valid[:] = False
    tr.joints_cam[:] = np.nan
    _, stats = clean_track(tr, FPS, max_speed_mps=2.0, max_gap_frames=5, smoothing=0.5)
    assert stats["jitter_before_mps2"] is None and stats["jitter_after_mps2"] is None and stats["valid"] == 0
    json.dumps(stats, allow_nan=False)  # strict JSON parsers (and the manifest) accept it
