"""Temporal clean-up of one hand's track: outliers out, short gaps filled, jitter smoothed.

Order matters: outliers are removed first (a wrong frame must not be smoothed into its
neighbours), then gaps of at most ``max_gap_frames`` are interpolated (joints and 2D keypoints
linearly, the wrist rotation by slerp), then every contiguous valid run is smoothed with a
Rauch-Tung-Striebel smoother (Kalman forward pass + backward pass; zero lag, unlike online
filters) on a constant-velocity model per coordinate.

Smoothing strength ``s`` in [0, 1] (``hands.temporal.smoothing``) sets the smoother's bandwidth:
``f_c = 4 Hz * 16^-s`` (s=0.5: 1 Hz, s=1: 0.25 Hz; s=0 disables smoothing). For a white-noise
acceleration model the steady-state smoother's bandwidth is about ``(q/r)^(1/4) / 2pi``, so the
process-to-measurement noise ratio is ``q/r = (2 pi f_c)^4`` (measured: the -3 dB point lands at
about 1.5 f_c). Hand motion in demonstrations has most of its energy below 2 Hz; detector jitter
is white, so at 10 fps the default removes most of it with little lag-free attenuation of motion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from y2r.stages.hands.lifting import wrist_frame

# Bones as (parent, child) of the 21-joint order (artifacts.HAND_JOINT_ORDER).
BONES = ((0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10), (10, 11), (11, 12),
         (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18), (18, 19), (19, 20))


@dataclass
class TrackArrays:
    """One side's hand over time (time-first, NaN where invalid)."""

    valid: np.ndarray  # (T,) bool
    joints_cam: np.ndarray  # (T,21,3)
    keypoints_2d: np.ndarray  # (T,21,2)
    score: np.ndarray  # (T,)
    is_right: bool

    def copy(self) -> TrackArrays:
        return TrackArrays(self.valid.copy(), self.joints_cam.copy(), self.keypoints_2d.copy(), self.score.copy(),
                           self.is_right)

    def invalidate(self, mask: np.ndarray) -> None:
        self.valid &= ~mask
        self.joints_cam[mask] = np.nan
        self.keypoints_2d[mask] = np.nan
        self.score[mask] = 0.0

    def wrist_poses(self) -> np.ndarray:
        out = np.full((len(self.valid), 4, 4), np.nan)
        for t in np.flatnonzero(self.valid):
            out[t] = wrist_frame(self.joints_cam[t], self.is_right)
        return out


def bone_lengths(joints: np.ndarray) -> np.ndarray:
    j = np.asarray(joints)
    return np.linalg.norm(j[..., [c for _, c in BONES], :] - j[..., [p for p, _ in BONES], :], axis=-1)


def reject_outliers(track: TrackArrays, fps: float, max_speed_mps: float, bone_tolerance: float = 0.3) -> np.ndarray:
    """Mark invalid the frames that move impossibly fast or whose hand has the wrong size.

    Speed: a frame is an outlier when its wrist is farther than ``max_speed * dt`` from BOTH its
    nearest valid neighbours (a single jump between two good runs is a real move, a spike is not);
    at a run's end the one neighbour decides. Size: the summed bone length may deviate by at most
    ``bone_tolerance`` from the track's median (the detector's hand-size prior plus depth anchoring
    should keep it steady). Returns the rejected mask.
    """
    v = np.flatnonzero(track.valid)
    rejected = np.zeros(len(track.valid), bool)
    if len(v) == 0:
        return rejected
    size = bone_lengths(track.joints_cam[v]).sum(-1)
    med = np.median(size)
    rejected[v[np.abs(size - med) > bone_tolerance * med]] = True
    v = v[~rejected[v]]
    if len(v) >= 2:
        w = track.joints_cam[v, 0]
        dt = np.diff(v) / fps
        speed = np.linalg.norm(np.diff(w, axis=0), axis=-1) / dt  # speed[i]: between v[i] and v[i+1]
        too_fast = speed > max_speed_mps
        prev_fast = np.r_[too_fast[:1], too_fast]  # frame i vs its previous (first frame: its next)
        next_fast = np.r_[too_fast, too_fast[-1:]]
        rejected[v[prev_fast & next_fast]] = True
    track.invalidate(rejected)
    return rejected


def fill_gaps(track: TrackArrays, max_gap_frames: int) -> np.ndarray:
    """Interpolate gaps of at most ``max_gap_frames`` invalid frames between two valid ones.

    Joints are placed by interpolating the wrist frame (translation: linear; rotation: slerp) and
    the joints expressed in it (linear): a turning hand swings round its wrist instead of being
    squashed through its own centre. Filled frames get the smaller neighbour score, halved.
    """
    filled = np.zeros(len(track.valid), bool)
    if max_gap_frames <= 0:
        return filled
    v = np.flatnonzero(track.valid)
    for a, b in zip(v[:-1], v[1:]):
        gap = b - a - 1
        if gap < 1 or gap > max_gap_frames:
            continue
        Ta = wrist_frame(track.joints_cam[a], track.is_right)
        Tb = wrist_frame(track.joints_cam[b], track.is_right)
        local_a = (track.joints_cam[a] - Ta[:3, 3]) @ Ta[:3, :3]
        local_b = (track.joints_cam[b] - Tb[:3, 3]) @ Tb[:3, :3]
        slerp = Slerp([0.0, 1.0], Rotation.from_matrix(np.stack([Ta[:3, :3], Tb[:3, :3]])))
        for t in range(a + 1, b):
            s = (t - a) / (b - a)
            R = slerp([s]).as_matrix()[0]
            p = (1 - s) * Ta[:3, 3] + s * Tb[:3, 3]
            local = (1 - s) * local_a + s * local_b
            track.joints_cam[t] = local @ R.T + p
            track.keypoints_2d[t] = (1 - s) * track.keypoints_2d[a] + s * track.keypoints_2d[b]
            track.score[t] = 0.5 * min(track.score[a], track.score[b])
            track.valid[t] = True
            filled[t] = True
    return filled


