import numpy as np

from y2r.stages.tracks.occlusion import (
    depth_consistent,
    depth_contradicts,
    depth_noise,
    depth_occluded,
    inside_image,
)


def test_inside_image_uses_pixel_centres_and_rejects_nan():
    uv = np.array([[0, 0], [63, 47], [63.01, 10], [-0.01, 10], [np.nan, 3]])
    assert inside_image(uv, (48, 64)).tolist() == [True, True, False, False, False]


def test_occlusion_is_one_sided_and_ignores_unknown_depth():
    expected = np.array([2.0, 2.0, 2.0, 2.0, np.nan])
    observed = np.array([1.5, 1.95, 3.0, np.nan, 1.0])
    # nearer by 33% -> occluded; within 5% -> no; farther (a hole / silhouette) -> no; unknown -> no
    assert depth_occluded(expected, observed, 0.05).tolist() == [True, False, False, False, False]


def test_consistency_and_contradiction_are_complementary_where_depth_is_known():
    e = np.array([2.0, 2.0, 2.0, np.nan])
    o = np.array([2.05, 2.5, 1.5, 2.0])
    assert depth_consistent(e, o, 0.05).tolist() == [True, False, False, False]
    assert depth_contradicts(e, o, 0.05).tolist() == [False, True, True, False]


def test_depth_noise_is_a_robust_spread_of_the_log_ratio():
    rng = np.random.default_rng(0)
    e = rng.uniform(1.0, 4.0, 2000)
    o = e * np.exp(rng.normal(0.0, 0.02, 2000))
    o[:100] = 0.5 * e[:100]  # occluded pairs do not inflate it
    assert abs(depth_noise(o, e) - 0.02) < 0.003
    assert depth_noise(o[:5], e[:5]) == 0.0  # too few pairs: no evidence
    assert depth_noise(np.array([np.nan] * 20), np.ones(20)) == 0.0
