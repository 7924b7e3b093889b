"""The episode stage: pack a video's stage artifacts into one HDF5 file (schema v1).

It writes ``job.out_dir / "episode.h5"``; ``ArtifactStore.commit`` then publishes it atomically as
``OUT/episodes/<video_id>.h5``. Provenance of every upstream stage (backend, version, model) comes
from the completion markers of their artifact folders, which the pipeline writes from
``Backend.describe()``; an artifact folder without one (e.g. built by hand in a test) falls back to
the artifact's own ``source``.
"""

from __future__ import annotations

from pathlib import Path

from y2r.artifacts import MARKER, EpisodeArtifact, read_json
from y2r.dataset.episode_writer import write_episode
from y2r.dataset.schema import SCHEMA_VERSION
from y2r.dataset.stats import EPISODE_STATS_FILE, save_episode_stats
from y2r.stages.base import Backend, Job, MemoryProfile, Resources
from y2r.viz.report import EPISODE_STRIP_FILE, save_frames_strip

UPSTREAM = ("ingest", "camera", "tracks", "hands")


class EpisodeBackend(Backend):
    stage = "episode"
    name = "builtin"
    # The stage fingerprint includes this version: a new schema version re-writes existing episodes
    # on the next `y2r run` (upstream stages are reused).
    version = str(SCHEMA_VERSION)
    # The writer streams rgb/depth a few frames at a time (artifacts are memory-mapped), so memory
    # is a small base plus the compressor's per-chunk buffers, nearly independent of length.
    resources = Resources(cpus=1.0, host_memory=MemoryProfile(base_mb=300.0, mb_per_mpix_frame=1.0))

    def process(self, job: Job) -> EpisodeArtifact:
        ingest = job.load("ingest")
        camera = job.load("camera")
        tracks = job.load("tracks") if "tracks" in job.inputs else None
        hands = job.load("hands") if "hands" in job.inputs else None
        artifacts = {"ingest": ingest, "camera": camera, "tracks": tracks, "hands": hands}
        backends = {s: provenance(job.inputs.get(s), artifacts[s]) for s in UPSTREAM if s in job.inputs}
        backends["episode"] = self.describe()
        ep = self.config.episode
        path = Path(job.out_dir) / "episode.h5"
        summary = write_episode(
            path,
            ingest,
            camera,
            tracks,
            hands,
            config_yaml=self.config.to_yaml(),
            backends=backends,
            compression=ep.compression,
            level=ep.compression_level,
            store_rgb=ep.store_rgb,
            store_depth=ep.store_depth,
            progress=job.progress,
        )
        # Its statistics and its report card's frame strip now, in this worker, rather than serially
        # at the end of the run (the driver's finalize merges and reuses them while they are current).
        save_episode_stats(path, Path(job.out_dir) / EPISODE_STATS_FILE)
        save_frames_strip(path, Path(job.out_dir) / EPISODE_STRIP_FILE)
        return EpisodeArtifact(path=path, summary=summary)


def provenance(artifact_dir: Path | None, artifact: object) -> dict:
    """What produced an upstream artifact: its completion marker's backend info, else its ``source``."""
    marker: dict = {}
    if artifact_dir is not None:
        try:
            marker = read_json(Path(artifact_dir) / MARKER)
        except (OSError, ValueError):
            marker = {}
    out: dict = {}
    describe = marker.get("describe")
    if isinstance(describe, dict):
        out.update(describe)
    if marker.get("backend"):
        out["backend"] = marker["backend"]
    if marker.get("backend_version") is not None:
        out["version"] = marker["backend_version"]
    if "backend" not in out:
        source = getattr(artifact, "source", None)
        out["backend"] = source if source else "builtin"
    return out
