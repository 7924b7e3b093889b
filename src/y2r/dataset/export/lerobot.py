"""Export episodes to a LeRobot v3.0 dataset folder (``codebase_version: "v3.0"``).

Layout (as LeRobot's own writer makes it)::

    meta/info.json                                  fps, features, totals, path templates
    meta/stats.json                                 per feature mean/std/min/max/count/q01..q99
    meta/tasks.parquet                              task_index, with the task string as pandas index
    meta/episodes/chunk-000/file-000.parquet        one row per episode: length, data/video locations,
                                                    per-episode stats/<feature>/<stat>
    data/chunk-000/file-000.parquet                 one row per frame, many episodes per file
    videos/observation.images.rgb/chunk-000/file-000.mp4   episodes concatenated in time

Features (per frame; arrays are stored as LeRobot's fixed-shape float32/bool features, NaN only
where the episode itself has NaN):

- ``observation.images.rgb`` video (H,W,3) from ``/rgb`` (AV1 via libsvtav1 when PyAV has it);
- ``observation.state`` (20): per hand ``[valid, wrist xyz, wrist rotation 6D]`` in the camera frame;
- ``action`` (6): per hand the wrist displacement to the next frame in the camera frame of t
  (``export/views.py``); 0 where undefined;
- ``observation.hands.<side>.{joints_cam (21,3), keypoints_2d (21,2), valid}``;
- ``observation.tracks.{xyz_world (N,3), uv (N,2), visible (N)}``: episodes with fewer tracks are
  padded to the largest N with NaN / not visible;
- ``observation.camera.{world_T_cam (4,4), K (3,3)}``;
- ``observation.depth`` (H,W) float32 metres, 0 = invalid, only with ``include_depth`` (it is
  large, and lossy video codecs would destroy metric depth);
- ``timestamp`` = frame_index / fps (LeRobot requires that), ``frame_index``, ``episode_index``,
  ``index``, ``task_index``.

LeRobot needs one integer fps and one image size for the whole dataset: episodes that differ are
refused with a message saying which. Parquet needs pyarrow (``pip install 'y2r[export]'``).
Statistics: exact moments; quantiles from a uniform row sample (see ``dataset/stats.py``); image
stats are per channel in [0, 1] with shape (3,1,1) from a subsample of pixels, as LeRobot's.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from y2r.artifacts import HAND_SIDES, NUM_HAND_JOINTS
from y2r.dataset.export.views import (
    ACTION_NAMES,
    STATE_NAMES,
    episode_state_action,
    hand_or_empty,
    options_from_dict,
)
from y2r.dataset.reader import Episode, find_episode_files
from y2r.dataset.stats import RunningStats
from y2r.errors import ToolUnavailable, UsageError

CODEBASE_VERSION = "v3.0"
LEROBOT_QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
RGB_KEY = "observation.images.rgb"
_ROWS_PER_GROUP = 64  # frames per parquet row group / processing block


@dataclass
class LeRobotOptions:
    task: str = "human demonstration"  # the task string of every episode
    robot_type: str = "human"
    vcodec: str = "auto"  # auto = libsvtav1 if available, else libx264, else mpeg4
    crf: int = 30
    gop: int = 2  # short GOPs make random frame access cheap (LeRobot's default)
    include_depth: bool = False
    include_tracks: bool = True
    include_hands: bool = True
    include_camera: bool = True
    chunks_size: int = 1000
    data_files_size_in_mb: int = 100
    video_files_size_in_mb: int = 200
    overwrite: bool = False

    @classmethod
    def from_dict(cls, d: dict | None) -> LeRobotOptions:
        return options_from_dict(cls, d, "lerobot")


def require_pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ToolUnavailable(
            "the LeRobot export needs pyarrow; install it with: pip install 'y2r[export]'"
        ) from None
    return pa, pq


# ------------------------------------------------------------------------------------ planning
@dataclass
class _Plan:
    fps: int
    width: int
    height: int
    has_rgb: bool
    n_tracks: int  # 0 = no tracks features
    hands: bool
    camera: bool
    depth: bool
    features: dict[str, dict]


def _plan(files: list[Path], opts: LeRobotOptions, vcodec: str) -> _Plan:
    fps_values, sizes, rgb, tracks_n, depth = set(), set(), [], [], []
    for p in files:
        with Episode(p) as ep:
            fps_values.add(round(ep.fps, 6))
            sizes.add((ep.width, ep.height))
            rgb.append(ep.has("rgb"))
            depth.append(ep.has("depth/depth"))
            tracks_n.append(ep.read("tracks/query").shape[0] if ep.has("tracks/query") else None)
    if len(fps_values) != 1:
        raise UsageError(
            f"LeRobot datasets have one fps; these episodes have {sorted(fps_values)} "
            "(re-run with one ingest.fps, or export them separately)"
        )
    fps = fps_values.pop()
    if abs(fps - round(fps)) > 1e-3:
        raise UsageError(
            f"LeRobot needs an integer fps; the episodes have {fps} (set ingest.fps to an integer)"
        )
    if len(sizes) != 1:
        raise UsageError(
            f"LeRobot datasets have one image size; these episodes have {sorted(sizes)} "
            "(re-run with one ingest.width/height)"
        )
    W, H = sizes.pop()
    if any(rgb) and not all(rgb):
        raise UsageError(
            "some episodes have no /rgb (episode.store_rgb: false): LeRobot needs video for all or none"
        )
    n_tracks = 0
    if opts.include_tracks:
        if any(n is None for n in tracks_n):
            raise UsageError("some episodes have no tracks; pass include_tracks=False to export without them")
        n_tracks = max(tracks_n) if tracks_n else 0
    if opts.include_depth and not all(depth):
        raise UsageError("include_depth: some episodes have no /depth (episode.store_depth: false)")
    plan = _Plan(
        fps=int(round(fps)),
        width=W,
        height=H,
        has_rgb=all(rgb),
        n_tracks=n_tracks,
        hands=opts.include_hands,
        camera=opts.include_camera,
        depth=opts.include_depth,
        features={},
    )
    plan.features = _features(plan, vcodec)
    return plan


def _features(plan: _Plan, vcodec: str) -> dict[str, dict]:
    f: dict[str, dict] = {}
    H, W = plan.height, plan.width
    if plan.has_rgb:
        f[RGB_KEY] = {
            "dtype": "video",
            "shape": [H, W, 3],
            "names": ["height", "width", "channels"],
            "info": {
                "video.height": H,
                "video.width": W,
                "video.codec": _canonical_codec(vcodec),
                "video.pix_fmt": _pix_fmt(W, H),
                "video.is_depth_map": False,
                "video.fps": plan.fps,
                "video.channels": 3,
                "has_audio": False,
            },
        }
    f["observation.state"] = {"dtype": "float32", "shape": [len(STATE_NAMES)], "names": STATE_NAMES}
    f["action"] = {"dtype": "float32", "shape": [len(ACTION_NAMES)], "names": ACTION_NAMES}
    if plan.hands:
        for s in HAND_SIDES:
            f[f"observation.hands.{s}.joints_cam"] = {
                "dtype": "float32",
                "shape": [NUM_HAND_JOINTS, 3],
                "names": ["joints", "xyz"],
            }
            f[f"observation.hands.{s}.keypoints_2d"] = {
                "dtype": "float32",
                "shape": [NUM_HAND_JOINTS, 2],
                "names": ["joints", "uv"],
            }
            f[f"observation.hands.{s}.valid"] = {"dtype": "bool", "shape": [1], "names": None}
    if plan.n_tracks:
        N = plan.n_tracks
        f["observation.tracks.xyz_world"] = {"dtype": "float32", "shape": [N, 3], "names": ["tracks", "xyz"]}
        f["observation.tracks.uv"] = {"dtype": "float32", "shape": [N, 2], "names": ["tracks", "uv"]}
        f["observation.tracks.visible"] = {"dtype": "bool", "shape": [N], "names": None}
    if plan.camera:
        f["observation.camera.world_T_cam"] = {"dtype": "float32", "shape": [4, 4], "names": ["rows", "cols"]}
        f["observation.camera.K"] = {"dtype": "float32", "shape": [3, 3], "names": ["rows", "cols"]}
    if plan.depth:
        f["observation.depth"] = {"dtype": "float32", "shape": [H, W], "names": ["height", "width"]}
    for k, dt in (
        ("timestamp", "float32"),
        ("frame_index", "int64"),
        ("episode_index", "int64"),
        ("index", "int64"),
        ("task_index", "int64"),
    ):
        f[k] = {"dtype": dt, "shape": [1], "names": None}
    return f


def _pix_fmt(W: int, H: int) -> str:
    return "yuv420p" if W % 2 == 0 and H % 2 == 0 else "yuv444p"


def _canonical_codec(vcodec: str) -> str:
    return {"libsvtav1": "av1", "libaom-av1": "av1", "libx264": "h264", "mpeg4": "mpeg4"}.get(vcodec, vcodec)


def choose_vcodec(requested: str) -> str:
    import av

    available = av.codecs_available
    if requested != "auto":
        if requested not in available:
            raise UsageError(f"video codec '{requested}' is not available in this PyAV build")
        return requested
    for c in ("libsvtav1", "libx264", "mpeg4"):
        if c in available:
            return c
    raise ToolUnavailable("no usable video encoder in this PyAV build (tried libsvtav1, libx264, mpeg4)")


# ------------------------------------------------------------------------------------ video
class _VideoFile:
    """One mp4 file that many episodes are appended to (pts continue across episodes)."""

    def __init__(self, path: Path, codec: str, fps: int, W: int, H: int, crf: int, gop: int):
        import av

        if codec == "libsvtav1":
            # SVT-AV1 prints a banner to stderr per encoder unless told to log errors only.
            os.environ.setdefault("SVT_LOG", "1")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.container = av.open(str(path), "w")
        options = {"g": str(gop)}
        if codec in ("libsvtav1", "libx264", "libaom-av1"):
            options["crf"] = str(crf)
        if codec == "libsvtav1":
            options["preset"] = "10"
        self.stream = self.container.add_stream(codec, rate=fps, options=options)
        self.stream.width, self.stream.height, self.stream.pix_fmt = W, H, _pix_fmt(W, H)
        self.frames = 0
        self.bytes = 0
        self._av = av

    def write(self, rgb: np.ndarray) -> None:
        for img in rgb:
            frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            frame.pts = self.frames
            self.frames += 1
            for pkt in self.stream.encode(frame):
                self.bytes += pkt.size
                self.container.mux(pkt)

    def close(self) -> None:
        for pkt in self.stream.encode(None):
            self.bytes += pkt.size
            self.container.mux(pkt)
        self.container.close()


# ------------------------------------------------------------------------------------ writer
def _next_file(chunk: int, file: int, chunks_size: int) -> tuple[int, int]:
    return (chunk + 1, 0) if file == chunks_size - 1 else (chunk, file + 1)


def _arrow_column(pa: Any, arr: np.ndarray, shape: list[int]) -> Any:
    """Numpy (T, *shape) -> the Arrow type ``datasets`` uses for a LeRobot feature of that shape:
    a scalar for (1,), a fixed-size list for 1-D, nested lists (ArrayXD storage) for more."""
    T = arr.shape[0]
    if list(shape) == [1]:
        return pa.array(arr.reshape(T))
    flat = pa.array(arr.reshape(-1))
    if len(shape) == 1:
        return pa.FixedSizeListArray.from_arrays(flat, shape[0])
    out, count = flat, arr.size
    for d in reversed(shape):
        out = pa.ListArray.from_arrays(pa.array(np.arange(0, count + 1, d, dtype=np.int32)), out)
        count //= d
    return out


def _stats_capacity(n_components: int) -> int:
    # Bound each feature's sample to ~16 MB of float64 whatever its width.
    return int(min(65536, max(256, 2_000_000 // max(1, n_components))))


class _LeRobotWriter:
    def __init__(self, root: Path, plan: _Plan, opts: LeRobotOptions, vcodec: str):
        self.pa, self.pq = require_pyarrow()
        self.root, self.plan, self.opts, self.vcodec = root, plan, opts, vcodec
        self.index = 0
        self.data_loc = (0, 0)
        self.data_writer: Any = None
        self.data_rows_in_file = 0
        self.video_loc = (0, 0)
        self.video: _VideoFile | None = None
        self.episode_rows: list[dict[str, Any]] = []
        self.dataset_stats: dict[str, RunningStats] = {}
        self.rng = np.random.default_rng(0)

    # ---------------------------------------------------------------- per episode
    def add_episode(self, ep_index: int, path: Path) -> None:
        plan = self.plan
        with Episode(path) as ep:
            T = ep.num_frames
            ep_stats: dict[str, RunningStats] = {}
            state, action = episode_state_action(ep)
            data_loc = self._data_file_for_episode()
            video_meta: dict[str, Any] = {}
            if plan.has_rgb:
                vloc, first = self._video_file_for_episode()
                # Frame k of the file is at k / fps exactly; computing both ends from frame counts
                # keeps from/to_timestamp free of accumulated rounding.
                video_meta = {
                    f"videos/{RGB_KEY}/chunk_index": vloc[0],
                    f"videos/{RGB_KEY}/file_index": vloc[1],
                    f"videos/{RGB_KEY}/from_timestamp": first / plan.fps,
                    f"videos/{RGB_KEY}/to_timestamp": (first + T) / plan.fps,
                }
            hands = {s: hand_or_empty(ep, s) for s in HAND_SIDES} if plan.hands else {}
            tr = ep.tracks() if plan.n_tracks else None
            P = ep.world_T_cam() if plan.camera else None
            K = ep.K() if plan.camera else None
            from_index = self.index
            for a in range(0, T, _ROWS_PER_GROUP):
                b = min(T, a + _ROWS_PER_GROUP)
                cols: dict[str, np.ndarray] = {
                    "observation.state": state[a:b],
                    "action": action[a:b],
                }
                for s, h in hands.items():
                    cols[f"observation.hands.{s}.joints_cam"] = h.joints_cam[a:b].astype(np.float32)
                    cols[f"observation.hands.{s}.keypoints_2d"] = h.keypoints_2d[a:b].astype(np.float32)
                    cols[f"observation.hands.{s}.valid"] = h.valid[a:b, None]
                if tr is not None:
                    N = plan.n_tracks
                    n = tr.query.shape[0]
                    xyz = np.full((b - a, N, 3), np.nan, np.float32)
                    uv = np.full((b - a, N, 2), np.nan, np.float32)
                    vis = np.zeros((b - a, N), bool)
                    xyz[:, :n], uv[:, :n], vis[:, :n] = tr.xyz_world[a:b], tr.uv[a:b], tr.visible[a:b]
                    cols["observation.tracks.xyz_world"] = xyz
                    cols["observation.tracks.uv"] = uv
                    cols["observation.tracks.visible"] = vis
                if P is not None:
                    cols["observation.camera.world_T_cam"] = P[a:b].astype(np.float32)
                    cols["observation.camera.K"] = K[a:b].astype(np.float32)
                if plan.depth:
                    cols["observation.depth"] = ep.depth(slice(a, b))
                fi = np.arange(a, b, dtype=np.int64)
                cols["timestamp"] = (fi / plan.fps).astype(np.float32)[:, None]
                cols["frame_index"] = fi[:, None]
                cols["episode_index"] = np.full((b - a, 1), ep_index, np.int64)
                cols["index"] = np.arange(self.index, self.index + b - a, dtype=np.int64)[:, None]
                cols["task_index"] = np.zeros((b - a, 1), np.int64)
                self._write_rows(cols)
                self._update_stats(ep_stats, cols)
                if plan.has_rgb:
                    rgb = ep.rgb(slice(a, b))
                    assert self.video is not None
                    self.video.write(rgb)
                    self._update_image_stats(ep_stats, rgb)
                self.index += b - a
            row: dict[str, Any] = {
                "episode_index": ep_index,
                "tasks": [self.opts.task],
                "length": T,
                "data/chunk_index": data_loc[0],
                "data/file_index": data_loc[1],
                "dataset_from_index": from_index,
                "dataset_to_index": self.index,
                **video_meta,
                "y2r/episode_id": ep.episode_id,
                "y2r/source_path": str(ep.attrs.get("source_path", "")),
            }
            for key, s in ep_stats.items():
                for stat, value in self._stat_values(key, s).items():
                    row[f"stats/{key}/{stat}"] = value
            self.episode_rows.append(row)
            for key, s in ep_stats.items():
                if key in self.dataset_stats:
                    self.dataset_stats[key].merge(s)
                else:
                    self.dataset_stats[key] = s

    def _data_file_for_episode(self) -> tuple[int, int]:
        # Episodes are never split across files: roll over to a new file between episodes.
        if self.data_writer is not None:
            size = (
                (self.root / DATA_PATH.format(chunk_index=self.data_loc[0], file_index=self.data_loc[1]))
                .stat()
                .st_size
            )
            if size >= self.opts.data_files_size_in_mb * 2**20:
                self.data_writer.close()
                self.data_writer = None
                self.data_loc = _next_file(*self.data_loc, self.opts.chunks_size)
        return self.data_loc

    def _video_file_for_episode(self) -> tuple[tuple[int, int], int]:
        """(chunk, file) of the video this episode goes into, and the index of its first frame there."""
        if self.video is not None and self.video.bytes >= self.opts.video_files_size_in_mb * 2**20:
            self.video.close()
            self.video = None
            self.video_loc = _next_file(*self.video_loc, self.opts.chunks_size)
        if self.video is None:
            p = self.root / VIDEO_PATH.format(
                video_key=RGB_KEY, chunk_index=self.video_loc[0], file_index=self.video_loc[1]
            )
            self.video = _VideoFile(
                p, self.vcodec, self.plan.fps, self.plan.width, self.plan.height, self.opts.crf, self.opts.gop
            )
        return self.video_loc, self.video.frames

    def _write_rows(self, cols: dict[str, np.ndarray]) -> None:
        pa = self.pa
        feats = self.plan.features
        names = [k for k in feats if feats[k]["dtype"] != "video"]
        table = pa.table({k: _arrow_column(pa, cols[k], feats[k]["shape"]) for k in names})
        if self.data_writer is None:
            p = self.root / DATA_PATH.format(chunk_index=self.data_loc[0], file_index=self.data_loc[1])
            p.parent.mkdir(parents=True, exist_ok=True)
            self.data_writer = self.pq.ParquetWriter(p, table.schema, compression="snappy")
        self.data_writer.write_table(table)

    # ---------------------------------------------------------------- stats
    def _update_stats(self, ep_stats: dict[str, RunningStats], cols: dict[str, np.ndarray]) -> None:
        for k, arr in cols.items():
            a = np.asarray(arr, dtype=np.float64)
            if k == "observation.depth":
                # Pooled over pixels (valid only): per-pixel statistics of an image are not useful
                # and would be megabytes of JSON.
                rows = a[a > 0].reshape(-1, 1)
                comps = ["depth"]
            else:
                rows = a.reshape(a.shape[0], -1)
                comps = [str(i) for i in range(rows.shape[1])]
            if k not in ep_stats:
                ep_stats[k] = RunningStats(comps, reservoir=_stats_capacity(len(comps)), rng=self.rng)
            ep_stats[k].update(rows)

    def _update_image_stats(self, ep_stats: dict[str, RunningStats], rgb: np.ndarray) -> None:
        # A strided subsample of pixels (every 4th row/column) is plenty for per-channel statistics.
        px = rgb[:, ::4, ::4].reshape(-1, 3).astype(np.float64) / 255.0
        if RGB_KEY not in ep_stats:
            ep_stats[RGB_KEY] = RunningStats(["r", "g", "b"], reservoir=65536, rng=self.rng)
        ep_stats[RGB_KEY].update(px)

    def _stat_values(self, key: str, s: RunningStats) -> dict[str, Any]:
        if key == RGB_KEY:
            shape: list[int] = [3, 1, 1]
        elif key == "observation.depth":
            shape = [1]
        else:
            shape = list(self.plan.features[key]["shape"])
        with np.errstate(invalid="ignore"):
            has = s.count > 0
            vals = {
                "mean": np.where(has, s.mean, np.nan),
                "std": s.std,
                "min": np.where(has, s.min, np.nan),
                "max": np.where(has, s.max, np.nan),
            }
        vals.update(s.quantiles(LEROBOT_QUANTILES))
        out = {k: _nested(np.asarray(v).reshape(shape)) for k, v in vals.items()}
        out["count"] = [int(s.count.max()) if s.count.size else 0]
        return out

    # ---------------------------------------------------------------- finish
    def finish(self) -> None:
        pa, pq = self.pa, self.pq
        if self.data_writer is not None:
            self.data_writer.close()
        if self.video is not None:
            self.video.close()
        meta = self.root / "meta"
        (meta / "episodes" / "chunk-000").mkdir(parents=True, exist_ok=True)
        self._write_episodes_meta()
        _write_tasks(pa, pq, meta / "tasks.parquet", [self.opts.task])
        stats = {k: self._stat_values(k, s) for k, s in self.dataset_stats.items()}
        (meta / "stats.json").write_text(json.dumps(stats, indent=2, allow_nan=True))
        total_frames = self.index
        info = {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": self.opts.robot_type,
            "total_episodes": len(self.episode_rows),
            "total_frames": total_frames,
            "total_tasks": 1,
            "chunks_size": self.opts.chunks_size,
            "data_files_size_in_mb": self.opts.data_files_size_in_mb,
            "video_files_size_in_mb": self.opts.video_files_size_in_mb,
            "fps": self.plan.fps,
            "splits": {"train": f"0:{len(self.episode_rows)}"},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if self.plan.has_rgb else None,
            "features": self.plan.features,
        }
        (meta / "info.json").write_text(json.dumps(info, indent=4))

    def _write_episodes_meta(self) -> None:
        pa, pq = self.pa, self.pq
        rows = self.episode_rows
        # One metadata file until it would pass the data file size; then the next (LeRobot's rule).
        limit = self.opts.data_files_size_in_mb * 2**20
        loc, batch, batch_bytes = (0, 0), [], 0
        batches: list[tuple[tuple[int, int], list[dict]]] = []
        for r in rows:
            nbytes = len(json.dumps(r, default=float))
            if batch and batch_bytes + nbytes > limit:
                batches.append((loc, batch))
                loc, batch, batch_bytes = _next_file(*loc, self.opts.chunks_size), [], 0
            batch.append(r)
            batch_bytes += nbytes
        if batch or not batches:
            batches.append((loc, batch))
        for (c, f), batch in batches:
            for r in batch:
                r["meta/episodes/chunk_index"] = c
                r["meta/episodes/file_index"] = f
            cols = {k: [r.get(k) for r in batch] for k in (batch[0] if batch else {})}
            p = self.root / EPISODES_PATH.format(chunk_index=c, file_index=f)
            p.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(
                pa.table(cols) if cols else pa.table({"episode_index": pa.array([], pa.int64())}), p
            )


def _nested(a: np.ndarray) -> Any:
    return [_nested(x) for x in a] if a.ndim else (float(a) if math.isfinite(float(a)) else float("nan"))


def _write_tasks(pa: Any, pq: Any, path: Path, tasks: list[str]) -> None:
    """tasks.parquet as pandas writes ``DataFrame({"task_index": ...}, index=pd.Index(tasks, name="task"))``:
    LeRobot reads it with ``pd.read_parquet`` and looks tasks up by index, so the pandas metadata
    that turns the ``task`` column back into the index must be there."""
    table = pa.table({"task_index": pa.array(np.arange(len(tasks), dtype=np.int64)), "task": pa.array(tasks)})
    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [
            {
                "name": None,
                "field_name": None,
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": {"encoding": "UTF-8"},
            }
        ],
        "columns": [
            {
                "name": "task_index",
                "field_name": "task_index",
                "pandas_type": "int64",
                "numpy_type": "int64",
                "metadata": None,
            },
            {
                "name": "task",
                "field_name": "task",
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": None,
            },
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.0",
    }
    table = table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})
    pq.write_table(table, path)


# ------------------------------------------------------------------------------------ entry point
def export_lerobot(episodes: Any, out_dir: str | Path, options: dict | None = None) -> Path:
    """Write a LeRobot v3.0 dataset folder at ``out_dir``; returns it.

    The folder is built next to ``out_dir`` and renamed into place at the end, so an interrupted
    export never leaves a half dataset that looks complete.
    """
    opts = LeRobotOptions.from_dict(options)
    require_pyarrow()
    files = find_episode_files(episodes)
    if not files:
        raise UsageError(f"{episodes}: no episodes to export")
    root = Path(out_dir)
    if root.exists() and any(root.iterdir()) and not opts.overwrite:
        raise UsageError(f"{root}: exists and is not empty (pass overwrite=True to replace it)")
    vcodec = choose_vcodec(opts.vcodec)
    plan = _plan(files, opts, vcodec)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.with_name(f".{root.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        w = _LeRobotWriter(tmp, plan, opts, vcodec)
        for i, p in enumerate(files):
            w.add_episode(i, p)
        w.finish()
        if root.exists():
            shutil.rmtree(root)
        os.replace(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root
