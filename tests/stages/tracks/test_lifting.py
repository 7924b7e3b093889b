import numpy as np

from y2r.geometry import invert_se3, make_se3, project, transform_points
from y2r.stages.tracks.lifting import lift, lift_frame, sample_depth


def _plane_depth(H=40, W=50):
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    return 2.0 + 0.01 * u + 0.02 * v  # a plane in (u, v, z): bilinear interpolation is exact on it


def test_depth_is_interpolated_exactly_on_a_smooth_surface():
    d = _plane_depth()
    uv = np.array([[10.25, 7.5], [0.0, 0.0], [49.0, 39.0], [30.9, 12.1]])
    z = sample_depth(d, np.ones_like(d, bool), uv)
    assert np.allclose(z, 2.0 + 0.01 * uv[:, 0] + 0.02 * uv[:, 1], atol=1e-12)


def test_depth_across_a_discontinuity_is_the_nearest_surface_not_a_blend():
    d = np.full((10, 10), 4.0)
    d[:, 5:] = 1.0  # foreground on the right
    z = sample_depth(d, np.ones_like(d, bool), np.array([[4.3, 5.0], [4.7, 5.0]]))
    assert np.allclose(z, [4.0, 1.0])


def test_invalid_and_outside_depth_is_nan_and_invalid_neighbours_are_ignored():
    d = _plane_depth()
    valid = np.ones_like(d, bool)
    valid[5, 5] = False
    z = sample_depth(d, valid, np.array([[5.0, 5.0], [-1.0, 3.0], [3.0, 40.0], [np.nan, 1.0], [5.5, 5.5]]))
    assert np.isnan(z[:4]).all()
    # (5.5, 5.5): the three valid corners, equally weighted (the invalid one does not pull z to 0)
    assert np.isclose(z[4], (d[5, 6] + d[6, 5] + d[6, 6]) / 3)


def test_lift_inverts_projection():
    K = np.array([[300.0, 0, 160], [0, 300.0, 120], [0, 0, 1]])
    world_T_cam = make_se3(np.eye(3), [0.5, -0.2, 0.1]) @ make_se3(
        np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]]), [0, 0, 0])
    X = np.array([[0.3, 0.2, 1.5], [-1.0, 0.4, 3.0]])
    Xc = transform_points(invert_se3(world_T_cam), X)
    uv = project(K, Xc)
    assert np.allclose(lift(K, world_T_cam, uv, Xc[:, 2]), X, atol=1e-9)
    assert np.isnan(lift(K, world_T_cam, uv, np.array([np.nan, 1.0]))[0]).all()


def test_lift_frame_uses_that_frames_depth():
    K = np.array([[50.0, 0, 24.5], [0, 50.0, 19.5], [0, 0, 1]])
    d = np.full((40, 50), 2.0)
    xyz = lift_frame(d, d > 0, K, np.eye(4), np.array([[24.5, 19.5], [74.5, 19.5]]))
    assert np.allclose(xyz[0], [0, 0, 2.0]) and np.isnan(xyz[1]).all()
