"""Clips for the built-in camera backend's tests, made from the shared ground-truth fixture.

Degenerate motions are built exactly, without a renderer: a camera rotating about its centre sees
every frame as a homography ``K R K^-1`` of the first one, a static camera sees the same frame.
"""

from __future__ import annotations

import cv2
import numpy as np

from y2r.artifacts import VideoMeta
from y2r.geometry import axis_angle_to_matrix, make_se3


def meta_for(
    frames: np.ndarray,
    name: str = "clip",
    source_wh: tuple[int, int] | None = None,
    crop: tuple[float, float, float, float] | None = None,
) -> VideoMeta:
    T, H, W = frames.shape[:3]
    sw, sh = source_wh or (W, H)
    return VideoMeta(
        video_id=name,
        source_path=f"/videos/{name}.mp4",
        source_sha256="0" * 64,
        source_fps=30.0,
        source_width=sw,
        source_height=sh,
        source_num_frames=T,
        codec="h264",
        fps=30.0,
        width=W,
        height=H,
        num_frames=T,
        crop=crop or (0.0, 0.0, float(sw), float(sh)),
    )


def rotation_clip(
    rgb0: np.ndarray, K: np.ndarray, T: int = 16, yaw_deg: float = 12.0, pitch_deg: float = 4.0
) -> tuple[np.ndarray, np.ndarray]:
    """Frames of a camera turning about its centre, and their world_T_cam (translation zero)."""
    H, W = rgb0.shape[:2]
    s = np.linspace(0.0, 1.0, T)
    aa = np.stack([np.deg2rad(pitch_deg) * s, np.deg2rad(yaw_deg) * s, np.zeros(T)], 1)
    R_wc = axis_angle_to_matrix(aa)  # world_T_cam rotations; camera 0 = world
    frames = []
    for R in R_wc:
        # pixel x_t in camera t sees world direction R K^-1 x_t, i.e. pixel K R K^-1 x_t of frame 0
        Hm = K @ R @ np.linalg.inv(K)
        frames.append(
            cv2.warpPerspective(
                rgb0, Hm, (W, H), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT
            )
        )
    return np.stack(frames), make_se3(R_wc, np.zeros((T, 3)))
