import cv2
import numpy as np

from y2r.stages.tracks.reacquisition import search, warped_patches


def _texture(H=120, W=160, seed=0):
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.uniform(0, 255, (H, W)).astype(np.float32), (0, 0), 1.5)
    return img.astype(np.float32)


def test_a_patch_is_found_again_within_the_search_radius():
    img = _texture()
    moved = np.roll(img, (5, -9), axis=(0, 1))  # content moves 9 px left, 5 px down
    patches = warped_patches(img, np.array([[80.0, 60.0]]), np.eye(2)[None], radius=7)
    found, score = search(moved, patches, np.array([[80.0, 60.0]]), np.array([12.0]))
    assert np.allclose(found, [[71.0, 65.0]]) and score[0] > 0.99
    # too small a radius: the prediction comes back unchanged
    found, _ = search(moved, patches, np.array([[80.0, 60.0]]), np.array([3.0]), min_score=0.9)
    assert np.allclose(found, [[80.0, 60.0]])


def test_warped_patch_shows_the_rotated_pattern():
    img = _texture()
    r = np.deg2rad(90)
    A = np.array([[np.cos(r), -np.sin(r)], [np.sin(r), np.cos(r)]])
    p0 = warped_patches(img, np.array([[80.0, 60.0]]), np.eye(2)[None], 5)[0]
    p90 = warped_patches(img, np.array([[80.0, 60.0]]), A[None], 5)[0]
    # A maps template offsets to image offsets: x -> -y... in image axes (v down) that is a
    # clockwise quarter turn of the array
    assert np.allclose(np.rot90(p0, k=-1), p90, atol=1e-3)


def test_an_ambiguous_far_match_in_a_repetitive_texture_is_not_taken():
    v, u = np.mgrid[0:80, 0:120]
    checker = (((u // 4) + (v // 4)) % 2 * 200).astype(np.float32)  # period 8 px both ways
    checker = cv2.GaussianBlur(checker, (0, 0), 1.0)
    patches = warped_patches(checker, np.array([[40.0, 40.0]]), np.eye(2)[None], radius=5)
    centre = np.array([[44.0, 40.0]])  # matches at 40 and 48 (and every 8 px): 4 px away either way
    found, score = search(checker, patches, centre, np.array([12.0]), trust_px=2.0)
    assert score[0] > 0.99 and np.allclose(found, centre)
    # the same pattern once, in a random texture: distinct, found 9 px away
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.uniform(0, 255, (80, 120)).astype(np.float32), (0, 0), 1.5)
    img[35:46, 44:55] = checker[35:46, 35:46]
    found, _ = search(img, patches, np.array([[40.0, 40.0]]), np.array([12.0]), trust_px=2.0)
    assert np.allclose(found, [[49.0, 40.0]])


def test_a_streaked_patch_finds_a_motion_blurred_point():
    img = _texture(seed=3)
    streak = np.array([14.0, 3.0])
    # the frame: content moved by (-9, 5) while the camera exposed it along the streak
    blurred = np.mean([cv2.warpAffine(img, np.array([[1.0, 0, -9 + s * streak[0]], [0, 1.0, 5 + s * streak[1]]]),
                                      (img.shape[1], img.shape[0]), flags=cv2.INTER_CUBIC,
                                      borderMode=cv2.BORDER_REFLECT)
                       for s in np.linspace(-0.5, 0.5, 29)], axis=0).astype(np.float32)
    q = np.array([[80.0, 60.0]])
    sharp = warped_patches(img, q, np.eye(2)[None], radius=7)
    smeared = warped_patches(img, q, np.eye(2)[None], radius=7, streak=streak[None])
    _, score_sharp = search(blurred, sharp, q, np.array([12.0]))
    found, score = search(blurred, smeared, q, np.array([12.0]))
    assert np.allclose(found, [[71.0, 65.0]]) and score[0] > 0.97 > score_sharp[0] + 0.05
    # a streak below a pixel leaves the patch sharp
    assert np.array_equal(warped_patches(img, q, np.eye(2)[None], 7, np.array([[0.4, 0.0]])), sharp)
