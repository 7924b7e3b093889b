"""Model-facing views derived from an episode, shared by the exporters.

The episode stores raw, metric geometry in one convention; policies want fixed-size vectors with
no NaN. Everything here is a pure function of an ``Episode`` so each exporter states *what* it
writes, not how to compute it:

- ``wrist_state``: per side ``[valid, x, y, z, r6]`` = 10 numbers, wrist position (m) and 6D
  rotation (first two columns of R, Zhou et al. 2019) in the camera frame of that frame;
  zeros where the hand is not valid (the ``valid`` entry says so).
- ``wrist_motion``: per side the wrist's displacement from frame t to t+1, **expressed in the camera
  frame of t** (``cam_t_T_world @ world_T_cam_{t+1} @ p_{t+1} - p_t``), so camera motion does not
  leak into the action. Zero where the hand is not valid at t or t+1, and at the last frame.
"""

from __future__ import annotations

import numpy as np

from dataclasses import fields
from typing import TypeVar

from y2r.artifacts import HAND_SIDES, HandTrack
from y2r.dataset.reader import Episode
from y2r.errors import UsageError
from y2r.geometry import invert_se3

_Opts = TypeVar("_Opts")


def options_from_dict(cls: type[_Opts], d: dict | None, fmt: str) -> _Opts:
    """An exporter's options dataclass from user key=values, naming unknown keys and the valid ones."""
    d = dict(d or {})
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise UsageError(f"{fmt} export: unknown options {unknown}; valid: {sorted(names)}")
    return cls(**d)

STATE_NAMES: list[str] = [
    f"{side}.{n}"
    for side in HAND_SIDES
    for n in ("valid", "x", "y", "z", "r11", "r21", "r31", "r12", "r22", "r32")
]
ACTION_NAMES: list[str] = [f"{side}.d{a}" for side in HAND_SIDES for a in ("x", "y", "z")]


def rot6d(R: np.ndarray) -> np.ndarray:
    """(...,3,3) -> (...,6): the first two columns, column-major."""
    R = np.asarray(R)
    return np.concatenate([R[..., :, 0], R[..., :, 1]], axis=-1)


def quat_xyzw(R: np.ndarray) -> np.ndarray:
    """(...,3,3) -> (...,4) unit quaternions [x, y, z, w] (scipy's order, as robomimic uses)."""
    from scipy.spatial.transform import Rotation

    R = np.asarray(R, dtype=np.float64)
    return Rotation.from_matrix(R.reshape(-1, 3, 3)).as_quat().reshape(R.shape[:-2] + (4,))


def hand_or_empty(ep: Episode, side: str) -> HandTrack:
    h = ep.hand(side)
    return h if h is not None else HandTrack.empty(ep.num_frames)


def wrist_state(h: HandTrack) -> np.ndarray:
    """(T,10) float32: [valid, position (3), rotation 6D (6)] in the camera frame; zeros where invalid."""
    T = len(h.valid)
    out = np.zeros((T, 10), np.float32)
    v = h.valid
    out[:, 0] = v
    if v.any():
        P = h.cam_T_wrist[v].astype(np.float64)
        out[v, 1:4] = P[:, :3, 3]
        out[v, 4:] = rot6d(P[:, :3, :3])
    return out


def wrist_motion(h: HandTrack, world_T_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T,3) displacement to the next frame in the camera frame of t, and (T,) bool where defined."""
    T = len(h.valid)
    out = np.zeros((T, 3), np.float32)
    ok = np.zeros(T, bool)
    if T < 2:
        return out, ok
    ok[:-1] = h.valid[:-1] & h.valid[1:]
    if ok.any():
        t = np.flatnonzero(ok)
        W = world_T_cam.astype(np.float64)
        cam_t_T_cam_next = invert_se3(W[t]) @ W[t + 1]
        p_next = h.cam_T_wrist[t + 1, :3, 3].astype(np.float64)
        p_next_in_t = (
            np.einsum("nij,nj->ni", cam_t_T_cam_next[:, :3, :3], p_next) + cam_t_T_cam_next[:, :3, 3]
        )
        out[t] = p_next_in_t - h.cam_T_wrist[t, :3, 3]
    return out, ok


def episode_state_action(ep: Episode) -> tuple[np.ndarray, np.ndarray]:
    """(T,20) state and (T,6) action (both hands; see module doc)."""
    W = ep.world_T_cam()
    hands = [hand_or_empty(ep, s) for s in HAND_SIDES]
    state = np.concatenate([wrist_state(h) for h in hands], axis=1)
    action = np.concatenate([wrist_motion(h, W)[0] for h in hands], axis=1)
    return state, action
