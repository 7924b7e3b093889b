"""The camera stage's output as the tracker uses it: depth lookups, lifting, projection, local shape.

``CameraModel`` wraps K, poses and depth of a clip. Without a camera (``CameraModel.absent``) every
depth is unknown and poses are unusable, so each query below answers "unknown" (NaN / inf) and
the tracker falls back to pure 2D tracking without special cases.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from y2r.geometry import invert_se3, project, transform_points
from y2r.stages.tracks.lifting import lift, sample_depth
from y2r.stages.tracks.template_alignment import sample


@dataclass
class CameraModel:
    """K (T,3,3), world_T_cam (T,4,4), z-depth (T,H,W) with validity (T,H,W) of one clip."""

    K: np.ndarray
    world_T_cam: np.ndarray
    depth: np.ndarray
    depth_valid: np.ndarray
    poses_usable: bool = True  # False: never predict by projection (points stay 2D-predicted)
    # Expected reprojection error (px) of a static point predicted from its world position: pose
    # and depth error together. Weighs such a prediction against an image measurement.
    projection_sigma_px: float = 1.0
    depth_edge_tol: float = 0.05  # see lifting.sample_depth
    # A camera that only rotates sees every point at infinity: projections do not depend on depth.
    # Then an anchor without depth is placed at this nominal depth -- for prediction only; the
    # tracks' xyz stay unknown. None: the camera translates, an anchor needs real depth.
    rotation_only_depth: float | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.K = np.asarray(self.K, np.float64)
        self.world_T_cam = np.asarray(self.world_T_cam, np.float64)
        self.cam_T_world = invert_se3(self.world_T_cam)

    @classmethod
    def absent(cls, num_frames: int, height: int, width: int) -> CameraModel:
        """No camera: unknown depth everywhere, unusable poses (zero-cost broadcast arrays)."""
        T, H, W = int(num_frames), int(height), int(width)
        return cls(K=np.broadcast_to(np.eye(3), (T, 3, 3)), world_T_cam=np.broadcast_to(np.eye(4), (T, 4, 4)),
                   depth=np.broadcast_to(np.zeros((1, H, W), np.float32), (T, H, W)),
                   depth_valid=np.broadcast_to(np.zeros((1, H, W), bool), (T, H, W)), poses_usable=False)

    # ------------------------------------------------------------------------------------ depth
    def depth_at(self, t: int, pos: np.ndarray) -> np.ndarray:
        """Nearest-pixel depth of frame t at positions (...,2); inf where invalid or outside.

        inf (not NaN) so that "unknown" never looks nearer than anything in depth comparisons.
        """
        if self._cache.get("t") != t:
            d = np.asarray(self.depth[t], np.float32)
            ok = np.asarray(self.depth_valid[t], bool) & np.isfinite(d) & (d > 0)
            self._cache.clear()  # one frame at a time: frames are visited in order
            self._cache.update(t=t, map=np.where(ok, d, np.inf).astype(np.float32))
        H, W = self._cache["map"].shape
        pos = np.asarray(pos)
        u, v = pos[..., 0], pos[..., 1]
        with np.errstate(invalid="ignore"):
            outside = ~((u >= -0.5) & (u < W - 0.5) & (v >= -0.5) & (v < H - 0.5))
        return np.where(outside, np.inf, sample(self._cache["map"], pos, nearest=True))

    def observed_depth(self, t: int, uv: np.ndarray) -> np.ndarray:
        """Edge-aware interpolated depth of frame t at ``uv`` (N,2); NaN where unknown."""
        uv = np.nan_to_num(uv, nan=-1.0)
        return sample_depth(self.depth[t], self.depth_valid[t], uv, self.depth_edge_tol)

    def anchor_depth(self, z: np.ndarray) -> np.ndarray:
        """Depth to place a world anchor at: the observed one, or the nominal one of a rotating camera."""
        z = np.asarray(z, np.float64)
        if self.rotation_only_depth is None:
            return z
        return np.where(np.isfinite(z), z, self.rotation_only_depth)

    # --------------------------------------------------------------------------------- geometry
    def lift(self, t: int, uv: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Pixels (N,2) of frame t with depth (N,) -> world points (N,3); NaN where z is NaN."""
        return lift(self.K[t], self.world_T_cam[t], uv, z)

    def project(self, t: int, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points (N,3) -> (uv (N,2), z (N,)) in frame t; NaN where not in front or poses unusable."""
        X = np.asarray(X, np.float64).reshape(-1, 3)
        if not self.poses_usable:
            return np.full((len(X), 2), np.nan), np.full(len(X), np.nan)
        Xc = transform_points(self.cam_T_world[t], X)
        z = Xc[:, 2]
        with np.errstate(invalid="ignore"):
            front = np.isfinite(z) & (z > 1e-6)
        with np.errstate(invalid="ignore", divide="ignore"):
            uv = np.where(front[:, None], project(self.K[t], Xc), np.nan)
        return uv, np.where(front, z, np.nan)

    def local_affine(self, t: int, patch_world: np.ndarray, offsets: np.ndarray,
                     centre: np.ndarray) -> np.ndarray:
        """Affine shape (M,2,2) of M surface patches in frame t, from their pixels' world positions.

        ``patch_world`` (M,S,3) are the world points seen at template offsets ``offsets`` (S,2) in
        the frame they were lifted from (NaN where unknown); ``centre`` (M,2) is each patch centre's
        projection in frame t. Least squares ``projection - centre ~ A offset``; NaN where fewer than
        six pixels are known.
        """
        M = len(patch_world)
        out = np.full((M, 2, 2), np.nan)
        if M == 0 or not self.poses_usable:
            return out
        uv, _ = self.project(t, patch_world.reshape(-1, 3))
        d = uv.reshape(M, -1, 2) - np.asarray(centre, np.float64)[:, None, :]
        ok = np.isfinite(d).all(2)
        x = np.asarray(offsets, np.float64)[None] * ok[..., None]
        d = np.where(ok[..., None], d, 0.0)
        good = ok.sum(1) >= 6
        if good.any():
            xx = np.einsum("msi,msj->mij", x[good], x[good])
            dx = np.einsum("msi,msj->mij", d[good], x[good])
            out[good] = dx @ np.linalg.inv(xx)
        return out
