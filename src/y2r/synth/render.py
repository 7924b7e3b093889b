"""Render a scene to frames plus exact ground truth (depth, poses, masks, 3D point tracks).

Per frame, colour is the average of ``supersample^2`` rays per pixel (or, with motion blur, of
sub-frame renders at staggered times and sub-pixel offsets); depth, masks and tracks are evaluated at
pixel centres / exact sub-pixel positions at the frame time, so they are exact (depth up to its
rounding to ``depth_quantum``).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from y2r.errors import UsageError
from y2r.geometry import focal_from_fov, intrinsics_matrix, invert_se3
from y2r.synth.clip import SynthClip
from y2r.synth.motions import Slide
from y2r.synth.raycast import BACK, FLOOR, LEFT, RIGHT, BoxAt, Hits, RoomAt, cast, local_points
from y2r.synth.scene import SCENES, SceneSpec
from y2r.synth.textures import Material, make_material

FACES = ("+x", "-x", "+y", "-y", "+z", "-z")
# A tracked point is visible when the first hit along its own ray is the point itself. Its own
# surface is found again to ~1e-15 relative; anything in front is macroscopically closer.
_VISIBLE_REL_TOL = 1e-9


# Hue of each material relative to the seed's base hue: surfaces that meet (floor and walls, cubes
# and floor) get clearly different hues, so corners and silhouettes have colour contrast too.
_HUE_OFFSET = {"floor": 0.0, "back_wall": 0.3, "left_wall": 0.62, "right_wall": 0.8, "front_wall": 0.15,
               "occluder": 0.4}
_CUBE_HUE_OFFSET, _CUBE_HUE_STEP = 0.5, 0.13
_MAX_SURFACES = 127  # track_surface is int8


@dataclass(frozen=True)
class _Box:
    half: np.ndarray  # (3,)
    motion: Slide
    first_id: int
    material: str
    is_cube: bool

    def room_T_box(self, t: np.ndarray) -> np.ndarray:
        return self.motion.room_T_object(t, lift=float(self.half[2]))


class _Scene:
    """A SceneSpec made concrete for one seed: surface ids, materials, boxes, lighting."""

    def __init__(self, spec: SceneSpec, seed: int):
        if not spec.cubes:
            raise UsageError(f"scene {spec.name!r} has no cube; the ground truth needs at least one")
        self.spec = spec
        self.seed = int(seed)
        self._base_hue = float(np.random.default_rng([self.seed, 0]).random())
        self._materials: dict[str, Material] = {}
        self._material_style: dict[str, tuple[str, float]] = {}
        names = ["floor", "back_wall", "left_wall", "right_wall"]
        material = list(names)
        owner = [-1, -1, -1, -1]
        for m in names + ["front_wall"]:
            self._material_style[m] = (spec.room.texture, 1.0)
        self.boxes: list[_Box] = []
        for k, cube in enumerate(spec.cubes):
            key = f"cube{k}"
            self._material_style[key] = (cube.texture, 0.3)
            prefix = "cube" if k == 0 else f"cube{k}"
            self.boxes.append(_Box(np.full(3, cube.size / 2), cube.motion, len(names), key, True))
            names += [f"{prefix}_{f}" for f in FACES]
            material += [key] * 6
            owner += [k] * 6
        self.front_id = len(names)
        names.append("front_wall")
        material.append("front_wall")
        owner.append(-1)
        self.occluder_box: int | None = None
        if spec.occluder is not None:
            self._material_style["occluder"] = (spec.occluder.texture, 0.3)
            self.occluder_box = len(self.boxes)
            self.boxes.append(_Box(np.asarray(spec.occluder.size, dtype=np.float64) / 2, spec.occluder.motion,
                                   len(names), "occluder", False))
            names += [f"occluder_{f}" for f in FACES]
            material += ["occluder"] * 6
            owner += [self.occluder_box] * 6
        if len(names) > _MAX_SURFACES:
            raise UsageError(f"scene {spec.name!r} has {len(names)} surfaces; at most {_MAX_SURFACES}")
        self.names = np.array(names)
        self.surface_material = material
        self.surface_owner = np.array(owner)
        S = len(names)
        self.is_moving_surface = np.zeros(S, dtype=bool)
        self.is_occluder_surface = np.zeros(S, dtype=bool)
        self.is_static_surface = self.surface_owner < 0
        for b in self.boxes:
            sl = slice(b.first_id, b.first_id + 6)
            if not b.is_cube:
                self.is_occluder_surface[sl] = True
            elif b.motion.moves:
                self.is_moving_surface[sl] = True
            else:
                self.is_static_surface[sl] = True
        light = np.asarray(spec.light_dir, dtype=np.float64)
        self.light = light / np.linalg.norm(light)
        self.room_normals = {FLOOR: (0, 0, 1), BACK: (0, -1, 0), LEFT: (1, 0, 0), RIGHT: (-1, 0, 0),
                             self.front_id: (0, 1, 0)}

    def material(self, key: str) -> Material:
        """The material called ``key``, made on first use.

        Each material has its own random stream (seed, name), so a material does not change when
        other objects are added to a scene, and unseen surfaces cost nothing.
        """
        mat = self._materials.get(key)
        if mat is None:
            style, scale = self._material_style[key]
            rng = np.random.default_rng([self.seed, zlib.crc32(key.encode())])
            if key.startswith("cube"):
                offset = _CUBE_HUE_OFFSET + _CUBE_HUE_STEP * int(key[4:])
            else:
                offset = _HUE_OFFSET[key]
            hue = self._base_hue + offset + float(rng.uniform(-0.04, 0.04))
            mat = self._materials[key] = make_material(rng, style=style, scale=scale, hue=hue)
        return mat

    # --------------------------------------------------------------------------------- poses
    def room_T_boxes(self, t: np.ndarray) -> np.ndarray:
        """(n,B,4,4) pose of every box at times ``t`` (n,)."""
        return np.stack([b.room_T_box(t) for b in self.boxes], axis=1)

    def geometry(self, room_T_cam: np.ndarray, room_T_boxes: np.ndarray) -> tuple[RoomAt, list[BoxAt]]:
        room = self.spec.room
        ra = RoomAt(room_T_cam, room.x_half, room.y_back, room.y_front, self.front_id)
        boxes = [BoxAt(invert_se3(T) @ room_T_cam, b.half, b.first_id)
                 for b, T in zip(self.boxes, room_T_boxes)]
        return ra, boxes

    def shading(self, room_T_boxes: np.ndarray) -> np.ndarray:
        """Lambertian factor per surface (S,) float32: ambient + diffuse * max(0, n.l)."""
        normals = np.zeros((len(self.names), 3))
        for sid, n in self.room_normals.items():
            normals[sid] = n
        for b, T in zip(self.boxes, room_T_boxes):
            for f in range(6):
                normals[b.first_id + f] = T[:3, f // 2] * (1.0 if f % 2 == 0 else -1.0)
        lam = np.maximum(normals @ self.light, 0.0)
        return (self.spec.ambient + self.spec.diffuse * lam).astype(np.float32)

    # -------------------------------------------------------------------------------- colour
    def colour(self, room: RoomAt, boxes: list[BoxAt], shade: np.ndarray, x: np.ndarray,
               y: np.ndarray, hits: Hits | None = None) -> np.ndarray:
        """Shaded colour (n,3) float32 of the rays (x, y, 1) (camera frame); ``hits`` if cast already."""
        if hits is None:
            hits = cast(room, boxes, x, y)
        out = np.empty((x.shape[0], 3), dtype=np.float32)
        order = np.argsort(hits.surface, kind="stable")
        counts = np.bincount(hits.surface, minlength=len(self.names))
        start = 0
        for sid, c in enumerate(counts):
            if c == 0:
                continue
            rows = order[start:start + c]
            start += c
            a, b = self._surface_coords(sid, room, boxes, x[rows], y[rows], hits.depth[rows])
            mat = self.material(self.surface_material[sid])
            out[rows] = mat.albedo(a, b) * shade[sid]
        return out

    def _surface_coords(self, sid: int, room: RoomAt, boxes: list[BoxAt], x: np.ndarray, y: np.ndarray,
                        s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """2D texture coordinates (m) of hits in the frame of the surface's owner."""
        owner = self.surface_owner[sid]
        if owner < 0:
            T = room.room_T_cam
            axes = {FLOOR: (0, 1), BACK: (0, 2), self.front_id: (0, 2)}.get(sid, (1, 2))
            offset = 0.0
        else:
            T = boxes[owner].box_T_cam
            face = sid - boxes[owner].first_id
            axes = [(1, 2), (0, 2), (0, 1)][face // 2]
            offset = 1.37 * face  # different faces show different parts of the pattern
        p0, p1 = local_points(T, x, y, s, axes)
        return p0 + offset, p1 + 0.61 * offset


def _resolve(scene: str | SceneSpec) -> SceneSpec:
    if isinstance(scene, SceneSpec):
        return scene
    try:
        return SCENES[scene]
    except KeyError:
        raise UsageError(f"unknown synthetic scene {scene!r}; choose one of {', '.join(SCENES)}") from None


def _pixel_rays(K: np.ndarray, width: int, height: int, offsets: list[tuple[float, float]],
                dtype: type = np.float64) -> tuple[np.ndarray, np.ndarray]:
    """x, y of the camera rays ``K^-1 [u + ox, v + oy, 1]``, (len(offsets) * H * W,), offset-major."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    xs = [(u.ravel() + ox - K[0, 2]) / K[0, 0] for ox, _ in offsets]
    ys = [(v.ravel() + oy - K[1, 2]) / K[1, 1] for _, oy in offsets]
    return np.concatenate(xs).astype(dtype), np.concatenate(ys).astype(dtype)


class _Supersampler:
    """Box-filtered supersampling of a frame whose pixel-centre colours are known."""

    # Pixels whose centre colour differs from a 4-neighbour's by more than this get all samples.
    EDGE = 2.0 / 255.0

    def __init__(self, K: np.ndarray, W: int, H: int, offsets: list[tuple[float, float]], adaptive: bool):
        self.W, self.H, self.adaptive = W, H, adaptive
        # With an odd grid the centre is one of the samples, and it is already rendered.
        self.centre_is_sample = (0.0, 0.0) in offsets
        rest = [o for o in offsets if o != (0.0, 0.0)]
        self.n = len(offsets)
        self.dx = np.array([o[0] / K[0, 0] for o in rest], dtype=np.float32)
        self.dy = np.array([o[1] / K[1, 1] for o in rest], dtype=np.float32)
        x, y = _pixel_rays(K, W, H, [(0.0, 0.0)], np.float32)
        self.x, self.y = x, y

    def __call__(self, ctx: _Scene, geom: tuple[RoomAt, list[BoxAt]], shade: np.ndarray, centre: np.ndarray,
                 surface: np.ndarray) -> np.ndarray:
        if self.dx.size == 0:
            return centre
        px = self._edge_pixels(centre, surface) if self.adaptive else np.arange(centre.shape[0])
        if px.size == 0:
            return centre
        xs = (self.x[px][None, :] + self.dx[:, None]).ravel()
        ys = (self.y[px][None, :] + self.dy[:, None]).ravel()
        sub = ctx.colour(*geom, shade, xs, ys).reshape(self.dx.size, px.size, 3)
        acc = sub[0].copy()
        for k in range(1, self.dx.size):
            acc += sub[k]
        if self.centre_is_sample:
            acc += centre[px]
        out = centre.copy()
        out[px] = acc / self.n
        return out

    def _edge_pixels(self, centre: np.ndarray, surface: np.ndarray) -> np.ndarray:
        surf = surface.reshape(self.H, self.W)
        dh = surf[:, 1:] != surf[:, :-1]
        dv = surf[1:] != surf[:-1]
        # Channel by channel on contiguous planes (a max over a trailing axis of 3 is slow).
        for c in range(3):
            plane = np.ascontiguousarray(centre[:, c]).reshape(self.H, self.W)
            dh |= np.abs(plane[:, 1:] - plane[:, :-1]) > self.EDGE
            dv |= np.abs(plane[1:] - plane[:-1]) > self.EDGE
        edge = np.zeros((self.H, self.W), dtype=bool)
        edge[:, 1:] |= dh
        edge[:, :-1] |= dh
        edge[1:] |= dv
        edge[:-1] |= dv
        return np.flatnonzero(edge)


def render(scene: str | SceneSpec, *, width: int = 320, height: int = 240, num_frames: int = 32,
           fps: float = 30.0, seed: int = 0, fov_deg: float | None = None, supersample: int = 2,
           num_tracks: int | None = None, depth_quantum: float = 2.0**-14,
           adaptive: bool = True) -> SynthClip:
    """Render a named scene of ``SCENES`` (or a ``SceneSpec``) with its exact ground truth.

    Colour is the mean of ``supersample x supersample`` samples per pixel (a box filter). With
    ``adaptive`` only pixels where the colour or the surface changes between pixel centres get the
    extra samples (the rest are flat, where more samples would return the same colour); it is ~2x
    faster and differs from full supersampling by a fraction of a grey level on average.
    Depth, masks and tracks are exact at pixel centres / track positions at the frame time.

    Deterministic: the same arguments give the same arrays. ``seed`` chooses the textures and the
    tracked points; the geometry and motions are those of the scene.
    """
    spec = _resolve(scene)
    if width < 2 or height < 2 or num_frames < 1 or fps <= 0 or supersample < 1:
        raise UsageError(f"bad render size/rate: {width}x{height}, {num_frames} frames, {fps} fps, "
                         f"supersample {supersample}")
    W, H, T = int(width), int(height), int(num_frames)
    f = focal_from_fov(W, spec.fov_deg if fov_deg is None else fov_deg)
    K = intrinsics_matrix(f, f, W / 2.0, H / 2.0)  # cx = W/2, cy = H/2: what ViPE reports
    ctx = _Scene(spec, seed)

    times = np.arange(T) / fps
    room_T_cam = spec.camera.room_T_cam(times)
    room_T_cam0 = spec.camera.room_T_cam(np.zeros(1))[0]
    world_T_room = invert_se3(room_T_cam0)  # the world frame is camera 0's frame
    c2w = world_T_room @ room_T_cam
    c2w[0] = np.eye(4)
    room_T_boxes = ctx.room_T_boxes(times)  # (T,B,4,4)
    _check_cameras_inside(ctx, spec, room_T_cam, room_T_boxes)
    boxes_to_world = world_T_room @ room_T_boxes
    room_T_world = room_T_cam0

    cx, cy = _pixel_rays(K, W, H, [(0.0, 0.0)])
    offs = [((i + 0.5) / supersample - 0.5, (j + 0.5) / supersample - 0.5)
            for j in range(supersample) for i in range(supersample)]
    n_sub = max(1, spec.blur_subframes)
    if n_sub > 1:
        # Colour samples in float32 (see raycast.py); depth and ground truth stay float64.
        sx, sy = _pixel_rays(K, W, H, offs, np.float32)
    else:
        sampler = _Supersampler(K, W, H, offs, adaptive)

    rgb = np.empty((T, H, W, 3), dtype=np.uint8)
    depth = np.empty((T, H, W), dtype=np.float32)
    moving_mask = np.empty((T, H, W), dtype=bool)
    occluder_mask = np.empty((T, H, W), dtype=bool)
    geoms = []
    for i in range(T):
        # Geometry from the stored (world-frame) ground truth, so that it is what the GT describes.
        room_T_boxes_i = room_T_world @ boxes_to_world[i]
        geom = ctx.geometry(room_T_world @ c2w[i], room_T_boxes_i)
        geoms.append(geom)
        hits = cast(*geom, cx, cy)
        s = hits.depth
        if depth_quantum > 0:
            s = np.round(s / depth_quantum) * depth_quantum
        depth[i] = s.reshape(H, W)
        moving_mask[i] = ctx.is_moving_surface[hits.surface].reshape(H, W)
        occluder_mask[i] = ctx.is_occluder_surface[hits.surface].reshape(H, W)
        if i == 0:
            surf0 = hits.surface
        if n_sub == 1:
            shade = ctx.shading(room_T_boxes_i)
            centre = ctx.colour(*geom, shade, cx, cy, hits)  # reuses the ground-truth cast
            acc = sampler(ctx, geom, shade, centre, hits.surface)
        else:
            acc = _blurred_colour(ctx, times[i], fps, sx, sy, len(offs))
        rgb[i] = np.clip(np.round(acc * 255.0), 0, 255).astype(np.uint8).reshape(H, W, 3)

    n_tracks = spec.num_tracks if num_tracks is None else int(num_tracks)
    tracks = _tracks(ctx, spec, K, W, H, c2w, boxes_to_world, geoms, surf0, n_tracks, seed)
    cube_ids = [k for k, b in enumerate(ctx.boxes) if b.is_cube]
    occ = ctx.occluder_box
    return SynthClip(
        rgb=rgb, depth=depth, K=K, c2w=c2w, **tracks,
        moving_mask=moving_mask, surface_names=ctx.names,
        cube_to_world=boxes_to_world[:, cube_ids[0]], cube_size=float(spec.cubes[0].size),
        room_to_world=world_T_room, depth_quantum=float(depth_quantum), fps=float(fps), seed=int(seed),
        motion=spec.name, scene=spec.name, occluder_mask=occluder_mask,
        cubes_to_world=boxes_to_world[:, cube_ids], cube_sizes=np.array([c.size for c in spec.cubes]),
        occluder_to_world=None if occ is None else boxes_to_world[:, occ],
        occluder_size=None if occ is None else np.asarray(spec.occluder.size, dtype=np.float64),
    )


def _blurred_colour(ctx: _Scene, t: float, fps: float, sx: np.ndarray, sy: np.ndarray, n_offsets: int
                    ) -> np.ndarray:
    """Colour of the frame at time ``t`` with motion blur, by distribution ray tracing.

    Sub-frame j is rendered at time t_j (spread evenly over the shutter, centred on ``t``) with
    sub-pixel offset j mod n_offsets: the sub-frames give both the blur and the anti-aliasing.
    """
    spec = ctx.spec
    n_sub = spec.blur_subframes
    n_px = sx.size // n_offsets
    acc = np.zeros((n_px, 3), dtype=np.float32)
    for j in range(n_sub):
        tj = np.array([t + spec.shutter / fps * ((j + 0.5) / n_sub - 0.5)])
        rb = ctx.room_T_boxes(tj)[0]
        geom = ctx.geometry(spec.camera.room_T_cam(tj)[0], rb)
        sl = slice((j % n_offsets) * n_px, (j % n_offsets + 1) * n_px)
        acc += ctx.colour(*geom, ctx.shading(rb), sx[sl], sy[sl])
    return acc / n_sub


def _check_cameras_inside(ctx: _Scene, spec: SceneSpec, room_T_cam: np.ndarray,
                          room_T_boxes: np.ndarray) -> None:
    """The ray caster assumes every camera is inside the room and outside every box."""
    eye = room_T_cam[:, :3, 3]
    r = spec.room
    inside = ((np.abs(eye[:, 0]) < r.x_half) & (eye[:, 1] > r.y_front) & (eye[:, 1] < r.y_back)
              & (eye[:, 2] > 0))
    if not inside.all():
        t = int(np.flatnonzero(~inside)[0])
        raise UsageError(f"scene {spec.name!r}: the camera leaves the room at frame {t} (room xyz {eye[t]})")
    for k, box in enumerate(ctx.boxes):
        local = np.einsum("tij,tj->ti", invert_se3(room_T_boxes[:, k])[:, :3, :3], eye) \
            + invert_se3(room_T_boxes[:, k])[:, :3, 3]
        inside_box = np.all(np.abs(local) <= box.half, axis=1)
        if inside_box.any():
            raise UsageError(f"scene {spec.name!r}: the camera is inside box {k} at frame "
                             f"{int(np.flatnonzero(inside_box)[0])}")


def _tracks(ctx: _Scene, spec: SceneSpec, K: np.ndarray, W: int, H: int, c2w: np.ndarray,
            boxes_to_world: np.ndarray, geoms: list, surf0: np.ndarray, n_tracks: int,
            seed: int) -> dict[str, np.ndarray]:
    """Pick surface points seen in frame 0 and follow them exactly through the clip."""
    rng = np.random.default_rng([int(seed), 0x7AC5])
    moving_px = np.flatnonzero(ctx.is_moving_surface[surf0])
    static_px = np.flatnonzero(ctx.is_static_surface[surf0])
    n_moving = min(int(round(n_tracks * spec.moving_fraction)), moving_px.size)
    # Candidates at random sub-pixel positions, twice as many as needed: the jitter can move a
    # sample onto another surface, and static points top up when the moving cube is too small.
    picks = [rng.choice(moving_px, size=min(moving_px.size, 2 * n_moving), replace=False),
             rng.choice(static_px, size=min(static_px.size, 2 * n_tracks), replace=False)]
    pix = np.concatenate(picks)
    uv0 = np.stack([pix % W, pix // W], axis=-1) + rng.uniform(-0.5, 0.5, size=(pix.size, 2))
    uv0 = np.clip(uv0, 0.0, [W - 1, H - 1])
    x0 = (uv0[:, 0] - K[0, 2]) / K[0, 0]
    y0 = (uv0[:, 1] - K[1, 2]) / K[1, 1]
    hits = cast(*geoms[0], x0, y0)
    from_moving = np.arange(pix.size) < picks[0].size
    keep_moving = np.flatnonzero(from_moving & ctx.is_moving_surface[hits.surface])[:n_moving]
    keep_static = np.flatnonzero(~from_moving & ctx.is_static_surface[hits.surface])
    keep = np.concatenate([keep_moving, keep_static[:n_tracks - keep_moving.size]])
    keep = keep[rng.permutation(keep.size)]  # interleave moving and static points
    X0 = hits.depth[keep, None] * np.stack([x0[keep], y0[keep], np.ones(keep.size)], -1)  # camera 0 = world
    surface = hits.surface[keep]
    owner = ctx.surface_owner[surface]
    cube_index = {b: k for k, b in enumerate(b for b, box in enumerate(ctx.boxes) if box.is_cube)}
    track_cube = np.array([cube_index.get(int(o), -1) for o in owner], dtype=np.int8)

    T, N = c2w.shape[0], keep.size
    X = np.broadcast_to(X0, (T, N, 3)).copy()
    for n in np.flatnonzero(owner >= 0):
        local = invert_se3(boxes_to_world[0, owner[n]]) @ np.append(X0[n], 1.0)
        X[:, n] = (boxes_to_world[:, owner[n]] @ local)[:, :3]
    cam_T_world = invert_se3(c2w)
    Xc = np.einsum("tij,tnj->tni", cam_T_world[:, :3, :3], X) + cam_T_world[:, None, :3, 3]
    z = Xc[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = np.stack([K[0, 0] * Xc[..., 0] / z + K[0, 2], K[1, 1] * Xc[..., 1] / z + K[1, 2]], axis=-1)
    visible = (z > 0) & (uv[..., 0] >= 0) & (uv[..., 0] <= W - 1) & (uv[..., 1] >= 0) & (uv[..., 1] <= H - 1)
    for t in range(T):
        rows = np.flatnonzero(visible[t])
        if rows.size:
            zt = z[t, rows]
            h = cast(*geoms[t], Xc[t, rows, 0] / zt, Xc[t, rows, 1] / zt)  # each point's own ray
            visible[t, rows] = h.depth >= z[t, rows] * (1.0 - _VISIBLE_REL_TOL)
    return {"track_xyz_world": X, "track_uv": uv, "track_visible": visible,
            "track_is_moving": ctx.is_moving_surface[surface], "track_surface": surface.astype(np.int8),
            "track_cube": track_cube}