def cutoff_hz(smoothing: float) -> float:
    return 4.0 * 16.0 ** (-float(smoothing))


def rts_smooth(x: np.ndarray, fps: float, smoothing: float) -> np.ndarray:
    """RTS smoothing of (T, D) samples of one contiguous run (every row observed), per column.

    All columns share the model and the observation pattern, so the covariance recursion (2x2)
    runs once and its gains apply to every column at once.
    """
    x = np.asarray(x, dtype=np.float64)
    T = len(x)
    if smoothing <= 0 or T < 3:
        return x.copy()
    dt = 1.0 / fps
    q_over_r = (2 * np.pi * cutoff_hz(smoothing)) ** 4
    F = np.array([[1.0, dt], [0.0, 1.0]])
    # White-noise acceleration, spectral density q (r = 1).
    Q = q_over_r * np.array([[dt ** 3 / 3, dt ** 2 / 2], [dt ** 2 / 2, dt]])
    Hm = np.array([1.0, 0.0])
    m = np.zeros((T, 2, x.shape[1]))
    P = np.zeros((T, 2, 2))
    m_pred = np.zeros_like(m)
    P_pred = np.zeros_like(P)
    m_cur = np.stack([x[0], np.zeros(x.shape[1])])
    P_cur = np.diag([1.0, 1e6 * q_over_r * dt])  # position known to the measurement noise, velocity unknown
    for t in range(T):
        if t > 0:
            m_cur = F @ m[t - 1]
            P_cur = F @ P[t - 1] @ F.T + Q
        m_pred[t], P_pred[t] = m_cur, P_cur
        S = Hm @ P_cur @ Hm + 1.0
        K = P_cur @ Hm / S
        m[t] = m_cur + np.outer(K, x[t] - Hm @ m_cur)
        P[t] = P_cur - np.outer(K, Hm @ P_cur)
    ms = m.copy()
    for t in range(T - 2, -1, -1):
        G = P[t] @ F.T @ np.linalg.inv(P_pred[t + 1])
        ms[t] = m[t] + G @ (ms[t + 1] - m_pred[t + 1])
    return ms[:, 0, :]


def smooth(track: TrackArrays, fps: float, smoothing: float) -> None:
    """Smooth joints and keypoints over each contiguous valid run, in place."""
    if smoothing <= 0:
        return
    v = track.valid
    T = len(v)
    t = 0
    while t < T:
        if not v[t]:
            t += 1
            continue
        e = t
        while e < T and v[e]:
            e += 1
        n = e - t
        track.joints_cam[t:e] = rts_smooth(track.joints_cam[t:e].reshape(n, -1), fps, smoothing).reshape(n, 21, 3)
        track.keypoints_2d[t:e] = rts_smooth(track.keypoints_2d[t:e].reshape(n, -1), fps, smoothing).reshape(n, 21, 2)
        t = e


def rms_acceleration(joints: np.ndarray, valid: np.ndarray, fps: float) -> float:
    """RMS joint acceleration (m/s^2) over frames whose both neighbours are valid: the jitter measure."""
    j = np.asarray(joints, dtype=np.float64)
    v = np.asarray(valid, bool)
    ok = v[1:-1] & v[:-2] & v[2:]
    if not ok.any():
        return float("nan")
    acc = (j[2:] - 2 * j[1:-1] + j[:-2])[ok] * fps ** 2
    return float(np.sqrt((acc ** 2).sum(-1).mean()))


def clean_track(track: TrackArrays, fps: float, max_speed_mps: float, max_gap_frames: int,
                smoothing: float) -> tuple[TrackArrays, dict]:
    """Outliers -> gaps -> smoothing on a copy; returns it with counts and jitter before/after."""
    out = track.copy()
    before = rms_acceleration(track.joints_cam, track.valid, fps)
    rejected = reject_outliers(out, fps, max_speed_mps)
    filled = fill_gaps(out, max_gap_frames)
    smooth(out, fps, smoothing)
    after = rms_acceleration(out.joints_cam, out.valid, fps)
    # (quality is JSON: a hand never seen for three frames in a row has no jitter -> null, not NaN)
    return out, {"rejected": int(rejected.sum()), "filled": int(filled.sum()), "valid": int(out.valid.sum()),
                 "jitter_before_mps2": None if math.isnan(before) else before,
                 "jitter_after_mps2": None if math.isnan(after) else after}
