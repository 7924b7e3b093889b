"""Per-video intermediate artifacts: their types, their files, and how they become visible atomically.

Layout under the output folder::

    OUT/work/<video_id>/<stage>/           one folder per finished stage
        <files of the artifact>
        _COMPLETE.json                     completion marker, written last
    OUT/work/<video_id>/.<stage>.tmp-*/    a stage being written (never read; removed on the next run)
    OUT/episodes/<video_id>.h5             the episode (the episode stage's artifact)

A stage writes into a temporary folder; its completion marker is the last file written there, and
one atomic rename publishes folder and marker together. A folder without a marker (which only a
crash inside ``invalidate`` could leave) is treated as absent, so killing y2r at any moment never
leaves a half-written artifact that a later run would trust.

Arrays are stored as ``.npy``/``.npz`` so that tool shims, which only have numpy, can read them.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

MARKER = "_COMPLETE.json"
HAND_SIDES = ("left", "right")
NUM_HAND_JOINTS = 21
# OpenPose / MediaPipe / WiLoR order: wrist, then 4 joints per finger from base to tip.
HAND_JOINT_ORDER = (
    "wrist",
    "thumb1", "thumb2", "thumb3", "thumb4",
    "index1", "index2", "index3", "index4",
    "middle1", "middle2", "middle3", "middle4",
    "ring1", "ring2", "ring3", "ring4",
    "pinky1", "pinky2", "pinky3", "pinky4",
)


# ------------------------------------------------------------------------------- atomic file io
def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes | str, *, durable: bool = True) -> None:
    """Write ``data`` through a uniquely named temp file (shards on several hosts may share the
    folder) and one rename, so readers see the old file or the new one, never a part. ``durable``
    also fsyncs file and folder; caches, which are rebuilt when lost, skip that."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON through a temp file, fsync, rename, fsync the folder."""
    write_atomic(path, json.dumps(data, indent=1, sort_keys=True, default=json_default))


