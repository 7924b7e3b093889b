"""What a synthetic scene is made of, and the benchmark suite of named scenes (``SCENES``).

Geometry is in the room frame: x right, y into the room, z up, floor at z = 0. The room is the box
``[-x_half, x_half] x [y_front, y_back] x [0, inf)``: floor, back, left and right walls as in the
fixture, plus a front wall behind the camera. The walls are unbounded upwards and the room is closed
on every side, so every ray from a camera inside it hits a surface (the front wall only shows when a
camera turns round; it exists so that no pixel can ever miss).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from y2r.synth.motions import CameraMotion, Orbit, Pivot, Slide, Sweep, Vec3

Style = Literal["rich", "low"]


@dataclass(frozen=True)
class RoomSpec:
    x_half: float = 1.9
    y_back: float = 3.8
    y_front: float = -2.0
    texture: Style = "rich"


@dataclass(frozen=True)
class CubeSpec:
    """A textured cube standing on the floor, static or sliding (see ``Slide``)."""

    size: float
    motion: Slide
    texture: Style = "rich"


@dataclass(frozen=True)
class OccluderSpec:
    """A box (by default a thin vertical pole) standing on the floor, moving across the view.

    It is never tracked; it exists to hide tracked points and expose them again.
    """

    motion: Slide
    size: Vec3 = (0.07, 0.07, 2.6)  # full extents along its own x, y, z (m)
    texture: Style = "rich"


@dataclass(frozen=True)
class SceneSpec:
    name: str
    camera: CameraMotion
    cubes: tuple[CubeSpec, ...]
    occluder: OccluderSpec | None = None
    room: RoomSpec = field(default_factory=RoomSpec)
    fov_deg: float = 60.0  # horizontal field of view
    num_tracks: int = 64
    moving_fraction: float = 0.3  # share of the tracks put on moving cubes (when they are visible)
    # Motion blur: each frame averages `blur_subframes` renders spread over `shutter` frame intervals,
    # centred on the frame time (the ground truth is at the frame time, i.e. mid-exposure).
    blur_subframes: int = 1
    shutter: float = 0.5
    light_dir: Vec3 = (0.35, -0.55, 0.76)  # towards the light, room frame
    ambient: float = 0.45
    diffuse: float = 0.6


# ---------------------------------------------------------------------------------- the suite
# One sliding cube like the fixture's (0.3 m slide with rests) and a second, static one.
_CUBE_MAIN = CubeSpec(0.38, Slide(a=(-0.05, 2.15, 21.0), b=(0.25, 2.15, 21.0)))
_CUBE_STATIC = CubeSpec(0.3, Slide(a=(-0.85, 2.6, -15.0)))
_EYE = (-0.25, 0.05, 1.3)
_TARGET = (0.1, 2.15, 0.2)

SCENES: dict[str, SceneSpec] = {
    # Sideways translation, looking at a target that moves less: mostly translation, some yaw.
    "pan": SceneSpec(
        name="pan",
        camera=Sweep(eye_a=(-0.35, 0.05, 1.3), eye_b=(0.35, 0.05, 1.3),
                     target_a=(-0.1, 2.15, 0.2), target_b=(0.2, 2.15, 0.2), bob_m=0.02),
        cubes=(_CUBE_MAIN, _CUBE_STATIC),
    ),
    # An arc of 36 degrees around the cube, always looking at it.
    "orbit": SceneSpec(
        name="orbit",
        camera=Orbit(centre=(0.1, 2.15, 0.25), radius=2.15, height=1.3, azimuth_deg=(-18.0, 18.0),
                     bob_m=0.02),
        cubes=(_CUBE_MAIN, _CUBE_STATIC),
    ),
    # Walking 1.1 m into the room towards the cubes.
    "forward": SceneSpec(
        name="forward",
        camera=Sweep(eye_a=(-0.2, -0.3, 1.3), eye_b=(0.0, 0.8, 1.15),
                     target_a=_TARGET, target_b=_TARGET, bob_m=0.015),
        cubes=(_CUBE_MAIN, _CUBE_STATIC),
    ),
    # Turning on the spot: 30 degrees of yaw and 8 of pitch, 0.3 mm of residual translation.
    "rotation": SceneSpec(
        name="rotation",
        camera=Pivot(eye=_EYE, yaw_deg=(-6.0, 24.0), pitch_deg=(-26.0, -18.0), shake_m=0.0003),
        cubes=(_CUBE_MAIN, _CUBE_STATIC),
    ),
    # A fixed camera watching a cube slide 0.5 m and turn 40 degrees.
    "static_object": SceneSpec(
        name="static_object",
        camera=Sweep(eye_a=_EYE, eye_b=_EYE, target_a=_TARGET, target_b=_TARGET),
        cubes=(CubeSpec(0.38, Slide(a=(-0.2, 2.1, 10.0), b=(0.3, 2.2, 50.0))), _CUBE_STATIC),
        moving_fraction=0.4,
    ),
    # A fast pan (0.9 m and ~30 degrees in 0.45 s, up to ~25 px per frame at 320 px wide), each
    # frame averaging 10 sub-frames over 0.8 of the frame interval (a 1/38 s exposure at 30 fps).
    "fast_blur": SceneSpec(
        name="fast_blur",
        camera=Sweep(eye_a=(-0.5, 0.05, 1.3), eye_b=(0.4, 0.05, 1.3),
                     target_a=(-0.7, 2.15, 0.2), target_b=(0.9, 2.15, 0.2), sweep_s=0.45, bob_m=0.03),
        cubes=(_CUBE_MAIN, _CUBE_STATIC),
        blur_subframes=10,
        shutter=0.8,
    ),
    # The pan over nearly flat surfaces (room and cubes).
    "low_texture": SceneSpec(
        name="low_texture",
        camera=Sweep(eye_a=(-0.35, 0.05, 1.3), eye_b=(0.35, 0.05, 1.3),
                     target_a=(-0.1, 2.15, 0.2), target_b=(0.2, 2.15, 0.2), bob_m=0.02),
        cubes=(CubeSpec(0.38, _CUBE_MAIN.motion, texture="low"), CubeSpec(0.3, _CUBE_STATIC.motion, "low")),
        room=RoomSpec(texture="low"),
    ),
    # A slow pan while a pole 1 m in front of the cube crosses the whole view, hiding and
    # exposing floor, wall and cube points.
    "occluder": SceneSpec(
        name="occluder",
        camera=Sweep(eye_a=(-0.2, 0.05, 1.3), eye_b=(0.2, 0.05, 1.3),
                     target_a=(0.0, 2.15, 0.2), target_b=(0.1, 2.15, 0.2), bob_m=0.01),
        cubes=(_CUBE_MAIN, _CUBE_STATIC),
        occluder=OccluderSpec(Slide(a=(-1.2, 1.3, 0.0), b=(1.1, 1.3, 0.0), rest_s=0.0, move_s=1.0)),
    ),
}
