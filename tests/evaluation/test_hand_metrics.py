import numpy as np
import pytest

from y2r.evaluation.hand_metrics import (box_iou, frame_hit_rate, jitter_reduction, match_boxes, ranges_to_mask,
                                         score_photo, summarise_photos)


def test_box_iou_and_one_to_one_matching():
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0
    # Two detections on one labelled hand: only one may match it.
    pairs = match_boxes([(0, 0, 10, 10), (1, 1, 11, 11), (50, 50, 60, 60)], [(0, 0, 10, 10), (100, 0, 110, 10)])
    assert pairs == [(0, 0)]


def test_photo_scores_count_recall_phantoms_and_uncounted_extras():
    labels = [{"box": [0, 0, 10, 10], "counted": True}, {"box": [20, 0, 30, 10], "counted": True},
              {"box": [40, 0, 50, 10], "counted": False}]
    s = score_photo("a", [(1, 1, 10, 10), (41, 0, 50, 10), (80, 80, 90, 90)], labels, counted=2)
    assert (s.found, s.extra_found, s.phantoms, s.detections) == (1, 1, 1, 3)
    s2 = score_photo("b", [], [{"box": [0, 0, 5, 5], "counted": True}], counted=1)
    summary = summarise_photos([s, s2])
    assert summary == {"counted": 3, "found": 1, "recall": pytest.approx(1 / 3), "phantoms": 1, "extra_found": 1}


def test_frame_hit_rate_ignores_ambiguous_frames():
    vis = ranges_to_mask([[0, 4], [8, 9]], 12)
    amb = ranges_to_mask([[5, 6]], 12)
    has = np.array([1, 1, 0, 1, 1, 0, 1, 1, 1, 1, 0, 1], bool)
    r = frame_hit_rate(has, vis, amb)
    assert r["visible_frames"] == 7 and r["hit_frames"] == 6 and r["rate"] == pytest.approx(6 / 7)
    assert r["missed"] == [2] and r["hand_free_frames"] == 3 and r["reported_on_hand_free"] == 2


def test_jitter_is_rms_acceleration_on_shared_frames():
    fps = 10.0
    t = np.arange(30) / fps
    smooth = np.zeros((30, 21, 3))
    smooth[..., 0] = (0.5 * t ** 2)[:, None]  # constant 1 m/s^2 along x
    noisy = smooth.copy()
    noisy[::2, :, 1] += 0.001
    r = jitter_reduction(noisy, np.ones(30, bool), smooth, np.ones(30, bool), fps)
    assert r["after_mps2"] == pytest.approx(1.0)
    # 1 mm on every other frame: second differences of +-2 mm -> 0.2 m/s^2 at 10 fps, across 1 m/s^2 along x
    assert r["before_mps2"] == pytest.approx(np.sqrt(1.0 + 0.2 ** 2))