def file_fingerprint(path: Path) -> list[int] | None:
    """[size, mtime_ns] of a file, None if it is not there: what says a cached result is stale."""
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def json_default(o: Any) -> Any:
    """``json.dump(default=...)`` for numpy scalars/arrays and paths; anything else as its text."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def read_json(path: Path) -> Any:
    with open(path) as f:
        return json.load(f)


# ------------------------------------------------------------------------------------ the store
class ArtifactStore:
    """Where each video's stage artifacts live, and the only code that makes them visible."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.work = self.root / "work"
        self.episodes = self.root / "episodes"

    def video_dir(self, video_id: str) -> Path:
        return self.work / video_id

    def stage_dir(self, video_id: str, stage: str) -> Path:
        return self.work / video_id / stage

    def episode_path(self, video_id: str) -> Path:
        return self.episodes / f"{video_id}.h5"

    def new_tmp_dir(self, video_id: str, stage: str) -> Path:
        d = self.video_dir(video_id) / f".{stage}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        d.mkdir(parents=True, exist_ok=False)
        return d

    def marker(self, video_id: str, stage: str) -> dict | None:
        """The completion marker of a finished stage, or None if the stage is not (fully) there."""
        p = self.stage_dir(video_id, stage) / MARKER
        try:
            return read_json(p)
        except (OSError, ValueError):
            return None

    def commit(self, tmp_dir: Path, video_id: str, stage: str, marker: dict) -> Path:
        """Make a finished temporary folder the stage's artifact, in one atomic rename.

        The completion marker is the last file written into the folder, and the rename publishes
        folder and marker together, so a stage folder is never visible without its marker.
        """
        final = self.stage_dir(video_id, stage)
        tmp_dir = Path(tmp_dir)
        if stage == "episode":
            # The episode file is published at OUT/episodes/<id>.h5 (complete before its rename);
            # its stage folder keeps the marker.
            src = tmp_dir / "episode.h5"
            if src.exists():
                self.episodes.mkdir(parents=True, exist_ok=True)
                dst = self.episode_path(video_id)
                with open(src, "rb") as f:
                    os.fsync(f.fileno())
                os.replace(src, dst)
                fsync_dir(self.episodes)
                marker = {**marker, "episode_path": str(dst.relative_to(self.root))}
        write_json_atomic(tmp_dir / MARKER, {**marker, "committed_utc": time.time()})
        self.invalidate(video_id, stage)
        os.rename(tmp_dir, final)
        fsync_dir(final.parent)
        return final

    def invalidate(self, video_id: str, stage: str) -> None:
        """Forget a stage's artifact: marker first (so a crash mid-way leaves it 'absent'), then files."""
        final = self.stage_dir(video_id, stage)
        if not final.exists():
            return
        m = final / MARKER
        if m.exists():
            m.unlink()
            fsync_dir(final)
        trash = final.with_name(f".{stage}.trash-{uuid.uuid4().hex[:8]}")
        os.rename(final, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def clean_stale(self, video_ids: Iterable[str] | None = None) -> int:
        """Remove temporary and trash folders left by a killed run, and stage folders without a marker.

        ``video_ids`` limits the sweep to those videos: shards of a SLURM array share OUT and run at
        the same time, so one shard must never remove another's work in progress.
        """
        n = 0
        if not self.work.exists():
            return 0
        only = None if video_ids is None else set(video_ids)
        for vdir in self.work.iterdir():
            if not vdir.is_dir() or (only is not None and vdir.name not in only):
                continue
            for d in vdir.iterdir():
                if d.name.startswith(".") and (".tmp-" in d.name or ".trash-" in d.name):
                    shutil.rmtree(d, ignore_errors=True)
                    n += 1
                elif d.is_dir() and not (d / MARKER).exists():
                    shutil.rmtree(d, ignore_errors=True)
                    n += 1
        for p in self.episodes.glob(".*.tmp") if self.episodes.exists() and only is None else []:
            p.unlink(missing_ok=True)
            n += 1
        return n

    def drop_intermediate(self, video_id: str, keep: tuple[str, ...] = ("episode",)) -> None:
        """Delete a video's stage folders except ``keep`` (episode.keep_intermediate: false)."""
        vdir = self.video_dir(video_id)
        if not vdir.exists():
            return
        for d in vdir.iterdir():
            if d.is_dir() and d.name not in keep:
                self.invalidate(video_id, d.name)


# ---------------------------------------------------------------------------- artifact classes
@dataclass
class VideoMeta:
    """What ingest learned about one video, and how stored pixels map to source pixels."""

    video_id: str
    source_path: str
    source_sha256: str
    source_fps: float
    source_width: int
    source_height: int
    source_num_frames: int
    codec: str
    fps: float
    width: int
    height: int
    num_frames: int
    # Region of the source (x0, y0, w, h), in source pixels, that the stored frame shows.
    crop: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)

    @classmethod
    def from_dict(cls, d: dict) -> VideoMeta:
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        if "crop" in kw:
            kw["crop"] = tuple(kw["crop"])
        return cls(**kw)

    def source_to_stored_K(self, K_src: np.ndarray) -> np.ndarray:
        """Intrinsics given for source pixels -> intrinsics of the stored frames.

        Pixel centres are integers in both images, so u_st = (u_src - x0 + 0.5) * sx - 0.5.
        """
        x0, y0, w, h = self.crop
        sx, sy = self.width / w, self.height / h
        K = np.array(K_src, dtype=np.float64).copy()
        K[0, 0] *= sx
        K[1, 1] *= sy
        K[0, 1] *= sx
        K[0, 2] = (K[0, 2] - x0 + 0.5) * sx - 0.5
        K[1, 2] = (K[1, 2] - y0 + 0.5) * sy - 0.5
        return K


class Artifact:
    """Base of the per-stage artifacts: ``save(dir)`` writes files, ``load(dir)`` reads them back."""

    stage: ClassVar[str]

    def save(self, directory: Path) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def load(cls, directory: Path):  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass
