"""The MediaPipe shim's budgeted video search, with its two model calls replaced by a fake scene.

No MediaPipe here (tests/stages/hands/test_builtin_mediapipe.py runs the real models): the engine's
search logic runs in y2r's interpreter, the palm detector and the landmark model answer from a
known scene -- one hand with a fixed box, visible from some frame on -- and count their calls, so
the per-frame cost budget and the backtracking are checked exactly.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from y2r.tools.shims import mediapipe_hands_shim as shim

W, H = 512, 384
BOX = (300.0, 150.0, 400.0, 270.0)  # the hand's landmark box in pixels


def _world_hand() -> np.ndarray:
    """A plausible 21-joint hand in metres (wrist to finger bases ~8 cm, 3 cm phalanges)."""
    j = np.zeros((21, 3))
    for f, x in enumerate((0.03, 0.02, 0.0, -0.02, -0.035)):
        for k in range(4):
            j[1 + 4 * f + k] = (x, -0.08 + (0.05 if f == 0 else 0.0) - 0.03 * k, 0.0)
    return j - j.mean(0)


class FakeScene:
    """The hand is in frames >= ``visible_from``; the full-frame palm pass sees it from
    ``palm_from`` on (before that only the landmark model recognises it, as for a hand whose palm
    the detector misses). Frame t is an image filled with the value t (the landmark model reads it
    there: backtracking calls it on earlier frames); the palm detector, which also gets CLAHE
    views, is told the frame by ``current``."""

    def __init__(self, visible_from: int, palm_from: int):
        self.visible_from, self.palm_from = visible_from, palm_from
        self.current = 0
        self.palm_calls: list[int] = []
        self.landmark_calls: list[int] = []

    def palm(self, image, graph):
        t = self.current
        self.palm_calls.append(t)
        # only the plain full frame shows the palm (not the tiles, not the mirrored view)
        if image.shape[:2] == (H, W) and image.strides[1] > 0 and t >= self.palm_from:
            cx, cy = 0.5 * (BOX[0] + BOX[2]) / W, 0.5 * (BOX[1] + BOX[3]) / H
            return [(shim.Rect(cx, cy, 1.8 * 100 / W, 1.8 * 120 / H), 0.9)]
        return []

    def landmarks(self, image, rect, mirrored):
        t = int(image[0, 0, 0])
        self.landmark_calls.append(t)
        cx, cy = rect.xc * W, rect.yc * H
        on_hand = BOX[0] <= cx <= BOX[2] and BOX[1] <= cy <= BOX[3] and t >= self.visible_from
        u = np.linspace(0, 1, 21)
        lm = np.stack([BOX[0] + 100 * u, BOX[1] + 120 * u[::-1], np.zeros(21)], 1)
        if not on_hand:  # a stray region: the model answers with a collapsed, absent "hand"
            lm = np.stack([cx + 5 * u, cy + 5 * u, np.zeros(21)], 1)
        return shim.Hand(lm=lm, world=_world_hand(), presence=0.99 if on_hand else 0.0, p_right=0.8,
                         next_rect=shim.Rect(0.5 * (BOX[0] + BOX[2]) / W, 0.5 * (BOX[1] + BOX[3]) / H,
                                             1.8 * 100 / W, 1.8 * 120 / H) if on_hand else rect)


def engine_for(scene: FakeScene, **options) -> shim.HandsEngine:
    # The engine without its MediaPipe graphs: __init__ would build them.
    e = shim.HandsEngine.__new__(shim.HandsEngine)
    e.np, e.cv2 = np, cv2
    e.opt = {**shim.DEFAULTS, "mode": "video", **options}
    e.stats = {"palm_calls": 0, "landmark_calls": 0}
    e.clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))
    e.palm_main = e.palm_low = None
    e._palm, e._landmarks = scene.palm, scene.landmarks
    return e


def run_video(e: shim.HandsEngine, scene: FakeScene, T: int) -> list[list[shim.Hand]]:
    """What MediaPipeHandsHandler.run does per frame in video mode (tracking + backtracking)."""
    frames = np.stack([np.full((H, W, 3), t, np.uint8) for t in range(T)])
    history: list[list[shim.Hand]] = []
    previous: list[shim.Hand] = []
    for t in range(T):
        scene.current = t
        hands = e.track(frames[t], previous, t)
        history.append(list(hands))
        for h in hands:
            if not h.tracked:
                e.backtrack(frames, t, h, history)
        previous = hands
    return history


def test_hand_free_frames_cost_two_palm_passes_and_one_window():
    scene = FakeScene(visible_from=10**6, palm_from=10**6)
    e = engine_for(scene, search="standard")
    ring, grid = len(shim.HandsEngine.VIDEO_RING), len(e.video_windows((H, W)))
    T = 1 + grid  # one full cycle of the window grid after the first frame
    history = run_video(e, scene, T)
    assert all(not hands for hands in history)
    palm = np.bincount(scene.palm_calls, minlength=T)
    lms = np.bincount(scene.landmark_calls, minlength=T)
    # frame 0: the full frame and the plain view's other passes; then the full frame + one pass
    assert palm[0] == 1 + len(shim.HandsEngine.START_PASSES) and np.all(palm[1:] == 2)
    assert np.all(lms == 1)  # one window of the grid per hand-free frame, no refinement (presence 0)
    # every pass of the rotation and every window of the grid comes round
    assert e._rotation >= ring and e._window == T
    assert len({(r.xc, r.yc, r.w, r.rot) for r, _, _ in e.video_windows((H, W))}) == grid


def test_hand_found_late_is_followed_back_to_where_it_appeared():
    # Visible from frame 4, its palm never seen: only a window of the grid's rotation can find it,
    # some frames later; the frames in between must come from backtracking.
    scene = FakeScene(visible_from=4, palm_from=10**6)
    e = engine_for(scene, search="standard")
    history = run_video(e, scene, 24)
    assert [len(h) for h in history] == [0] * 4 + [1] * 20
    acquired = [t for t, h in enumerate(history) if h and not h[0].tracked]
    assert len(acquired) == 1 and acquired[0] > 4, acquired  # found late, once, then tracked
    assert history[acquired[0]][0].sources == {"win1.0"}
    np.testing.assert_allclose(history[4][0].box, BOX)  # backtracked to the first frame it was in


def test_tracked_hand_halves_the_search_for_a_second_one():
    scene = FakeScene(visible_from=0, palm_from=0)
    e = engine_for(scene, search="standard", max_num_hands=2)
    T = 21
    history = run_video(e, scene, T)
    assert all(len(h) == 1 for h in history)
    palm = np.bincount(scene.palm_calls, minlength=T)
    # confirm() is not needed (presence 0.99 >= single_support_presence); from frame 1 on one
    # palm pass per frame: the full frame and the rotation alternate
    assert np.all(palm[1:] == 1)
    lms = np.bincount(scene.landmark_calls, minlength=T)
    assert np.all(lms[1:] == 1)  # the tracking call only: palm proposals on the hand are skipped


@pytest.mark.parametrize("search", ["fast", "standard"])
def test_one_hand_per_frame_with_max_one(search):
    scene = FakeScene(visible_from=0, palm_from=0)
    e = engine_for(scene, search=search, max_num_hands=1)
    history = run_video(e, scene, 8)
    assert [len(h) for h in history] == [1] * 8
    # all hands tracked: no search at all after the first frame
    assert np.bincount(scene.palm_calls, minlength=8)[1:].sum() == 0
