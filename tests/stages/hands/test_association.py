import numpy as np

from y2r.geometry import project
from y2r.stages.hands.association import Detection, associate

from .synthetic_hand import K, posed, right_hand


def two_hand_video(T=40, seed=0):
    """A right hand moving on the image's left, a left (mirrored) hand on the right: truth per frame."""
    rng = np.random.default_rng(seed)
    w = right_hand()
    out = []
    for t in range(T):
        s = t / 10
        jr = posed(w, [0, 0, 0.2 * s], [-0.12 + 0.03 * np.sin(s), 0.02 * s, 0.55])
        jl = posed(w * np.array([-1, 1, 1]), [0, 0, -0.2 * s], [0.12 + 0.03 * np.cos(s), 0.02 * s, 0.6])
        out.append((t, jr, jl, rng))
    return out


def make_dets(video, flip_frames=(), drop=(), p=0.9, noise=1.0):
    dets = []
    for t, jr, jl, rng in video:
        for joints, right in ((jr, True), (jl, False)):
            if (t, right) in drop:
                continue
            pr = p if right else 1 - p
            if t in flip_frames:
                pr = 1 - pr  # the classifier is confidently wrong in this frame
            kp = project(K, joints) + rng.normal(scale=noise, size=(21, 2))
            dets.append(Detection(frame=t, p_right=pr, keypoints_2d=kp, joints_cam=joints, payload=right))
    return dets


def test_flips_in_single_frames_are_corrected_by_temporal_votes():
    video = two_hand_video()
    flips = {3, 4, 17, 30}
    sides, stats = associate(make_dets(video, flip_frames=flips))
    for side, truth in (("right", True), ("left", False)):
        assert len(sides[side]) == 40
        assert all(d.payload is truth for d in sides[side].values())
    assert stats["handedness_corrected"] == 2 * len(flips)
    assert stats["dropped"] == 0


def test_never_two_detections_on_one_side_and_dropouts_keep_identity():
    video = two_hand_video()
    dets = make_dets(video, drop={(5, True), (6, True), (20, False)})
    # A duplicate of the right hand in frame 12 (detector double-fires with a shifted box).
    t, jr, _, rng = video[12]
    dets.append(Detection(frame=12, p_right=0.8, keypoints_2d=project(K, jr) + 40.0, joints_cam=jr + 0.05,
                          payload="dup"))
    sides, stats = associate(dets)
    for side in ("left", "right"):
        frames = list(sides[side])
        assert len(frames) == len(set(frames))
    assert set(range(40)) - set(sides["right"]) == {5, 6}
    assert set(range(40)) - set(sides["left"]) == {20}
    assert all(d.payload is True for d in sides["right"].values())  # the duplicate lost to the real hand
    assert stats["kept"] == 40 * 2 - 3


def test_hands_that_swap_sides_in_the_image_keep_their_identity():
    # Two hands cross: linking by motion (not by image side) keeps each hand's label.
    w = right_hand()
    dets = []
    for t in range(30):
        x = -0.15 + 0.01 * t
        jr = posed(w, [0, 0, 0], [x, 0.0, 0.5])
        jl = posed(w * np.array([-1, 1, 1]), [0, 0, 0], [-x, 0.03, 0.5])
        for joints, right in ((jr, True), (jl, False)):
            conf = 0.55 if 12 <= t <= 18 else 0.95  # unsure while crossing, then flipped once
            pr = conf if right else 1 - conf
            if t == 15:
                pr = 1 - pr
            dets.append(Detection(frame=t, p_right=pr, keypoints_2d=project(K, joints), joints_cam=joints,
                                  payload=right))
    sides, _ = associate(dets)
    assert all(d.payload is True for d in sides["right"].values())
    assert all(d.payload is False for d in sides["left"].values())
    assert len(sides["right"]) == len(sides["left"]) == 30
