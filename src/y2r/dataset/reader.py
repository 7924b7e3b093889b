"""Reading episodes: a lazy per-file reader and a windowed map-style dataset.

``Episode`` opens its HDF5 file on first access (and again in a forked / spawned DataLoader worker:
h5py handles must not cross processes), checks the schema version, and reads only what is asked
for. ``EpisodeDataset`` indexes fixed-length windows over many episodes; it is plain numpy, and
``to_torch()`` wraps it for ``torch.utils.data.DataLoader`` without y2r depending on torch.

    from y2r.dataset.reader import Episode, EpisodeDataset

    with Episode("OUT/episodes/clip.h5") as ep:
        K, poses = ep.K(), ep.world_T_cam()
        frame = ep.rgb(10)                     # (H,W,3) uint8
        right = ep.hand("right")               # HandTrack, NaN where not valid

    ds = EpisodeDataset("OUT", window=16, stride=8, keys=["rgb", "tracks/xyz_world"])
    item = ds[0]                               # {"rgb": (16,H,W,3), "tracks/xyz_world": (16,N,3), ...}
"""

from __future__ import annotations

import bisect
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import yaml

from y2r.artifacts import HAND_SIDES, HandTrack, TracksArtifact
from y2r.dataset import schema
from y2r.errors import ToolUnavailable, UsageError

EPISODE_SUFFIXES = (".h5", ".hdf5")
Frames = None | int | slice | Sequence[int] | np.ndarray


def find_episode_files(source: str | Path | Iterable[str | Path]) -> list[Path]:
    """Episode files named by ``source``: one file, a list of files, ``OUT`` (its ``episodes/``
    folder) or any folder of ``*.h5`` files. Hidden files (temporary writes) are skipped."""
    if not isinstance(source, (str, os.PathLike)):
        return [Path(p) for p in source]
    p = Path(source)
    if not p.exists():
        raise UsageError(f"{p}: no such file or folder")
    if p.is_file():
        return [p]
    folder = p / "episodes" if (p / "episodes").is_dir() else p
    return sorted(
        q
        for q in folder.iterdir()
        if q.suffix in EPISODE_SUFFIXES and q.is_file() and not q.name.startswith(".")
    )


