"""``tracks.backend: none``: no point tracks (the episode gets an empty tracks group: N = 0)."""

from __future__ import annotations

import numpy as np

from y2r.artifacts import TracksArtifact
from y2r.stages.base import Backend, Job


def empty_tracks(num_frames: int, source: str = "none") -> TracksArtifact:
    """A tracks artifact with zero points and the schema's shapes: (T,0,3), (T,0,2), (T,0), (0,3)."""
    T = int(num_frames)
    return TracksArtifact(
        xyz_world=np.zeros((T, 0, 3), np.float32), uv=np.zeros((T, 0, 2), np.float32),
        visible=np.zeros((T, 0), bool), query=np.zeros((0, 3), np.float32), source=source,
    )


class NoTracks(Backend):
    stage = "tracks"
    name = "none"

    def process(self, job: Job) -> TracksArtifact:
        if job.meta is not None:
            T = job.meta.num_frames
        else:
            T = len(job.load("ingest").frames)
        return empty_tracks(T)
