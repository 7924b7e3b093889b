"""Fake TAPIP3D inference utilities. The "tracker" assumes a static world: every query keeps its
world position; it is visible where it projects inside the frame, in front of the camera and not
behind the depth map (2% tolerance at the nearest pixel). Like TAPIP3D, with T <= 8 frames no
window runs and every query comes back unmoved and invisible; coords/visibs are squeezed."""


import cv2
import fake_truth
import models
import numpy as np
import torch


def get_grid_queries(grid_size, depths, intrinsics, extrinsics):
    raise NotImplementedError("y2r always passes queries")


def load_model(checkpoint_path: str):
    model, cfg = models.from_pretrained(checkpoint_path)
    model.eval()
    return model


def resize_depth_bilinear(depth: np.ndarray, new_shape: tuple[int, int]) -> np.ndarray:
    if depth.shape[::-1] == tuple(new_shape):
        return depth.copy()
    is_valid = (depth > 0).astype(np.float32)
    d = cv2.resize(depth, new_shape, interpolation=cv2.INTER_LINEAR)
    v = cv2.resize(is_valid, new_shape, interpolation=cv2.INTER_LINEAR)
    d = d / (v + 1e-6)
    d[v <= 1e-6] = 0.0
    return d


def inference(*, model, video, depths, intrinsics, extrinsics, query_point, num_iters=6, grid_size=8,
              bidrectional=True, vis_threshold=0.9):
    fake_truth.maybe_fail("tapip3d")
    video, depths = np.asarray(video), np.asarray(depths)
    K, E, q = np.asarray(intrinsics, np.float64), np.asarray(extrinsics, np.float64), np.asarray(query_point, np.float64)
    T, C, H, W = video.shape
    assert depths.shape == (T, H, W)
    model.set_image_size((H, W))
    N = len(q)
    xyz = q[:, 1:]
    coords = np.repeat(xyz[None], T, axis=0)
    if T <= 8:
        visibs = np.zeros((T, N), bool)
    else:
        Xc = np.einsum("tij,nj->tni", E[:, :3, :3], xyz) + E[:, None, :3, 3]
        uvw = np.einsum("tij,tnj->tni", K, Xc)
        z = uvw[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u, v = uvw[..., 0] / z, uvw[..., 1] / z
        inside = (z > 0) & (u >= 0) & (u <= W - 1) & (v >= 0) & (v <= H - 1)
        ui = np.clip(np.rint(np.nan_to_num(u)), 0, W - 1).astype(int)
        vi = np.clip(np.rint(np.nan_to_num(v)), 0, H - 1).astype(int)
        d = depths[np.arange(T)[:, None], vi, ui]
        visibs = inside & ((d <= 0) | (z <= d * 1.02))
    return torch.from_numpy(coords.astype(np.float32).squeeze()), torch.from_numpy(visibs.squeeze())
