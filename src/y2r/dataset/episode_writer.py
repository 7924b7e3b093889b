"""Write one episode HDF5 file (schema v1, see ``dataset/schema.py``) from the stage artifacts.

The writer enforces the conventions that downstream readers rely on, rather than trusting every
backend to get them right, and records what it had to correct in the ``quality`` attr:

- depth that is non-finite, negative or zero is marked invalid and stored as 0;
- a track is only ``visible`` where its uv is finite and inside the image (its xyz may be unknown:
  2D visibility does not need depth, e.g. under pure camera rotation);
- a hand frame is only ``valid`` where all its joints, keypoints and wrist pose are finite; invalid
  frames are NaN (score 0) everywhere.

Large arrays (rgb, depth) are copied a block of frames at a time, so writing never holds more than
a few frames in memory even when the artifacts are memory-mapped multi-gigabyte arrays.

The file is written at the path given; making it visible atomically is the caller's job (the
episode stage writes into its temporary folder and ``ArtifactStore.commit`` renames it).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np

import y2r
from y2r.artifacts import (
    HAND_JOINT_ORDER,
    HAND_SIDES,
    NUM_HAND_JOINTS,
    CameraArtifact,
    HandsArtifact,
    HandTrack,
    IngestArtifact,
    TracksArtifact,
    json_default,
)
from y2r.dataset import schema
from y2r.errors import SchemaError
from y2r.geometry import matrix_to_axis_angle

# Frames copied per HDF5 write: big enough to amortise call overhead, small enough to bound memory
# (16 frames of 1920x1080 RGB are ~100 MB).
_BLOCK_FRAMES = 16
# Libver: HDF5 1.8 file format (readable everywhere) but allowing dense attribute storage, so a long
# resolved config never hits the 64 KiB compact-attribute limit.
LIBVER = ("v108", "latest")


def compression_kwargs(compression: str | None, level: int) -> dict[str, Any]:
    """h5py filter keywords for ``episode.compression``."""
    if compression in (None, "none"):
        return {}
    if compression == "gzip":
        return {"compression": "gzip", "compression_opts": int(level)}
    if compression == "lzf":
        return {"compression": "lzf"}
    raise SchemaError(f"episode.compression: unknown filter {compression!r}; choose gzip, lzf or none")


def write_episode(
    path: Path,
    ingest: IngestArtifact,
    camera: CameraArtifact,
    tracks: TracksArtifact | None,
    hands: HandsArtifact | None,
    *,
    config_yaml: str,
    backends: dict,
    compression: str | None = "gzip",
    level: int = 1,
    store_rgb: bool = True,
    store_depth: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Write the episode file and return a summary (id, sizes, quality flags, corrections).

    ``tracks`` / ``hands`` that are None or whose ``source`` is ``"none"`` were not computed: their
    part is left out of the file (an empty-but-present part would claim "no hands seen").
    """
    t0 = time.perf_counter()
    path = Path(path)
    meta = ingest.meta
    T, H, W = _check_lengths(ingest, camera, tracks, hands)
    has_tracks = tracks is not None and tracks.source != "none"
    has_hands = hands is not None and hands.source != "none"
    filters = compression_kwargs(compression, level)
    corrections: dict[str, Any] = {}
    flags: dict[str, Any] = {}
    total_steps = T * (int(store_rgb) + int(store_depth)) or 1
    done = 0

    def tick(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total_steps)

    with h5py.File(path, "w", libver=LIBVER) as f:
        # --- time
        g = f.create_group("time")
        g.create_dataset("frame_index", data=np.asarray(ingest.frame_index, dtype=np.int32))
        g.create_dataset("timestamp", data=np.asarray(ingest.timestamp, dtype=np.float64))

        # --- rgb
        if store_rgb:
            ds = f.create_dataset("rgb", shape=(T, H, W, 3), dtype=np.uint8, chunks=(1, H, W, 3), **filters)
            for a in range(0, T, _BLOCK_FRAMES):
                b = min(T, a + _BLOCK_FRAMES)
                ds[a:b] = np.asarray(ingest.frames[a:b], dtype=np.uint8)
                tick(b - a)

        # --- camera
        g = f.create_group("camera")
        g.create_dataset("K", data=np.asarray(camera.K, dtype=np.float32))
        pose = g.create_dataset("world_T_cam", data=np.asarray(camera.world_T_cam, dtype=np.float32))
        pose.attrs["metric_scale"] = np.bool_(camera.metric_scale)
        pose.attrs["source"] = str(camera.source)

        # --- depth (the valid fraction is a quality flag even when depth is not stored)
        n_valid, n_fixed = 0, 0
        if store_depth:
            g = f.create_group("depth")
            shuffle = {"shuffle": True} if filters else {}
            dd = g.create_dataset(
                "depth", shape=(T, H, W), dtype=np.float16, chunks=(1, H, W), **filters, **shuffle
            )
            dv = g.create_dataset("valid", shape=(T, H, W), dtype=bool, chunks=(1, H, W), **filters)
        for a in range(0, T, _BLOCK_FRAMES):
            b = min(T, a + _BLOCK_FRAMES)
            depth, valid, fixed = sanitize_depth(camera.depth[a:b], camera.depth_valid[a:b])
            n_valid += int(valid.sum())
            n_fixed += fixed
            if store_depth:
                dd[a:b] = depth
                dv[a:b] = valid
                tick(b - a)
        if n_fixed:
            corrections["depth_invalidated_px"] = n_fixed
        flags["depth_valid_frac"] = n_valid / float(T * H * W)

        # --- tracks
        if has_tracks:
            assert tracks is not None
            xyz, uv, visible, query, demoted = sanitize_tracks(tracks, W, H)
            if demoted:
                corrections["tracks_visible_demoted"] = demoted
            g = f.create_group("tracks")
            g.create_dataset("xyz_world", data=xyz, **filters)
            g.create_dataset("uv", data=uv, **filters)
            g.create_dataset("visible", data=visible, **filters)
            g.create_dataset("query", data=query)
            flags["tracks_visible_frac"] = float(visible.mean()) if visible.size else math.nan
        else:
            flags["tracks_visible_frac"] = math.nan

        # --- hands
        if has_hands:
            assert hands is not None
            g = f.create_group("hands")
            for side in HAND_SIDES:
                h, invalidated = sanitize_hand(hands.side(side), T)
                if invalidated:
                    corrections[f"hands_{side}_invalidated"] = invalidated
                _write_hand(g.create_group(side), h, filters)
                flags[f"hands_{side}_frac"] = float(h.valid.mean()) if T else math.nan
        else:
            flags["hands_left_frac"] = flags["hands_right_frac"] = math.nan

        # --- root attrs
        flags["camera_degenerate"] = degenerate_flag(camera.quality)
        quality = {
            "camera": camera.quality,
            "tracks": tracks.quality if has_tracks and tracks is not None else None,
            "hands": hands.quality if has_hands and hands is not None else None,
            "writer_corrections": corrections,
        }
        attrs = f.attrs
        attrs["schema"] = schema.SCHEMA_NAME
        attrs["schema_version"] = np.int64(schema.SCHEMA_VERSION)
        attrs["episode_id"] = str(meta.video_id)
        attrs["source_path"] = str(meta.source_path)
        attrs["source_sha256"] = str(meta.source_sha256)
        attrs["fps"] = np.float64(meta.fps)
        attrs["num_frames"] = np.int64(T)
        attrs["width"] = np.int64(W)
        attrs["height"] = np.int64(H)
        attrs["y2r_version"] = y2r.__version__
        attrs["config"] = str(config_yaml)
        attrs["backends"] = json.dumps(backends, sort_keys=True, default=json_default)
        attrs["created_utc"] = datetime.now(UTC).isoformat(timespec="seconds")
        attrs["quality"] = json.dumps(quality, sort_keys=True, default=json_default, allow_nan=True)
        attrs["quality.camera_degenerate"] = flags["camera_degenerate"]
        for k in ("depth_valid_frac", "tracks_visible_frac", "hands_left_frac", "hands_right_frac"):
            attrs[f"quality.{k}"] = np.float64(flags[k])

    parts = (
        ["time", "camera"]
        + (["rgb"] if store_rgb else [])
        + (["depth"] if store_depth else [])
        + (["tracks"] if has_tracks else [])
        + (["hands"] if has_hands else [])
    )
    return {
        "episode_id": meta.video_id,
        "path": str(path),
        "num_frames": T,
        "fps": float(meta.fps),
        "width": W,
        "height": H,
        "bytes": path.stat().st_size,
        "parts": parts,
        "metric_scale": bool(camera.metric_scale),
        "quality": flags,
        "corrections": corrections,
        "seconds": round(time.perf_counter() - t0, 3),
    }


