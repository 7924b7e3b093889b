"""KLT feature tracks: sub-pixel motion, persistent ids, no corners on flat noise."""

from __future__ import annotations

import cv2
import numpy as np

from y2r.stages.camera.features import FeatureTracker, TrackerOptions, track_frames


def _shifted_clip(img: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    H, W = img.shape[:2]
    out = []
    for dx, dy in shifts:
        M = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])
        out.append(cv2.warpAffine(img, M, (W, H), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT))
    return np.stack(out)


def test_tracks_follow_a_known_subpixel_translation(room_orbit):
    # Half-pixel steps: the resampling of the test images is then exact in phase (other fractions
    # give the cubic kernel's own ~0.04 px phase error, which is not the tracker's).
    shifts = np.array([[0.0, 0.0], [1.5, -0.5], [3.0, -1.0], [4.5, -1.5], [6.0, -2.0]])
    frames = _shifted_clip(room_orbit["rgb"][0], shifts)
    tracks = track_frames(frames, TrackerOptions(max_features=400))
    ids, a, b = tracks.common(0, len(frames) - 1)
    # Away from the (reflected) border every track moved by the shift, to a few hundredths of a
    # pixel after four frame-to-frame steps, without bias.
    inner = (a[:, 0] > 20) & (a[:, 0] < 300) & (a[:, 1] > 20) & (a[:, 1] < 220)
    d = b[inner] - a[inner] - shifts[-1]
    assert inner.sum() > 150
    assert np.median(np.linalg.norm(d, axis=1)) < 0.05
    assert np.linalg.norm(np.median(d, axis=0)) < 0.01
    # Ids persist: most tracks of frame 0 are still there at the end, under the same id.
    assert len(ids) > 0.8 * len(tracks.ids[0])
    assert all(np.all(np.diff(i) > 0) for i in tracks.ids)


def test_nothing_is_tracked_on_flat_noise():
    rng = np.random.default_rng(0)
    flat = np.clip(128 + rng.normal(0, 2.0, (4, 120, 160, 3)), 0, 255).astype(np.uint8)
    tracks = track_frames(flat)
    assert tracks.corners_detected[0] < 20  # the absolute corner floor rejects (almost) all noise
    assert tracks.tracked_counts().max() == 0  # and whatever passes does not survive a frame


def test_replenishes_when_tracks_are_lost(room_orbit):
    rgb = room_orbit["rgb"]
    tr = FeatureTracker(rgb.shape[2], rgb.shape[1], TrackerOptions(max_features=300))
    tr.add(cv2.cvtColor(rgb[0], cv2.COLOR_RGB2GRAY))
    # A completely different image: every track fails the forward-backward check, new ones appear.
    tr.add(cv2.cvtColor(np.ascontiguousarray(rgb[0][::-1, ::-1]), cv2.COLOR_RGB2GRAY))
    res = tr.result()
    assert len(np.intersect1d(res.ids[0], res.ids[1])) < 0.1 * len(res.ids[0])
    assert res.counts()[1] > 200
