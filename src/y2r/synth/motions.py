"""Camera and object motions of the synthetic scenes, as functions of time in seconds.

All poses here are in the room frame (x right, y into the room, z up, floor at z = 0). Time is in
seconds rather than in "fraction of the clip", so a motion has the same speed whatever the number of
frames: a 32-frame clip at 30 fps shows about one sweep, a 300-frame clip sweeps back and forth.

Sweeps are smooth ping-pongs (``0.5 - 0.5 cos``), so velocities are continuous and the camera never
leaves the room however long the clip is. Objects move rigidly between two poses, at rest, then eased
in and out (C2 smootherstep), at rest again, and back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from y2r.geometry import make_se3

ROOM_UP = np.array([0.0, 0.0, 1.0])
Vec3 = tuple[float, float, float]


def pingpong(t: np.ndarray, sweep_s: float) -> np.ndarray:
    """0 at t = 0, 1 at t = sweep_s, 0 again at 2 sweep_s; smooth (cosine) and periodic."""
    return 0.5 - 0.5 * np.cos(np.pi * np.asarray(t, dtype=np.float64) / sweep_s)


def smootherstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * x * (x * (6.0 * x - 15.0) + 10.0)


def rest_move_phase(t: np.ndarray, rest_s: float, move_s: float) -> np.ndarray:
    """Rest at 0 for ``rest_s``, ease to 1 over ``move_s``, rest at 1, ease back; repeat."""
    t = np.asarray(t, dtype=np.float64)
    if move_s <= 0:
        return np.zeros_like(t)
    half = rest_s + move_s
    tau = np.mod(t, 2 * half)
    up = smootherstep((tau - rest_s) / move_s)
    down = 1.0 - smootherstep((tau - half - rest_s) / move_s)
    return np.where(tau < half, up, down)


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = ROOM_UP) -> np.ndarray:
    """room_T_cam (...,4,4) of OpenCV cameras at ``eye`` looking at ``target`` with no roll."""
    eye = np.asarray(eye, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    z = target - eye
    z = z / np.linalg.norm(z, axis=-1, keepdims=True)
    x = np.cross(z, up)  # right = forward x up (OpenCV: y points down)
    x = x / np.linalg.norm(x, axis=-1, keepdims=True)
    y = np.cross(z, x)
    return make_se3(np.stack([x, y, z], axis=-1), eye)


def _lerp(a: Vec3, b: Vec3, p: np.ndarray) -> np.ndarray:
    a_ = np.asarray(a, dtype=np.float64)
    b_ = np.asarray(b, dtype=np.float64)
    return a_ + (b_ - a_) * p[..., None]


# ------------------------------------------------------------------------------------ cameras
@dataclass(frozen=True)
class Sweep:
    """Eye and look-at target both move along straight lines (pan, forward; static when a == b).

    A small vertical bob (one sine period per sweep) keeps the motion from being exactly planar.
    """

    eye_a: Vec3
    eye_b: Vec3
    target_a: Vec3
    target_b: Vec3
    sweep_s: float = 1.1
    bob_m: float = 0.0

    def room_T_cam(self, t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        p = pingpong(t, self.sweep_s)
        eye = _lerp(self.eye_a, self.eye_b, p)
        eye[..., 2] += self.bob_m * np.sin(2 * np.pi * t / self.sweep_s)
        return look_at(eye, _lerp(self.target_a, self.target_b, p))


@dataclass(frozen=True)
class Orbit:
    """Arc around ``centre`` at a fixed horizontal radius and height, looking at ``centre``.

    Azimuth 0 puts the camera at ``centre - radius * y`` (in front of it, looking into the room).
    """

    centre: Vec3
    radius: float
    height: float
    azimuth_deg: tuple[float, float]
    sweep_s: float = 1.1
    bob_m: float = 0.0

    def room_T_cam(self, t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        p = pingpong(t, self.sweep_s)
        az = np.deg2rad(self.azimuth_deg[0] + (self.azimuth_deg[1] - self.azimuth_deg[0]) * p)
        c = np.asarray(self.centre, dtype=np.float64)
        eye = np.stack([c[0] + self.radius * np.sin(az), c[1] - self.radius * np.cos(az),
                        self.height + self.bob_m * np.sin(2 * np.pi * t / self.sweep_s)], axis=-1)
        return look_at(eye, np.broadcast_to(c, eye.shape))


@dataclass(frozen=True)
class Pivot:
    """A camera turning about (almost) its own centre: yaw and pitch sweep, the eye stays put.

    ``shake_m`` adds a sub-millimetre translation (a circle of that radius), the residual a
    hand-held "pure rotation" has; the total translation stays below 2 ``shake_m``.
    """

    eye: Vec3
    yaw_deg: tuple[float, float]
    pitch_deg: tuple[float, float]
    sweep_s: float = 1.1
    shake_m: float = 0.0

    def room_T_cam(self, t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        p = pingpong(t, self.sweep_s)
        yaw = np.deg2rad(self.yaw_deg[0] + (self.yaw_deg[1] - self.yaw_deg[0]) * p)
        pitch = np.deg2rad(self.pitch_deg[0] + (self.pitch_deg[1] - self.pitch_deg[0]) * p)
        fwd = np.stack([np.sin(yaw) * np.cos(pitch), np.cos(yaw) * np.cos(pitch), np.sin(pitch)], axis=-1)
        w = 2 * np.pi * t / self.sweep_s
        # Shake starts at exactly zero offset so that t = 0 is the nominal eye.
        eye = np.asarray(self.eye, dtype=np.float64) + self.shake_m * np.stack(
            [np.sin(w), 1.0 - np.cos(w), np.zeros_like(w)], axis=-1)
        return look_at(eye, eye + fwd)


CameraMotion = Sweep | Orbit | Pivot


# ------------------------------------------------------------------------------------ objects
@dataclass(frozen=True)
class Slide:
    """Rigid motion on the floor between (x, y, yaw_deg) poses ``a`` and ``b``, with rests.

    ``lift`` is the height of the object's origin above the floor (half its height for a box
    standing on the floor). ``b = None`` means the object never moves.
    """

    a: Vec3
    b: Vec3 | None = None
    rest_s: float = 0.15
    move_s: float = 0.75

    def room_T_object(self, t: np.ndarray, lift: float) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        p = np.zeros_like(t) if self.b is None else rest_move_phase(t, self.rest_s, self.move_s)
        pose = _lerp(self.a, self.a if self.b is None else self.b, p)
        yaw = np.deg2rad(pose[..., 2])
        c, s = np.cos(yaw), np.sin(yaw)
        zero, one = np.zeros_like(c), np.ones_like(c)
        R = np.stack([np.stack([c, -s, zero], -1), np.stack([s, c, zero], -1),
                      np.stack([zero, zero, one], -1)], -2)
        return make_se3(R, np.stack([pose[..., 0], pose[..., 1], np.full_like(c, lift)], -1))

    @property
    def moves(self) -> bool:
        return self.b is not None and tuple(self.b) != tuple(self.a) and self.move_s > 0
