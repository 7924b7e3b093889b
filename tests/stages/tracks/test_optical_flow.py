import cv2
import numpy as np

from y2r.stages.tracks.optical_flow import FlowFrame, track_forward_backward


def _texture(H=120, W=160, seed=0):
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.uniform(0, 255, (H, W)).astype(np.float32), (0, 0), 2.0)
    img = (img - img.min()) / (img.max() - img.min()) * 255
    return np.repeat(img[..., None], 3, 2).astype(np.uint8)


def _shift(img, dx, dy):
    M = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(img, M, (img.shape[1], img.shape[0]), flags=cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REFLECT)


def test_subpixel_translation_is_recovered_and_consistent():
    a = _texture()
    b = _shift(a, 2.3, -1.6)
    pts = np.array([[40.0, 40.0], [80.0, 60.0], [120.0, 80.0]])
    res = track_forward_backward(FlowFrame.from_rgb(a), FlowFrame.from_rgb(b), pts, pts, window=21, levels=3,
                                 fb_threshold_px=0.5)
    assert res.ok.all()
    assert np.abs(res.points - (pts + [2.3, -1.6])).max() < 0.1
    assert res.fb_error.max() < 0.1


def test_forward_backward_check_rejects_a_point_whose_patch_was_replaced():
    a = _texture(seed=0)
    b = _shift(a, 1.0, 0.0)
    b[50:90, 60:100] = _texture(seed=5)[50:90, 60:100]  # an occluder with its own texture
    pts = np.array([[30.0, 30.0], [80.0, 70.0]])
    res = track_forward_backward(FlowFrame.from_rgb(a), FlowFrame.from_rgb(b), pts, pts, window=15, levels=2,
                                 fb_threshold_px=0.5)
    assert res.ok.tolist() == [True, False]


def test_no_points_is_fine():
    f = FlowFrame.from_rgb(_texture())
    none = np.zeros((0, 2))
    res = track_forward_backward(f, f, none, none, window=21, levels=3, fb_threshold_px=1)
    assert res.points.shape == (0, 2) and res.ok.shape == (0,)