# ------------------------------------------------------------------------------------ checks
def _check_lengths(
    ingest: IngestArtifact, camera: CameraArtifact, tracks: TracksArtifact | None, hands: HandsArtifact | None
) -> tuple[int, int, int]:
    frames = ingest.frames
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise SchemaError(
            f"cannot write episode: ingest frames have shape {frames.shape}, expected (T,H,W,3)"
        )
    T, H, W = (int(x) for x in frames.shape[:3])
    if (ingest.meta.width, ingest.meta.height) != (W, H):
        raise SchemaError(
            f"cannot write episode: ingest meta says {ingest.meta.width}x{ingest.meta.height} "
            f"but frames are {W}x{H}"
        )
    expect = {
        "ingest frame_index": (len(ingest.frame_index),),
        "ingest timestamp": (len(ingest.timestamp),),
        "camera K": camera.K.shape[:1],
        "camera world_T_cam": camera.world_T_cam.shape[:1],
        "camera depth": camera.depth.shape,
        "camera depth_valid": camera.depth_valid.shape,
    }
    want = {"camera depth": (T, H, W), "camera depth_valid": (T, H, W)}
    if tracks is not None and tracks.source != "none":
        expect["tracks xyz_world"] = tracks.xyz_world.shape[:1]
        expect["tracks uv"] = tracks.uv.shape[:1]
        expect["tracks visible"] = tracks.visible.shape[:1]
    if hands is not None and hands.source != "none":
        for s in HAND_SIDES:
            expect[f"hands {s} valid"] = hands.side(s).valid.shape[:1]
    for name, shape in expect.items():
        target = want.get(name, (T,))
        if tuple(shape) != tuple(target):
            raise SchemaError(
                f"cannot write episode {ingest.meta.video_id}: {name} has shape {tuple(shape)}, "
                f"expected {target} (ingest has {T} frames of {W}x{H})"
            )
    return T, H, W


