"""Metric camera-frame 3D hand joints from 2D landmarks, metric hand-centred landmarks and K.

MediaPipe gives two views of one hand: 21 image landmarks (pixels) and 21 *world* landmarks
(metres, origin near the hand centre, axes roughly aligned with the image). Neither says where the
hand is. The hand's pose in the camera follows from the real intrinsics by PnP: find R, t so that
``K (R X_world + t)`` projects onto the 2D landmarks. The hand's own size sets the depth
(a 8 cm palm spanning 80 px at f = 500 px is 0.5 m away), so the result is metric as far as the
model's hand size is right (adult hands differ by about +-10 %).

When the camera stage has *metric* depth at the hand, it is a second, independent measure of the
distance: if it agrees roughly (within ``depth_tolerance``), the hand is brought to the depth
map's distance (the depth map knows the scene scale, the hand prior
only knows typical hands); if it disagrees wildly (the depth pixels hit the table behind the hand,
or the depth is wrong), PnP is kept. The correction scales the fitted hand about the camera
centre: every projection stays exactly where it was, and the hand-size prior is corrected by the
same factor (a child's hand that PnP put too far away comes closer *and* smaller).

The wrist frame ``cam_T_wrist`` (maps wrist-frame points to camera points):
    origin  the wrist joint (landmark 0);
    x       towards the index finger's base (landmark 5);
    z       the palm normal, pointing OUT OF THE PALM for both hands (for a right hand that is
            (index_base - wrist) x (pinky_base - wrist), for a left hand its negative, so the
            two hands get mirror-consistent frames);
    y       z x x (right-handed), roughly towards the pinky side for a right hand.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from y2r.geometry import make_se3, project, unproject

WRIST, INDEX_BASE, MIDDLE_BASE, PINKY_BASE = 0, 5, 9, 17


@dataclass
class LiftedHand:
    joints_cam: np.ndarray  # (21,3) metres, camera frame
    keypoints_2d: np.ndarray  # (21,2) pixels (the detector's, not re-projected)
    cam_T_wrist: np.ndarray  # (4,4)
    score: float
    reproj_px: float  # RMS reprojection error of the fitted 3D hand
    depth_anchored: bool


def wrist_frame(joints: np.ndarray, is_right: bool) -> np.ndarray:
    """cam_T_wrist (4x4) from camera-frame joints (21,3); see the module docstring for the axes."""
    j = np.asarray(joints, dtype=np.float64)
    x = j[INDEX_BASE] - j[WRIST]
    x /= np.linalg.norm(x) + 1e-12
    n = np.cross(j[INDEX_BASE] - j[WRIST], j[PINKY_BASE] - j[WRIST])
    if not is_right:
        n = -n
    z = n - np.dot(n, x) * x
    z /= np.linalg.norm(z) + 1e-12
    y = np.cross(z, x)
    return make_se3(np.stack([x, y, z], axis=1), j[WRIST])


def _initial_translation(kp2d: np.ndarray, world: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Similar triangles: depth from the hand's 3D extent vs its 2D extent, centred on its 2D centroid."""
    f = 0.5 * (K[0, 0] + K[1, 1])
    ext3 = np.sqrt(((world - world.mean(0)) ** 2).sum(1).mean())
    ext2 = np.sqrt(((kp2d - kp2d.mean(0)) ** 2).sum(1).mean())
    z = f * ext3 / max(ext2, 1e-6)
    return unproject(K, kp2d.mean(0, keepdims=True), np.array([z]))[0]


def solve_hand_pose(kp2d: np.ndarray, world: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """R (3,3), t (3,) with ``K (R world + t) ~ kp2d``; and the RMS reprojection error in pixels.

    MediaPipe's world landmarks are already (nearly) in image-aligned axes, so R = I and the
    similar-triangles translation start the iterative (Levenberg-Marquardt) PnP close to the answer.
    """
    kp2d = np.asarray(kp2d, dtype=np.float64)
    world = np.asarray(world, dtype=np.float64)
    K = np.asarray(K, dtype=np.float64)
    t0 = _initial_translation(kp2d, world, K)
    rvec = np.zeros((3, 1))
    tvec = t0.reshape(3, 1).copy()
    ok, rvec, tvec = cv2.solvePnP(world, kp2d, K, None, rvec, tvec, useExtrinsicGuess=True,
                                  flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok or not np.all(np.isfinite(tvec)) or tvec[2, 0] <= 0:
        R, t = np.eye(3), t0
    else:
        R, t = cv2.Rodrigues(rvec)[0], tvec[:, 0]
    joints = world @ R.T + t
    err = float(np.sqrt(((project(K, joints) - kp2d) ** 2).sum(1).mean()))
    return R, t, err


def depth_at_hand(kp2d: np.ndarray, depth: np.ndarray, valid: np.ndarray) -> tuple[float, int]:
    """Median z-depth of the depth map at the joints' pixels (nearest pixel centre) and how many were valid."""
    H, W = depth.shape
    uv = np.rint(np.asarray(kp2d)).astype(int)
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)
    uv = uv[inside]
    if len(uv) == 0:
        return float("nan"), 0
    d = np.asarray(depth[uv[:, 1], uv[:, 0]], dtype=np.float64)
    ok = np.asarray(valid[uv[:, 1], uv[:, 0]], dtype=bool) & np.isfinite(d) & (d > 0)
    if not ok.any():
        return float("nan"), 0
    return float(np.median(d[ok])), int(ok.sum())


def lift_hand(kp2d: np.ndarray, world: np.ndarray, K: np.ndarray, *, is_right: bool, presence: float = 1.0,
              depth: np.ndarray | None = None, depth_valid: np.ndarray | None = None, metric: bool = False,
              depth_tolerance: float = 0.5, min_depth_joints: int = 5) -> LiftedHand:
    """One detection -> metric camera-frame joints, wrist frame and a score in [0, 1].

    The score is the detector's presence, discounted when the 3D hand does not explain the 2D
    landmarks (reprojection error relative to the hand's pixel size).
    """
    kp2d = np.asarray(kp2d, dtype=np.float64)[:, :2]
    R, t, err = solve_hand_pose(kp2d, world, K)
    joints = np.asarray(world, dtype=np.float64) @ R.T + t
    anchored = False
    if metric and depth is not None and depth_valid is not None:
        z_map, n = depth_at_hand(kp2d, depth, depth_valid)
        z_pnp = float(np.median(joints[:, 2]))
        if n >= min_depth_joints and np.isfinite(z_map) and abs(z_map - z_pnp) <= depth_tolerance * z_pnp:
            # Scale about the camera centre: projections stay put, the median joint depth matches the map.
            joints = joints * (z_map / z_pnp)
            anchored = True
    size_px = float(np.sqrt(((kp2d - kp2d.mean(0)) ** 2).sum(1).mean())) + 1e-6
    score = float(np.clip(presence, 0.0, 1.0) * np.exp(-((err / size_px) / 0.25) ** 2))
    return LiftedHand(joints_cam=joints, keypoints_2d=kp2d.copy(), cam_T_wrist=wrist_frame(joints, is_right),
                      score=score, reproj_px=err, depth_anchored=anchored)
