"""Each kind of corruption is reported once, on the right dataset path, in one line."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from y2r.dataset.validate import validate_episode, validate_path
from y2r.errors import UsageError


def corrupt(src: Path, tmp: Path, edit: Callable[[h5py.File], None]) -> Path:
    dst = tmp / f"corrupt-{edit.__name__}.h5"
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        edit(f)
    return dst


def replace(f: h5py.File, path: str, data: np.ndarray, **kw) -> None:
    attrs = dict(f[path].attrs)
    del f[path]
    ds = f.create_dataset(path, data=data, **kw)
    for k, v in attrs.items():
        ds.attrs[k] = v


def problems(p: Path) -> list[str]:
    return [str(x) for x in validate_episode(p)]


def test_valid_episode_has_no_problems(episode):
    assert validate_episode(episode) == []
    assert validate_path(episode) == {str(episode): []}


def test_directory_and_out_root(out_root):
    res = validate_path(out_root)
    assert sorted(Path(k).name for k in res) == ["clip0.h5", "clip1.h5", "clip2.h5"]
    assert all(v == [] for v in res.values())
    with pytest.raises(UsageError):
        validate_path(out_root / "missing")


def _wrong_dtype(f):
    replace(f, "camera/K", f["camera/K"][()].astype(np.float64))


def _nan_where_valid(f):
    j = f["hands/right/joints_cam"]
    v = f["hands/right/valid"][()]
    t = int(np.flatnonzero(v)[0])
    data = j[()]
    data[t, 3, 1] = np.nan
    j[...] = data


def _not_nan_where_invalid(f):
    v = f["hands/left/valid"][()]
    t = int(np.flatnonzero(~v)[0])
    f["hands/left/keypoints_2d"][t] = np.zeros((21, 2), np.float32)


def _non_orthonormal_pose(f):
    P = f["camera/world_T_cam"][()]
    P[3, :3, :3] *= 1.1
    f["camera/world_T_cam"][...] = P


def _bad_last_row(f):
    P = f["camera/world_T_cam"][()]
    P[2, 3, 0] = 0.5
    f["camera/world_T_cam"][...] = P


def _missing_attr(f):
    del f["camera/world_T_cam"].attrs["metric_scale"]


def _missing_root_attr(f):
    del f.attrs["source_sha256"]


def _wrong_attr_type(f):
    f.attrs["num_frames"] = "eight"


def _wrong_shape(f):
    replace(f, "tracks/uv", f["tracks/uv"][()][:, :4])


def _missing_member(f):
    del f["depth/valid"]


def _extra_dataset(f):
    f.create_dataset("tracks/colour", data=np.zeros(3))


def _time_not_increasing(f):
    ts = f["time/timestamp"][()]
    ts[5] = ts[4]
    f["time/timestamp"][...] = ts


def _negative_focal(f):
    K = f["camera/K"][()]
    K[2, 0, 0] = -K[2, 0, 0]
    f["camera/K"][...] = K


def _depth_nonzero_where_invalid(f):
    f["depth/depth"][0, 0, 0] = np.float16(1.5)  # (0,0) is in the sample's invalid hole


def _depth_negative(f):
    f["depth/depth"][2, 20, 20] = np.float16(-1.0)


def _visible_outside(f):
    uv = f["tracks/uv"][()]
    vis = f["tracks/visible"][()]
    t, n = np.argwhere(vis)[0]
    uv[t, n] = [500.0, 10.0]
    f["tracks/uv"][...] = uv


def _partial_nan_xyz(f):
    xyz = f["tracks/xyz_world"][()]
    xyz[0, 0, 2] = np.nan
    f["tracks/xyz_world"][...] = xyz


def _inverted_poses(f):
    from y2r.geometry import invert_se3

    f["camera/world_T_cam"][...] = invert_se3(f["camera/world_T_cam"][()]).astype(np.float32)


def _wrong_joint_order(f):
    f["hands/left/joints_cam"].attrs["joint_order"] = np.array(["a"] * 21, dtype=h5py.string_dtype())


def _rgb_not_chunked_per_frame(f):
    replace(f, "rgb", f["rgb"][()], chunks=(2, 48, 64, 3), compression="gzip")


def _rgb_uncompressed(f):
    replace(f, "rgb", f["rgb"][()], chunks=(1, 48, 64, 3))


def _wrist_behind_camera(f):
    j = f["hands/right/joints_cam"][()]
    v = f["hands/right/valid"][()]
    j[v] *= np.array([1, 1, -1], np.float32)
    f["hands/right/joints_cam"][...] = j


CASES = [
    (_wrong_dtype, "/camera/K", "dtype float64, expected float32"),
    (_nan_where_valid, "/hands/right/joints_cam", "valid frames with NaN"),
    (_not_nan_where_invalid, "/hands/left/keypoints_2d", "not valid but not NaN"),
    (_non_orthonormal_pose, "/camera/world_T_cam", "not orthonormal"),
    (_bad_last_row, "/camera/world_T_cam", "last row is not [0 0 0 1]"),
    (_missing_attr, "/camera/world_T_cam", "missing attr 'metric_scale'"),
    (_missing_root_attr, "/", "missing attr 'source_sha256'"),
    (_wrong_attr_type, "/", "attr 'num_frames' must be an integer"),
    (_wrong_shape, "/tracks/uv", "shape (8, 4, 2), expected (T,N,2) = (8, 5, 2)"),
    (_missing_member, "/depth/valid", "missing (part 'depth' is present"),
    (_extra_dataset, "/tracks/colour", "unexpected dataset"),
    (_time_not_increasing, "/time/timestamp", "not strictly increasing (first at t=5)"),
    (_negative_focal, "/camera/K", "without positive focal lengths fx, fy (first at t=2)"),
    (_depth_nonzero_where_invalid, "/depth/depth", "non-zero values where depth/valid is false"),
    (_depth_negative, "/depth/depth", "negative values (first at t=2)"),
    (_visible_outside, "/tracks/visible", "uv outside the 64x48 image"),
    (_partial_nan_xyz, "/tracks/xyz_world", "partly NaN"),
    (_inverted_poses, "/tracks/xyz_world", "pose inverted?"),
    (_wrong_joint_order, "/hands/left/joints_cam", "attr 'joint_order' is"),
    (_rgb_not_chunked_per_frame, "/rgb", "chunks (2, 48, 64, 3), expected (1, 48, 64, 3)"),
    (_rgb_uncompressed, "/rgb", "compression none, expected gzip"),
    (_wrist_behind_camera, "/hands/right/joints_cam", "wrist behind the camera"),
]


@pytest.mark.parametrize("edit,where,text", CASES, ids=[c[0].__name__.strip("_") for c in CASES])
def test_corruption_is_reported_on_its_path(episode, tmp_path, edit, where, text):
    bad = corrupt(episode, tmp_path, edit)
    found = problems(bad)
    hits = [p for p in found if p.startswith(f"{bad}: {where}: ") and text in p]
    assert hits, f"expected '{where}: ...{text}...' in {found}"
    assert all("\n" not in p for p in found)


def test_negative_depth_is_its_only_problem(episode, tmp_path):
    """A targeted corruption does not cascade into unrelated reports."""
    bad = corrupt(episode, tmp_path, _depth_negative)
    assert problems(bad) == [f"{bad}: /depth/depth: 1 pixels with negative values (first at t=2)"]


def test_version_mismatch_stops_with_advice(episode, tmp_path):
    def newer(f):
        f.attrs["schema_version"] = np.int64(2)

    bad = corrupt(episode, tmp_path, newer)
    assert problems(bad) == [
        f"{bad}: /: episode schema v2 is newer than this y2r reads (v1); upgrade y2r (pip install -U y2r)"
    ]


def test_not_hdf5(tmp_path):
    p = tmp_path / "x.h5"
    p.write_bytes(b"not an hdf5 file")
    (msg,) = problems(p)
    assert msg.startswith(f"{p}: /: cannot open as HDF5")


def test_corrupt_rgb_chunk_is_found_without_loading_everything(episode, tmp_path):
    """Overwrite bytes inside a compressed rgb chunk: reading it must fail and be reported."""
    bad = tmp_path / "bytes.h5"
    shutil.copy(episode, bad)
    with h5py.File(bad) as f:
        off = f["rgb"].id.get_chunk_info(3).byte_offset
    with open(bad, "r+b") as fh:
        fh.seek(off + 20)
        fh.write(b"\xff" * 64)
    assert any(p.startswith(f"{bad}: /rgb: unreadable data") for p in problems(bad))


def test_large_datasets_are_streamed_in_frame_blocks(episode, monkeypatch):
    from y2r.dataset import validate as v

    monkeypatch.setattr(v, "_BLOCK_BYTES", 2 * 48 * 64 * 3)  # two rgb frames per block
    with h5py.File(episode) as f:
        blocks = list(v._blocks(f["rgb"]))
    assert [a for a, _ in blocks] == [0, 2, 4, 6]
    assert all(b.shape == (2, 48, 64, 3) for _, b in blocks)