class Episode:
    """One episode file, opened lazily. Use as a context manager or call ``close()``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._f: h5py.File | None = None
        self._pid: int | None = None
        self._attrs: dict[str, Any] | None = None

    # ---------------------------------------------------------------- file handling
    @property
    def file(self) -> h5py.File:
        if self._f is None or self._pid != os.getpid() or not self._f.id.valid:
            self._f = h5py.File(self.path, "r")
            self._pid = os.getpid()
            try:
                schema.check_version(self._f.attrs, str(self.path))
            except Exception:
                self._f.close()
                self._f = None
                raise
        return self._f

    def close(self) -> None:
        if self._f is not None and self._pid == os.getpid():
            self._f.close()
        self._f = None

    def __enter__(self) -> Episode:
        _ = self.file
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict:
        # Picklable for DataLoader workers: the handle is reopened on first use over there.
        return {"path": self.path, "_f": None, "_pid": None, "_attrs": self._attrs}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return f"Episode({str(self.path)!r})"

    # ---------------------------------------------------------------- metadata
    @property
    def attrs(self) -> dict[str, Any]:
        """Root attributes as Python values (strings decoded; JSON/YAML left as text)."""
        if self._attrs is None:
            self._attrs = {k: _py(v) for k, v in self.file.attrs.items()}
        return self._attrs

    @property
    def episode_id(self) -> str:
        return str(self.attrs["episode_id"])

    @property
    def num_frames(self) -> int:
        return int(self.attrs["num_frames"])

    @property
    def fps(self) -> float:
        return float(self.attrs["fps"])

    @property
    def width(self) -> int:
        return int(self.attrs["width"])

    @property
    def height(self) -> int:
        return int(self.attrs["height"])

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps

    @property
    def metric_scale(self) -> bool:
        return bool(self.file["camera/world_T_cam"].attrs["metric_scale"])

    def config(self) -> dict:
        return yaml.safe_load(self.attrs["config"]) or {}

    def backends(self) -> dict:
        return json.loads(self.attrs["backends"])

    def quality(self) -> dict:
        return json.loads(self.attrs["quality"])

    def quality_flags(self) -> dict[str, Any]:
        """The flat ``quality.<flag>`` root attrs, keyed by flag name."""
        return {k: self.attrs.get(f"quality.{k}") for k in schema.QUALITY_FLAGS}

    def has(self, key: str) -> bool:
        return isinstance(self.file.get(key.lstrip("/")), h5py.Dataset)

    def keys(self) -> list[str]:
        """Paths of the datasets this file has (schema order)."""
        return [d.path for d in schema.DATASETS if self.has(d.path)]

    # ---------------------------------------------------------------- arrays
    def read(self, key: str, frames: Frames = None) -> np.ndarray:
        """A dataset, or the given frames of a per-frame dataset, as numpy."""
        key = key.lstrip("/")
        if not self.has(key):
            raise KeyError(f"{self.path}: no dataset '/{key}' (this episode has: {', '.join(self.keys())})")
        ds = self.file[key]
        return _read_frames(ds, frames)

    def time(self, frames: Frames = None) -> tuple[np.ndarray, np.ndarray]:
        """(frame_index, timestamp)."""
        return self.read("time/frame_index", frames), self.read("time/timestamp", frames)

    def rgb(self, frames: Frames = None) -> np.ndarray:
        return self.read("rgb", frames)

    def depth(self, frames: Frames = None, invalid: float = 0.0) -> np.ndarray:
        """float32 metres; invalid pixels set to ``invalid`` (0 as stored, or e.g. NaN)."""
        d = self.read("depth/depth", frames).astype(np.float32)
        if invalid != 0.0:
            d[~self.read("depth/valid", frames)] = invalid
        return d

    def depth_valid(self, frames: Frames = None) -> np.ndarray:
        return self.read("depth/valid", frames)

    def K(self, frames: Frames = None) -> np.ndarray:
        return self.read("camera/K", frames)

    def world_T_cam(self, frames: Frames = None) -> np.ndarray:
        return self.read("camera/world_T_cam", frames)

    def cam_T_world(self, frames: Frames = None) -> np.ndarray:
        from y2r.geometry import invert_se3

        return invert_se3(self.world_T_cam(frames)).astype(np.float32)

    def tracks(self, frames: Frames = None) -> TracksArtifact | None:
        """Tracks (None when the episode has none); ``query`` is always whole."""
        if not self.has("tracks/query"):
            return None
        be = self.backends().get("tracks", {})
        return TracksArtifact(
            xyz_world=self.read("tracks/xyz_world", frames),
            uv=self.read("tracks/uv", frames),
            visible=self.read("tracks/visible", frames),
            query=self.read("tracks/query"),
            source=str(be.get("backend", "")),
        )

    def hand(self, side: str, frames: Frames = None) -> HandTrack | None:
        """One side's hand (None when the episode has no hands)."""
        if side not in HAND_SIDES:
            raise ValueError(f"side must be one of {HAND_SIDES}")
        base = f"hands/{side}"
        if not self.has(f"{base}/valid"):
            return None
        mano = None
        if self.has(f"{base}/mano/global_orient"):
            mano = {k: self.read(f"{base}/mano/{k}", frames) for k in ("global_orient", "hand_pose", "betas")}
        return HandTrack(
            valid=self.read(f"{base}/valid", frames),
            joints_cam=self.read(f"{base}/joints_cam", frames),
            keypoints_2d=self.read(f"{base}/keypoints_2d", frames),
            cam_T_wrist=self.read(f"{base}/cam_T_wrist", frames),
            score=self.read(f"{base}/score", frames),
            mano=mano,
        )


def _read_frames(ds: h5py.Dataset, frames: Frames) -> np.ndarray:
    if frames is None:
        return ds[()]
    if isinstance(frames, (int, np.integer, slice)):
        return ds[frames]
    idx = np.asarray(frames, dtype=np.int64)
    idx = np.where(idx < 0, idx + ds.shape[0], idx)
    # h5py fancy indexing needs increasing unique indices: read those, then re-order.
    uniq, inverse = np.unique(idx, return_inverse=True)
    return ds[uniq.tolist()][inverse]


def _py(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.ndarray):
        return [_py(x) for x in v.tolist()] if v.dtype.kind in "OSU" else v
    if isinstance(v, np.generic):
        return v.item()
    return v


