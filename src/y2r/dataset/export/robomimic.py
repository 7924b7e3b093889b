"""Export episodes to one robomimic-style HDF5 file (``data/demo_N/...``).

What goes where (T = frames of the episode; NaN never appears: invalid entries are 0 and a
``*_valid`` key says where)::

    data                    attrs: total (frames), env_args (JSON: no simulator, see below)
    data/demo_<i>           attrs: num_samples, y2r_episode_id, y2r_source_path, fps, metric_scale
      obs/camera_image      (T,H,W,3) uint8   /rgb                       (if stored)
      obs/camera_depth      (T,H,W,1) float32 /depth/depth, metres, 0 = invalid   (if stored)
      obs/camera_pos        (T,3)  float32    world_T_cam translation (camera centre in world)
      obs/camera_quat       (T,4)  float32    world_T_cam rotation, quaternion x y z w
      obs/camera_intrinsics (T,4)  float32    fx, fy, cx, cy
      obs/hand_<side>_valid      (T,1)  float32  1 where the hand is valid
      obs/hand_<side>_joints     (T,63) float32  21 joints x xyz, camera frame, metres
      obs/hand_<side>_wrist_pos  (T,3)  float32  cam_T_wrist translation
      obs/hand_<side>_wrist_quat (T,4)  float32  cam_T_wrist rotation (x y z w; identity where invalid)
      obs/tracks_xyz        (T,N*3) float32   /tracks/xyz_world (0 where unknown)
      obs/tracks_visible    (T,N)   float32   /tracks/visible
      actions               (T,6)  float32    per side, wrist displacement to the next frame in the
                                              camera frame of t (export/views.py); 0 where undefined
      rewards (T,) float32 zeros; dones (T,) uint8, 1 at the last frame
    mask/train, mask/valid  demo names (bytes), an episode-level split

Human videos have no simulator: ``env_args`` says so (``env_name`` "y2r_human_video", ``type`` 2 =
gym-style, no kwargs), which robomimic accepts for training with rollouts disabled. ``next_obs`` is
not written by default (it would double the file); train with ``hdf5_load_next_obs: false`` or
pass ``next_obs=True``.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from y2r.artifacts import HAND_SIDES
from y2r.dataset.export.views import hand_or_empty, options_from_dict, quat_xyzw, wrist_motion
from y2r.dataset.reader import Episode, find_episode_files
from y2r.errors import UsageError

_BLOCK = 16


@dataclass
class RobomimicOptions:
    val_fraction: float = 0.1  # share of episodes in mask/valid (at least one when there are >= 2)
    seed: int = 0  # split seed
    next_obs: bool = False
    compression: str = "gzip"  # for image-like obs
    file_name: str = "robomimic.hdf5"

    @classmethod
    def from_dict(cls, d: dict | None) -> RobomimicOptions:
        opts = options_from_dict(cls, d, "robomimic")
        if not 0.0 <= opts.val_fraction < 1.0:
            raise UsageError("robomimic export: val_fraction must be in [0, 1)")
        return opts


def export_robomimic(episodes: Any, out_dir: str | Path, options: dict | None = None) -> Path:
    """Write ``out_dir/robomimic.hdf5`` (or ``out_dir`` itself if it ends in .hdf5/.h5); returns its path."""
    opts = RobomimicOptions.from_dict(options)
    files = find_episode_files(episodes)
    if not files:
        raise UsageError(f"{episodes}: no episodes to export")
    out = Path(out_dir)
    dest = out if out.suffix in (".hdf5", ".h5") else out / opts.file_name
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
    comp = {} if opts.compression == "none" else {"compression": opts.compression}
    total = 0
    names: list[str] = []
    try:
        with h5py.File(tmp, "w") as f:
            data = f.create_group("data")
            for i, path in enumerate(files):
                name = f"demo_{i}"
                with Episode(path) as ep:
                    total += _write_demo(data.create_group(name), ep, comp, opts.next_obs)
                names.append(name)
            data.attrs["total"] = np.int64(total)
            data.attrs["env_args"] = json.dumps({"env_name": "y2r_human_video", "type": 2, "env_kwargs": {}})
            train, valid = _split(names, opts.val_fraction, opts.seed)
            mask = f.create_group("mask")
            mask.create_dataset("train", data=np.array(train, dtype="S"))
            mask.create_dataset("valid", data=np.array(valid, dtype="S"))
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _split(names: list[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Episode-level split (frames of one video never land on both sides)."""
    n_val = int(round(len(names) * val_fraction))
    if val_fraction > 0 and len(names) >= 2:
        n_val = max(1, n_val)
    order = np.random.default_rng(seed).permutation(len(names))
    val = sorted((names[j] for j in order[:n_val]), key=lambda s: int(s.split("_")[1]))
    train = [n for n in names if n not in set(val)]
    return train, val


