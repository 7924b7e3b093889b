"""Known 3D hands for tests: a right-hand skeleton (metres, MediaPipe-like axes), posed and projected."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from y2r.geometry import intrinsics_matrix, project

K = intrinsics_matrix(500.0, 500.0, 320.0, 240.0)


def right_hand() -> np.ndarray:
    """21 joints of a flat-ish right hand seen palm-on: wrist at 0, fingers up (-y), thumb at +x."""
    j = np.zeros((21, 3))
    bases = {1: (0.025, -0.02), 5: (0.022, -0.085), 9: (0.0, -0.09), 13: (-0.02, -0.085), 17: (-0.038, -0.075)}
    dirs = {1: (0.7, -0.7), 5: (0.1, -1.0), 9: (0.0, -1.0), 13: (-0.1, -1.0), 17: (-0.25, -1.0)}
    seg = {1: 0.03, 5: 0.028, 9: 0.03, 13: 0.028, 17: 0.022}
    for b, (x, y) in bases.items():
        d = np.array([*dirs[b], 0.0])
        d /= np.linalg.norm(d)
        for k in range(4):
            # slight curl towards the camera (-z) so the hand is not planar
            j[b + k] = np.array([x, y, 0.0]) + d * seg[b] * k + np.array([0, 0, -0.006 * k * k])
    j[1] = [0.025, -0.02, 0.0]
    return j - j.mean(0)  # MediaPipe world landmarks are centred near the hand's middle


def posed(world: np.ndarray, rotvec, t) -> np.ndarray:
    return world @ Rotation.from_rotvec(rotvec).as_matrix().T + np.asarray(t, float)


def trajectory(T: int, fps: float = 10.0, seed: int = 0):
    """Smooth hand motion in front of the camera: (T,21,3) joints_cam and (T,21,2) pixels."""
    rng = np.random.default_rng(seed)
    w = right_hand()
    tt = np.arange(T) / fps
    joints = np.stack([posed(w, [0.3 * np.sin(0.8 * s), 0.2 * np.cos(0.5 * s), 0.1 * s],
                             [0.08 * np.sin(1.1 * s), 0.05 * np.cos(0.7 * s), 0.5 + 0.05 * np.sin(0.4 * s)])
                       for s in tt])
    kp = project(K, joints)
    return joints, kp, w, rng
