"""WiLoR (rolpotamias/WiLoR @ 819369a): its numeric outputs and their conversion to y2r's conventions.

What WiLoR predicts (``wilor/models/wilor.py``, ``demo.py``), per detected hand:
- Always a RIGHT hand. ``ViTDetDataset`` flips the crop of a left hand (``flip = right == 0``), so a
  left hand comes back mirrored about the crop's vertical axis: its joints have x negated and its
  MANO rotations are conjugated by ``M = diag(-1, 1, 1)`` (``R_left = M R M``, i.e. axis-angle
  ``(x, y, z) -> (x, -y, -z)``).
- MANO ``global_orient`` (1,3,3) and ``hand_pose`` (15,3,3) as rotation matrices, relative to the
  flat hand (no hand-mean pose, no PCA); ``betas`` (10,).
- ``pred_keypoints_3d`` (21,3): OpenPose order (wrist, thumb1-4, index1-4, middle1-4, ring1-4,
  pinky1-4, the order y2r stores), metres, rotated by ``global_orient``, no translation.
- A camera that is not the real one: ``cam_t_full`` is a translation for a pinhole camera with focal
  ``5000 / 256 * max(W, H)`` px and principal point (W/2, H/2) -- nearly orthographic -- so its
  depth is not metric (#10, #28). Only the *image* positions it implies are reliable.

y2r keeps the shape and rotations, un-mirrors left hands here (never downstream), and re-solves the
translation with the real K: the joints must project onto WiLoR's 2D keypoints, and, where the
camera stage has metric depth, sit just behind the observed surface.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from y2r.errors import InputError
from y2r.geometry import axis_angle_to_matrix, matrix_to_axis_angle

FOCAL_LENGTH = 5000.0  # model_cfg.EXTRA.FOCAL_LENGTH
IMAGE_SIZE = 256  # model_cfg.MODEL.IMAGE_SIZE
MIRROR = np.diag([-1.0, 1.0, 1.0])
# Joint centres lie inside the hand, about half a finger's thickness behind the skin that the depth
# map sees (adult finger ~1.6-2 cm thick).
JOINT_BEHIND_SURFACE_M = 0.008
# Depth samples further than this from the hand's depth offset are occluders or background.
DEPTH_INLIER_M = 0.03
MIN_DEPTH_INLIERS = 5
# The image-only solution (MANO's metric size seen at WiLoR's 2D keypoints) is within tens of per
# cent of the truth; depth that would move the hand further than this fraction is not the hand's.
PLAUSIBLE_DEPTH_FRACTION = 0.25


def wilor_focal(width: int, height: int) -> float:
    """The focal length WiLoR's full-image camera assumes (``demo.py``)."""
    return FOCAL_LENGTH / IMAGE_SIZE * max(width, height)


@dataclass
class WiLoROutput:
    """The shim's per-hand rows (see ``tools/shims/wilor_shim.py``), in WiLoR's conventions."""

    frame: np.ndarray  # (M,) int
    box: np.ndarray  # (M,4) xyxy
    score: np.ndarray  # (M,)
    is_right: np.ndarray  # (M,) bool
    global_orient: np.ndarray  # (M,3,3) right-hand space
    hand_pose: np.ndarray  # (M,15,3,3) right-hand space
    betas: np.ndarray  # (M,10)
    keypoints_3d: np.ndarray  # (M,21,3) right-hand space, no translation
    cam_t_full: np.ndarray  # (M,3) under ``focal_length``
    keypoints_2d: np.ndarray  # (M,21,2) full-image pixels
    focal_length: float
    image_size: tuple[int, int]  # (W, H)
    vertices: np.ndarray | None = None  # (M,778,3) right-hand space

    def __len__(self) -> int:
        return len(self.frame)


def read_output(path: Path) -> WiLoROutput:
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise InputError(path, f"not a readable WiLoR output ({e})") from e
    with z:
        need = ("frame", "box", "score", "is_right", "global_orient", "hand_pose", "betas", "keypoints_3d",
                "cam_t_full", "keypoints_2d", "focal_length", "image_size")
        missing = [k for k in need if k not in z.files]
        if missing:
            raise InputError(path, f"WiLoR output lacks {missing}")
        M = len(z["frame"])
        out = WiLoROutput(
            frame=z["frame"].astype(np.int64), box=z["box"].astype(np.float64), score=z["score"].astype(np.float64),
            is_right=z["is_right"].astype(bool), global_orient=z["global_orient"].reshape(M, 3, 3).astype(np.float64),
            hand_pose=z["hand_pose"].reshape(M, 15, 3, 3).astype(np.float64), betas=z["betas"].astype(np.float64),
            keypoints_3d=z["keypoints_3d"].astype(np.float64), cam_t_full=z["cam_t_full"].astype(np.float64),
            keypoints_2d=z["keypoints_2d"].astype(np.float64), focal_length=float(z["focal_length"]),
            image_size=(int(z["image_size"][0]), int(z["image_size"][1])),
            vertices=z["vertices"].astype(np.float64) if "vertices" in z.files else None)
    return out


