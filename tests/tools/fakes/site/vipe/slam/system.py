"""Fake SLAM: keyframes every 2nd frame in a buffer of slam.buffer slots (overflowing like #38),
poses from fake_truth, focal kept (optimize_intrinsics false) or refined halfway to GeoCalib's."""

from types import SimpleNamespace

import fake_truth
import numpy as np

from vipe.priors.depth import make_depth_model
from vipe.utils.logging import pbar


class DroidNet:
    def __init__(self):
        fake_truth.log_load("vipe", "DroidNet")

    def to(self, device):
        return self


class SLAMSystem:
    def __init__(self, device, config):
        self.config = config

    def run(self, video_streams, rig=None, camera_type=None):
        cfg = self.config
        if cfg["visualize"]:
            raise RuntimeError("rr.init(spawn=True): a rerun viewer was spawned on a headless worker")
        self.droid_net = DroidNet().to("cuda")
        if cfg["keyframe_depth"] is not None:
            self.metric_depth = make_depth_model(cfg["keyframe_depth"])
        stream = video_streams[0]
        frames = list(pbar(enumerate(stream), desc="SLAM Pass (1/2)"))
        n = len(frames)
        needed = (n + 1) // 2 + cfg["infill_chunk_size"]
        if needed > cfg["buffer"]:
            raise IndexError(f"index {cfg['buffer']} is out of bounds for dimension 0 with size {cfg['buffer']}")
        for _ in pbar(range(n), desc="SLAM Pass (2/2)"):
            pass
        intr = np.asarray(frames[0][1].intrinsics, np.float64).copy()
        if cfg["optimize_intrinsics"]:
            H, W = frames[0][1].size()
            geo = fake_truth.geocalib_focal(W, H)
            intr[:2] = 0.5 * (intr[:2] + geo)
        return SimpleNamespace(trajectory=[fake_truth.vipe_pose(t) for t in range(n)], intrinsics=intr)
