"""The episode HDF5 format, schema v1, as data.

One table (``DATASETS``, ``ROOT_ATTRS``, ``PARTS``) is read by the writer
(``dataset/episode_writer.py``), the validator (``dataset/validate.py``), the reader and the user
documentation (``docs/format.md`` is generated from :func:`markdown`), so they cannot drift.

Shapes are written with the symbols ``T`` (frames, root attr ``num_frames``), ``H``/``W`` (stored
image size, root attrs ``height``/``width``) and ``N`` (query points, ``/tracks/query`` rows).
Paths containing ``{side}`` exist once per hand side (``left``, ``right``).

An episode is made of *parts*. ``time`` and ``camera`` are always there; the others are absent as a
whole when they were not computed or not stored (e.g. ``episode.store_rgb: false`` or
``tracks.backend: none``). A part is never half there: the validator reports a missing member of a
part that is present.

Run ``python -m y2r.dataset.schema`` to print the Markdown tables of ``docs/format.md``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from y2r.artifacts import HAND_JOINT_ORDER, HAND_SIDES
from y2r.errors import SchemaError

SCHEMA_NAME = "y2r.episode"
SCHEMA_VERSION = 1

Dim = str | int
AttrKind = Literal["str", "int", "float", "bool", "json", "yaml", "str_list"]


@dataclass(frozen=True)
class AttrSpec:
    name: str
    kind: AttrKind
    meaning: str
    required: bool = True


@dataclass(frozen=True)
class PartSpec:
    name: str
    required: bool
    meaning: str
    absent_when: str = ""


@dataclass(frozen=True)
class DatasetSpec:
    path: str  # without leading slash; may contain "{side}"
    shape: tuple[Dim, ...]
    dtype: str  # numpy dtype name
    part: str
    meaning: str
    units: str = ""
    invalid: str = ""  # how unknown / invalid entries are marked
    attrs: tuple[AttrSpec, ...] = ()
    # Required chunk shape (image-like data is chunked per frame so that one frame can be read
    # without decompressing its neighbours); None = any layout.
    chunks: tuple[Dim, ...] | None = None
    # True: the filter named by the config's episode.compression must be applied.
    compressed: bool = False
    per_frame: bool = True  # first axis is time (windows slice it)

    def for_side(self, side: str) -> DatasetSpec:
        return DatasetSpec(
            path=self.path.format(side=side),
            shape=self.shape,
            dtype=self.dtype,
            part=self.part.format(side=side),
            meaning=self.meaning,
            units=self.units,
            invalid=self.invalid,
            attrs=self.attrs,
            chunks=self.chunks,
            compressed=self.compressed,
            per_frame=self.per_frame,
        )


# ------------------------------------------------------------------------------------ root attrs
ROOT_ATTRS: tuple[AttrSpec, ...] = (
    AttrSpec("schema", "str", f'always "{SCHEMA_NAME}"'),
    AttrSpec("schema_version", "int", f"format version ({SCHEMA_VERSION}); readers refuse other versions"),
    AttrSpec("episode_id", "str", "the video id (file stem, made unique); also the episode's file name"),
    AttrSpec("source_path", "str", "the input video as given to y2r"),
    AttrSpec("source_sha256", "str", "SHA-256 of the input video file (hex)"),
    AttrSpec("fps", "float", "frame rate of the stored frames (after resampling)"),
    AttrSpec("num_frames", "int", "T, the number of stored frames"),
    AttrSpec("width", "int", "W, stored image width in pixels"),
    AttrSpec("height", "int", "H, stored image height in pixels"),
    AttrSpec("y2r_version", "str", "version of y2r that wrote the file"),
    AttrSpec("config", "yaml", "the resolved configuration (YAML) the episode was made with"),
    AttrSpec("backends", "json", 'stage -> {"backend", "version", model / checkpoint ...} (JSON)'),
    AttrSpec("created_utc", "str", "ISO 8601 time the file was written (UTC)"),
    AttrSpec("quality", "json", "each stage's quality report plus what the writer corrected (JSON)"),
    AttrSpec(
        "quality.camera_degenerate",
        "str",
        'why the camera estimate is unreliable (e.g. "pure_rotation"); "" when it is fine',
    ),
    AttrSpec("quality.depth_valid_frac", "float", "fraction of depth pixels that are valid"),
    AttrSpec(
        "quality.tracks_visible_frac", "float", "fraction of (frame, track) pairs visible; NaN without tracks"
    ),
    AttrSpec(
        "quality.hands_left_frac", "float", "fraction of frames with a valid left hand; NaN without hands"
    ),
    AttrSpec(
        "quality.hands_right_frac", "float", "fraction of frames with a valid right hand; NaN without hands"
    ),
)

# Flat quality flags (root attrs named "quality.<flag>"): what the manifest shows per episode.
QUALITY_FLAGS: tuple[str, ...] = tuple(
    a.name.split(".", 1)[1] for a in ROOT_ATTRS if a.name.startswith("quality.")
)

# ------------------------------------------------------------------------------------ parts
PARTS: tuple[PartSpec, ...] = (
    PartSpec("time", True, "which source frame each stored frame is, and when"),
    PartSpec("rgb", False, "the frames", "episode.store_rgb is false"),
    PartSpec("camera", True, "intrinsics and camera poses"),
    PartSpec("depth", False, "metric (or relative) z-depth per pixel", "episode.store_depth is false"),
    PartSpec("tracks", False, "3D point tracks", "tracks.backend is none"),
    PartSpec("hands", False, "3D hands, both sides", "hands.backend is none"),
    PartSpec(
        "hands/{side}/mano",
        False,
        "MANO parameters of one side",
        "the hands backend has no MANO model (e.g. builtin MediaPipe)",
    ),
)

_JOINT_ORDER_ATTR = AttrSpec(
    "joint_order", "str_list", "names of the 21 joints in order: " + ", ".join(HAND_JOINT_ORDER)
)

# ------------------------------------------------------------------------------------ datasets
_DATASETS_TEMPLATE: tuple[DatasetSpec, ...] = (
    DatasetSpec(
        "time/frame_index",
        ("T",),
        "int32",
        "time",
        "index of the frame in the source video",
        invalid="strictly increasing, >= 0",
    ),
    DatasetSpec(
        "time/timestamp",
        ("T",),
        "float64",
        "time",
        "presentation time in the source video",
        units="s",
        invalid="strictly increasing, finite",
    ),
    DatasetSpec(
        "rgb", ("T", "H", "W", 3), "uint8", "rgb", "RGB frames", chunks=(1, "H", "W", 3), compressed=True
    ),
    DatasetSpec(
        "camera/K",
        ("T", 3, 3),
        "float32",
        "camera",
        "pinhole intrinsics for the stored H, W",
        units="px",
        invalid="fx, fy > 0; finite",
    ),
    DatasetSpec(
        "camera/world_T_cam",
        ("T", 4, 4),
        "float32",
        "camera",
        "camera-to-world pose (OpenCV axes: x right, y down, z forward)",
        units="m",
        invalid="rigid: rotation orthonormal with det 1, last row [0 0 0 1]",
        attrs=(
            AttrSpec("metric_scale", "bool", "true when translations (and depth) are in metres"),
            AttrSpec("source", "str", "camera backend that produced it"),
        ),
    ),
    DatasetSpec(
        "depth/depth",
        ("T", "H", "W"),
        "float16",
        "depth",
        "z-depth along the optical axis",
        units="m",
        invalid="0 where invalid (see depth/valid)",
        chunks=(1, "H", "W"),
        compressed=True,
    ),
    DatasetSpec(
        "depth/valid",
        ("T", "H", "W"),
        "bool",
        "depth",
        "depth is valid here",
        chunks=(1, "H", "W"),
        compressed=True,
    ),
    DatasetSpec(
        "tracks/xyz_world",
        ("T", "N", 3),
        "float32",
        "tracks",
        "world position of each tracked point",
        units="m",
        invalid="NaN where unknown (all 3 coordinates)",
    ),
    DatasetSpec(
        "tracks/uv",
        ("T", "N", 2),
        "float32",
        "tracks",
        "pixel position (u = column, v = row)",
        units="px",
        invalid="NaN where unknown; finite and inside the image where visible",
    ),
    DatasetSpec("tracks/visible", ("T", "N"), "bool", "tracks", "the point is seen (not occluded, in frame)"),
    DatasetSpec(
        "tracks/query",
        ("N", 3),
        "float32",
        "tracks",
        "query of each track: [t, u, v] (t = frame index into this episode)",
        per_frame=False,
    ),
    DatasetSpec(
        "hands/{side}/valid", ("T",), "bool", "hands", "a hand of this side is present and estimated"
    ),
    DatasetSpec(
        "hands/{side}/joints_cam",
        ("T", 21, 3),
        "float32",
        "hands",
        "21 joints in the camera frame",
        units="m",
        invalid="NaN where not valid",
        attrs=(_JOINT_ORDER_ATTR,),
    ),
    DatasetSpec(
        "hands/{side}/keypoints_2d",
        ("T", 21, 2),
        "float32",
        "hands",
        "21 joints in the image",
        units="px",
        invalid="NaN where not valid",
    ),
    DatasetSpec(
        "hands/{side}/cam_T_wrist",
        ("T", 4, 4),
        "float32",
        "hands",
        "wrist pose in the camera frame",
        units="m",
        invalid="NaN where not valid; rigid where valid",
    ),
    DatasetSpec(
        "hands/{side}/score",
        ("T",),
        "float32",
        "hands",
        "detection confidence in [0, 1]",
        invalid="0 where not valid",
    ),
    DatasetSpec(
        "hands/{side}/mano/global_orient",
        ("T", 3),
        "float32",
        "hands/{side}/mano",
        "MANO root rotation (axis-angle, camera frame)",
        units="rad",
        invalid="NaN where not valid",
    ),
    DatasetSpec(
        "hands/{side}/mano/hand_pose",
        ("T", 15, 3),
        "float32",
        "hands/{side}/mano",
        "MANO finger joint rotations (axis-angle)",
        units="rad",
        invalid="NaN where not valid",
    ),
    DatasetSpec(
        "hands/{side}/mano/betas",
        ("T", 10),
        "float32",
        "hands/{side}/mano",
        "MANO shape parameters",
        invalid="NaN where not valid",
    ),
)


def _expand(templates: tuple[DatasetSpec, ...]) -> tuple[DatasetSpec, ...]:
    out: list[DatasetSpec] = []
    for d in templates:
        if "{side}" in d.path:
            out.extend(d.for_side(s) for s in HAND_SIDES)
        else:
            out.append(d)
    return tuple(out)


DATASETS: tuple[DatasetSpec, ...] = _expand(_DATASETS_TEMPLATE)
DATASETS_BY_PATH: dict[str, DatasetSpec] = {d.path: d for d in DATASETS}


def parts() -> list[str]:
    """Concrete part names (with sides expanded)."""
    out: list[str] = []
    for p in PARTS:
        if "{side}" in p.name:
            out.extend(p.name.format(side=s) for s in HAND_SIDES)
        else:
            out.append(p.name)
    return out


def part_required(part: str) -> bool:
    for p in PARTS:
        if p.name == part or ("{side}" in p.name and part in {p.name.format(side=s) for s in HAND_SIDES}):
            return p.required
    raise KeyError(part)


def part_datasets(part: str) -> list[DatasetSpec]:
    return [d for d in DATASETS if d.part == part]


def resolve(pattern: tuple[Dim, ...], dims: Mapping[str, int]) -> tuple[int, ...]:
    """A shape pattern with symbols -> concrete shape (KeyError when a symbol is unknown)."""
    return tuple(int(dims[d]) if isinstance(d, str) else int(d) for d in pattern)


def shape_text(pattern: tuple[Dim, ...]) -> str:
    return "(" + ",".join(str(d) for d in pattern) + ("," if len(pattern) == 1 else "") + ")"


def check_version(attrs: Mapping, where: str) -> None:
    """Raise a SchemaError saying what to do when a file is not a y2r episode of this version."""
    name = attrs.get("schema")
    if isinstance(name, bytes):
        name = name.decode()
    if name != SCHEMA_NAME:
        raise SchemaError(
            f"{where}: not a y2r episode (root attr 'schema' is {name!r}, expected '{SCHEMA_NAME}')"
        )
    try:
        version = int(attrs.get("schema_version"))
    except (TypeError, ValueError):
        raise SchemaError(f"{where}: root attr 'schema_version' is missing or not an integer") from None
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"{where}: episode schema v{version} is newer than this y2r reads (v{SCHEMA_VERSION}); "
            "upgrade y2r (pip install -U y2r)"
        )
    if version < SCHEMA_VERSION:
        raise SchemaError(
            f"{where}: episode schema v{version} is older than this y2r reads (v{SCHEMA_VERSION}); "
            "re-write it with `y2r run` on the same inputs and output folder (finished stages are reused), "
            "or read it with the y2r version that wrote it"
        )


# ------------------------------------------------------------------------------------ docs
def markdown() -> str:
    """The schema as Markdown tables (the generated part of docs/format.md)."""
    lines = ["### Root attributes", "", "| attribute | type | required | meaning |", "|---|---|---|---|"]
    for a in ROOT_ATTRS:
        lines.append(f"| `{a.name}` | {a.kind} | {'yes' if a.required else 'no'} | {a.meaning} |")
    lines += ["", "### Parts", "", "| part | always present | absent when | meaning |", "|---|---|---|---|"]
    for p in PARTS:
        lines.append(
            f"| `{p.name}` | {'yes' if p.required else 'no'} | {p.absent_when or '—'} | {p.meaning} |"
        )
    lines += [
        "",
        "### Datasets",
        "",
        "| path | shape | dtype | units | invalid / constraints | storage | attributes | meaning |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for d in _DATASETS_TEMPLATE:
        storage = []
        if d.chunks:
            storage.append(f"chunks {shape_text(d.chunks)}")
        if d.compressed:
            storage.append("compressed")
        attrs = "; ".join(f"`{a.name}` ({a.kind})" for a in d.attrs)
        lines.append(
            f"| `/{d.path}` | {shape_text(d.shape)} | {d.dtype} | {d.units or '—'} | {d.invalid or '—'} | "
            f"{', '.join(storage) or '—'} | {attrs or '—'} | {d.meaning} |"
        )
    lines += ["", "`{side}` is `left` or `right`. `joint_order`: " + ", ".join(HAND_JOINT_ORDER) + "."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover - documentation helper
    sys.stdout.write(markdown())
