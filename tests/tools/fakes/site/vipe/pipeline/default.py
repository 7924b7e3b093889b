"""Fake DefaultAnnotationPipeline: upstream's structure (init processors, SLAM, post processors,
save_artifacts, info pickle) with deterministic numpy results."""

import pickle
from pathlib import Path

import fake_truth

from vipe.pipeline import Pipeline
from vipe.pipeline.processors import (
    AdaptiveDepthProcessor,
    GeoCalibIntrinsicsProcessor,
    TrackAnythingProcessor,
)
from vipe.slam.system import SLAMSystem
from vipe.streams.base import AssignAttributesProcessor, FrameAttribute, ProcessedVideoStream
from vipe.utils import io
from vipe.utils.cameras import CameraType


class DefaultAnnotationPipeline(Pipeline):
    def __init__(self, init, slam, post, output):
        self.init_cfg, self.slam_cfg, self.post_cfg, self.out_cfg = init, slam, post, output
        self.out_path = Path(output["path"])
        self.out_path.mkdir(exist_ok=True, parents=True)
        self.camera_type = CameraType(init["camera_type"])

    def _add_init_processors(self, video_stream):
        assert FrameAttribute.INTRINSICS not in video_stream.attributes()
        procs = [GeoCalibIntrinsicsProcessor(video_stream, camera_type=self.camera_type)]
        inst = self.init_cfg["instance"]
        if inst is not None:
            procs.append(TrackAnythingProcessor(inst["phrases"], add_sky=inst["add_sky"],
                                                sam_run_gap=int(video_stream.fps() * inst["kf_gap_sec"])))
        return ProcessedVideoStream(video_stream, procs)

    def run(self, video_data):
        fake_truth.maybe_fail("vipe")
        slam_stream = self._add_init_processors(video_data).cache("process", online=True)
        out = SLAMSystem(device="cuda", config=self.slam_cfg).run([slam_stream], camera_type=self.camera_type)
        n = len(slam_stream)
        post = [AssignAttributesProcessor({FrameAttribute.POSE: out.trajectory,
                                           FrameAttribute.INTRINSICS: [out.intrinsics] * n})]
        if self.post_cfg["depth_align_model"] is not None:
            post.append(AdaptiveDepthProcessor(out, 0, self.post_cfg["depth_align_model"]))
        output_stream = ProcessedVideoStream(slam_stream, post).cache("depth", online=True)
        artifact_path = io.ArtifactPath(self.out_path, video_data.name())
        artifact_path.meta_info_path.parent.mkdir(exist_ok=True, parents=True)
        if self.out_cfg["save_artifacts"]:
            io.save_artifacts(artifact_path, output_stream)
            with artifact_path.meta_info_path.open("wb") as f:
                pickle.dump({"ba_residual": 0.0}, f)
        if self.out_cfg["save_viz"]:
            artifact_path.meta_vis_path.write_bytes(b"viz")
