import cv2
import numpy as np

from y2r.stages.tracks.template_alignment import TemplateAligner, sample


def _texture(H=160, W=200, seed=0, sigma=1.5):
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.uniform(0, 255, (H, W)).astype(np.float32), (0, 0), sigma)
    return ((img - img.min()) / (img.max() - img.min()) * 255).astype(np.float32)


def _warp(img, A, c_src, c_dst):
    """Image in which the pattern around c_src appears around c_dst, transformed by A."""
    M = np.zeros((2, 3))
    M[:, :2] = A
    M[:, 2] = np.asarray(c_dst) - A @ np.asarray(c_src)
    return cv2.warpAffine(img, M, (img.shape[1], img.shape[0]), flags=cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REFLECT)


def _rot_scale(deg, s):
    r = np.deg2rad(deg)
    return s * np.array([[np.cos(r), -np.sin(r)], [np.sin(r), np.cos(r)]])


def test_sample_is_bilinear_and_handles_many_points():
    img = np.arange(20 * 30, dtype=np.float32).reshape(20, 30)
    xy = np.random.default_rng(0).uniform(0, 19, (50000, 2)).astype(np.float32)  # > 2^15 samples
    v = sample(img, xy)
    assert v.shape == (50000,)
    assert np.allclose(v, xy[:, 1] * 30 + xy[:, 0], atol=0.05)


def test_affine_motion_is_recovered_to_a_small_fraction_of_a_pixel():
    base = _texture()
    q = np.array([[100.0, 80.0]])
    A_true = _rot_scale(12.0, 1.15)
    target = np.array([[104.3, 77.6]])
    img = _warp(base, A_true, q[0], target[0])
    al = TemplateAligner(base, q, radius=7)
    # start 1.5 px off, with the identity shape
    res = al.align(img, target + [1.0, -1.1], np.eye(2)[None], iterations=30)
    assert res.converged[0]
    assert np.linalg.norm(res.centre - target) < 0.05
    assert np.abs(res.A[0] - A_true).max() < 0.02
    assert res.ncc[0] > 0.98


def test_gain_and_bias_do_not_matter():
    base = _texture()
    q = np.array([[100.0, 80.0]])
    shifted = _warp(base, np.eye(2), q[0], q[0] + [2.2, 0.4])
    al = TemplateAligner(base, q)
    plain = al.align(shifted, q + [2.0, 0.0], np.eye(2)[None], iterations=20)
    dimmed = al.align((0.6 * shifted + 40).astype(np.float32), q + [2.0, 0.0], np.eye(2)[None], iterations=20)
    assert np.linalg.norm(dimmed.centre - (q + [2.2, 0.4])) < 0.1 and dimmed.ncc[0] > 0.98
    assert np.linalg.norm(dimmed.centre - plain.centre) < 0.01 and abs(dimmed.ncc[0] - plain.ncc[0]) < 0.01


def test_a_different_patch_scores_low():
    base = _texture(seed=0)
    other = _texture(seed=1)
    q = np.array([[100.0, 80.0]])
    al = TemplateAligner(base, q)
    assert al.score(other, q, np.eye(2)[None], np.array([0]))[0] < 0.5
    assert al.score(base, q, np.eye(2)[None], np.array([0]))[0] > 0.999


def test_covariance_is_long_along_an_edge():
    # a vertical step edge: position is known across it (x), not along it (y)
    img = np.zeros((80, 80), np.float32)
    img[:, 40:] = 200
    noise = np.random.default_rng(0).normal(0, 1, img.shape).astype(np.float32)
    img = cv2.GaussianBlur(img, (0, 0), 1.0) + noise
    q = np.array([[40.0, 40.0]])
    res = TemplateAligner(img, q).align(img, q + [0.3, 0.0], np.eye(2)[None])
    cov = res.cov[0]
    assert cov[1, 1] > 20 * cov[0, 0]
    assert abs(res.centre[0, 0] - 40.0) < 0.1


def test_masked_pixels_are_ignored():
    base = _texture()
    q = np.array([[100.0, 80.0]])
    img = _warp(base, np.eye(2), q[0], q[0] + [1.5, 0.5]).copy()
    img[:, 102:] = 0  # the right part of the patch is covered by something black
    al = TemplateAligner(base, q, radius=7)
    placed_x = al.placed(q + [1.5, 0.5], np.eye(2)[None])[0, :, 0]
    mask = (placed_x < 101.5).astype(np.float32)[None]
    res = al.align(img, q + [1.0, 0.0], np.eye(2)[None], mask=mask, iterations=20)
    assert np.linalg.norm(res.centre - (q + [1.5, 0.5])) < 0.1
    assert 0.3 < res.support[0] < 0.9


def test_replace_makes_a_new_template():
    base = _texture(seed=0)
    other = _texture(seed=2)
    q = np.array([[100.0, 80.0], [60.0, 60.0]])
    al = TemplateAligner(base, q)
    al.replace(np.array([1]), other, np.array([[50.0, 40.0]]))
    s = al.score(other, np.array([[50.0, 40.0]]), np.eye(2)[None], np.array([1]))
    assert s[0] > 0.999
    assert al.score(base, q[:1], np.eye(2)[None], np.array([0]))[0] > 0.999


def test_along_a_straight_edge_the_position_stays_at_its_start():
    # nothing in the image says where along the edge the point is: the start (flow / prediction)
    # is kept there, while across the edge the image decides
    img = np.zeros((80, 80), np.float32)
    img[:, 40:] = 200
    img = cv2.GaussianBlur(img, (0, 0), 1.0)
    q = np.array([[40.0, 40.0]])
    res = TemplateAligner(img, q).align(img, q + [0.8, 1.5], np.eye(2)[None], iterations=20)
    assert abs(res.centre[0, 0] - 40.0) < 0.05
    assert abs(res.centre[0, 1] - 41.5) < 0.05