class IngestArtifact(Artifact):
    stage: ClassVar[str] = "ingest"
    frames: np.ndarray  # (T,H,W,3) uint8 RGB
    frame_index: np.ndarray  # (T,) int32, index of each stored frame in the source video
    timestamp: np.ndarray  # (T,) float64 seconds (source presentation time)
    meta: VideoMeta
    quality: dict = field(default_factory=dict)  # e.g. {"truncated": true}

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        np.save(directory / "frames.npy", np.ascontiguousarray(self.frames, dtype=np.uint8))
        np.savez(directory / "time.npz", frame_index=self.frame_index.astype(np.int32),
                 timestamp=self.timestamp.astype(np.float64))
        write_json_atomic(directory / "meta.json", {**asdict(self.meta), "quality": self.quality})

    @classmethod
    def load(cls, directory: Path, mmap: bool = True) -> IngestArtifact:
        directory = Path(directory)
        frames = np.load(directory / "frames.npy", mmap_mode="r" if mmap else None)
        t = np.load(directory / "time.npz")
        raw = read_json(directory / "meta.json")
        meta = VideoMeta.from_dict(raw)
        return cls(frames=frames, frame_index=t["frame_index"], timestamp=t["timestamp"], meta=meta,
                   quality=raw.get("quality", {}))


@dataclass
class CameraArtifact(Artifact):
    """K, poses and depth for every stored frame (OpenCV axes, metres when ``metric_scale``)."""

    stage: ClassVar[str] = "camera"
    K: np.ndarray  # (T,3,3) float32, for the stored resolution
    world_T_cam: np.ndarray  # (T,4,4) float32, camera-to-world
    depth: np.ndarray  # (T,H,W) float32 z-depth, 0 where invalid
    depth_valid: np.ndarray  # (T,H,W) bool
    metric_scale: bool
    source: str  # backend that produced it ("builtin", "vipe", ...)
    quality: dict = field(default_factory=dict)  # e.g. {"degenerate": "pure_rotation", "reproj_px": 0.4}
    instance_masks: np.ndarray | None = None  # (T,H,W) uint8 ids (ViPE), optional
    instance_phrases: dict | None = None

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        np.savez(directory / "camera.npz", K=self.K.astype(np.float32), world_T_cam=self.world_T_cam.astype(np.float32))
        # float16 halves the disk cost; ViPE itself stores depth as float16 (2^-11 relative precision).
        depth = np.where(self.depth_valid, self.depth, 0).astype(np.float16)
        np.save(directory / "depth.npy", depth)
        np.save(directory / "depth_valid.npy", self.depth_valid.astype(bool))
        if self.instance_masks is not None:
            np.save(directory / "instance_masks.npy", self.instance_masks.astype(np.uint8))
        write_json_atomic(directory / "camera.json", {
            "metric_scale": bool(self.metric_scale), "source": self.source, "quality": self.quality,
            "instance_phrases": {str(k): v for k, v in (self.instance_phrases or {}).items()} or None,
        })

    @classmethod
    def load(cls, directory: Path, mmap: bool = True) -> CameraArtifact:
        directory = Path(directory)
        c = np.load(directory / "camera.npz")
        info = read_json(directory / "camera.json")
        mode = "r" if mmap else None
        masks_p = directory / "instance_masks.npy"
        phrases = info.get("instance_phrases")
        return cls(
            K=c["K"], world_T_cam=c["world_T_cam"],
            depth=np.load(directory / "depth.npy", mmap_mode=mode),
            depth_valid=np.load(directory / "depth_valid.npy", mmap_mode=mode),
            metric_scale=bool(info["metric_scale"]), source=info["source"], quality=info.get("quality", {}),
            instance_masks=np.load(masks_p, mmap_mode=mode) if masks_p.exists() else None,
            instance_phrases={int(k): v for k, v in phrases.items()} if phrases else None,
        )


@dataclass
class TracksArtifact(Artifact):
    stage: ClassVar[str] = "tracks"
    xyz_world: np.ndarray  # (T,N,3) float32, NaN where unknown
    uv: np.ndarray  # (T,N,2) float32 pixels
    visible: np.ndarray  # (T,N) bool
    query: np.ndarray  # (N,3) float32 [t, u, v]
    source: str = "builtin"
    quality: dict = field(default_factory=dict)

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        np.savez(directory / "tracks.npz", xyz_world=self.xyz_world.astype(np.float32), uv=self.uv.astype(np.float32),
                 visible=self.visible.astype(bool), query=self.query.astype(np.float32))
        write_json_atomic(directory / "tracks.json", {"source": self.source, "quality": self.quality})

    @classmethod
    def load(cls, directory: Path) -> TracksArtifact:
        directory = Path(directory)
        z = np.load(directory / "tracks.npz")
        info = read_json(directory / "tracks.json")
        return cls(xyz_world=z["xyz_world"], uv=z["uv"], visible=z["visible"], query=z["query"],
                   source=info.get("source", ""), quality=info.get("quality", {}))


