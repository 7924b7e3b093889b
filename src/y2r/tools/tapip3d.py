"""TAPIP3D (zbw001/TAPIP3D @ 9359ae2): its input/output ``.npz`` formats and conventions.

Input (``inference.py`` reads an ``.npz`` with these keys; y2r always gives depth and poses so the
MegaSAM path, with its UniDepth BY-NC weights, never runs)::

    video       (T,H,W,3) uint8          asserted by TAPIP3D
    depths      (T,H,W)   float32 metres  <= 0 is invalid; NaN/inf crash its edge filter -> set to 0
    intrinsics  (T,3,3)   float32         K for the *depth* resolution
    extrinsics  (T,4,4)   float32         world -> camera (``cam_T_world``; ViPE/y2r store the inverse)
    query_point (N,4)     float32         [t, x, y, z], xyz in the world frame of the extrinsics

Result (``inference.py``: ``<input stem>.result.npz``, plain ``np.savez``)::

    coords      (T,N,3) float32  world positions (same world as the extrinsics), metres
    visibs      (T,N)   bool     sigmoid(logit) >= 0.9; no confidence is saved
    query_points (N,4)  float32
    intrinsics  (T,3,3)          K rescaled to the inference resolution
    extrinsics  (T,4,4)          as given
    video (T,3,h,w) float, depths (T,h,w)   at the inference resolution (y2r's shim omits them)

``inference()`` ends with ``coords.squeeze(), visibs.squeeze()``, so with N == 1 the point axis is
gone: (T,3) and (T,). The reader restores it.

TAPIP3D rescales K "align-corners" style: row 0 times ``(W_inf - 1) / (W_in - 1)``, row 1 times
``(H_inf - 1) / (H_in - 1)`` (``prepare_inputs``), i.e. it maps pixel centre 0 to 0 and W_in-1 to
W_inf-1. The inference size is ``int(model.image_size * sqrt(resolution_factor))`` per axis: a fixed
4:3 size whatever the video's aspect, so pixels are squashed but geometry stays consistent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from y2r.errors import InputError

# TAPIP3D slides windows of seq_len=16 frames with stride 8 over range(seq_len, T+1, 8): with T <= 8
# no window runs at all and the queries come back unmoved and invisible.
MIN_FRAMES = 9
# The released checkpoint's training resolution (H, W), ``cfg['train_dataset']['resolution']``.
TRAIN_RESOLUTION = (384, 512)


def inference_resolution(resolution_factor: float, image_size: tuple[int, int] = TRAIN_RESOLUTION) -> tuple[int, int]:
    """(H, W) TAPIP3D resizes every clip to (``inference.py``)."""
    s = math.sqrt(resolution_factor)
    return int(image_size[0] * s), int(image_size[1] * s)


def rescale_intrinsics(K: np.ndarray, from_hw: tuple[int, int], to_hw: tuple[int, int]) -> np.ndarray:
    """TAPIP3D's K rescale rule (align corners); also its own inverse with the sizes swapped."""
    K = np.array(K, np.float64)
    K[..., 0, :] *= (to_hw[1] - 1) / (from_hw[1] - 1)
    K[..., 1, :] *= (to_hw[0] - 1) / (from_hw[0] - 1)
    return K


def result_name(input_path: Path) -> str:
    """TAPIP3D's output name for an input: ``Path(name).with_suffix('.result.npz')``."""
    return Path(input_path).with_suffix(".result.npz").name


