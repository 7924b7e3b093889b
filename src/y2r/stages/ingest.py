"""Ingest: decode a source video into resampled, resized frames plus the metadata every later stage needs."""

from __future__ import annotations

from pathlib import Path

from y2r.artifacts import IngestArtifact, VideoMeta
from y2r.stages.base import Backend, Job, Resources
from y2r.video import decode, probe, sha256_file


class IngestBackend(Backend):
    stage = "ingest"
    name = "builtin"
    version = "1"
    resources = Resources(cpus=1.0)

    def process(self, job: Job) -> IngestArtifact:
        cfg = self.config.ingest
        path = Path(job.source_path)
        info = probe(path, max_pixels=cfg.max_source_pixels)
        video = decode(path, fps=cfg.fps, width=cfg.width, height=cfg.height, resize=cfg.resize,
                       max_frames=cfg.max_frames, min_frames=cfg.min_frames, max_pixels=cfg.max_source_pixels,
                       progress=job.progress)
        T, H, W, _ = video.frames.shape
        meta = VideoMeta(
            video_id=job.video_id, source_path=str(path.resolve()), source_sha256=sha256_file(path),
            source_fps=info.fps, source_width=info.width, source_height=info.height,
            source_num_frames=video.source_frames_decoded, codec=info.codec, fps=video.fps,
            width=W, height=H, num_frames=T, crop=tuple(float(x) for x in video.plan.crop),
        )
        # Truncation is not fatal (we keep what decoded) but must be visible in the manifest.
        quality = {"truncated": bool(video.truncated), "source_frames_decoded": video.source_frames_decoded}
        return IngestArtifact(frames=video.frames, frame_index=video.frame_index, timestamp=video.timestamp,
                              meta=meta, quality=quality)

    def describe(self) -> dict:
        import av  # noqa: PLC0415 - only for provenance

        return {"backend": self.name, "version": self.version, "decoder": f"PyAV {av.__version__}"}