# ------------------------------------------------------------------------------------ dataset
DEFAULT_KEYS: tuple[str, ...] = (
    "rgb",
    "camera/K",
    "camera/world_T_cam",
    "hands/left/valid",
    "hands/left/joints_cam",
    "hands/right/valid",
    "hands/right/joints_cam",
    "tracks/xyz_world",
    "tracks/visible",
)


class EpisodeDataset:
    """Map-style dataset of fixed-length windows over episodes (numpy; torch via ``to_torch``).

    Item ``i`` is a dict ``{key: array}``: per-frame keys are sliced to the window
    (``(window, ...)``), per-episode keys (``tracks/query``) come whole; plus ``episode_id``,
    ``episode_index`` and ``start`` (first frame of the window). Episodes shorter than ``window``
    give no items. Every key must exist in every episode (a part not computed for one episode
    cannot silently become a hole in a batch): the constructor says which episode lacks which key.
    """

    def __init__(
        self,
        source: str | Path | Iterable[str | Path],
        window: int = 16,
        stride: int | None = None,
        keys: Sequence[str] = DEFAULT_KEYS,
    ):
        if window < 1:
            raise UsageError(f"window must be >= 1 (got {window})")
        self.window = int(window)
        self.stride = int(stride or window)
        if self.stride < 1:
            raise UsageError(f"stride must be >= 1 (got {stride})")
        self.keys = [k.lstrip("/") for k in keys]
        unknown = [k for k in self.keys if k not in schema.DATASETS_BY_PATH]
        if unknown:
            raise UsageError(f"unknown keys {unknown}; choose from: {', '.join(schema.DATASETS_BY_PATH)}")
        self.episodes = [Episode(p) for p in find_episode_files(source)]
        self._starts: list[int] = []  # cumulative item count before each episode
        self._lengths: list[int] = []
        total = 0
        for ep in self.episodes:
            missing = [k for k in self.keys if not ep.has(k)]
            if missing:
                raise UsageError(
                    f"{ep.path}: lacks {', '.join('/' + k for k in missing)}; "
                    "choose keys present in every episode"
                )
            T = ep.num_frames
            n = 0 if T < self.window else (T - self.window) // self.stride + 1
            self._starts.append(total)
            self._lengths.append(n)
            total += n
            ep.close()  # reopened lazily where items are read (possibly another process)
        self._len = total

    def __len__(self) -> int:
        return self._len

    def locate(self, i: int) -> tuple[int, int]:
        """Item index -> (episode index, first frame)."""
        if i < 0:
            i += self._len
        if not 0 <= i < self._len:
            raise IndexError(f"index {i} out of range for {self._len} windows")
        # Episodes with no windows share their start with the next one; bisect_right skips them.
        e = bisect.bisect_right(self._starts, i) - 1
        return e, (i - self._starts[e]) * self.stride

    def __getitem__(self, i: int) -> dict[str, Any]:
        e, start = self.locate(i)
        ep = self.episodes[e]
        sl = slice(start, start + self.window)
        item: dict[str, Any] = {"episode_id": ep.episode_id, "episode_index": e, "start": start}
        for k in self.keys:
            item[k] = ep.read(k, sl if schema.DATASETS_BY_PATH[k].per_frame else None)
        return item

    def close(self) -> None:
        for ep in self.episodes:
            ep.close()

    def to_torch(self) -> Any:
        """A ``torch.utils.data.Dataset`` over the same windows (arrays become tensors)."""
        try:
            import torch
        except ImportError:
            raise ToolUnavailable(
                "torch is not installed; install it with: pip install 'y2r[torch]'"
            ) from None
        return _torch_dataset(torch, self)


def _torch_dataset(torch: Any, base: EpisodeDataset) -> Any:
    class TorchEpisodeDataset(torch.utils.data.Dataset):
        """Thin wrapper: same indexing as EpisodeDataset, numpy arrays converted to tensors."""

        def __init__(self, inner: EpisodeDataset):
            self.inner = inner

        def __len__(self) -> int:
            return len(self.inner)

        def __getitem__(self, i: int) -> dict[str, Any]:
            item = self.inner[i]
            return {
                k: torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v
                for k, v in item.items()
            }

    return TorchEpisodeDataset(base)
