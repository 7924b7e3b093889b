"""Rigid-body and camera geometry, in y2r's conventions (see docs/conventions.md).

- OpenCV camera axes: x right, y down, z forward. Units: metres and pixels.
- ``a_T_b`` maps points from frame b to frame a; poses are stored as ``world_T_cam``.
- Pixel (u, v) = (column, row); integer coordinates are pixel centres; the ray of a pixel is
  ``K^-1 [u, v, 1]`` and the point seen there is ``depth[v, u] * K^-1 [u, v, 1]`` (z-depth).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation


def invert_se3(T: np.ndarray) -> np.ndarray:
    """Inverse of one or many 4x4 rigid transforms (exact, no general matrix inverse)."""
    T = np.asarray(T, dtype=np.float64)
    R = T[..., :3, :3]
    t = T[..., :3, 3]
    out = np.zeros_like(T)
    Rt = np.swapaxes(R, -1, -2)
    out[..., :3, :3] = Rt
    out[..., :3, 3] = -np.einsum("...ij,...j->...i", Rt, t)
    out[..., 3, 3] = 1.0
    return out


def make_se3(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    R = np.asarray(R, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    T = np.zeros(R.shape[:-2] + (4, 4))
    T[..., :3, :3] = R
    T[..., :3, 3] = t
    T[..., 3, 3] = 1.0
    return T


def transform_points(T: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Apply 4x4 ``T`` (...,4,4) to points ``X`` (...,N,3); broadcasting over leading axes."""
    T = np.asarray(T)
    X = np.asarray(X)
    return np.einsum("...ij,...nj->...ni", T[..., :3, :3], X) + T[..., None, :3, 3]


def project(K: np.ndarray, X_cam: np.ndarray) -> np.ndarray:
    """Pinhole projection of camera-frame points (...,N,3) -> pixels (...,N,2)."""
    X_cam = np.asarray(X_cam, dtype=np.float64)
    uvw = np.einsum("...ij,...nj->...ni", np.asarray(K, dtype=np.float64), X_cam)
    with np.errstate(divide="ignore", invalid="ignore"):
        return uvw[..., :2] / uvw[..., 2:3]


def unproject(K: np.ndarray, uv: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Pixels (...,N,2) with z-depth (...,N) -> camera-frame points (...,N,3)."""
    uv = np.asarray(uv, dtype=np.float64)
    Kinv = np.linalg.inv(np.asarray(K, dtype=np.float64))
    ones = np.ones(uv.shape[:-1] + (1,))
    rays = np.einsum("...ij,...nj->...ni", Kinv, np.concatenate([uv, ones], axis=-1))
    return rays * np.asarray(depth, dtype=np.float64)[..., None]


def depth_to_points(K: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """A z-depth map (H,W) -> camera-frame points (H,W,3) at pixel centres."""
    H, W = depth.shape
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    uv = np.stack([u, v], axis=-1).reshape(-1, 2)
    return unproject(K, uv, depth.reshape(-1)).reshape(H, W, 3)


def bilinear(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Sample ``image`` (H,W[,C]) at float pixel positions (N,2), border-clamped."""
    H, W = image.shape[:2]
    u = np.clip(uv[:, 0], 0, W - 1)
    v = np.clip(uv[:, 1], 0, H - 1)
    u0 = np.floor(u).astype(int)
    v0 = np.floor(v).astype(int)
    u1 = np.minimum(u0 + 1, W - 1)
    v1 = np.minimum(v0 + 1, H - 1)
    du = u - u0
    dv = v - v0
    img = image.astype(np.float64)
    if img.ndim == 3:
        du = du[:, None]
        dv = dv[:, None]
    return (img[v0, u0] * (1 - du) * (1 - dv) + img[v0, u1] * du * (1 - dv)
            + img[v1, u0] * (1 - du) * dv + img[v1, u1] * du * dv)


def intrinsics_matrix(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def focal_from_fov(width: int, fov_deg: float) -> float:
    """Focal length (pixels) of a horizontal field of view."""
    return 0.5 * width / np.tan(np.deg2rad(fov_deg) / 2)


def rotation_angle_deg(R: np.ndarray) -> np.ndarray:
    """Rotation angle (degrees) of one or many 3x3 rotation matrices."""
    R = np.asarray(R, dtype=np.float64)
    tr = np.trace(R, axis1=-2, axis2=-1)
    return np.rad2deg(np.arccos(np.clip((tr - 1) / 2, -1.0, 1.0)))


def matrix_to_axis_angle(R: np.ndarray) -> np.ndarray:
    R = np.asarray(R, dtype=np.float64)
    flat = R.reshape(-1, 3, 3)
    return Rotation.from_matrix(flat).as_rotvec().reshape(R.shape[:-2] + (3,))


def axis_angle_to_matrix(aa: np.ndarray) -> np.ndarray:
    aa = np.asarray(aa, dtype=np.float64)
    flat = aa.reshape(-1, 3)
    return Rotation.from_rotvec(flat).as_matrix().reshape(aa.shape[:-1] + (3, 3))


def umeyama(src: np.ndarray, dst: np.ndarray, with_scale: bool = True) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity ``dst ~ s R src + t`` (Umeyama 1991). Returns (s, R, t)."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / len(src)
    U, S, Vt = np.linalg.svd(cov)
    D = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        D[2, 2] = -1
    R = U @ D @ Vt
    var_s = (xs ** 2).sum() / len(src)
    s = float(np.trace(np.diag(S) @ D) / var_s) if with_scale and var_s > 0 else 1.0
    t = mu_d - s * R @ mu_s
    return s, R, t
