import numpy as np

from y2r.geometry import invert_se3, make_se3, project, transform_points
from y2r.stages.tracks.anchors import prior_information, projection_covariance, ray_information, solve

K = np.array([[300.0, 0, 160], [0, 300.0, 120], [0, 0, 1]])


def _camera_at(x: float) -> np.ndarray:
    """world_T_cam of a camera at (x, 0, 0) looking along +z."""
    return make_se3(np.eye(3), np.array([x, 0.0, 0.0]))


def _pixel(world_T_cam: np.ndarray, X: np.ndarray) -> np.ndarray:
    return project(K, transform_points(invert_se3(world_T_cam), X))


def test_rays_correct_a_wrong_depth_prior():
    X = np.array([[0.3, -0.2, 3.0], [-0.5, 0.4, 2.0]])
    c0 = _camera_at(0.0)
    wrong = X * 1.08  # the depth map is 8% off: the prior lies on the right ray, at the wrong depth
    info, vec = prior_information(K, c0, _pixel(c0, X), wrong, depth_rel_sigma=0.02, pixel_sigma=0.25)
    assert np.allclose(solve(info, vec), wrong)
    for x in (0.2, 0.4, 0.6, 0.8, 1.0):
        cam = _camera_at(x)
        d = np.linalg.norm(X - cam[:3, 3], axis=1)
        r_info, r_vec = ray_information(K, cam, _pixel(cam, X), d, np.full(2, 0.3))
        info, vec = info + r_info, vec + r_vec
    est = solve(info, vec)
    # Exact rays over a 1 m baseline outweigh the 2% prior (depth precision of the widest ray
    # ~ 0.3 px * z^2 / (f b) = 0.3% at 1 m, for a point 3 m away): the 8% error shrinks under 1%.
    assert (np.linalg.norm(est - X, axis=1) / X[:, 2] < 0.01).all()


def test_projection_covariance_grows_with_the_baseline():
    X = np.array([[0.0, 0.0, 2.0]])
    c0 = _camera_at(0.0)
    info, _ = prior_information(K, c0, _pixel(c0, X), X, depth_rel_sigma=0.02, pixel_sigma=0.25)
    here = projection_covariance(K, c0, X, info)[0]
    # Seen from where it was lifted, only the pixel uncertainty remains (the depth is along the ray).
    assert np.allclose(np.diag(here), 0.25**2, rtol=1e-6)
    there = projection_covariance(K, _camera_at(0.2), X, info)[0]
    # From 0.2 m aside, a 2% depth error (4 cm at 2 m) moves the projection by about
    # f * b * dz / z^2 = 300 * 0.2 * 0.04 / 4 = 0.6 px, along the baseline (u).
    assert 0.5 < np.sqrt(there[0, 0] - 0.25**2) < 0.7
    assert there[1, 1] < 0.1


def test_unknown_anchors_stay_unknown():
    c0 = _camera_at(0.0)
    X = np.array([[np.nan, np.nan, np.nan], [0.0, 0.0, 2.0]])
    info, vec = prior_information(K, c0, np.array([[10.0, 10.0], [160.0, 120.0]]), X, 0.02, 0.25)
    est = solve(info, vec)
    assert np.isnan(est[0]).all() and np.allclose(est[1], X[1])
    assert np.isinf(projection_covariance(K, c0, X, info)[0]).all()
    # a ray with no usable depth or noise adds nothing
    r_info, _ = ray_information(K, c0, np.array([[160.0, 120.0]]), np.array([np.nan]), np.array([0.3]))
    assert not r_info.any()
