import cv2
import numpy as np

from y2r.stages.tracks.motion_blur import BlurredTemplates, ExposureEstimate
from y2r.stages.tracks.template_alignment import TemplateAligner


def _texture(H=160, W=200, seed=0, sigma=1.0):
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.uniform(0, 255, (H, W)).astype(np.float32), (0, 0), sigma)
    return ((img - img.min()) / (img.max() - img.min()) * 255).astype(np.float32)


def _streaked(img, shift, streak, n=41):
    """``img`` moved by ``shift`` and exposed while moving along ``streak`` (centred on ``shift``)."""
    acc = np.zeros_like(img)
    for s in np.linspace(-0.5, 0.5, n):
        d = np.asarray(shift) + s * np.asarray(streak)
        M = np.array([[1.0, 0.0, d[0]], [0.0, 1.0, d[1]]])
        acc += cv2.warpAffine(img, M, (img.shape[1], img.shape[0]), flags=cv2.INTER_CUBIC,
                              borderMode=cv2.BORDER_REFLECT)
    return acc / n


def test_blurred_template_fits_a_blurred_frame_that_the_sharp_one_does_not():
    base = _texture()
    q = np.array([[100.0, 80.0]])
    shift, streak = np.array([3.3, -1.2]), np.array([12.0, 4.0])
    img = _streaked(base, shift, streak)
    al = TemplateAligner(base, q, radius=7, score_sigma=3.5)
    blurred = BlurredTemplates(al, base, q)
    start = q + shift + [0.8, -0.5]
    sharp = al.align(img, start, np.eye(2)[None], iterations=5)
    matched = al.align(img, start, np.eye(2)[None], iterations=5,
                       templates=blurred.templates(np.array([0]), np.eye(2)[None], streak[None]))
    assert matched.converged[0]
    assert np.linalg.norm(matched.centre[0] - (q[0] + shift)) < 0.2
    assert matched.ncc[0] > 0.99
    assert sharp.ncc[0] < matched.ncc[0] - 0.05


def test_blurred_template_follows_the_template_shape():
    """The streak is given in image pixels; under a scaled shape it is shorter in template pixels."""
    base = _texture()
    q = np.array([[100.0, 80.0]])
    al = TemplateAligner(base, q, radius=7)
    blurred = BlurredTemplates(al, base, q)
    v_scaled, _ = blurred.templates(np.array([0]), 2.0 * np.eye(2)[None], np.array([[8.0, 0.0]]))
    v_plain, _ = blurred.templates(np.array([0]), np.eye(2)[None], np.array([[4.0, 0.0]]))
    assert np.allclose(v_scaled, v_plain, atol=1e-4)


def test_short_streaks_keep_the_sharp_template():
    base = _texture()
    q = np.array([[100.0, 80.0], [60.0, 50.0]])
    al = TemplateAligner(base, q, radius=7)
    blurred = BlurredTemplates(al, base, q)
    idx, A = np.array([0, 1]), np.tile(np.eye(2), (2, 1, 1))
    assert blurred.templates(idx, A, np.array([[0.5, 0.0], [0.0, 0.3]])) is None
    values, sd = blurred.templates(idx, A, np.array([[0.5, 0.0], [6.0, 0.0]]))
    assert np.array_equal(values[0], al.template[0]) and np.array_equal(sd[0], al.sd[0])
    assert not np.allclose(values[1], al.template[1], atol=0.05)


def test_exposure_needs_a_clear_gain_over_sharp_templates():
    est = ExposureEstimate(frames_needed=3)
    assert est.fraction == 0.0 and not est.settled
    # A sharp clip: a slightly blurred template correlates a hair better (anti-aliasing, encoding).
    for _ in range(3):
        est.vote(np.array([0.997, 0.998, 0.996, 0.993, 0.988, 0.980]))
    assert est.settled and est.fraction == 0.0
    blurry = ExposureEstimate(frames_needed=3)
    for _ in range(3):
        blurry.vote(np.array([0.90, 0.94, 0.97, 0.99, 0.995, 0.98]))
    assert blurry.fraction == 0.8