def sanitize_depth(depth: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """float16 metres with 0 where invalid; valid only where the float16 value is finite and > 0."""
    d16 = np.asarray(depth).astype(np.float16)
    given = np.asarray(valid, dtype=bool)
    ok = given & np.isfinite(d16) & (d16 > 0)
    fixed = int(given.sum() - ok.sum())
    return np.where(ok, d16, np.float16(0)), ok, fixed


def sanitize_tracks(
    tracks: TracksArtifact, W: int, H: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    xyz = np.asarray(tracks.xyz_world, dtype=np.float32).copy()
    uv = np.asarray(tracks.uv, dtype=np.float32).copy()
    vis = np.asarray(tracks.visible, dtype=bool)
    query = np.asarray(tracks.query, dtype=np.float32).reshape(-1, 3)
    # A coordinate vector is known as a whole or not at all.
    xyz[~np.isfinite(xyz).all(-1)] = np.nan
    uv[~np.isfinite(uv).all(-1)] = np.nan
    with np.errstate(invalid="ignore"):
        inside = (
            (uv[..., 0] >= -0.5) & (uv[..., 0] <= W - 0.5) & (uv[..., 1] >= -0.5) & (uv[..., 1] <= H - 0.5)
        )
    ok = vis & inside
    demoted = int(vis.sum() - ok.sum())
    return xyz, uv, ok, query, demoted


def sanitize_hand(h: HandTrack, T: int) -> tuple[HandTrack, int]:
    """Make one side's arrays obey 'NaN and masked': returns the cleaned track and how many frames
    were invalidated because some of their values were not finite."""
    joints = np.asarray(h.joints_cam, dtype=np.float32).reshape(T, NUM_HAND_JOINTS, 3).copy()
    kp = np.asarray(h.keypoints_2d, dtype=np.float32).reshape(T, NUM_HAND_JOINTS, 2).copy()
    pose = np.asarray(h.cam_T_wrist, dtype=np.float32).reshape(T, 4, 4).copy()
    score = np.asarray(h.score, dtype=np.float32).reshape(T).copy()
    mano = {k: _mano_axis_angle(k, np.asarray(v), T) for k, v in (h.mano or {}).items()}
    if mano and set(mano) != set(_MANO_SHAPES):
        raise SchemaError(
            f"cannot write episode: MANO parameters {sorted(mano)} are incomplete; "
            f"expected all of {sorted(_MANO_SHAPES)}"
        )
    given = np.asarray(h.valid, dtype=bool).reshape(T)
    finite = (
        np.isfinite(joints).all((1, 2))
        & np.isfinite(kp).all((1, 2))
        & np.isfinite(pose).all((1, 2))
        & np.isfinite(score)
    )
    for v in mano.values():
        finite &= np.isfinite(v.reshape(T, -1)).all(1)
    valid = given & finite
    invalid = ~valid
    joints[invalid] = np.nan
    kp[invalid] = np.nan
    pose[invalid] = np.nan
    score[invalid] = 0.0
    for v in mano.values():
        v[invalid] = np.nan
    clean = HandTrack(
        valid=valid, joints_cam=joints, keypoints_2d=kp, cam_T_wrist=pose, score=score, mano=mano or None
    )
    return clean, int(given.sum() - valid.sum())


_MANO_SHAPES = {"global_orient": (3,), "hand_pose": (15, 3), "betas": (10,)}


def _mano_axis_angle(name: str, v: np.ndarray, T: int) -> np.ndarray:
    """MANO arrays as the schema stores them: axis-angle rotations, per-frame betas.

    Backends may hand over rotation matrices (WiLoR predicts them) or one betas vector per video;
    both are converted here so the file always has one representation.
    """
    if name not in _MANO_SHAPES:
        raise SchemaError(
            f"cannot write episode: unknown MANO array '{name}' (expected {sorted(_MANO_SHAPES)})"
        )
    want = _MANO_SHAPES[name]
    v = np.asarray(v, dtype=np.float64)
    if name != "betas" and v.shape[-2:] == (3, 3) and v.shape[:1] == (T,):
        finite = np.isfinite(v).all((-2, -1))
        aa = np.full(v.shape[:-2] + (3,), np.nan)
        if finite.any():
            aa[finite] = matrix_to_axis_angle(v[finite])
        v = aa
    if name == "betas" and v.shape == (10,):
        v = np.broadcast_to(v, (T, 10))
    v = v.reshape((T,) + want) if v.size == T * int(np.prod(want)) else v
    if v.shape != (T,) + want:
        raise SchemaError(f"cannot write episode: MANO '{name}' has shape {v.shape}, expected {(T,) + want}")
    return v.astype(np.float32).copy()


def _write_hand(g: h5py.Group, h: HandTrack, filters: dict) -> None:
    g.create_dataset("valid", data=h.valid.astype(bool))
    j = g.create_dataset("joints_cam", data=h.joints_cam, **filters)
    j.attrs["joint_order"] = np.array(HAND_JOINT_ORDER, dtype=h5py.string_dtype())
    g.create_dataset("keypoints_2d", data=h.keypoints_2d, **filters)
    g.create_dataset("cam_T_wrist", data=h.cam_T_wrist, **filters)
    g.create_dataset("score", data=h.score)
    if h.mano:
        m = g.create_group("mano")
        for k in _MANO_SHAPES:
            m.create_dataset(k, data=h.mano[k], **filters)


def degenerate_flag(quality: dict | None) -> str:
    """The camera quality's 'degenerate' entry as the string flag the schema stores ('' = fine)."""
    v = (quality or {}).get("degenerate")
    if v is None or v is False or v == "":
        return ""
    if v is True:
        return "degenerate"
    return str(v)


