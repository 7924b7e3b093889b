"""``hands.backend: none``: no hand estimation; the episode gets all-invalid hand tracks."""

from __future__ import annotations

from y2r.artifacts import HandsArtifact, HandTrack
from y2r.stages.base import Backend, Job, Resources


class NoHands(Backend):
    stage = "hands"
    name = "none"
    resources = Resources(cpus=0.1)

    def process(self, job: Job) -> HandsArtifact:
        T = job.meta.num_frames if job.meta is not None else len(job.load("ingest").frames)
        return HandsArtifact(left=HandTrack.empty(T), right=HandTrack.empty(T), source="none",
                             quality={"reason": "hands.backend is none"})
