"""Vectorised ray casting against the room (inside of a box) and oriented boxes.

A ray is given in the camera frame by the two arrays ``x, y`` of ``d = K^-1 [u, v, 1] = (x, y, 1)``.
With ``d_z = 1`` the ray parameter of a hit *is* its z-depth: ``X_cam = s d``. Each piece of
geometry is cast in its own frame (``local_T_cam`` per frame), which keeps the maths axis-aligned.

Precision follows the rays: float64 rays for depth and ground truth, float32 rays for colour samples
(4x faster, and texture coordinates only need micrometres). Transform entries are turned into Python
floats so that numpy's promotion rules keep the rays' dtype.

Surface ids: the room's surfaces and each box's six faces (+x, -x, +y, -y, +z, -z of the box's own
frame) have consecutive ids; ``render._Scene`` lays them out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Room surface ids, in the fixture's order (the front wall's id comes after the cubes').
FLOOR, BACK, LEFT, RIGHT = 0, 1, 2, 3
CHUNK = 32768  # rays per vectorised batch (see `cast`)


@dataclass(frozen=True)
class RoomAt:
    """The room at one instant, seen from one camera."""

    room_T_cam: np.ndarray  # (4,4)
    x_half: float
    y_back: float
    y_front: float
    front_id: int  # surface id of the front wall


@dataclass(frozen=True)
class BoxAt:
    """An oriented box at one instant, seen from one camera."""

    box_T_cam: np.ndarray  # (4,4)
    half: np.ndarray  # (3,) half extents
    first_id: int  # surface id of its +x face; faces follow as +x, -x, +y, -y, +z, -z


@dataclass(frozen=True)
class Hits:
    depth: np.ndarray  # (n,) ray parameter = z-depth (d_z = 1), dtype of the rays
    surface: np.ndarray  # (n,) int16 surface id


def local_rays(T: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[list[float], list[np.ndarray]]:
    """Origin and direction components of the rays (x, y, 1) in the frame of ``T`` (local_T_cam).

    Written out instead of ``d @ R.T``: a (n,3)x(3,3) matmul is many times slower than three fused
    multiply-adds, and it would force float64.
    """
    R = T[:3, :3].tolist()
    return T[:3, 3].tolist(), [R[k][0] * x + R[k][1] * y + R[k][2] for k in range(3)]


def local_points(T: np.ndarray, x: np.ndarray, y: np.ndarray, s: np.ndarray, axes: tuple[int, ...]
                 ) -> list[np.ndarray]:
    """Coordinates ``axes`` of the hit points ``s (x, y, 1)`` in the frame of ``T``."""
    R = T[:3, :3].tolist()
    t = T[:3, 3].tolist()
    return [t[k] + s * (R[k][0] * x + R[k][1] * y + R[k][2]) for k in axes]


def cast_room(room: RoomAt, x: np.ndarray, y: np.ndarray) -> Hits:
    """Exit point of rays from a camera inside the room: the nearest wall or floor in front."""
    o, (Dx, Dy, Dz) = local_rays(room.room_T_cam, x, y)
    with np.errstate(divide="ignore", invalid="ignore"):
        # The camera is strictly inside, so of the two walls across an axis one is ahead (s > 0) and
        # one behind (s < 0): the larger parameter is the wall the ray meets. A ray parallel to the
        # walls gives +-inf, and so never meets them.
        sx = np.maximum((room.x_half - o[0]) / Dx, (-room.x_half - o[0]) / Dx)
        sy = np.maximum((room.y_back - o[1]) / Dy, (room.y_front - o[1]) / Dy)
        s = -o[2] / Dz
    s[~(Dz < 0)] = np.inf  # the room is open upwards: only downward rays meet the floor
    surface = np.full(x.shape[0], FLOOR, dtype=np.int16)
    take = sy < s
    surface[take] = np.where(Dy[take] > 0, BACK, room.front_id)
    s = np.where(take, sy, s)
    take = sx < s
    surface[take] = np.where(Dx[take] > 0, RIGHT, LEFT)
    s = np.where(take, sx, s)
    return Hits(depth=s, surface=surface)


def _box_candidates(box: BoxAt, x: np.ndarray, y: np.ndarray) -> np.ndarray | None:
    """Indices of rays inside the box's projected bounding rectangle.

    ``None`` means "all rays" (a corner is behind the camera, so the rectangle is unbounded).
    Boxes cover a small part of the image, so this saves most of the slab tests.
    """
    h = box.half
    corners = np.array([[sx * h[0], sy * h[1], sz * h[2]] for sx in (-1, 1) for sy in (-1, 1)
                        for sz in (-1, 1)])
    R = box.box_T_cam[:3, :3]
    corners_cam = (corners - box.box_T_cam[:3, 3]) @ R  # row form of R^T (X_box - t)
    if np.any(corners_cam[:, 2] <= 1e-6):
        return None
    xy = corners_cam[:, :2] / corners_cam[:, 2:3]
    lo = xy.min(axis=0).tolist()
    hi = xy.max(axis=0).tolist()
    return np.flatnonzero((x >= lo[0]) & (x <= hi[0]) & (y >= lo[1]) & (y <= hi[1]))


def cast_box(box: BoxAt, x: np.ndarray, y: np.ndarray, hits: Hits) -> None:
    """Slab test; where the box is hit in front of ``hits``, replace the hit (in place)."""
    rows = _box_candidates(box, x, y)
    if rows is not None:
        if rows.size == 0:
            return
        x, y = x[rows], y[rows]
    o, D = local_rays(box.box_T_cam, x, y)
    h = box.half.tolist()
    tnear = tfar = None
    tmins = []
    with np.errstate(divide="ignore", invalid="ignore"):
        for k in range(3):
            t1 = (-h[k] - o[k]) / D[k]
            t2 = (h[k] - o[k]) / D[k]
            lo = np.minimum(t1, t2)
            hi = np.maximum(t1, t2)
            tmins.append(lo)
            tnear = lo if tnear is None else np.maximum(tnear, lo)
            tfar = hi if tfar is None else np.minimum(tfar, hi)
    current = hits.depth if rows is None else hits.depth[rows]
    # Cameras are never inside a box, so a hit is an entry in front of the camera.
    idx = np.flatnonzero((tnear <= tfar) & (tnear > 0) & (tnear < current))
    if idx.size == 0:
        return
    near = tnear[idx]
    # The entry face is on the axis whose slab is entered last; entering through the +axis face
    # means travelling towards -axis.
    axis = np.where(tmins[0][idx] == near, 0, np.where(tmins[1][idx] == near, 1, 2))
    d_axis = np.choose(axis, [D[0][idx], D[1][idx], D[2][idx]])
    surf = box.first_id + 2 * axis + (d_axis > 0)
    target = idx if rows is None else rows[idx]
    hits.depth[target] = near
    hits.surface[target] = surf.astype(np.int16)


def cast(room: RoomAt, boxes: list[BoxAt], x: np.ndarray, y: np.ndarray) -> Hits:
    """First hit of every ray (x, y, 1) in the camera frame."""
    n = x.shape[0]
    if n <= CHUNK:
        return _cast_chunk(room, boxes, x, y)
    # In chunks: numpy temporaries of a whole frame fall out of cache and are mmap'd afresh for
    # every operation, which makes element-wise maths several times slower.
    depth = np.empty(n, dtype=x.dtype)
    surface = np.empty(n, dtype=np.int16)
    for a in range(0, n, CHUNK):
        sl = slice(a, a + CHUNK)
        h = _cast_chunk(room, boxes, x[sl], y[sl])
        depth[sl] = h.depth
        surface[sl] = h.surface
    return Hits(depth=depth, surface=surface)


def _cast_chunk(room: RoomAt, boxes: list[BoxAt], x: np.ndarray, y: np.ndarray) -> Hits:
    hits = cast_room(room, x, y)
    for box in boxes:
        cast_box(box, x, y, hits)
    return hits