def write_input(path: Path, video: np.ndarray, depths: np.ndarray, K: np.ndarray, cam_T_world: np.ndarray,
                query_point: np.ndarray) -> Path:
    """Write a TAPIP3D input ``.npz``, enforcing what TAPIP3D asserts or silently assumes."""
    video = np.asarray(video)
    T = len(video)
    if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(f"TAPIP3D video must be (T,H,W,3) uint8, got {video.shape} {video.dtype}")
    depths = np.asarray(depths, np.float32)
    if depths.shape != video.shape[:3]:
        raise ValueError(f"depths {depths.shape} must match the video's (T,H,W) {video.shape[:3]}")
    # Invalid depth must be 0, never NaN/inf: TAPIP3D's edge filter asserts depth < 1e9.
    depths = np.where(np.isfinite(depths) & (depths > 0), depths, 0).astype(np.float32)
    K = np.broadcast_to(np.asarray(K, np.float32), (T, 3, 3))
    cam_T_world = np.asarray(cam_T_world, np.float32)
    if cam_T_world.shape != (T, 4, 4):
        raise ValueError(f"extrinsics must be (T,4,4), got {cam_T_world.shape}")
    q = np.asarray(query_point, np.float32).reshape(-1, 4)
    if not np.all(np.isfinite(q)):
        raise ValueError("query points must be finite")
    np.savez(path, video=np.ascontiguousarray(video), depths=depths, intrinsics=np.ascontiguousarray(K),
             extrinsics=cam_T_world, query_point=q)
    return Path(path)


@dataclass
class TAPIP3DResult:
    coords: np.ndarray  # (T,N,3) float32, world of ``extrinsics``
    visibs: np.ndarray  # (T,N) bool
    query_points: np.ndarray | None  # (N,4)
    intrinsics: np.ndarray | None  # (T,3,3) at the inference resolution
    extrinsics: np.ndarray | None  # (T,4,4) world -> camera
    inference_hw: tuple[int, int] | None  # (h, w) of the saved video/depths, when present

    @property
    def num_frames(self) -> int:
        return self.coords.shape[0]

    @property
    def num_points(self) -> int:
        return self.coords.shape[1]


def read_result(path: Path) -> TAPIP3DResult:
    """Read a ``.result.npz`` (TAPIP3D's own or y2r's shim's), restoring the N == 1 point axis."""
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise InputError(path, f"not a readable TAPIP3D result ({e})") from e
    with z:
        if "coords" not in z.files or "visibs" not in z.files:
            raise InputError(path, f"not a TAPIP3D result: keys {z.files} lack coords/visibs")
        coords = np.asarray(z["coords"], np.float32)
        visibs = np.asarray(z["visibs"])
        q = np.asarray(z["query_points"], np.float32) if "query_points" in z.files else None
        K = np.asarray(z["intrinsics"], np.float64) if "intrinsics" in z.files else None
        E = np.asarray(z["extrinsics"], np.float64) if "extrinsics" in z.files else None
        hw = None
        if "depths" in z.files:
            hw = tuple(int(v) for v in z["depths"].shape[-2:])
        elif "video" in z.files:
            hw = tuple(int(v) for v in z["video"].shape[-2:])
    if coords.ndim == 2 and coords.shape[-1] == 3:  # N == 1, squeezed by inference()
        coords = coords[:, None, :]
    if visibs.ndim == 1:
        visibs = visibs[:, None]
    if coords.ndim != 3 or coords.shape[-1] != 3:
        raise InputError(path, f"coords must be (T,N,3), got {coords.shape}")
    if visibs.shape != coords.shape[:2]:
        raise InputError(path, f"visibs {visibs.shape} do not match coords {coords.shape}")
    if q is not None:
        q = q.reshape(-1, 4)
        if len(q) != coords.shape[1]:
            raise InputError(path, f"{len(q)} query points but {coords.shape[1]} tracks")
    if visibs.dtype != bool:
        # Older dumps stored probabilities or logits; TAPIP3D thresholds sigmoid(logit) at 0.9.
        visibs = visibs > (0.9 if visibs.min() >= 0 and visibs.max() <= 1 else math.log(0.9 / 0.1))
    return TAPIP3DResult(coords=coords, visibs=visibs.astype(bool), query_points=q, intrinsics=K, extrinsics=E,
                         inference_hw=hw)  # type: ignore[arg-type]
