"""What a stage is (as data) and what a backend must implement.

A *stage* (ingest, camera, tracks, hands, episode) is declared once in ``STAGES``: its inputs (the
stages it needs) and its artifact type. A *backend* is one implementation of a stage; it declares
its resources as data (``Resources``) and is constructed once per worker (so a model loads once),
then ``process(job)`` runs per video and returns the stage's artifact.

Executors read these declarations; no backend code branches on the executor.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from y2r.artifacts import ARTIFACT_TYPES, Artifact, VideoMeta
from y2r.errors import ConfigError


@dataclass(frozen=True)
class StageSpec:
    name: str
    inputs: tuple[str, ...]  # stages whose artifacts this stage reads
    artifact: type[Artifact]
    description: str


STAGES: dict[str, StageSpec] = {
    "ingest": StageSpec("ingest", (), ARTIFACT_TYPES["ingest"], "decode, resample and resize frames"),
    "camera": StageSpec("camera", ("ingest",), ARTIFACT_TYPES["camera"], "intrinsics, poses, depth"),
    "tracks": StageSpec("tracks", ("ingest", "camera"), ARTIFACT_TYPES["tracks"], "3D point tracks"),
    "hands": StageSpec("hands", ("ingest", "camera"), ARTIFACT_TYPES["hands"], "3D hand poses"),
    "episode": StageSpec("episode", ("ingest", "camera", "tracks", "hands"), ARTIFACT_TYPES["episode"], "HDF5 episode"),
}
STAGE_ORDER: tuple[str, ...] = ("ingest", "camera", "tracks", "hands", "episode")


@dataclass(frozen=True)
class MemoryProfile:
    """Seed of a backend's memory model: peak = base + per_mpix_frame * frames * megapixels."""

    base_mb: float = 0.0
    mb_per_mpix_frame: float = 0.0

    def predict(self, frames: int, pixels: int) -> float:
        return self.base_mb + self.mb_per_mpix_frame * frames * pixels / 1e6


@dataclass(frozen=True)
class Resources:
    """What one worker of a backend needs. Read by the scheduler; validated at construction."""

    cpus: float = 1.0
    gpu: bool = False  # needs a CUDA device (placed by memory, see execution/gpus.py)
    gpu_memory: MemoryProfile = field(default_factory=MemoryProfile)
    host_memory: MemoryProfile = field(default_factory=MemoryProfile)
    # "tool" backends run a shim in another environment; the scheduler keeps such workers alive.
    tool: str | None = None

    def __post_init__(self) -> None:
        if self.cpus <= 0:
            raise ValueError("Resources.cpus must be > 0")
        if not self.gpu and self.gpu_memory.base_mb > 0:
            raise ValueError("gpu_memory given for a backend that does not use a GPU")


@dataclass
class Job:
    """One (video, stage) task as a backend sees it."""

    video_id: str
    stage: str
    meta: VideoMeta | None  # None only for ingest (it creates the meta)
    source_path: Path
    inputs: dict[str, Path]  # stage -> committed artifact folder
    out_dir: Path  # temporary folder the backend may write extra files into
    log_path: Path
    attempt: int = 1
    progress: Callable[[int, int], None] = field(default=lambda done, total: None, repr=False)
    _cache: dict[str, Artifact] = field(default_factory=dict, repr=False)

    def load(self, stage: str) -> Any:
        """The artifact of an upstream stage (loaded once per job)."""
        if stage not in self._cache:
            if stage not in self.inputs:
                raise KeyError(f"stage '{self.stage}' did not declare input '{stage}'")
            self._cache[stage] = STAGES[stage].artifact.load(self.inputs[stage])
        return self._cache[stage]


class Backend(ABC):
    """One implementation of a stage. Subclasses set ``stage``, ``name`` and ``resources``."""

    stage: ClassVar[str]
    name: ClassVar[str]
    resources: ClassVar[Resources] = Resources()
    version: ClassVar[str] = "1"

    def __init__(self, config: Any, ctx: WorkerContext):
        """Load models here (once per worker). ``config`` is the whole validated ``Config``."""
        self.config = config
        self.ctx = ctx

    @classmethod
    def resources_for(cls, config: Any) -> Resources:
        """Resources under a given config (most backends: the class-level declaration)."""
        return cls.resources

    @abstractmethod
    def process(self, job: Job) -> Artifact:
        """Compute this stage for one video and return its artifact (saved by the caller)."""

    def describe(self) -> dict:
        """Provenance stored in the episode (backend, version, model / checkpoint)."""
        return {"backend": self.name, "version": self.version}

    def close(self) -> None:
        """Release models and child processes."""


@dataclass
class WorkerContext:
    """Where a backend runs: its worker's identity, log folder and device."""

    worker_id: str = "inline"
    log_dir: Path = Path(".")
    device: str = "cpu"  # "cpu" or "cuda" (the worker sees its GPU as cuda:0 via CUDA_VISIBLE_DEVICES)
    gpu_index: int | None = None  # physical index, for logs only


# (stage, backend name) -> "module:Class". Imported lazily so that choosing one backend never
# imports another's dependencies.
BACKENDS: dict[tuple[str, str], str] = {
    ("ingest", "builtin"): "y2r.stages.ingest:IngestBackend",
    ("camera", "builtin"): "y2r.stages.camera.builtin:BuiltinCamera",
    ("camera", "vipe"): "y2r.stages.camera.vipe:ViPECamera",
    ("camera", "vipe-results"): "y2r.stages.camera.vipe:ViPEResultsCamera",
    ("camera", "synthetic"): "y2r.synthetic_backends:SyntheticCamera",
    ("tracks", "builtin"): "y2r.stages.tracks.builtin:BuiltinTracks",
    ("tracks", "tapip3d"): "y2r.stages.tracks.tapip3d:TAPIP3DTracks",
    ("tracks", "tapip3d-results"): "y2r.stages.tracks.tapip3d:TAPIP3DResultsTracks",
    ("tracks", "synthetic"): "y2r.synthetic_backends:SyntheticTracks",
    ("tracks", "none"): "y2r.stages.tracks.none:NoTracks",
    ("hands", "builtin"): "y2r.stages.hands.builtin:BuiltinHands",
    ("hands", "wilor"): "y2r.stages.hands.wilor:WiLoRHands",
    ("hands", "synthetic"): "y2r.synthetic_backends:SyntheticHands",
    ("hands", "none"): "y2r.stages.hands.none:NoHands",
    ("episode", "builtin"): "y2r.stages.episode:EpisodeBackend",
}


def backend_name(config: Any, stage: str) -> str:
    """The backend configured for a stage (ingest and episode have only 'builtin')."""
    section = getattr(config, stage, None)
    return getattr(section, "backend", "builtin") if stage in ("camera", "tracks", "hands") else "builtin"


def backend_class(stage: str, name: str) -> type[Backend]:
    try:
        target = BACKENDS[(stage, name)]
    except KeyError:
        valid = sorted(n for s, n in BACKENDS if s == stage)
        raise ConfigError(f"{stage}.backend: unknown backend '{name}'; choose from: {', '.join(valid)}") from None
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)