# --------------------------------------------------------------------------- un-mirroring
def unmirror_points(points: np.ndarray, is_right: np.ndarray | bool) -> np.ndarray:
    """Right-hand-space points (...,K,3) -> true side: x negated for left hands."""
    sign = np.where(np.asarray(is_right, bool), 1.0, -1.0)
    out = np.array(points, np.float64)
    out[..., 0] *= sign[..., None] if np.ndim(sign) else sign
    return out


def mano_axis_angle(rotmats: np.ndarray, is_right: np.ndarray | bool) -> np.ndarray:
    """MANO rotation matrices (...,K,3,3) in right-hand space -> axis-angle (...,K,3) of the true side.

    Mirroring about x conjugates a rotation by diag(-1,1,1), which maps axis-angle (x, y, z) to
    (x, -y, -z): the convention MANO's left-hand model expects.
    """
    aa = matrix_to_axis_angle(rotmats)
    left = ~np.asarray(is_right, bool)
    aa[..., 1:] *= np.where(left, -1.0, 1.0)[..., None, None] if np.ndim(left) else (-1.0 if left else 1.0)
    return aa


def unmirror_rotation(R: np.ndarray, is_right: bool) -> np.ndarray:
    """One rotation matrix of a hand's true side (``M R M`` for a left hand)."""
    R = np.asarray(R, np.float64)
    return R if is_right else MIRROR @ R @ MIRROR


# --------------------------------------------------------------------------- metric translation
@dataclass
class TranslationFit:
    t: np.ndarray  # (3,) camera-frame translation of the hand (metres)
    reproj_rms_px: float  # of the joints against WiLoR's 2D keypoints, with the real K
    depth_inliers: int  # depth samples used
    used_depth: bool


def _solve(P: np.ndarray, xn: np.ndarray, w: np.ndarray, depth_rows: tuple[np.ndarray, np.ndarray, float] | None):
    """Weighted linear least squares for t: x_n (Z + tz) = X + tx, y_n (Z + tz) = Y + ty, [tz = d - Z]."""
    n = len(P)
    A = np.zeros((2 * n, 3))
    b = np.zeros(2 * n)
    A[0::2, 0], A[0::2, 2], b[0::2] = -1.0, xn[:, 0], P[:, 0] - xn[:, 0] * P[:, 2]
    A[1::2, 1], A[1::2, 2], b[1::2] = -1.0, xn[:, 1], P[:, 1] - xn[:, 1] * P[:, 2]
    W = np.repeat(w, 2)
    A, b = A * W[:, None], b * W
    if depth_rows is not None:
        Zd, dd, wd = depth_rows
        Ad = np.zeros((len(Zd), 3))
        Ad[:, 2] = wd
        A = np.vstack([A, Ad])
        b = np.concatenate([b, wd * (dd - Zd)])
    t, *_ = np.linalg.lstsq(A, b, rcond=None)
    return t


