"""Degenerate videos are recognised from their tracks: static, pure rotation, low texture."""

from __future__ import annotations

import numpy as np

from y2r.stages.camera.degeneracy import DegeneracyOptions, classify, motion_evidence
from y2r.stages.camera.features import track_frames
from y2r.stages.camera.poses import select_keyframes, wide_keyframe_pairs


def _evidence(frames, focal=None):
    tracks = track_frames(frames)
    kfs = select_keyframes(tracks, 12.0, 0.6)
    pairs = wide_keyframe_pairs(tracks, kfs, 1.0)
    H, W = frames.shape[1:3]
    return motion_evidence(tracks, pairs, W, H, focal)


def test_translating_camera_is_not_degenerate(room_orbit):
    ev = _evidence(room_orbit["rgb"])
    assert classify(ev, DegeneracyOptions()) is None
    assert ev.parallax_px > 1.2  # measured 1.46 px (narrow field of view, little depth range)


def test_rotating_camera_is_pure_rotation_and_its_focal_is_found(rotating, room_orbit):
    frames, _ = rotating
    ev = _evidence(frames)
    assert classify(ev, DegeneracyOptions()) == "pure_rotation"
    assert ev.parallax_px < 0.4
    assert abs(ev.rotation_focal / room_orbit["K"][0, 0] - 1) < 0.03


def test_static_camera(room_orbit):
    frames = np.repeat(room_orbit["rgb"][:1], 8, 0)
    ev = _evidence(frames)
    assert classify(ev, DegeneracyOptions()) == "static" and ev.motion_px < 0.1


def test_static_camera_with_a_moving_object(room_orbit):
    # Frame 0's background with the cube region taken from later frames: only the cube moves.
    rgb, mm = room_orbit["rgb"], room_orbit["moving_mask"]
    frames = np.repeat(rgb[:1], 16, 0)
    for t in range(16):
        frames[t][mm[t]] = rgb[t][mm[t]]
    assert classify(_evidence(frames), DegeneracyOptions()) == "static"


def test_flat_video_is_low_texture():
    rng = np.random.default_rng(0)
    frames = np.clip(128 + rng.normal(0, 2.0, (6, 120, 160, 3)), 0, 255).astype(np.uint8)
    ev = _evidence(frames)
    assert classify(ev, DegeneracyOptions()) == "low_texture" and ev.tracks_per_frame == 0
