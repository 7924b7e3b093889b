"""A rendered clip with its exact ground truth, and its ``.npz`` file (the fixture's key layout).

The keys, dtypes and shapes of ``/work/shared/fixtures/room_orbit_gt.npz`` are kept exactly; extra
keys (occluder, all cubes, per-track cube index, scene name) are added, and ``load_gt`` fills them in
when reading a file that lacks them (such as the fixture).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from y2r.errors import InputError

# Keys of the fixture file, in its order.
GT_KEYS = ("rgb", "depth", "K", "c2w", "track_xyz_world", "track_uv", "track_visible", "moving_mask",
           "track_is_moving", "track_surface", "surface_names", "cube_to_world", "cube_size",
           "room_to_world", "depth_quantum", "fps", "seed", "motion")
EXTRA_KEYS = ("scene", "occluder_mask", "occluder_to_world", "occluder_size", "cubes_to_world",
              "cube_sizes", "track_cube")


@dataclass(eq=False, repr=False)
class SynthClip:
    """Frames and exact ground truth. T frames of H x W, N tracks, C cubes (see the fixture README).

    ``cube_to_world``/``cube_size`` describe cube 0 (the fixture's single cube); ``cubes_to_world``
    (T,C,4,4) and ``cube_sizes`` (C,) all cubes. ``track_cube`` (N,) is the cube a track lies on, -1
    for the room. ``occluder_*`` are None when the scene has no occluder.
    """

    rgb: np.ndarray  # (T,H,W,3) uint8
    depth: np.ndarray  # (T,H,W) float32 z-depth (m) at pixel centres
    K: np.ndarray  # (3,3) float64
    c2w: np.ndarray  # (T,4,4) float64 world_T_cam, c2w[0] = I
    track_xyz_world: np.ndarray  # (T,N,3) float64
    track_uv: np.ndarray  # (T,N,2) float64, also when not visible
    track_visible: np.ndarray  # (T,N) bool
    moving_mask: np.ndarray  # (T,H,W) bool: the pixel centre sees a moving cube
    track_is_moving: np.ndarray  # (N,) bool
    track_surface: np.ndarray  # (N,) int8 index into surface_names
    surface_names: np.ndarray  # (S,) str
    cube_to_world: np.ndarray  # (T,4,4) float64
    cube_size: float
    room_to_world: np.ndarray  # (4,4) float64: world_T_room
    depth_quantum: float  # depth is rounded to multiples of this (0 = not rounded)
    fps: float
    seed: int
    motion: str
    scene: str
    occluder_mask: np.ndarray  # (T,H,W) bool: the pixel centre sees the occluder
    cubes_to_world: np.ndarray  # (T,C,4,4)
    cube_sizes: np.ndarray  # (C,)
    track_cube: np.ndarray  # (N,) int8
    occluder_to_world: np.ndarray | None = None  # (T,4,4), origin at the box centre
    occluder_size: np.ndarray | None = None  # (3,) full extents

    def __repr__(self) -> str:  # the default would print every array
        return (f"SynthClip(scene={self.scene!r}, seed={self.seed}, {self.num_frames} frames of "
                f"{self.width}x{self.height} at {self.fps:g} fps, {self.track_uv.shape[1]} tracks)")

    @property
    def num_frames(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[2])

    @property
    def timestamps(self) -> np.ndarray:
        return np.arange(self.num_frames) / self.fps

    def save_gt(self, path: str | Path) -> Path:
        """Write the ground truth as a compressed ``.npz`` with the fixture's keys (plus extras)."""
        path = Path(path)
        arrays: dict[str, np.ndarray] = {
            "rgb": self.rgb, "depth": self.depth.astype(np.float32), "K": self.K, "c2w": self.c2w,
            "track_xyz_world": self.track_xyz_world, "track_uv": self.track_uv,
            "track_visible": self.track_visible, "moving_mask": self.moving_mask,
            "track_is_moving": self.track_is_moving, "track_surface": self.track_surface.astype(np.int8),
            "surface_names": np.asarray(self.surface_names, dtype=str),
            "cube_to_world": self.cube_to_world, "cube_size": np.float64(self.cube_size),
            "room_to_world": self.room_to_world, "depth_quantum": np.float64(self.depth_quantum),
            "fps": np.float64(self.fps), "seed": np.int64(self.seed), "motion": np.str_(self.motion),
            "scene": np.str_(self.scene), "occluder_mask": self.occluder_mask,
            "cubes_to_world": self.cubes_to_world, "cube_sizes": np.asarray(self.cube_sizes, np.float64),
            "track_cube": self.track_cube.astype(np.int8),
        }
        if self.occluder_to_world is not None:
            arrays["occluder_to_world"] = self.occluder_to_world
            arrays["occluder_size"] = np.asarray(self.occluder_size, np.float64)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:  # a file object stops numpy from appending ".npz" to the name
            np.savez_compressed(f, **arrays)
        return path


def save_gt(clip: SynthClip, path: str | Path) -> Path:
    return clip.save_gt(path)


def load_gt(path: str | Path) -> SynthClip:
    """Read a ground-truth ``.npz`` written by ``save_gt`` or in the fixture's layout."""
    path = Path(path)
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise InputError(path, f"cannot read ground-truth npz: {e}") from e
    with z:
        missing = [k for k in GT_KEYS if k not in z.files and k != "depth_quantum"]
        if missing:
            raise InputError(path, f"not a synthetic ground-truth file, missing keys {missing}")
        d = {k: z[k] for k in z.files}
    T, H, W = d["depth"].shape
    names = d["surface_names"].astype(str)
    surface = d["track_surface"].astype(np.int8)
    if "track_cube" in d:
        track_cube = d["track_cube"].astype(np.int8)
    else:
        # Files with a single cube (the fixture): cube faces are named "cube_<face>".
        on_cube = np.char.startswith(names[surface], "cube")
        track_cube = np.where(on_cube, 0, -1).astype(np.int8)
    return SynthClip(
        rgb=d["rgb"], depth=d["depth"], K=d["K"], c2w=d["c2w"], track_xyz_world=d["track_xyz_world"],
        track_uv=d["track_uv"], track_visible=d["track_visible"], moving_mask=d["moving_mask"],
        track_is_moving=d["track_is_moving"], track_surface=surface, surface_names=names,
        cube_to_world=d["cube_to_world"], cube_size=float(d["cube_size"]),
        room_to_world=d["room_to_world"], depth_quantum=float(d.get("depth_quantum", 0.0)),
        fps=float(d["fps"]), seed=int(d["seed"]), motion=str(d["motion"]),
        scene=str(d.get("scene", d["motion"])),
        occluder_mask=d.get("occluder_mask", np.zeros((T, H, W), dtype=bool)),
        cubes_to_world=d.get("cubes_to_world", d["cube_to_world"][:, None]),
        cube_sizes=d.get("cube_sizes", np.array([float(d["cube_size"])])),
        track_cube=track_cube,
        occluder_to_world=d.get("occluder_to_world"), occluder_size=d.get("occluder_size"),
    )
