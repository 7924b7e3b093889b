"""Deterministic "model" behaviour shared by the fake tools and the tests that check them.

The fake tools import this module inside their own environment; tests load it by file path (it
is not a tool, so the isolation checks do not concern it). Two switches, both from the tool's
environment:
- FAKE_TOOL_LOG: every model construction appends one line "<tool> <model>" (load counting);
- FAKE_TOOL_CONTROL: if that file exists when a request starts, its content ("crash", "oom",
  "hang", "freeze", "error") is the failure to perform, once (the file is removed first).
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np


def log_load(tool: str, model: str) -> None:
    path = os.environ.get("FAKE_TOOL_LOG")
    if path:
        with open(path, "a") as f:
            f.write(f"{tool} {model}\n")


def maybe_fail(tool: str) -> None:
    path = os.environ.get("FAKE_TOOL_CONTROL")
    if not path or not os.path.exists(path):
        return
    with open(path) as f:
        mode = f.read().strip()
    os.unlink(path)
    if mode == "crash":
        os.abort()  # SIGABRT, like a segfaulting CUDA extension
    if mode == "oom":
        import torch

        raise torch.cuda.OutOfMemoryError(f"CUDA out of memory. Tried to allocate 2.00 GiB ({tool})")
    if mode == "hang":
        time.sleep(3600)
    if mode == "freeze":
        os.kill(os.getpid(), signal.SIGSTOP)  # no heartbeats either
    if mode == "error":
        raise RuntimeError(f"fake {tool} failure")


# ------------------------------------------------------------------ ViPE
def vipe_pose(t: int) -> np.ndarray:
    """world_T_cam of frame t: a sideways move with a slow pan; frame 0 is the identity."""
    a = 0.01 * t
    c, s = np.cos(a), np.sin(a)
    T = np.eye(4)
    T[:3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
    T[:3, 3] = [0.02 * t, -0.005 * t, 0.01 * t]
    return T


def vipe_depth(rgb01: np.ndarray) -> np.ndarray:
    """Depth in metres from a frame's red channel (proves the frames reached the tool unchanged)."""
    return 0.5 + 3.0 * np.asarray(rgb01, np.float64)[..., 0]


def vipe_instance(rgb01: np.ndarray) -> np.ndarray:
    return (np.asarray(rgb01)[..., 1] > 0.5).astype(np.uint8)


def geocalib_focal(width: int, height: int) -> float:
    return 0.9 * max(width, height)