@dataclass
class HandTrack:
    """One side's hand over time, in the camera frame of each frame (metres)."""

    valid: np.ndarray  # (T,) bool
    joints_cam: np.ndarray  # (T,21,3) float32, NaN where invalid
    keypoints_2d: np.ndarray  # (T,21,2) float32 pixels, NaN where invalid
    cam_T_wrist: np.ndarray  # (T,4,4) float32, NaN where invalid
    score: np.ndarray  # (T,) float32, 0 where invalid
    mano: dict[str, np.ndarray] | None = None  # global_orient (T,3), hand_pose (T,15,3), betas (T,10), axis-angle

    @classmethod
    def empty(cls, T: int) -> HandTrack:
        nan = np.float32(np.nan)
        return cls(valid=np.zeros(T, bool), joints_cam=np.full((T, 21, 3), nan, np.float32),
                   keypoints_2d=np.full((T, 21, 2), nan, np.float32), cam_T_wrist=np.full((T, 4, 4), nan, np.float32),
                   score=np.zeros(T, np.float32))


@dataclass
class HandsArtifact(Artifact):
    stage: ClassVar[str] = "hands"
    left: HandTrack
    right: HandTrack
    source: str = "builtin"
    quality: dict = field(default_factory=dict)

    def side(self, name: str) -> HandTrack:
        return getattr(self, name)

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        arrays: dict[str, np.ndarray] = {}
        for s in HAND_SIDES:
            h = self.side(s)
            arrays[f"{s}/valid"] = h.valid.astype(bool)
            arrays[f"{s}/joints_cam"] = h.joints_cam.astype(np.float32)
            arrays[f"{s}/keypoints_2d"] = h.keypoints_2d.astype(np.float32)
            arrays[f"{s}/cam_T_wrist"] = h.cam_T_wrist.astype(np.float32)
            arrays[f"{s}/score"] = h.score.astype(np.float32)
            for k, v in (h.mano or {}).items():
                arrays[f"{s}/mano/{k}"] = np.asarray(v, np.float32)
        np.savez(directory / "hands.npz", **arrays)
        write_json_atomic(directory / "hands.json", {"source": self.source, "quality": self.quality})

    @classmethod
    def load(cls, directory: Path) -> HandsArtifact:
        directory = Path(directory)
        z = np.load(directory / "hands.npz")
        info = read_json(directory / "hands.json")
        sides = {}
        for s in HAND_SIDES:
            mano = {k.split("/")[-1]: z[k] for k in z.files if k.startswith(f"{s}/mano/")}
            sides[s] = HandTrack(valid=z[f"{s}/valid"], joints_cam=z[f"{s}/joints_cam"],
                                 keypoints_2d=z[f"{s}/keypoints_2d"], cam_T_wrist=z[f"{s}/cam_T_wrist"],
                                 score=z[f"{s}/score"], mano=mano or None)
        return cls(left=sides["left"], right=sides["right"], source=info.get("source", ""), quality=info.get("quality", {}))


@dataclass
class EpisodeArtifact(Artifact):
    """The episode stage writes ``episode.h5`` itself (see dataset/episode_writer.py)."""

    stage: ClassVar[str] = "episode"
    path: Path
    summary: dict = field(default_factory=dict)

    def save(self, directory: Path) -> None:
        write_json_atomic(Path(directory) / "episode.json", self.summary)

    @classmethod
    def load(cls, directory: Path) -> EpisodeArtifact:
        # The file itself was published to OUT/episodes/; the marker records where.
        directory = Path(directory)
        marker = read_json(directory / MARKER) if (directory / MARKER).exists() else {}
        rel = marker.get("episode_path")
        path = directory.parents[2] / rel if rel else directory / "episode.h5"
        return cls(path=path, summary=read_json(directory / "episode.json"))


ARTIFACT_TYPES: dict[str, type[Artifact]] = {
    "ingest": IngestArtifact,
    "camera": CameraArtifact,
    "tracks": TracksArtifact,
    "hands": HandsArtifact,
    "episode": EpisodeArtifact,
}
