"""Fake processors: the names y2r's shim memoises, each logging its construction."""

import fake_truth
import numpy as np
import torch

from vipe.priors.depth import make_depth_model
from vipe.streams.base import FrameAttribute, StreamProcessor
from vipe.utils.cameras import CameraType
from vipe.utils.logging import pbar


class GeoCalib:
    def __init__(self, weights="pinhole"):
        fake_truth.log_load("vipe", f"GeoCalib:{weights}")

    def cuda(self):
        return self


class PriorDAModel:
    def __init__(self):
        fake_truth.log_load("vipe", "PriorDAModel")


class VideoDepthAnythingDepthModel:
    def __init__(self, model="vitl", input_size=518):
        fake_truth.log_load("vipe", f"VideoDepthAnything:{model}")


class TrackAnythingPipeline:
    def __init__(self, phrases):
        fake_truth.log_load("vipe", "TrackAnythingPipeline")
        self.frame_idx = 0  # per-video state, as upstream


class IntrinsicEstimationProcessor(StreamProcessor):
    def update_attributes(self, previous_attributes):
        return previous_attributes | {FrameAttribute.INTRINSICS}

    def __call__(self, frame_idx, frame):
        H, W = frame.size()
        f = fake_truth.geocalib_focal(W, H)
        frame.intrinsics = torch.as_tensor([f, f, W / 2, H / 2]).float()
        frame.camera_type = self.camera_type
        return frame


class GeoCalibIntrinsicsProcessor(IntrinsicEstimationProcessor):
    def __init__(self, video_stream, gap_sec=1.0, camera_type=CameraType.PINHOLE):
        GeoCalib(weights="pinhole" if camera_type == CameraType.PINHOLE else "distorted").cuda()
        self.camera_type = camera_type


class TrackAnythingProcessor(StreamProcessor):
    def __init__(self, mask_phrases, add_sky, sam_run_gap=30, mask_expand=5):
        self.tracker = TrackAnythingPipeline(mask_phrases)
        self.sam_run_gap = sam_run_gap

    def update_attributes(self, previous_attributes):
        return previous_attributes | {FrameAttribute.INSTANCE, FrameAttribute.MASK}

    def __call__(self, frame_idx, frame):
        inst = fake_truth.vipe_instance(np.asarray(frame.rgb))
        frame.instance = inst
        frame.instance_phrases = {int(k): ("background" if k == 0 else "person") for k in np.unique(inst)}
        return frame


class AdaptiveDepthProcessor(StreamProcessor):
    def __init__(self, slam_output, view_idx=0, model="adaptive_unidepth-l_svda"):
        parts = model.split("_")
        self.depth_model = make_depth_model(parts[1])
        self.prompt_model = PriorDAModel()
        if len(parts) == 3:
            VideoDepthAnythingDepthModel(model="vits" if parts[2] == "svda" else "vitl")

    def update_attributes(self, previous_attributes):
        return previous_attributes | {FrameAttribute.METRIC_DEPTH}

    def update_iterator(self, previous_iterator, pass_idx):
        for frame_idx, frame in pbar(enumerate(previous_iterator), desc="Aligning depth"):
            frame.metric_depth = fake_truth.vipe_depth(np.asarray(frame.rgb)).astype(np.float32)
            yield frame
