"""Committed upstream artifacts and Jobs for the tool-backed stage tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from y2r.artifacts import CameraArtifact, IngestArtifact, VideoMeta
from y2r.config import Config
from y2r.stages.base import Job, WorkerContext


def meta_for(video_id: str, T: int, H: int, W: int, fps: float = 10.0, source: str | None = None,
             source_hw: tuple[int, int] | None = None, source_fps: float | None = None,
             source_frames: int | None = None, crop: tuple[float, float, float, float] | None = None) -> VideoMeta:
    sh, sw = source_hw or (H, W)
    return VideoMeta(video_id=video_id, source_path=source or f"/videos/{video_id}.mp4", source_sha256="0" * 64,
                     source_fps=source_fps or fps, source_width=sw, source_height=sh,
                     source_num_frames=source_frames or T, codec="h264", fps=fps, width=W, height=H, num_frames=T,
                     crop=crop or (0.0, 0.0, float(sw), float(sh)))


def save_ingest(folder: Path, frames: np.ndarray, meta: VideoMeta, frame_index: np.ndarray | None = None) -> Path:
    d = folder / "ingest"
    d.mkdir(parents=True, exist_ok=True)
    T = len(frames)
    fi = np.arange(T, dtype=np.int32) if frame_index is None else np.asarray(frame_index, np.int32)
    IngestArtifact(frames=frames, frame_index=fi, timestamp=fi / meta.source_fps, meta=meta).save(d)
    return d


def save_camera(folder: Path, K: np.ndarray, world_T_cam: np.ndarray, depth: np.ndarray,
                valid: np.ndarray | None = None, metric: bool = True) -> Path:
    d = folder / "camera"
    d.mkdir(parents=True, exist_ok=True)
    T = len(world_T_cam)
    valid = (depth > 0) if valid is None else valid
    CameraArtifact(K=np.broadcast_to(K, (T, 3, 3)).astype(np.float32), world_T_cam=world_T_cam.astype(np.float32),
                   depth=depth.astype(np.float32), depth_valid=valid, metric_scale=metric, source="test").save(d)
    return d


def make_job(folder: Path, video_id: str, stage: str, meta: VideoMeta, inputs: dict[str, Path]) -> Job:
    out = folder / f".{stage}.tmp"
    out.mkdir(parents=True, exist_ok=True)
    return Job(video_id=video_id, stage=stage, meta=meta, source_path=Path(meta.source_path), inputs=inputs,
               out_dir=out, log_path=folder / f"{video_id}.{stage}.log")


def config_with(tool: str, tool_env: dict, **sections) -> Config:
    data = {"tools": {tool: tool_env}, **sections}
    return Config.model_validate(data)


def ctx(tmp: Path, device: str = "cuda") -> WorkerContext:
    (tmp / "logs").mkdir(parents=True, exist_ok=True)
    return WorkerContext(worker_id="test", log_dir=tmp / "logs", device=device)