def _write_demo(g: h5py.Group, ep: Episode, comp: dict, next_obs: bool) -> int:
    T, H, W = ep.num_frames, ep.height, ep.width
    g.attrs["num_samples"] = np.int64(T)
    g.attrs["y2r_episode_id"] = ep.episode_id
    g.attrs["y2r_source_path"] = str(ep.attrs.get("source_path", ""))
    g.attrs["fps"] = np.float64(ep.fps)
    g.attrs["metric_scale"] = np.bool_(ep.metric_scale)
    obs = g.create_group("obs")
    low: dict[str, np.ndarray] = {}

    if ep.has("rgb"):
        ds = obs.create_dataset(
            "camera_image", shape=(T, H, W, 3), dtype=np.uint8, chunks=(1, H, W, 3), **comp
        )
        for a in range(0, T, _BLOCK):
            ds[a : a + _BLOCK] = ep.rgb(slice(a, a + _BLOCK))
    if ep.has("depth/depth"):
        ds = obs.create_dataset(
            "camera_depth", shape=(T, H, W, 1), dtype=np.float32, chunks=(1, H, W, 1), **comp
        )
        for a in range(0, T, _BLOCK):
            ds[a : a + _BLOCK] = ep.depth(slice(a, a + _BLOCK))[..., None]
    P = ep.world_T_cam().astype(np.float64)
    K = ep.K()
    low["camera_pos"] = P[:, :3, 3]
    low["camera_quat"] = quat_xyzw(P[:, :3, :3])
    low["camera_intrinsics"] = np.stack([K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2]], -1)
    actions = []
    for side in HAND_SIDES:
        h = hand_or_empty(ep, side)
        v = h.valid
        low[f"hand_{side}_valid"] = v[:, None].astype(np.float32)
        low[f"hand_{side}_joints"] = np.where(v[:, None], np.nan_to_num(h.joints_cam.reshape(T, 63)), 0)
        pos = np.zeros((T, 3))
        quat = np.tile([0.0, 0.0, 0.0, 1.0], (T, 1))
        if v.any():
            pos[v] = h.cam_T_wrist[v, :3, 3]
            quat[v] = quat_xyzw(h.cam_T_wrist[v, :3, :3].astype(np.float64))
        low[f"hand_{side}_wrist_pos"] = pos
        low[f"hand_{side}_wrist_quat"] = quat
        actions.append(wrist_motion(h, P)[0])
    tr = ep.tracks()
    if tr is not None:
        low["tracks_xyz"] = np.nan_to_num(tr.xyz_world, nan=0.0).reshape(T, -1)
        low["tracks_visible"] = tr.visible.astype(np.float32)
    for k, v in low.items():
        obs.create_dataset(k, data=np.asarray(v, dtype=np.float32))
    g.create_dataset("actions", data=np.concatenate(actions, axis=1).astype(np.float32))
    g.create_dataset("rewards", data=np.zeros(T, np.float32))
    dones = np.zeros(T, np.uint8)
    dones[-1] = 1
    g.create_dataset("dones", data=dones)
    if next_obs:
        nxt = g.create_group("next_obs")
        for k in obs:
            src = obs[k]
            ds = nxt.create_dataset(
                k, shape=src.shape, dtype=src.dtype, chunks=src.chunks, **(comp if src.chunks else {})
            )
            for a in range(0, T, _BLOCK):
                b = min(T, a + _BLOCK)
                block = src[a + 1 : min(b + 1, T)]
                if b == T:  # the last frame's next observation is itself
                    block = np.concatenate([block, src[T - 1 : T]])
                ds[a:b] = block
    return T
