"""The tracker against exact ground truth: the room_orbit fixture and a rendered occluder scene."""

import cv2
import numpy as np
import pytest

from y2r.evaluation.track_metrics import camera_depth, evaluate_tracks
from y2r.stages.tracks.camera_geometry import CameraModel
from y2r.stages.tracks.point_tracker import PointTracker


@pytest.fixture(scope="module")
def orbit(shared):
    z = np.load(shared / "fixtures" / "room_orbit_gt.npz")
    return {k: z[k] for k in ("rgb", "depth", "K", "c2w", "track_uv", "track_visible", "track_xyz_world",
                              "track_is_moving")}


def _gt_camera(g):
    T = len(g["rgb"])
    return CameraModel(K=np.tile(g["K"], (T, 1, 1)), world_T_cam=g["c2w"], depth=g["depth"],
                       depth_valid=g["depth"] > 0)


@pytest.fixture(scope="module")
def orbit_tracks(orbit):
    return PointTracker().track(orbit["rgb"], orbit["track_uv"][0], 0, _gt_camera(orbit))


def _metrics(g, tracks, query_t, sel=slice(None)):
    return evaluate_tracks(tracks.uv, tracks.visible, g["track_uv"][:, sel], g["track_visible"][:, sel],
                           query_t=np.full(tracks.uv.shape[1], query_t), pred_xyz=tracks.xyz_world,
                           gt_xyz=g["track_xyz_world"][:, sel], world_T_cam=g["c2w"])


def test_room_orbit_with_gt_camera_meets_the_accuracy_targets(orbit, orbit_tracks):
    m = _metrics(orbit, orbit_tracks, 0)
    # measured: median 0.05 px, p90 0.24 px, F1 0.98
    assert m.median_px < 0.25
    assert m.p90_px < 1.0
    assert m.vis_f1 > 0.95
    assert m.vis_precision > 0.98


def test_lifted_xyz_of_visible_static_points_is_within_2_percent_of_depth(orbit, orbit_tracks):
    g = orbit
    sel = g["track_visible"] & orbit_tracks.visible & ~g["track_is_moving"][None]
    rel = np.linalg.norm(orbit_tracks.xyz_world - g["track_xyz_world"], axis=-1) / camera_depth(
        g["track_xyz_world"], g["c2w"])
    assert sel.sum() > 1000
    assert (rel[sel] < 0.02).all()
    assert np.median(rel[sel]) < 0.002


def test_output_conventions(orbit, orbit_tracks):
    tr = orbit_tracks
    T, N = orbit["track_visible"].shape
    assert tr.uv.shape == (T, N, 2) and tr.visible.shape == (T, N) and tr.xyz_world.shape == (T, N, 3)
    # every point stays in front of the camera: a prediction exists everywhere, also when hidden
    assert np.isfinite(tr.uv).all()
    assert np.allclose(tr.uv[0], orbit["track_uv"][0]) and tr.visible[0].all()
    # hidden and not static: the 3D position is unknown
    assert np.isnan(tr.xyz_world[~tr.visible & ~tr.static]).all()
    assert np.isfinite(tr.xyz_world[tr.visible]).mean() > 0.98


def test_a_static_point_hidden_behind_the_cube_is_reacquired(orbit, orbit_tracks):
    # point 63 (back wall) is hidden behind the moving cube in frames 18-24 and visible after
    n = 63
    assert not orbit["track_visible"][18:25, n].any() and orbit["track_visible"][25:, n].all()
    assert not orbit_tracks.visible[19:24, n].any()
    assert orbit_tracks.visible[26:, n].all()
    err = np.linalg.norm(orbit_tracks.uv[:, n] - orbit["track_uv"][:, n], axis=-1)
    hidden = ~orbit_tracks.visible[:, n]
    assert err[hidden].max() < 0.1  # while hidden, its anchor's projection: exact with exact poses
    assert err.max() < 1.5  # near the cube's edge, before it is covered


def test_query_frame_in_the_middle_tracks_both_ways(orbit):
    qf = 15
    sel = np.flatnonzero(orbit["track_visible"][qf])
    tr = PointTracker().track(orbit["rgb"], orbit["track_uv"][qf, sel], qf, _gt_camera(orbit))
    m = _metrics(orbit, tr, qf, sel)
    assert m.median_px < 0.25 and m.p90_px < 1.0 and m.vis_f1 > 0.95
    before = orbit["track_visible"][:qf, sel]
    assert (tr.visible[:qf][before]).mean() > 0.9  # the backward pass found them
    assert np.allclose(tr.uv[qf], orbit["track_uv"][qf, sel])


def test_without_a_camera_tracks_stay_2d(orbit):
    tr = PointTracker().track(orbit["rgb"], orbit["track_uv"][0], 0, None)
    m = evaluate_tracks(tr.uv, tr.visible, orbit["track_uv"], orbit["track_visible"], query_t=np.zeros(64))
    assert np.isnan(tr.xyz_world).all() and not tr.static.any()
    assert m.median_px < 0.25 and m.vis_f1 > 0.9


