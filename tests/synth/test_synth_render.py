"""Ground truth of the synthetic renderer, checked against independent geometry."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from shared_data import ROOM_ORBIT_GT

from y2r.geometry import bilinear, invert_se3
from y2r.synth import SCENES, SynthClip, load_gt, render

FIXTURE = ROOM_ORBIT_GT
W, H = 160, 120


@pytest.fixture(scope="module")
def clips() -> dict[str, SynthClip]:
    out = {name: render(name, width=W, height=H, num_frames=16, seed=3) for name in ("orbit", "pan")}
    out["occluder"] = render("occluder", width=W, height=H, num_frames=32, seed=1, supersample=1)
    return out


def _project(clip: SynthClip) -> tuple[np.ndarray, np.ndarray]:
    """Independent reprojection of the world tracks: (uv (T,N,2), z (T,N))."""
    cam_T_world = np.linalg.inv(clip.c2w)
    Xh = np.concatenate([clip.track_xyz_world, np.ones(clip.track_xyz_world.shape[:2] + (1,))], -1)
    Xc = np.einsum("tij,tnj->tni", cam_T_world, Xh)[..., :3]
    uvw = Xc @ clip.K.T
    return uvw[..., :2] / uvw[..., 2:], Xc[..., 2]


def _pixel_rays(clip: SynthClip) -> np.ndarray:
    """K^-1 [u, v, 1] at every pixel centre (H,W,3)."""
    v, u = np.mgrid[0:clip.height, 0:clip.width].astype(float)
    return np.stack([(u - clip.K[0, 2]) / clip.K[0, 0], (v - clip.K[1, 2]) / clip.K[1, 1], np.ones_like(u)], -1)


def _segment_hits_box(origin: np.ndarray, X: np.ndarray, world_T_box: np.ndarray,
                      size: np.ndarray) -> np.ndarray:
    """Does the open segment origin -> X (N,3) cross the box? (slab test in the box frame)."""
    box_T_world = np.linalg.inv(world_T_box)
    o = box_T_world[:3, :3] @ origin + box_T_world[:3, 3]
    d = X @ box_T_world[:3, :3].T + box_T_world[:3, 3] - o
    half = np.asarray(size) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (-half - o) / d
        t2 = (half - o) / d
    tnear = np.nanmax(np.minimum(t1, t2), axis=1)
    tfar = np.nanmin(np.maximum(t1, t2), axis=1)
    # Stop short of the point itself: a point on a face that faces the camera is entered at t = 1.
    return (tnear <= tfar) & (tnear > 1e-9) & (tnear < 1 - 1e-7)


def test_world_is_camera_zero_and_intrinsics(clips):
    for clip in clips.values():
        assert np.array_equal(clip.c2w[0], np.eye(4))
        f = (W / 2) / np.tan(np.deg2rad(60.0) / 2)
        np.testing.assert_allclose(clip.K, [[f, 0, W / 2], [0, f, H / 2], [0, 0, 1]], rtol=1e-12)
        # Poses are rigid.
        R = clip.c2w[:, :3, :3]
        np.testing.assert_allclose(R @ R.transpose(0, 2, 1), np.broadcast_to(np.eye(3), R.shape), atol=1e-12)
        # The room's up axis is the world's -y rotated by the initial pitch (camera looks down).
        up = clip.room_to_world[:3, 2]
        assert up[1] < -0.8


def test_tracks_reproject_exactly(clips):
    for clip in clips.values():
        uv, z = _project(clip)
        assert np.max(np.abs(uv - clip.track_uv)) < 1e-6
        assert clip.track_visible[0].all()
        inside = (uv[..., 0] >= 0) & (uv[..., 0] <= W - 1) & (uv[..., 1] >= 0) & (uv[..., 1] <= H - 1)
        assert not np.any(clip.track_visible & ~(inside & (z > 0)))


def test_depth_matches_visible_tracks(clips):
    for clip in clips.values():
        _, z = _project(clip)
        errs = []
        for t in range(clip.num_frames):
            vis = clip.track_visible[t]
            d = bilinear(clip.depth[t], clip.track_uv[t, vis])
            errs.append(np.abs(d - z[t, vis]) / z[t, vis])
        errs = np.concatenate(errs)
        assert np.median(errs) < 1e-3
        assert clip.depth.dtype == np.float32 and np.all(np.isfinite(clip.depth)) and clip.depth.min() > 0.5


def test_moving_mask_pixels_lie_on_the_cube(clips):
    clip = clips["pan"]
    rays = _pixel_rays(clip)
    for t in (0, clip.num_frames // 2, clip.num_frames - 1):
        m = clip.moving_mask[t]
        assert m.sum() > 50
        X_cam = rays[m] * clip.depth[t][m][:, None]
        X_cube = (invert_se3(clip.cube_to_world[t]) @ clip.c2w[t])
        X_cube = X_cam @ X_cube[:3, :3].T + X_cube[:3, 3]
        # On the surface of the cube: the largest |coordinate| is the half size (depth rounding 3e-5 m).
        np.testing.assert_allclose(np.abs(X_cube).max(axis=1), clip.cube_size / 2, atol=2e-4)
        # Non-moving pixels are off the moving cube.
        X_cam = rays[~m] * clip.depth[t][~m][:, None]
        X_cube = (invert_se3(clip.cube_to_world[t]) @ clip.c2w[t])
        X_cube = X_cam @ X_cube[:3, :3].T + X_cube[:3, 3]
        assert np.mean(np.abs(X_cube).max(axis=1) > clip.cube_size / 2 + 1e-3) > 0.99


def test_room_pixels_lie_on_room_planes(clips):
    clip = clips["orbit"]
    room_T_world = invert_se3(clip.room_to_world)
    rays = _pixel_rays(clip)
    room = SCENES["orbit"].room
    for t in (0, clip.num_frames - 1):
        T = room_T_world @ clip.c2w[t]
        P = (rays * clip.depth[t][..., None]) @ T[:3, :3].T + T[:3, 3]
        on_plane = ((np.abs(P[..., 2]) < 1e-3) | (np.abs(P[..., 1] - room.y_back) < 1e-3)
                    | (np.abs(np.abs(P[..., 0]) - room.x_half) < 1e-3))
        on_cubes = np.zeros_like(on_plane)
        for k in range(clip.cubes_to_world.shape[1]):
            Tk = invert_se3(clip.cubes_to_world[t, k]) @ clip.c2w[t]
            Q = (rays * clip.depth[t][..., None]) @ Tk[:3, :3].T + Tk[:3, 3]
            on_cubes |= np.abs(np.abs(Q).max(axis=-1) - clip.cube_sizes[k] / 2) < 1e-3
        assert np.all(on_plane | on_cubes)
        assert on_plane.mean() > 0.8


def test_moving_tracks_follow_the_cube(clips):
    for clip in clips.values():
        moving = clip.track_is_moving
        assert 0 < moving.sum() < moving.size
        for n in np.flatnonzero(moving):
            k = clip.track_cube[n]
            rel = invert_se3(clip.cubes_to_world[0, k]) @ np.append(clip.track_xyz_world[0, n], 1)
            expected = np.einsum("tij,j->ti", clip.cubes_to_world[:, k], rel)[:, :3]
            np.testing.assert_allclose(clip.track_xyz_world[:, n], expected, atol=1e-12)
        still = ~moving
        assert np.ptp(clip.track_xyz_world[:, still], axis=0).max() == 0
        # The cube does move in these scenes, so its points move too.
        moved = np.linalg.norm(clip.track_xyz_world[-1, moving] - clip.track_xyz_world[0, moving], axis=-1)
        assert moved.min() > 0.05
        names = clip.surface_names[clip.track_surface]
        assert all(name.startswith("cube") for name in names[moving])


def test_visibility_matches_independent_occlusion_test(clips):
    """Visible == in the image and no cube or occluder crosses the segment camera -> point."""
    for clip in clips.values():
        uv, z = _project(clip)
        inside = (uv[..., 0] >= 0) & (uv[..., 0] <= W - 1) & (uv[..., 1] >= 0) & (uv[..., 1] <= H - 1)
        inside &= z > 0
        by_occluder = np.zeros_like(inside)
        by_cube = np.zeros_like(inside)
        for t in range(clip.num_frames):
            o = clip.c2w[t, :3, 3]
            for k in range(clip.cubes_to_world.shape[1]):
                by_cube[t] |= _segment_hits_box(o, clip.track_xyz_world[t], clip.cubes_to_world[t, k],
                                                np.full(3, clip.cube_sizes[k]))
            if clip.occluder_to_world is not None:
                by_occluder[t] = _segment_hits_box(o, clip.track_xyz_world[t], clip.occluder_to_world[t],
                                                   clip.occluder_size)
        expected = inside & ~by_cube & ~by_occluder
        assert np.array_equal(clip.track_visible, expected)
    clip = clips["occluder"]
    hidden = by_occluder & inside
    # The pole sweeps across the view: several points are hidden by it, and seen again afterwards.
    assert hidden.any(axis=0).sum() >= 5
    assert not np.any(clip.track_visible[hidden])
    exposed_again = [n for n in np.flatnonzero(hidden.any(axis=0))
                     if clip.track_visible[np.flatnonzero(hidden[:, n]).max() + 1:, n].any()]
    assert len(exposed_again) >= 3
    # The occluder mask covers a thin band of the image while the pole is in view.
    assert 0 < clip.occluder_mask.mean() < 0.1


def test_deterministic_by_seed():
    a = render("pan", width=64, height=48, num_frames=4, seed=5)
    b = render("pan", width=64, height=48, num_frames=4, seed=5)
    c = render("pan", width=64, height=48, num_frames=4, seed=6)
    for f in dataclasses.fields(SynthClip):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            assert np.array_equal(x, y), f.name
        else:
            assert x == y, f.name
    assert not np.array_equal(a.rgb, c.rgb)
    assert not np.array_equal(a.track_xyz_world, c.track_xyz_world)
    np.testing.assert_array_equal(a.c2w, c.c2w)  # the seed changes textures and tracks, not motion


def test_every_scene_renders_with_sane_ground_truth():
    for name in SCENES:
        clip = render(name, width=64, height=48, num_frames=6, seed=0, supersample=1, num_tracks=16)
        assert clip.rgb.shape == (6, 48, 64, 3) and clip.rgb.dtype == np.uint8
        assert clip.track_xyz_world.shape == (6, 16, 3)
        assert clip.track_visible[0].all() and clip.motion == name
        assert clip.rgb.std() > 5


def test_rotation_scene_has_sub_millimetre_translation():
    clip = render("rotation", width=64, height=48, num_frames=40, seed=0, supersample=1)
    t = clip.c2w[:, :3, 3]
    assert np.linalg.norm(t, axis=1).max() < 1e-3
    # ... while it turns by many degrees.
    angle = np.rad2deg(np.arccos(np.clip((np.trace(clip.c2w[-1, :3, :3]) - 1) / 2, -1, 1)))
    assert angle > 10


def test_fast_blur_blurs_frames_but_not_ground_truth():
    spec = SCENES["fast_blur"]
    blurred = render(spec, width=W, height=H, num_frames=8, seed=2)
    sharp = render(dataclasses.replace(spec, blur_subframes=1), width=W, height=H, num_frames=8, seed=2)
    np.testing.assert_array_equal(blurred.c2w, sharp.c2w)
    np.testing.assert_array_equal(blurred.track_uv, sharp.track_uv)
    np.testing.assert_array_equal(blurred.depth, sharp.depth)

    def detail(rgb):
        g = rgb.astype(float).mean(-1)
        return np.abs(np.diff(g, axis=2)).mean()

    # Frame 0 is at rest (zero velocity at the start of the sweep); mid-sweep frames are fast.
    assert detail(blurred.rgb[4:]) < 0.8 * detail(sharp.rgb[4:])
    assert detail(blurred.rgb[:1]) > 0.9 * detail(sharp.rgb[:1])


def test_low_texture_has_little_detail():
    low = render("low_texture", width=W, height=H, num_frames=2, seed=0)
    rich = render("pan", width=W, height=H, num_frames=2, seed=0)
    grad = lambda rgb: np.abs(np.diff(rgb.astype(float).mean(-1), axis=2)).mean()  # noqa: E731
    assert grad(low.rgb) < 0.15 * grad(rich.rgb)
    np.testing.assert_array_equal(low.c2w, rich.c2w)


def test_gt_file_has_the_fixture_layout(tmp_path, clips):
    clip = clips["pan"]
    path = clip.save_gt(tmp_path / "pan_gt.npz")
    ours = np.load(path)
    # The fixture's sizes T=32, H=240, W=320, N=64, S=10 map to this clip's; everything else is equal.
    size = {32: clip.num_frames, 240: H, 320: W, 64: clip.track_uv.shape[1], 10: len(clip.surface_names)}
    with np.load(FIXTURE) as fx:
        for k in fx.files:
            assert k in ours.files, k
            assert ours[k].dtype.kind == fx[k].dtype.kind and ours[k].dtype.itemsize == fx[k].dtype.itemsize \
                or fx[k].dtype.kind == "U", k
            assert ours[k].shape == tuple(size.get(d, d) for d in fx[k].shape), k
    for clip in (clips["pan"], clips["occluder"]):
        back = load_gt(clip.save_gt(tmp_path / f"{clip.scene}.npz"))
        for f in dataclasses.fields(SynthClip):
            x, y = getattr(clip, f.name), getattr(back, f.name)
            if isinstance(x, np.ndarray):
                assert np.array_equal(x, y), f.name
            else:
                assert x == y, f.name
    assert back.occluder_to_world.shape == (32, 4, 4)
    assert repr(back) == "SynthClip(scene='occluder', seed=1, 32 frames of 160x120 at 30 fps, 64 tracks)"


def test_fixture_loads_and_follows_the_same_conventions():
    fx = load_gt(FIXTURE)
    assert fx.rgb.shape == (32, 240, 320, 3) and fx.motion == "orbit" and fx.seed == 7
    assert np.array_equal(fx.c2w[0], np.eye(4))
    np.testing.assert_allclose(fx.K[:2, 2], [160, 120])
    uv, _ = _project(fx)
    assert np.max(np.abs(uv - fx.track_uv)) < 1e-6
    assert fx.track_cube.tolist() == np.where(fx.track_is_moving, 0, -1).tolist()
    assert fx.cubes_to_world.shape == (32, 1, 4, 4) and not fx.occluder_mask.any()


@pytest.mark.parametrize("supersample", [2, 3])
def test_adaptive_supersampling_matches_full_supersampling(supersample):
    kw = dict(width=W, height=H, num_frames=2, seed=0, supersample=supersample)
    full = render("orbit", adaptive=False, **kw)
    adaptive = render("orbit", adaptive=True, **kw)
    one = render("orbit", **kw | {"supersample": 1})
    diff = np.abs(full.rgb.astype(int) - adaptive.rgb)
    assert diff.mean() < 0.1
    assert np.mean(diff > 2) < 0.005
    # ... while supersampling itself changes many pixels (edges are anti-aliased).
    assert np.mean(np.abs(full.rgb.astype(int) - one.rgb) > 2) > 0.1


def test_bad_scenes_are_usage_errors():
    from y2r.errors import UsageError
    from y2r.synth import Sweep

    with pytest.raises(UsageError, match="unknown synthetic scene"):
        render("nope")
    outside = dataclasses.replace(SCENES["pan"], camera=Sweep((0, -3, 1), (0, -3, 1), (0, 2, 0), (0, 2, 0)))
    with pytest.raises(UsageError, match="leaves the room"):
        render(outside, width=32, height=24, num_frames=2)
    in_cube = dataclasses.replace(SCENES["pan"], camera=Sweep((-0.05, 2.15, 0.1), (-0.05, 2.15, 0.1),
                                                              (0, 3, 0), (0, 3, 0)))
    with pytest.raises(UsageError, match="inside box"):
        render(in_cube, width=32, height=24, num_frames=2)