def solve_translation(joints: np.ndarray, keypoints_2d: np.ndarray, K: np.ndarray,
                      surface_depth: np.ndarray | None = None, depth_weight: float = 1.0) -> TranslationFit:
    """Camera-frame translation that puts ``joints`` (21,3, no translation) on ``keypoints_2d`` with K.

    Each joint gives two equations linear in t (its normalised ray must pass through it). Rows are
    reweighted by 1/depth twice (iteratively reweighted least squares), which turns the algebraic
    error into image error. With ``surface_depth`` (per joint, metres, NaN = none) from a metric depth
    map, joints are also pulled to ``JOINT_BEHIND_SURFACE_M`` behind the observed surface. Samples vote
    for a depth offset from the image-only solution; the best-supported plausible offset wins and
    samples away from it (an object in the hand, background at a fingertip) are dropped. Without
    depth, the hand's apparent size fixes its distance only through MANO's metric shape.
    """
    P = np.asarray(joints, np.float64)
    uv = np.asarray(keypoints_2d, np.float64)
    K = np.asarray(K, np.float64)
    xn = np.stack([(uv[:, 0] - K[0, 2] - K[0, 1] * (uv[:, 1] - K[1, 2]) / K[1, 1]) / K[0, 0],
                   (uv[:, 1] - K[1, 2]) / K[1, 1]], axis=1)
    ok = np.isfinite(xn).all(1) & np.isfinite(P).all(1)
    P, xn = P[ok], xn[ok]
    if len(P) < 3:
        raise ValueError("need at least 3 joints with 2D keypoints to place a hand")
    w = np.ones(len(P))
    t = _solve(P, xn, w, None)
    for _ in range(2):
        w = 1.0 / np.maximum(P[:, 2] + t[2], 1e-3)
        t = _solve(P, xn, w / w.mean(), None)
    used, inliers = False, 0
    if surface_depth is not None:
        d = np.asarray(surface_depth, np.float64)[ok] + JOINT_BEHIND_SURFACE_M
        has = np.isfinite(d) & (d > 0)
        if has.sum() >= MIN_DEPTH_INLIERS:
            z_img = P[has, 2] + t[2]
            offset = d[has] - z_img
            # The offset with the most samples around it, among plausible ones: keypoints at the hand's
            # border see background and a held object sees its own surface; each forms its own cluster.
            support = (np.abs(offset[:, None] - offset[None, :]) < DEPTH_INLIER_M).sum(1)
            plausible = np.abs(offset) < PLAUSIBLE_DEPTH_FRACTION * np.median(z_img)
            if plausible.any():
                score = np.where(plausible, support - np.abs(offset) / (10 * DEPTH_INLIER_M), -1)
                ref = offset[int(np.argmax(score))]
                keep = np.zeros_like(has)
                keep[np.flatnonzero(has)] = np.abs(offset - ref) < DEPTH_INLIER_M
                inliers = int(keep.sum())
            if inliers >= MIN_DEPTH_INLIERS:
                used = True
                for _ in range(2):
                    w = 1.0 / np.maximum(P[:, 2] + t[2], 1e-3)
                    # Depth rows are in metres like the lateral rows once those are weighted by 1/z
                    # and rescaled to mean 1, so depth_weight=1 balances one depth sample against one
                    # joint's image position at the hand's distance.
                    t = _solve(P, xn, w / w.mean(), (P[keep, 2], d[keep], depth_weight))
    X = P + t
    proj = (K @ X.T).T
    err = proj[:, :2] / proj[:, 2:3] - uv[ok]
    return TranslationFit(t=t, reproj_rms_px=float(np.sqrt(np.mean(np.sum(err ** 2, axis=1)))),
                          depth_inliers=inliers, used_depth=used)


# --------------------------------------------------------------------------- per-hand conversion
@dataclass
class HandObservation:
    """One detected hand in one frame, in y2r's conventions (camera frame of that frame, metres)."""

    frame: int
    side: str  # "left" | "right" (the detector's class)
    score: float
    box: np.ndarray  # (4,) xyxy pixels
    joints_cam: np.ndarray  # (21,3)
    keypoints_2d: np.ndarray  # (21,2) pixels: joints_cam projected with the real K
    mano: dict[str, np.ndarray]  # global_orient (3,), hand_pose (15,3), betas (10,) axis-angle, true side
    fit: TranslationFit
    vertices_cam: np.ndarray | None = None  # (778,3)


def convert_hand(out: WiLoROutput, i: int, K: np.ndarray, surface_depth_fn=None,
                 depth_weight: float = 1.0) -> HandObservation:
    """Row ``i`` of WiLoR's output -> a HandObservation with the real camera ``K``.

    ``surface_depth_fn(frame, uv (21,2)) -> (21,)`` samples the camera stage's metric depth (NaN where
    invalid); None solves the translation from the image alone.
    """
    right = bool(out.is_right[i])
    joints = unmirror_points(out.keypoints_3d[i], right)
    kp2d = out.keypoints_2d[i]
    depth = surface_depth_fn(int(out.frame[i]), kp2d) if surface_depth_fn is not None else None
    fit = solve_translation(joints, kp2d, K, depth, depth_weight)
    joints_cam = joints + fit.t
    # Stored 2D keypoints are the 3D joints seen by the real camera, so joints, keypoints and K agree;
    # WiLoR's own 2D keypoints assume its near-orthographic camera (the fit's rms measures the gap).
    uvw = joints_cam @ np.asarray(K, np.float64).T
    kp_real = uvw[:, :2] / uvw[:, 2:3]
    mano = {"global_orient": mano_axis_angle(out.global_orient[i].reshape(1, 3, 3), right)[0],
            "hand_pose": mano_axis_angle(out.hand_pose[i], right), "betas": np.asarray(out.betas[i], np.float64)}
    verts = unmirror_points(out.vertices[i], right) + fit.t if out.vertices is not None else None
    return HandObservation(frame=int(out.frame[i]), side="right" if right else "left", score=float(out.score[i]),
                           box=out.box[i], joints_cam=joints_cam, keypoints_2d=kp_real, mano=mano,
                           fit=fit, vertices_cam=verts)


def mano_matrices(mano: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Axis-angle MANO params -> (global_orient (3,3), hand_pose (15,3,3)) rotation matrices."""
    return axis_angle_to_matrix(mano["global_orient"]), axis_angle_to_matrix(mano["hand_pose"])
