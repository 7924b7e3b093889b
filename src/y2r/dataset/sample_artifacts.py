"""Small, geometrically self-consistent stage artifacts, for tests and writer benchmarks.

A camera moves in front of a textured tilted plane; depth is the exact ray/plane intersection,
tracks are points on the plane projected through the same K and poses, and a hand skeleton is
placed in front of the camera and projected. So every convention the validator checks (rigid
poses, depth >= 0, visible uv inside the image, tracks reprojecting onto their uv, NaN <=> masked)
holds exactly, and any corruption a test applies afterwards is the only thing wrong.

This is not the synthetic video renderer (``y2r.synth``); it makes artifacts directly, in
milliseconds, without decoding anything.
"""

from __future__ import annotations

import hashlib

import numpy as np

from y2r.artifacts import (
    NUM_HAND_JOINTS,
    CameraArtifact,
    HandsArtifact,
    HandTrack,
    IngestArtifact,
    TracksArtifact,
    VideoMeta,
)
from y2r.geometry import axis_angle_to_matrix, invert_se3, make_se3, project, transform_points

# A right hand in its wrist frame (metres): x towards the thumb side, y along the fingers, z out
# of the palm. Four joints per finger from base to tip, as HAND_JOINT_ORDER.
_FINGER_BASES = np.array(
    [
        [0.030, 0.020, 0.0],
        [0.025, 0.090, 0.0],
        [0.005, 0.095, 0.0],
        [-0.015, 0.090, 0.0],
        [-0.032, 0.080, 0.0],
    ]
)
_FINGER_DIRS = np.array(
    [[0.6, 0.8, 0.0], [0.1, 1.0, 0.0], [0.0, 1.0, 0.0], [-0.1, 1.0, 0.0], [-0.25, 1.0, 0.0]]
)
_FINGER_STEPS = np.array([0.030, 0.025, 0.022, 0.020, 0.018])


def canonical_hand() -> np.ndarray:
    """(21,3) joints of an open right hand in its wrist frame."""
    joints = [np.zeros(3)]
    for base, d, step in zip(_FINGER_BASES, _FINGER_DIRS, _FINGER_STEPS, strict=True):
        d = d / np.linalg.norm(d)
        joints.extend(base + k * step * d for k in range(4))
    return np.asarray(joints)


