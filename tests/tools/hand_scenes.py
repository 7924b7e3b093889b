"""A synthetic two-hand clip with exact ground truth, drawn the way the fake WiLoR detector reads it.

Each frame is grey with the right hand's image box filled pure red and the left hand's pure blue
(RGB); pixel (0, 0) encodes the frame index for the fake model. The depth map is 1.5 m with, at
every joint's pixel, a 3x3 patch of the skin surface just in front of the joint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from y2r.tools.wilor import JOINT_BEHIND_SURFACE_M


def template_joints() -> np.ndarray:
    """A right hand's 21 joints (OpenPose order) around the MANO origin, metres."""
    rng = np.random.default_rng(0)
    base = np.array([[0.0, 0.0, 0.0]] + [[0.02 * (f - 2), -0.03 - 0.022 * j, 0.004 * j] for f in range(5)
                                         for j in range(4)])
    return base + rng.normal(scale=0.002, size=base.shape)


@dataclass
class HandScene:
    frames: np.ndarray  # (T,H,W,3) uint8 RGB
    depth: np.ndarray  # (T,H,W) float32
    K: np.ndarray  # (3,3)
    truth: dict[str, np.ndarray]  # rows: frame, is_right, joints_cam, origin, R, hand_pose, betas, K
    present: dict[str, np.ndarray]  # side -> (T,) bool


def make_scene(T: int = 6, H: int = 120, W: int = 160, f: float = 140.0, drop: dict | None = None) -> HandScene:
    """``drop``: side -> frames where that hand is absent."""
    drop = drop or {}
    K = np.array([[f, 0, (W - 1) / 2], [0, f, (H - 1) / 2], [0, 0, 1.0]])
    frames = np.full((T, H, W, 3), 128, np.uint8)
    depth = np.full((T, H, W), 1.5, np.float32)
    rows: dict[str, list] = {k: [] for k in ("frame", "is_right", "joints_cam", "origin", "R", "hand_pose", "betas")}
    present = {s: np.ones(T, bool) for s in ("left", "right")}
    rng = np.random.default_rng(1)
    for t in range(T):
        frames[t, 0, 0] = (60, t // 256, t % 256)
        for side, x, colour in (("right", 0.11, (255, 0, 0)), ("left", -0.11, (0, 0, 255))):
            if t in drop.get(side, ()):
                present[side][t] = False
                continue
            right = side == "right"
            tmpl = template_joints() * ([1, 1, 1] if right else [-1, 1, 1])
            R = Rotation.from_rotvec([0.2 + 0.05 * t, (0.3 if right else -0.3), 0.1 * t]).as_matrix()
            origin = np.array([x + 0.01 * t, 0.03 - 0.005 * t, 0.55 + 0.01 * t])
            J = tmpl @ R.T + origin
            uvw = J @ K.T
            uv = uvw[:, :2] / uvw[:, 2:3]
            x0, y0 = np.floor(uv.min(0)).astype(int) - 2
            x1, y1 = np.ceil(uv.max(0)).astype(int) + 2
            frames[t, max(y0, 1):y1, max(x0, 1):x1] = colour
            for (u, v), z in zip(np.rint(uv).astype(int), J[:, 2], strict=True):
                depth[t, max(v - 1, 0):v + 2, max(u - 1, 0):u + 2] = z - JOINT_BEHIND_SURFACE_M
            rows["frame"].append(t)
            rows["is_right"].append(right)
            rows["joints_cam"].append(J)
            rows["origin"].append(origin)
            rows["R"].append(R)
            rows["hand_pose"].append(Rotation.random(15, random_state=rng.integers(1 << 30)).as_matrix())
            rows["betas"].append(rng.normal(size=10))
    truth = {k: np.asarray(v) for k, v in rows.items()}
    truth["K"] = K
    return HandScene(frames=frames, depth=depth, K=K, truth=truth, present=present)


def save_truth(scene: HandScene, path: Path) -> Path:
    np.savez(path, **scene.truth)
    return path
