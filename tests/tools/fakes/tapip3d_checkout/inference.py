"""Fake TAPIP3D inference.py: prepare_inputs with upstream's .npz semantics (K rescale rule, resize,
depth filter assertion), no CLI."""

from pathlib import Path

import cv2
import numpy as np
import torch
from datasets.data_ops import _filter_one_depth
from utils.inference_utils import get_grid_queries, resize_depth_bilinear

DEFAULT_QUERY_GRID_SIZE = 32


def prepare_inputs(input_path: str, inference_res: tuple[int, int], support_grid_size: int, num_threads: int = 8,
                   device: str = "cpu"):
    if not Path(input_path).is_file():
        raise ValueError(f"Input file not found: {input_path}")
    if not input_path.endswith(".npz"):
        raise ValueError(f"Unsupported input type: {input_path}")
    data = np.load(input_path)
    video = data["video"]
    assert video.ndim == 4 and video.shape[-1] == 3 and video.dtype == np.uint8
    depths = data.get("depths", None)
    intrinsics = data.get("intrinsics", None)
    extrinsics = data.get("extrinsics", None)
    query_point = data.get("query_point", None)
    if depths is None:
        raise NotImplementedError("the fake has no MegaSAM")
    if intrinsics is None:
        raise ValueError("Intrinsics must be provided if depth is provided")
    _original_res = depths.shape[1:3]
    intrinsics = intrinsics.copy()
    intrinsics[:, 0, :] *= (inference_res[1] - 1) / (_original_res[1] - 1)
    intrinsics[:, 1, :] *= (inference_res[0] - 1) / (_original_res[0] - 1)
    video = np.stack([cv2.resize(rgb, (inference_res[1], inference_res[0]), interpolation=cv2.INTER_LINEAR)
                      for rgb in video])
    depths = np.stack([resize_depth_bilinear(d, (inference_res[1], inference_res[0])) for d in depths])
    depths = np.stack([_filter_one_depth(d, 0.08, 15, k) for d, k in zip(depths, intrinsics)])
    video = torch.from_numpy(video.transpose(0, 3, 1, 2).astype(np.float32) / 255.0)
    depths = torch.from_numpy(depths.astype(np.float32))
    intrinsics = torch.from_numpy(intrinsics.astype(np.float32))
    extrinsics = torch.from_numpy(extrinsics.astype(np.float32))
    if query_point is None:
        support_grid_size = 0
        query_point = get_grid_queries(DEFAULT_QUERY_GRID_SIZE, depths, intrinsics, extrinsics)
    else:
        query_point = torch.from_numpy(query_point.astype(np.float32))
    return video, depths, intrinsics, extrinsics, query_point, support_grid_size
