"""``y2r validate``: check episode files against schema v1 and y2r's conventions.

Checks, in order (a file that fails the structural checks of a dataset is not value-checked there):

1. identity: root ``schema`` / ``schema_version`` (a mismatch stops here, with what to do);
2. root attributes: present, typed, parseable (YAML config, JSON backends/quality, ISO time);
3. structure: every dataset of every present part, with the shape implied by ``num_frames``,
   ``height``, ``width`` and N, the dtype, attrs, chunking and compression of the schema table;
   parts are all-or-nothing; nothing outside the schema;
4. values and conventions: time strictly increasing; K finite with positive focal lengths;
   ``world_T_cam`` rigid (orthonormal rotation, det 1, last row [0 0 0 1]); depth finite, >= 0,
   0 exactly where not valid; tracks NaN as whole vectors, visible => uv finite inside the image,
   visible known xyz reprojecting onto uv through K and the pose (catches inverted poses); hands
   NaN <=> not valid, rigid wrist poses, wrist in front of the camera; MANO NaN <=> not valid.

Large datasets (rgb, depth) are read a block of frames at a time, so memory stays bounded whatever
the file size; rgb is read fully once to prove every compressed chunk decodes.

Each problem is one line: ``<file>: <dataset path>: <problem>``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import yaml

from y2r.artifacts import HAND_JOINT_ORDER, HAND_SIDES
from y2r.dataset import schema
from y2r.dataset.reader import find_episode_files
from y2r.errors import SchemaError

# Rigid-transform tolerances for float32 storage of estimated poses (float32 alone gives ~1e-7).
ROT_TOL = 1e-3
# Visible tracks must reproject onto their uv within max(this, 1 % of the image diagonal) pixels
# (median over the episode); a pose stored inverted or in another convention misses by far more.
REPROJ_TOL_PX = 2.0
# Bytes read per block when streaming a large dataset.
_BLOCK_BYTES = 16 << 20


@dataclass(frozen=True)
class Problem:
    file: str
    path: str  # dataset / group path, "/" for the root
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.path}: {self.message}"


# ------------------------------------------------------------------------------------ entry points
def validate_path(path: str | Path) -> dict[str, list[str]]:
    """Validate one episode file, or every episode of an output (or any) folder.

    Returns ``{file: [problem line, ...]}`` for every file checked (an empty list means valid).
    """
    return {str(f): [str(p) for p in validate_episode(f)] for f in find_episode_files(path)}


def validate_episode(path: str | Path, *, read_rgb: bool = True) -> list[Problem]:
    """All problems of one episode file (empty when it follows schema v1 and the conventions)."""
    v = _Validator(Path(path), read_rgb=read_rgb)
    v.run()
    return v.problems


# ------------------------------------------------------------------------------------ the checks
class _Validator:
    def __init__(self, path: Path, read_rgb: bool):
        self.path = path
        self.read_rgb = read_rgb
        self.problems: list[Problem] = []
        self.dims: dict[str, int] = {}
        self.ok: set[str] = set()  # datasets that passed the structural checks
        self.config: Any = None

    def add(self, where: str, message: str) -> None:
        self.problems.append(Problem(str(self.path), where, message))

    def run(self) -> None:
        try:
            f = h5py.File(self.path, "r")
        except OSError as e:
            self.add("/", f"cannot open as HDF5 ({' '.join(str(e).split())})")
            return
        with f:
            try:
                schema.check_version(f.attrs, "file")
            except SchemaError as e:
                self.add("/", e.message.removeprefix("file: "))
                return
            self.root_attrs(f)
            if not {"T", "H", "W"} <= self.dims.keys():
                return  # shapes cannot be checked without the dimensions
            self.structure(f)
            self.values(f)

    # -------------------------------------------------------------------- attrs
    def root_attrs(self, f: h5py.File) -> None:
        for spec in schema.ROOT_ATTRS:
            value = self.attr(f, "/", spec)
            if value is None:
                continue
            name = spec.name
            if name in ("num_frames", "width", "height"):
                if value < 1:
                    self.add("/", f"attr '{name}' must be >= 1 (got {value})")
                else:
                    self.dims[{"num_frames": "T", "width": "W", "height": "H"}[name]] = int(value)
            elif name == "fps" and not (math.isfinite(value) and value > 0):
                self.add("/", f"attr 'fps' must be finite and > 0 (got {value})")
            elif name == "source_sha256" and not _is_hex(value, 64):
                self.add("/", f"attr 'source_sha256' must be 64 hex digits (got {value!r})")
            elif name == "created_utc":
                try:
                    datetime.fromisoformat(value)
                except ValueError:
                    self.add("/", f"attr 'created_utc' is not an ISO 8601 time ({value!r})")
            elif name in ("backends", "quality") and not isinstance(value, dict):
                self.add("/", f"attr '{name}' must be a JSON object (got {type(value).__name__})")
            elif name == "config" and not isinstance(value, dict):
                self.add("/", "attr 'config' must be a YAML mapping (the resolved configuration)")
            elif (
                name.startswith("quality.")
                and spec.kind == "float"
                and not (math.isnan(value) or 0.0 <= value <= 1.0)
            ):
                self.add("/", f"attr '{name}' must be a fraction in [0, 1] or NaN (got {value})")
        self.config = self.attr(
            f, "/", next(a for a in schema.ROOT_ATTRS if a.name == "config"), report=False
        )

    def attr(self, obj: Any, where: str, spec: schema.AttrSpec, report: bool = True) -> Any:
        """The attr's value converted to Python, or None (and a problem) when missing / mistyped."""
        if spec.name not in obj.attrs:
            if spec.required and report:
                self.add(where, f"missing attr '{spec.name}' ({spec.kind}: {spec.meaning})")
            return None
        raw = obj.attrs[spec.name]
        value, error = _convert_attr(raw, spec.kind)
        if error and report:
            self.add(where, f"attr '{spec.name}' {error}")
        return None if error else value

    # -------------------------------------------------------------------- structure
    def structure(self, f: h5py.File) -> None:
        expected_paths = {d.path for d in schema.DATASETS}
        # N comes from the query table (the only tracks array without T).
        q = f.get("tracks/query")
        if isinstance(q, h5py.Dataset) and q.ndim == 2:
            self.dims["N"] = int(q.shape[0])
        for part in schema.parts():
            members = schema.part_datasets(part)
            present = [d for d in members if d.path in f]
            if not present:
                if schema.part_required(part):
                    self.add("/" + part.split("/")[0], f"missing part '{part}' (required)")
                continue
            for d in members:
                if d.path not in f:
                    self.add("/" + d.path, f"missing (part '{part}' is present, so all of it must be)")
                else:
                    self.dataset_structure(f, d)
        # hands/{side}/mano needs hands/{side}: covered because hands datasets are then checked.
        if any(f"hands/{s}/mano" in f for s in HAND_SIDES) and "hands" not in f:
            self.add("/hands", "MANO parameters without the hands part")

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset) and name not in expected_paths:
                self.add("/" + name, "unexpected dataset (not in episode schema v1)")

        f.visititems(visit)

    def dataset_structure(self, f: h5py.File, d: schema.DatasetSpec) -> None:
        where = "/" + d.path
        obj = f[d.path]
        if not isinstance(obj, h5py.Dataset):
            self.add(where, "is a group, expected a dataset")
            return
        ok = True
        try:
            want = schema.resolve(d.shape, self.dims)
        except KeyError:
            want = None
        if want is not None and obj.shape != want:
            self.add(where, f"shape {obj.shape}, expected {schema.shape_text(d.shape)} = {want}")
            ok = False
        if obj.dtype != np.dtype(d.dtype):
            self.add(where, f"dtype {obj.dtype}, expected {d.dtype}")
            ok = False
        for a in d.attrs:
            value = self.attr(obj, where, a)
            if a.name == "joint_order" and value is not None and list(value) != list(HAND_JOINT_ORDER):
                self.add(where, f"attr 'joint_order' is {list(value)}, expected {list(HAND_JOINT_ORDER)}")
        if d.chunks is not None and want is not None:
            chunks = schema.resolve(d.chunks, self.dims)
            if obj.chunks != chunks:
                self.add(where, f"chunks {obj.chunks}, expected {chunks} (one frame per chunk)")
        if d.compressed:
            expected = self.expected_compression()
            if expected is not None and obj.compression != expected[0]:
                self.add(
                    where,
                    f"compression {obj.compression or 'none'}, expected {expected[1]} "
                    "(episode.compression in the stored config)",
                )
        if ok:
            self.ok.add(d.path)

    def expected_compression(self) -> tuple[str | None, str] | None:
        cfg = self.config if isinstance(getattr(self, "config", None), dict) else None
        comp = ((cfg or {}).get("episode") or {}).get("compression") if cfg else None
        if comp is None:
            return None
        return (None if comp == "none" else str(comp)), str(comp)

    # -------------------------------------------------------------------- values
    def values(self, f: h5py.File) -> None:
        T, H, W = self.dims["T"], self.dims["H"], self.dims["W"]
        if self.ok >= {"time/frame_index", "time/timestamp"}:
            self.check_time(f)
        if "camera/K" in self.ok:
            self.check_K(f["camera/K"][()])
        if "camera/world_T_cam" in self.ok:
            self.check_rigid("/camera/world_T_cam", f["camera/world_T_cam"][()], np.ones(T, bool))
        if "rgb" in self.ok and self.read_rgb:
            self.check_readable(f["rgb"])
        if {"depth/depth", "depth/valid"} <= self.ok:
            self.check_depth(f["depth/depth"], f["depth/valid"])
        if {"tracks/xyz_world", "tracks/uv", "tracks/visible", "tracks/query"} <= self.ok:
            self.check_tracks(f, W, H, T)
        for side in HAND_SIDES:
            names = [d.path for d in schema.part_datasets("hands") if d.path.startswith(f"hands/{side}/")]
            if names and set(names) <= self.ok:
                self.check_hand(f, side)

    def check_time(self, f: h5py.File) -> None:
        fi = f["time/frame_index"][()]
        ts = f["time/timestamp"][()]
        if (fi < 0).any():
            self.add("/time/frame_index", f"{int((fi < 0).sum())} negative entries")
        if fi.size > 1 and not (np.diff(fi.astype(np.int64)) > 0).all():
            self.add(
                "/time/frame_index", f"not strictly increasing (first at t={_first(np.diff(fi) <= 0) + 1})"
            )
        if not np.isfinite(ts).all():
            self.add("/time/timestamp", f"{int((~np.isfinite(ts)).sum())} non-finite entries")
        elif ts.size > 1:
            dt = np.diff(ts)
            if not (dt > 0).all():
                self.add("/time/timestamp", f"not strictly increasing (first at t={_first(dt <= 0) + 1})")
            else:
                fps = float(f.attrs["fps"])
                implied = 1.0 / float(np.median(dt))
                # Resampling from a source rate jitters dt, but never by 2x: a mismatch this large is
                # a units error (ms vs s) or a wrong fps attr.
                if not (0.5 <= implied / fps <= 2.0):
                    self.add(
                        "/time/timestamp",
                        f"median spacing implies {implied:.3g} fps but attr fps is {fps:.3g}",
                    )

    def check_K(self, K: np.ndarray) -> None:
        where = "/camera/K"
        bad = ~np.isfinite(K).all((1, 2))
        if bad.any():
            self.add(where, f"{int(bad.sum())} frames with non-finite entries (first at t={_first(bad)})")
        with np.errstate(invalid="ignore"):
            nonpos = ~((K[:, 0, 0] > 0) & (K[:, 1, 1] > 0))
        if nonpos.any():
            self.add(
                where,
                f"{int(nonpos.sum())} frames without positive focal lengths fx, fy "
                f"(first at t={_first(nonpos)})",
            )
        row = np.abs(K[:, 2, :] - np.array([0, 0, 1], np.float32)).max(1) > 1e-6
        if row.any():
            self.add(
                where, f"{int(row.sum())} frames whose last row is not [0 0 1] (first at t={_first(row)})"
            )

    def check_rigid(self, where: str, Tm: np.ndarray, mask: np.ndarray) -> None:
        """4x4 rigid transforms at frames ``mask``: finite, last row [0 0 0 1], R orthonormal, det 1."""
        M = Tm[mask].astype(np.float64)
        idx = np.flatnonzero(mask)
        if M.size == 0:
            return
        finite = np.isfinite(M).all((1, 2))
        if not finite.all():
            self.add(
                where, f"{int((~finite).sum())} frames with non-finite entries (first at t={idx[~finite][0]})"
            )
        M, idx = M[finite], idx[finite]
        if M.size == 0:
            return
        last = np.abs(M[:, 3, :] - [0, 0, 0, 1]).max(1) > 1e-6
        if last.any():
            self.add(
                where, f"{int(last.sum())} frames whose last row is not [0 0 0 1] (first at t={idx[last][0]})"
            )
        R = M[:, :3, :3]
        ortho = np.abs(np.einsum("nji,njk->nik", R, R) - np.eye(3)).max((1, 2))
        det = np.linalg.det(R)
        bad = (ortho > ROT_TOL) | (np.abs(det - 1) > ROT_TOL)
        if bad.any():
            i = int(np.argmax(bad))
            self.add(
                where,
                f"{int(bad.sum())} frames whose rotation is not orthonormal with det 1 "
                f"(first at t={idx[i]}: |R^T R - I| = {ortho[i]:.2g}, det = {det[i]:.4g})",
            )

    def check_readable(self, ds: h5py.Dataset) -> None:
        try:
            for _ in _blocks(ds):
                pass
        except OSError as e:
            self.add("/" + ds.name.lstrip("/"), f"unreadable data ({' '.join(str(e).split())})")

    def check_depth(self, dd: h5py.Dataset, dv: h5py.Dataset) -> None:
        counts = {
            "nonfinite": [0, -1],
            "negative": [0, -1],
            "nonzero_invalid": [0, -1],
            "zero_valid": [0, -1],
        }

        def note(key: str, bad: np.ndarray, a: int) -> None:
            per_frame = bad.reshape(bad.shape[0], -1).any(1)
            if per_frame.any():
                c = counts[key]
                if c[1] < 0:
                    c[1] = a + _first(per_frame)
                c[0] += int(bad.sum())

        try:
            for a, depth in _blocks(dd):
                valid = dv[a : a + depth.shape[0]]
                d = depth.astype(np.float32)
                fin = np.isfinite(d)
                note("nonfinite", ~fin, a)
                with np.errstate(invalid="ignore"):
                    note("negative", fin & (d < 0), a)
                    note("nonzero_invalid", ~valid & (d != 0), a)
                    note("zero_valid", valid & (d == 0), a)
        except OSError as e:
            self.add("/depth", f"unreadable data ({' '.join(str(e).split())})")
            return
        text = {
            "nonfinite": ("/depth/depth", "non-finite values"),
            "negative": ("/depth/depth", "negative values"),
            "nonzero_invalid": (
                "/depth/depth",
                "non-zero values where depth/valid is false (invalid depth is 0)",
            ),
            "zero_valid": ("/depth/valid", "true where depth is 0 (0 means invalid)"),
        }
        for key, (n, first) in counts.items():
            if n:
                where, what = text[key]
                self.add(where, f"{n} pixels with {what} (first at t={first})")

    def check_tracks(self, f: h5py.File, W: int, H: int, T: int) -> None:
        xyz = f["tracks/xyz_world"][()]
        uv = f["tracks/uv"][()]
        vis = f["tracks/visible"][()]
        query = f["tracks/query"][()]
        for name, arr in (("xyz_world", xyz), ("uv", uv)):
            fin = np.isfinite(arr)
            partial = fin.any(-1) & ~fin.all(-1)
            if partial.any():
                self.add(
                    f"/tracks/{name}",
                    f"{int(partial.sum())} entries partly NaN (unknown is NaN in every coordinate)",
                )
            inf = np.isinf(arr).any(-1)
            if inf.any():
                self.add(f"/tracks/{name}", f"{int(inf.sum())} infinite entries (use NaN for unknown)")
        uv_ok = np.isfinite(uv).all(-1)
        with np.errstate(invalid="ignore"):
            inside = (
                (uv[..., 0] >= -0.5)
                & (uv[..., 0] <= W - 0.5)
                & (uv[..., 1] >= -0.5)
                & (uv[..., 1] <= H - 0.5)
            )
        bad = vis & ~uv_ok
        if bad.any():
            self.add("/tracks/visible", f"{int(bad.sum())} visible entries with NaN uv")
        bad = vis & uv_ok & ~inside
        if bad.any():
            self.add("/tracks/visible", f"{int(bad.sum())} visible entries with uv outside the {W}x{H} image")
        # A visible point may have unknown xyz (2D visibility needs no depth, e.g. pure rotation).
        xyz_ok = np.isfinite(xyz).all(-1)
        if not np.isfinite(query).all():
            self.add("/tracks/query", "non-finite entries")
        else:
            t = query[:, 0]
            if (np.abs(t - np.round(t)) > 1e-4).any() or (t < 0).any() or (t > T - 1).any():
                self.add("/tracks/query", f"query frames t must be integers in [0, {T - 1}]")
        # Reprojection: visible, known points must land on their uv through K and world_T_cam.
        if {"camera/K", "camera/world_T_cam"} <= self.ok:
            sel = vis & xyz_ok & uv_ok
            if sel.any():
                err = _reprojection_error(f["camera/K"][()], f["camera/world_T_cam"][()], xyz, uv, sel)
                tol = max(REPROJ_TOL_PX, 0.01 * math.hypot(W, H))
                med = float(np.nanmedian(err)) if np.isfinite(err).any() else math.inf
                if not med <= tol:
                    self.add(
                        "/tracks/xyz_world",
                        f"visible points reproject {med:.3g} px (median) from tracks/uv "
                        f"(> {tol:.3g} px): xyz_world, world_T_cam and K disagree (pose inverted?)",
                    )

    def check_hand(self, f: h5py.File, side: str) -> None:
        g = f[f"hands/{side}"]
        valid = g["valid"][()]
        arrays = {k: g[k][()] for k in ("joints_cam", "keypoints_2d", "cam_T_wrist")}
        for k, arr in arrays.items():
            flat = arr.reshape(arr.shape[0], -1)
            bad_valid = valid & ~np.isfinite(flat).all(1)
            bad_invalid = ~valid & ~np.isnan(flat).all(1)
            where = f"/hands/{side}/{k}"
            if bad_valid.any():
                self.add(
                    where,
                    f"{int(bad_valid.sum())} valid frames with NaN/inf (first at t={_first(bad_valid)})",
                )
            if bad_invalid.any():
                self.add(
                    where,
                    f"{int(bad_invalid.sum())} frames not valid but not NaN "
                    f"(first at t={_first(bad_invalid)}; invalid entries are NaN)",
                )
        score = g["score"][()]
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(score) | (score < 0) | (score > 1)
        if bad.any():
            self.add(
                f"/hands/{side}/score", f"{int(bad.sum())} entries not in [0, 1] (first at t={_first(bad)})"
            )
        nz = ~valid & (np.nan_to_num(score) != 0)
        if nz.any():
            self.add(f"/hands/{side}/score", f"{int(nz.sum())} non-zero scores where not valid")
        pose = arrays["cam_T_wrist"]
        ok = valid & np.isfinite(pose.reshape(len(pose), -1)).all(1)
        self.check_rigid(f"/hands/{side}/cam_T_wrist", pose, ok)
        wrist_z = arrays["joints_cam"][:, 0, 2]
        with np.errstate(invalid="ignore"):
            behind = valid & np.isfinite(wrist_z) & (wrist_z <= 0)
        if behind.any():
            self.add(
                f"/hands/{side}/joints_cam",
                f"{int(behind.sum())} valid frames with the wrist behind the "
                f"camera (z <= 0; OpenCV axes have z forward) (first at t={_first(behind)})",
            )
        if f"hands/{side}/mano" in f:
            for d in schema.part_datasets(f"hands/{side}/mano"):
                if d.path not in self.ok:
                    continue
                arr = f[d.path][()].reshape(len(valid), -1)
                bad_valid = valid & ~np.isfinite(arr).all(1)
                bad_invalid = ~valid & ~np.isnan(arr).all(1)
                if bad_valid.any():
                    self.add("/" + d.path, f"{int(bad_valid.sum())} valid frames with NaN/inf")
                if bad_invalid.any():
                    self.add("/" + d.path, f"{int(bad_invalid.sum())} frames not valid but not NaN")


