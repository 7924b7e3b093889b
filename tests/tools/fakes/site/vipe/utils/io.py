"""ViPE's artifact writer, in the real formats (OpenEXR >= 3.3 API for the same bytes on disk)."""

from __future__ import annotations

import io as _io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import OpenEXR


@dataclass
class ArtifactPath:
    base_path: Path
    artifact_name: str

    @property
    def rgb_path(self):
        return self.base_path / "rgb" / f"{self.artifact_name}.mp4"

    @property
    def pose_path(self):
        return self.base_path / "pose" / f"{self.artifact_name}.npz"

    @property
    def depth_path(self):
        return self.base_path / "depth" / f"{self.artifact_name}.zip"

    @property
    def intrinsics_path(self):
        return self.base_path / "intrinsics" / f"{self.artifact_name}.npz"

    @property
    def camera_type_path(self):
        return self.base_path / "intrinsics" / f"{self.artifact_name}_camera.txt"

    @property
    def mask_path(self):
        return self.base_path / "mask" / f"{self.artifact_name}.zip"

    @property
    def mask_phrase_path(self):
        return self.base_path / "mask" / f"{self.artifact_name}.txt"

    @property
    def meta_info_path(self):
        return self.base_path / "vipe" / f"{self.artifact_name}_info.pkl"

    @property
    def meta_vis_path(self):
        return self.base_path / "vipe" / f"{self.artifact_name}_vis.mp4"


def save_rgb_artifacts(out_path, frames):
    out_path.rgb_path.parent.mkdir(parents=True, exist_ok=True)
    H, W = frames[0].rgb.shape[:2]
    vw = cv2.VideoWriter(str(out_path.rgb_path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (W, H))
    for f in frames:
        vw.write(np.ascontiguousarray((np.asarray(f.rgb) * 255).astype(np.uint8)[..., ::-1]))
    vw.release()


def save_artifacts(out_path: ArtifactPath, stream) -> None:
    frames = list(stream)
    out_path.pose_path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out_path.pose_path, data=np.stack([np.asarray(f.pose, np.float32) for f in frames]),
             inds=np.arange(len(frames), dtype=np.int64))
    out_path.intrinsics_path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out_path.intrinsics_path, data=np.stack([np.asarray(f.intrinsics, np.float32) for f in frames]),
             inds=np.arange(len(frames), dtype=np.int64))
    out_path.camera_type_path.write_text("".join(f"{i}: {f.camera_type.name}\n" for i, f in enumerate(frames)))
    save_rgb_artifacts(out_path, frames)
    if frames[0].metric_depth is not None:
        out_path.depth_path.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(out_path.depth_path, "w", zipfile.ZIP_DEFLATED) as z:
            for i, f in enumerate(frames):
                buf = _io.BytesIO()
                OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage},
                             {"Z": np.asarray(f.metric_depth).astype(np.float16)}).write(buf)
                z.writestr(f"{i:05d}.exr", buf.getvalue())
    if frames[0].instance is not None:
        out_path.mask_path.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(out_path.mask_path, "w", zipfile.ZIP_DEFLATED) as z:
            for i, f in enumerate(frames):
                _, buf = cv2.imencode(".png", np.asarray(f.instance, np.uint8))
                z.writestr(f"{i:05d}.png", buf.tobytes())
        phrases = {}
        for f in frames:
            phrases.update(f.instance_phrases or {})
        out_path.mask_phrase_path.write_text("".join(f"{k}: {v}\n" for k, v in phrases.items()))