def test_occluder_scene_points_are_lost_and_reacquired():
    from y2r.synth import render

    clip = render("occluder", width=256, height=192, num_frames=24, seed=3)
    g = {"rgb": clip.rgb, "depth": clip.depth, "K": clip.K, "c2w": clip.c2w}
    tr = PointTracker().track(clip.rgb, clip.track_uv[0], 0, _gt_camera(g))
    m = evaluate_tracks(tr.uv, tr.visible, clip.track_uv, clip.track_visible, query_t=np.zeros(64),
                        pred_xyz=tr.xyz_world, gt_xyz=clip.track_xyz_world, world_T_cam=clip.c2w)
    assert m.median_px < 0.3 and m.p90_px < 1.5 and m.vis_f1 > 0.95
    # the pole hides most points at some time; after their first occlusion they come back
    H, W = clip.rgb.shape[1:3]
    u, v = clip.track_uv[..., 0], clip.track_uv[..., 1]
    hidden_inside = ~clip.track_visible & (u >= 0) & (u <= W - 1) & (v >= 0) & (v <= H - 1)
    after = np.cumsum(hidden_inside, axis=0) > 0
    back = after & clip.track_visible
    assert hidden_inside.any(0).sum() > 30 and back.sum() > 200
    assert tr.visible[back].mean() > 0.9


def test_without_depth_a_static_point_is_seen_again_at_its_projection():
    # A rotating camera has no depth: a static point's projection cannot be confirmed by a surface
    # there, only by its template. Before that was allowed, the search's best match elsewhere in
    # the window decided (recall 0.947 here, 0.962 now, with the same positions).
    from y2r.synth import render

    clip = render("rotation", width=320, height=240, num_frames=30, seed=0)
    T = len(clip.rgb)
    cam = CameraModel(K=np.tile(clip.K, (T, 1, 1)), world_T_cam=clip.c2w,
                      depth=np.full(clip.depth.shape, np.nan), depth_valid=np.zeros(clip.depth.shape, bool),
                      rotation_only_depth=1.0)
    tr = PointTracker().track(clip.rgb, clip.track_uv[0], 0, cam)
    m = evaluate_tracks(tr.uv, tr.visible, clip.track_uv, clip.track_visible, query_t=np.zeros(64))
    assert m.vis_recall > 0.955 and m.vis_precision > 0.985
    assert m.median_px < 0.15 and m.p90_px < 0.7


def test_a_searched_match_far_from_a_static_points_projection_is_not_believed():
    # A still camera over a textured plane. From frame 1 the point's patch is covered by a flat
    # square and a copy of it appears 12 px to the right. Once the search window has grown to the
    # copy, the match there contradicts the static anchor by more than max_contradiction_px (8):
    # the point stays hidden at its projection instead of being re-anchored on the copy.
    rng = np.random.default_rng(1)
    T, H, W, r = 16, 96, 128, 10
    base = cv2.GaussianBlur(rng.integers(0, 256, (H, W, 3)).astype(np.uint8), (0, 0), 1.0)
    q = np.array([[64.0, 48.0]])
    frames = np.repeat(base[None], T, axis=0)
    patch = base[48 - r:48 + r + 1, 64 - r:64 + r + 1].copy()
    frames[1:, 48 - r:48 + r + 1, 76 - r:76 + r + 1] = patch  # the copy, 12 px right
    frames[1:, 48 - r:48 + r + 1, 64 - r:64 + r + 1 - 2] = 128  # the cover (the copy's left edge stays)
    K = np.array([[100.0, 0, W / 2], [0, 100.0, H / 2], [0, 0, 1]])
    cam = CameraModel(K=np.tile(K, (T, 1, 1)), world_T_cam=np.tile(np.eye(4), (T, 1, 1)),
                      depth=np.full((T, H, W), 2.0, np.float32), depth_valid=np.ones((T, H, W), bool),
                      projection_sigma_px=0.5)
    tr = PointTracker().track(frames, q, 0, cam)
    assert not tr.visible[1:, 0].any()
    assert np.abs(tr.uv[:, 0] - q[0]).max() < 1e-6  # hidden at its (unchanged) projection
    assert tr.static[:, 0].all()


def test_degenerate_inputs():
    frames = np.random.default_rng(0).integers(0, 256, (3, 32, 40, 3), dtype=np.uint8)
    none = PointTracker().track(frames, np.zeros((0, 2)), 1, None)
    assert none.uv.shape == (3, 0, 2) and none.visible.shape == (3, 0)
    one = PointTracker().track(frames[:1], np.array([[20.0, 16.0]]), 0, None)
    assert one.visible.tolist() == [[True]] and np.allclose(one.uv[0], [[20.0, 16.0]])