# ------------------------------------------------------------------------------------ helpers
def _convert_attr(raw: Any, kind: str) -> tuple[Any, str | None]:
    """(value, None) or (None, 'what is wrong')."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    if kind in ("str", "json", "yaml"):
        if not isinstance(raw, str):
            return None, f"must be a string (got {type(raw).__name__})"
        if kind == "json":
            try:
                return json.loads(raw), None
            except ValueError as e:
                return None, f"is not valid JSON ({e})"
        if kind == "yaml":
            try:
                return yaml.safe_load(raw), None
            except yaml.YAMLError:
                return None, "is not valid YAML"
        return raw, None
    if kind == "str_list":
        arr = np.asarray(raw)
        if arr.ndim != 1:
            return None, "must be a 1-D list of strings"
        out = [x.decode() if isinstance(x, bytes) else x for x in arr.tolist()]
        if not all(isinstance(x, str) for x in out):
            return None, "must be a list of strings"
        return out, None
    arr = np.asarray(raw)
    if arr.shape != ():
        return None, f"must be a scalar (got shape {arr.shape})"
    if kind == "bool":
        if arr.dtype != np.bool_:
            return None, f"must be a bool (got {arr.dtype})"
        return bool(arr), None
    if kind == "int":
        if arr.dtype.kind not in "iu":
            return None, f"must be an integer (got {arr.dtype})"
        return int(arr), None
    if kind == "float":
        if arr.dtype.kind not in "fiu":
            return None, f"must be a number (got {arr.dtype})"
        return float(arr), None
    raise ValueError(kind)


def _is_hex(s: str, n: int) -> bool:
    return len(s) == n and all(c in "0123456789abcdefABCDEF" for c in s)


def _first(mask: np.ndarray) -> int:
    return int(np.argmax(mask))


def _blocks(ds: h5py.Dataset) -> Iterator[tuple[int, np.ndarray]]:
    """(start, data) blocks along the first axis, each about _BLOCK_BYTES (at least one frame)."""
    T = ds.shape[0]
    frame_bytes = max(1, int(np.prod(ds.shape[1:], dtype=np.int64)) * ds.dtype.itemsize)
    step = max(1, _BLOCK_BYTES // frame_bytes)
    if ds.chunks:  # whole chunks per read
        step = max(ds.chunks[0], step - step % ds.chunks[0])
    for a in range(0, T, step):
        yield a, ds[a : min(T, a + step)]


def _reprojection_error(
    K: np.ndarray, world_T_cam: np.ndarray, xyz: np.ndarray, uv: np.ndarray, sel: np.ndarray
) -> np.ndarray:
    t, n = np.nonzero(sel)
    P = world_T_cam[t].astype(np.float64)
    R, tr = P[:, :3, :3], P[:, :3, 3]
    Xc = np.einsum("nji,nj->ni", R, xyz[t, n].astype(np.float64) - tr)  # R^T (X - t)
    uvw = np.einsum("nij,nj->ni", K[t].astype(np.float64), Xc)
    with np.errstate(divide="ignore", invalid="ignore"):
        proj = uvw[:, :2] / uvw[:, 2:3]
        err = np.linalg.norm(proj - uv[t, n], axis=-1)
    err[~(Xc[:, 2] > 0)] = np.inf  # behind the camera: certainly wrong
    return err