def sample_artifacts(
    T: int = 8,
    W: int = 64,
    H: int = 48,
    N: int = 5,
    *,
    seed: int = 0,
    video_id: str = "sample",
    fps: float = 10.0,
    with_mano: bool = True,
) -> tuple[IngestArtifact, CameraArtifact, TracksArtifact, HandsArtifact]:
    rng = np.random.default_rng(seed)
    f = 0.9 * W
    K = np.array([[f, 0, (W - 1) / 2], [0, f, (H - 1) / 2], [0, 0, 1.0]])
    # Camera path: slide right and forward while yawing a little; world = camera 0 frame.
    s = np.linspace(0.0, 1.0, T)
    yaw = np.deg2rad(6.0) * s
    R = axis_angle_to_matrix(np.stack([np.zeros(T), yaw, np.zeros(T)], -1))
    t = np.stack([0.3 * s, 0.02 * np.sin(3 * s), 0.1 * s], -1)
    world_T_cam = make_se3(R, t)

    # Scene plane n . X = d (tilted so depth varies across the image), 2 m away.
    n = np.array([0.0, -0.35, 1.0])
    n /= np.linalg.norm(n)
    d = 2.0
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(K).T  # (H,W,3), z = 1
    depth = np.empty((T, H, W), np.float32)
    frames = np.empty((T, H, W, 3), np.uint8)
    e1 = np.cross(n, [1.0, 0, 0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(n, e1)
    for i in range(T):
        rw = rays @ R[i].T
        z = (d - n @ t[i]) / (rw @ n)
        depth[i] = z
        X = t[i] + rw * z[..., None]
        a, b = X @ e1, X @ e2
        checker = ((np.floor(a / 0.1) + np.floor(b / 0.1)) % 2).astype(np.float64)
        frames[i, ..., 0] = (60 + 150 * checker).astype(np.uint8)
        frames[i, ..., 1] = (np.clip(128 + 100 * np.sin(7 * a), 0, 255)).astype(np.uint8)
        frames[i, ..., 2] = (np.clip(128 + 100 * np.cos(5 * b), 0, 255)).astype(np.uint8)
    depth_valid = np.ones((T, H, W), bool)
    depth_valid[:, :2, :2] = False  # a small hole, as real depth has
    depth[~depth_valid] = 0

    # Tracks: plane points seen at frame 0, projected everywhere.
    qu = rng.uniform(0.2 * W, 0.8 * W, N)
    qv = rng.uniform(0.2 * H, 0.8 * H, N)
    q_uv = np.stack([qu, qv], -1)
    r0 = np.concatenate([q_uv, np.ones((N, 1))], -1) @ np.linalg.inv(K).T
    z0 = (d - n @ t[0]) / ((r0 @ R[0].T) @ n)
    P = t[0] + (r0 @ R[0].T) * z0[:, None]
    cam_T_world = invert_se3(world_T_cam)
    xyz = np.repeat(P[None], T, 0)
    uv = project(K, transform_points(cam_T_world, xyz))
    inside = (uv[..., 0] >= -0.5) & (uv[..., 0] <= W - 0.5) & (uv[..., 1] >= -0.5) & (uv[..., 1] <= H - 0.5)
    visible = inside.copy()
    if N > 1 and T > 3:
        visible[T // 2, 1] = False  # occluded but known
        xyz[T - 2 :, N - 1] = np.nan  # lost: unknown at the end
        uv[T - 2 :, N - 1] = np.nan
        visible[T - 2 :, N - 1] = False
    tracks = TracksArtifact(
        xyz_world=xyz.astype(np.float32),
        uv=uv.astype(np.float32),
        visible=visible,
        query=np.concatenate([np.zeros((N, 1)), q_uv], -1).astype(np.float32),
        source="sample",
        quality={"median_fb_px": 0.2},
    )

    # Hands: the right hand is seen except in frame 1; the left only in the second half.
    sides = {}
    skel = canonical_hand()
    for side, valid in (("right", np.arange(T) != 1), ("left", np.arange(T) >= T // 2)):
        h = HandTrack.empty(T)
        mirror = np.diag([-1.0, 1, 1]) if side == "left" else np.eye(3)
        for i in np.flatnonzero(valid):
            Rw = axis_angle_to_matrix(np.array([np.pi * 0.9, 0.2 * np.sin(i), 0.1]))
            tw = np.array([0.08 if side == "right" else -0.08, 0.05, 0.5 + 0.01 * i])
            pose = make_se3(Rw, tw)
            J = transform_points(pose, (skel @ mirror.T)[None])[0]
            h.joints_cam[i] = J
            h.keypoints_2d[i] = project(K, J[None])[0]
            h.cam_T_wrist[i] = pose
            h.score[i] = 0.9
        h.valid = valid.copy()
        if with_mano and side == "right":
            go = np.full((T, 3), np.nan, np.float32)
            hp = np.full((T, 15, 3), np.nan, np.float32)
            be = np.full((T, 10), np.nan, np.float32)
            go[valid] = rng.normal(0, 0.5, (valid.sum(), 3))
            hp[valid] = rng.normal(0, 0.2, (valid.sum(), 15, 3))
            be[valid] = rng.normal(0, 1.0, (valid.sum(), 10))
            h.mano = {"global_orient": go, "hand_pose": hp, "betas": be}
        sides[side] = h
    assert sides["right"].joints_cam.shape == (T, NUM_HAND_JOINTS, 3)
    hands = HandsArtifact(left=sides["left"], right=sides["right"], source="sample", quality={})

    sha = hashlib.sha256(f"{video_id}:{seed}".encode()).hexdigest()
    meta = VideoMeta(
        video_id=video_id,
        source_path=f"/videos/{video_id}.mp4",
        source_sha256=sha,
        source_fps=30.0,
        source_width=W * 2,
        source_height=H * 2,
        source_num_frames=3 * T,
        codec="h264",
        fps=fps,
        width=W,
        height=H,
        num_frames=T,
        crop=(0.0, 0.0, 2.0 * W, 2.0 * H),
    )
    ingest = IngestArtifact(
        frames=frames,
        frame_index=(np.arange(T) * 3).astype(np.int32),
        timestamp=np.arange(T) / fps + 0.0,
        meta=meta,
    )
    camera = CameraArtifact(
        K=np.repeat(K[None], T, 0).astype(np.float32),
        world_T_cam=world_T_cam.astype(np.float32),
        depth=depth,
        depth_valid=depth_valid,
        metric_scale=True,
        source="sample",
        quality={"degenerate": None, "reproj_px": 0.3},
    )
    return ingest, camera, tracks, hands
