"""MediaPipe Hands as a y2r tool worker: multi-pass hand detection and tracking on CPU.

Runs inside the managed MediaPipe environment (``y2r setup``; numpy<2, OpenCV-contrib headless,
mediapipe 0.10.21) with that environment's interpreter. Standalone: stdlib + numpy + cv2 +
mediapipe, and ``y2r_shim`` from this folder; it never imports y2r.

Why not ``mp.solutions.hands.Hands`` as is: in one pass it finds about half of the hands in real
photos (gloves, grayscale, occlusion, small egocentric hands). Its two models have very different
strengths: the palm detector (192x192 input, whole image letterboxed) is the weak link, while the
landmark model (224x224 crop of a hand region) is a strong verifier -- it outputs a *hand presence*
score that the stock solution uses only as a gate and never returns. So this shim builds two small
MediaPipe graphs from the calculators shipped in the wheel:

* ``PALM``: palm detector -> palm detections with scores -> hand regions (rotated rects).
* ``LANDMARKS``: landmark model on ONE given region -> 21 image landmarks, 21 world landmarks
  (metres, hand-centred), handedness, the presence score, and the region derived from the
  landmarks (what the stock tracker feeds into the next frame).

Detection strategy (images; video frames in ``search: thorough``):

1. Proposals from many cheap palm-detector passes: the full frame, the frame mirrored, the frame
   after CLAHE on the lightness channel (grayscale / low-contrast photos) and overlapping
   upscaled tiles (small hands get 2-3x more detector pixels). In thorough mode also a coarse
   grid of square windows given straight to the landmark model (hands whose palm is hidden:
   backs of hands, hands gripping objects), kept only if the first presence is promising.
2. Every proposal is *refined*: landmarks -> region from landmarks -> landmarks, until the
   region stops moving. A real hand converges to a stable region with high presence; a phantom
   drifts, shrinks or loses presence.
3. Acceptance: presence >= ``min_presence`` after refinement, a stable region, a sane size and
   plausible world-landmark bone lengths; a candidate found by only one proposal needs a higher
   presence (cross-pass agreement).
4. Non-maximum suppression over all passes by landmark-box IoU (and containment for the same
   hand side), strongest presence first; the survivor's handedness is averaged with a mirrored
   second opinion.

Video: hands are tracked like the stock solution (region from the previous frame's landmarks,
presence >= ``min_tracking_confidence``, one landmark call per hand). The search for hands not
tracked depends on ``search``:

* ``thorough``: the steps above on every frame with fewer than ``max_num_hands`` tracked (all
  palm passes; around hands lost within ``recover_frames``; the window grid every
  ``redetect_every`` frames). ~0.3-3 s per frame without a hand on one core.
* ``standard`` (y2r's default, ``track_budgeted``): a budget per frame. The first frame gets the
  plain view's passes (full frame, tiles, mirrored); then each frame the full-frame pass plus
  ONE of the other passes in rotation (every pass covers the frame every 11 frames) and, with
  no hand tracked, one window of the grid; with a hand tracked, the full frame and the rotation
  alternate. Evidence buys extra work: a candidate with little agreement is re-examined with the
  palm detector on a crop around it and two windows (``confirm``: the agreement the skipped
  passes would have given); a hand just lost is looked for where it was. A new hand is then
  followed back in time (``backtrack``), which restores the frames the rotation needed to reach
  it. Same acceptance rules as above.
* ``fast``: tracking plus the full-frame palm pass (with ``confirm``) and backtracking.

Cost on one CPU core at 512x384 (``run`` returns the shim's CPU seconds): a palm-detector call
~13 ms, a landmark call ~11 ms. ``standard``: ~28 frames/s on a hand-free clip (its worst
case: it searches every frame), 20-30 frames/s on real videos; ``thorough`` 2-6 frames/s;
photos (images mode, thorough) ~3 s each.

Handedness: MediaPipe labels hands as if the image were mirrored (selfie camera). Unless the input
is declared mirrored, labels are swapped here, so the npz says which hand it anatomically is.

Output npz (one row per detection; ``frame`` says which frame):
    frame (N,) int32, side (N,) int8 (0 left, 1 right), side_score (N,) float32 (probability of
    that side), presence (N,) float32, landmarks_px (N,21,3) float32 (x, y in pixels of the
    input frame, z relative depth in the same pixel scale, MediaPipe's convention), world (N,21,3)
    float32 (metres, origin near the hand centre, MediaPipe's convention), box (N,4) float32
    (x0, y0, x1, y1 pixels, landmark bounds), support (N,) int16 (proposals that agreed),
    tracked (N,) bool, plus num_frames, width, height.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import y2r_shim  # noqa: E402  (lives next to this file; see y2r_shim.py)

PALM_GRAPH = r"""
input_stream: "IMAGE:image"
input_side_packet: "MODEL_COMPLEXITY:model_complexity"
output_stream: "DETECTIONS:palm_detections"
output_stream: "ROIS:palm_rects"
node { calculator: "PalmDetectionCpu" input_stream: "IMAGE:image"
       input_side_packet: "MODEL_COMPLEXITY:model_complexity" output_stream: "DETECTIONS:palm_detections" }
node { calculator: "ImagePropertiesCalculator" input_stream: "IMAGE:image" output_stream: "SIZE:image_size" }
node { calculator: "BeginLoopDetectionCalculator" input_stream: "ITERABLE:palm_detections"
       input_stream: "CLONE:image_size" output_stream: "ITEM:palm_detection"
       output_stream: "CLONE:image_size_for_palms" output_stream: "BATCH_END:palm_ts" }
node { calculator: "PalmDetectionDetectionToRoi" input_stream: "DETECTION:palm_detection"
       input_stream: "IMAGE_SIZE:image_size_for_palms" output_stream: "ROI:palm_rect" }
node { calculator: "EndLoopNormalizedRectCalculator" input_stream: "ITEM:palm_rect"
       input_stream: "BATCH_END:palm_ts" output_stream: "ITERABLE:palm_rects" }
"""

# MediaPipe's HandLandmarkCpu subgraph (modules/hand_landmark/hand_landmark_cpu.pbtxt), with the
# presence gates removed so that the presence score itself comes out, plus the landmarks -> region
# step of the tracking graph.
LANDMARK_GRAPH = r"""
input_stream: "IMAGE:image"
input_stream: "ROI:hand_rect"
input_side_packet: "MODEL_COMPLEXITY:model_complexity"
output_stream: "LANDMARKS:hand_landmarks"
output_stream: "WORLD_LANDMARKS:hand_world_landmarks"
output_stream: "HANDEDNESS:handedness"
output_stream: "PRESENCE:presence"
output_stream: "NEXT_ROI:next_rect"
node { calculator: "ImageToTensorCalculator" input_stream: "IMAGE:image" input_stream: "NORM_RECT:hand_rect"
  output_stream: "TENSORS:input_tensor" output_stream: "LETTERBOX_PADDING:letterbox_padding"
  options { [mediapipe.ImageToTensorCalculatorOptions.ext] { output_tensor_width: 224 output_tensor_height: 224
    keep_aspect_ratio: true output_tensor_float_range { min: 0.0 max: 1.0 } } } }
node { calculator: "HandLandmarkModelLoader" input_side_packet: "MODEL_COMPLEXITY:model_complexity"
  output_side_packet: "MODEL:model" }
node { calculator: "InferenceCalculator" input_side_packet: "MODEL:model" input_stream: "TENSORS:input_tensor"
  output_stream: "TENSORS:output_tensors"
  options { [mediapipe.InferenceCalculatorOptions.ext] { delegate { xnnpack {} } } } }
node { calculator: "SplitTensorVectorCalculator" input_stream: "output_tensors"
  output_stream: "landmark_tensors" output_stream: "hand_flag_tensor" output_stream: "handedness_tensor"
  output_stream: "world_landmark_tensor"
  options { [mediapipe.SplitVectorCalculatorOptions.ext] { ranges { begin: 0 end: 1 } ranges { begin: 1 end: 2 }
    ranges { begin: 2 end: 3 } ranges { begin: 3 end: 4 } } } }
node { calculator: "TensorsToFloatsCalculator" input_stream: "TENSORS:hand_flag_tensor" output_stream: "FLOAT:presence" }
node { calculator: "TensorsToClassificationCalculator" input_stream: "TENSORS:handedness_tensor"
  output_stream: "CLASSIFICATIONS:handedness"
  options { [mediapipe.TensorsToClassificationCalculatorOptions.ext] { top_k: 1
    label_map_path: "mediapipe/modules/hand_landmark/handedness.txt" binary_classification: true } } }
node { calculator: "TensorsToLandmarksCalculator" input_stream: "TENSORS:landmark_tensors"
  output_stream: "NORM_LANDMARKS:landmarks"
  options { [mediapipe.TensorsToLandmarksCalculatorOptions.ext] { num_landmarks: 21 input_image_width: 224
    input_image_height: 224 normalize_z: 0.4 } } }
node { calculator: "LandmarkLetterboxRemovalCalculator" input_stream: "LANDMARKS:landmarks"
  input_stream: "LETTERBOX_PADDING:letterbox_padding" output_stream: "LANDMARKS:scaled_landmarks" }
node { calculator: "LandmarkProjectionCalculator" input_stream: "NORM_LANDMARKS:scaled_landmarks"
  input_stream: "NORM_RECT:hand_rect" output_stream: "NORM_LANDMARKS:hand_landmarks" }
node { calculator: "TensorsToLandmarksCalculator" input_stream: "TENSORS:world_landmark_tensor"
  output_stream: "LANDMARKS:unprojected_world_landmarks"
  options { [mediapipe.TensorsToLandmarksCalculatorOptions.ext] { num_landmarks: 21 } } }
node { calculator: "WorldLandmarkProjectionCalculator" input_stream: "LANDMARKS:unprojected_world_landmarks"
  input_stream: "NORM_RECT:hand_rect" output_stream: "LANDMARKS:hand_world_landmarks" }
node { calculator: "ImagePropertiesCalculator" input_stream: "IMAGE:image" output_stream: "SIZE:image_size" }
node { calculator: "HandLandmarkLandmarksToRoi" input_stream: "IMAGE_SIZE:image_size"
  input_stream: "LANDMARKS:hand_landmarks" output_stream: "ROI:next_rect" }
"""

# Bones (parent, child) of the 21-landmark hand, for the plausibility check on world landmarks.
BONES = ((0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10), (10, 11), (11, 12),
         (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18), (18, 19), (19, 20))

DEFAULTS = {
    "mode": "video",  # "video": frames of one video (tracking); "images": unrelated photos
    "model_complexity": 1,
    "max_num_hands": 2,
    "min_detection_confidence": 0.5,  # palm-detector score for a region to be examined at all
    "min_tracking_confidence": 0.5,  # presence that keeps a tracked hand
    "min_presence": 0.9,  # presence a NEW hand needs after refinement
    "single_support_presence": 0.97,  # ... and when only one proposal found it
    "proposal_score": 0.3,  # palm-detector threshold of the extra passes (tiles, CLAHE, mirrored)
    # Search effort (see the module docstring): "thorough" | "standard" | "fast"; "single" is the
    # stock solution's one full-frame pass.
    "search": "thorough",
    "redetect_every": 10,  # thorough video: all palm passes at least this often, even with all hands tracked
    "recover_frames": 5,  # video: search around a lost hand's last place for this many frames
    "extra_passes_per_frame": 1,  # standard video: palm passes besides the full frame, in rotation
    "windows_per_frame": 1,  # standard video, no hand tracked: windows of the grid, in rotation
    "backtrack_frames": 30,  # standard/fast video: follow a newly found hand back this many frames at most
    "mirrored": False,  # input is a selfie (mirrored) view: MediaPipe's labels are then already anatomical
    "progress_every": 5,
}


@dataclass
class Rect:
    """MediaPipe's NormalizedRect: centre and size normalised by the image size, rotation in radians
    (0 = fingers up; positive = clockwise on screen)."""

    xc: float
    yc: float
    w: float
    h: float
    rot: float = 0.0


@dataclass
class Hand:
    lm: object  # (21,3) pixels (x, y) + relative z
    world: object  # (21,3) metres
    presence: float
    p_right: float  # probability that the hand is anatomically right
    next_rect: Rect
    support: int = 1
    sources: set = field(default_factory=set)
    stable: bool = True
    tracked: bool = False

    @property
    def box(self):
        x0, y0 = self.lm[:, :2].min(0)
        x1, y1 = self.lm[:, :2].max(0)
        return (float(x0), float(y0), float(x1), float(y1))


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / ua if ua > 0 else 0.0


def _containment(a, b) -> float:
    """Intersection over the smaller box's area."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return ix * iy / small if small > 0 else 0.0


class HandsEngine:
    """The two graphs and the detection / tracking logic (no protocol code: testable alone)."""

    # Palm passes of the budgeted video search besides the plain full frame, in visiting order:
    # the plain view's tiles and mirror image first, then the CLAHE view's. Mirrored tiles are
    # left out: on the labelled videos each found the same hands as the plain tile covering the
    # same region, so they only slowed the rotation down.
    START_PASSES = (("full", False, 1), ("full", False, 2), ("full", False, 3), ("full", False, 4), ("full", True, 0))
    VIDEO_RING = START_PASSES + (("clahe", False, 0), ("clahe", True, 0), ("clahe", False, 1), ("clahe", False, 2),
                                 ("clahe", False, 3), ("clahe", False, 4))

    def __init__(self, options: dict):
        import cv2  # noqa: PLC0415 - tool environment only
        import numpy as np  # noqa: PLC0415
        from google.protobuf import text_format  # noqa: PLC0415
        from mediapipe.framework import calculator_pb2  # noqa: PLC0415
        from mediapipe.framework.formats import rect_pb2  # noqa: PLC0415
        from mediapipe.python.solution_base import SolutionBase  # noqa: PLC0415

        self.np, self.cv2, self._rect_pb2 = np, cv2, rect_pb2
        self.opt = {**DEFAULTS, **(options or {})}
        mc = int(self.opt["model_complexity"])
        parse = lambda text: text_format.Parse(text, calculator_pb2.CalculatorGraphConfig())  # noqa: E731
        param = "palmdetectioncpu__TensorsToDetectionsCalculator.min_score_thresh"
        lo = min(float(self.opt["proposal_score"]), float(self.opt["min_detection_confidence"]))
        # Two palm graphs: the stock threshold for the plain full-frame pass, a lower one for the
        # extra passes (their proposals are all verified by the landmark model).
        self.palm_main = SolutionBase(graph_config=parse(PALM_GRAPH), side_inputs={"model_complexity": mc},
                                      calculator_params={param: float(self.opt["min_detection_confidence"])})
        self.palm_low = SolutionBase(graph_config=parse(PALM_GRAPH), side_inputs={"model_complexity": mc},
                                     calculator_params={param: lo})
        self.landmarks = SolutionBase(graph_config=parse(LANDMARK_GRAPH), side_inputs={"model_complexity": mc})
        self.clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))
        self.stats = {"palm_calls": 0, "landmark_calls": 0}
        # The first inference of each graph packs the model's weights for XNNPACK, the first
        # colour conversion builds OpenCV's tables (~0.3 s in all): a load-time cost, paid here
        # once rather than by the first video.
        blank = np.zeros((64, 64, 3), np.uint8)
        self.palm_proposals(blank, [("full", False, 0), ("clahe", True, 0)])
        self._landmarks(blank, Rect(0.5, 0.5, 1.0, 1.0), False)
        self.stats = {"palm_calls": 0, "landmark_calls": 0}

    def close(self) -> None:
        for g in (self.palm_main, self.palm_low, self.landmarks):
            g.close()

    # ------------------------------------------------------------------ model calls
    def _palm(self, image, graph) -> list[tuple[Rect, float]]:
        self.stats["palm_calls"] += 1
        r = graph.process(self.np.ascontiguousarray(image))
        out = []
        for det, rc in zip(r.palm_detections or [], r.palm_rects or []):
            out.append((Rect(rc.x_center, rc.y_center, rc.width, rc.height, rc.rotation), float(det.score[0])))
        return out

    def _landmarks(self, image, rect: Rect, mirrored: bool) -> Hand | None:
        np = self.np
        H, W = image.shape[:2]
        pb = self._rect_pb2.NormalizedRect(x_center=rect.xc, y_center=rect.yc, width=rect.w, height=rect.h,
                                           rotation=rect.rot)
        self.stats["landmark_calls"] += 1
        o = self.landmarks.process({"image": image, "hand_rect": pb})
        if o.hand_landmarks is None or o.presence is None:
            return None
        lm = np.array([[p.x * W, p.y * H, p.z * W] for p in o.hand_landmarks.landmark], np.float64)
        world = np.array([[p.x, p.y, p.z] for p in o.hand_world_landmarks.landmark], np.float64)
        c = o.handedness.classification[0]
        # MediaPipe's label is for a mirrored view; the anatomical side is the other one unless
        # the caller says the frames are mirrored.
        p_mp_right = c.score if c.label == "Right" else 1.0 - c.score
        p_right = p_mp_right if mirrored else 1.0 - p_mp_right
        nr = o.next_rect
        return Hand(lm=lm, world=world, presence=float(o.presence), p_right=float(p_right),
                    next_rect=Rect(nr.x_center, nr.y_center, nr.width, nr.height, nr.rotation))

    # ------------------------------------------------------------------ building blocks
    def refine(self, image, rect: Rect, iters: int = 3, first: Hand | None = None) -> Hand | None:
        """Landmarks, then the region from those landmarks, until the region stops moving."""
        mirrored = bool(self.opt["mirrored"])
        hand = first or self._landmarks(image, rect, mirrored)
        if hand is None or iters == 0:
            return hand
        prev_box = hand.box
        hand.stable = False
        for _ in range(iters):
            nxt = self._landmarks(image, hand.next_rect, mirrored)
            if nxt is None:
                break
            stable = _iou(prev_box, nxt.box) > 0.8
            hand, prev_box = nxt, nxt.box
            hand.stable = stable
            if stable:
                break
        return hand

    def second_opinion(self, image, hand: Hand) -> None:
        """Average handedness (and presence) with the landmark model run on the mirrored image."""
        r = hand.next_rect
        flipped = self._landmarks(self.np.ascontiguousarray(image[:, ::-1]),
                                  Rect(1.0 - r.xc, r.yc, r.w, r.h, -r.rot), bool(self.opt["mirrored"]))
        if flipped is None or flipped.presence < 0.5:
            return
        # In the mirrored image a right hand looks like a left one.
        hand.p_right = 0.5 * (hand.p_right + (1.0 - flipped.p_right))

    def plausible(self, hand: Hand, image_shape) -> bool:
        np = self.np
        H, W = image_shape[:2]
        x0, y0, x1, y1 = hand.box
        size = math.hypot(x1 - x0, y1 - y0)
        if size < 0.03 * math.hypot(W, H) or size < 16:
            return False  # a few pixels of "hand": collapsed region
        # Most of the hand inside the frame (landmarks far outside are extrapolations of a phantom).
        inside = ((hand.lm[:, 0] > -0.05 * W) & (hand.lm[:, 0] < 1.05 * W)
                  & (hand.lm[:, 1] > -0.05 * H) & (hand.lm[:, 1] < 1.05 * H))
        if inside.mean() < 0.6:
            return False
        bones = np.linalg.norm(hand.world[[b for _, b in BONES]] - hand.world[[a for a, _ in BONES]], axis=1)
        palm = bones[[4, 8, 12, 16]].mean()  # wrist -> finger bases
        # Adult hands: wrist to finger base ~6.5-10 cm; MediaPipe's world hands stay near that,
        # a degenerate prediction (collapsed or exploded skeleton) does not.
        return 0.035 < palm < 0.16 and bones.max() < 0.2

    def palm_passes(self, passes: str) -> list[tuple[str, bool, int]]:
        """The palm-detector passes of a search level, as (view, mirrored, crop) with view "full" or
        "clahe" and crop 0 the whole image, 1-4 the overlapping tiles.

        ``passes``: "single" (full frame), "palm" (+ mirrored), "standard"/"thorough" (+ CLAHE and
        2x2 overlapping tiles, each also mirrored).
        """
        if passes == "single":
            return [("full", False, 0)]
        if passes == "palm":
            return [("full", False, 0), ("full", True, 0)]
        return [(view, flip, crop) for view in ("full", "clahe") for flip in (False, True) for crop in range(5)]

    def palm_proposals(self, image, passes: str | list) -> list[tuple[Rect, float, str]]:
        """Regions from the palm detector over several views of the image, in full-image coordinates.

        ``passes``: a search level (see ``palm_passes``) or a list of (view, mirrored, crop) passes.
        """
        cv2 = self.cv2
        H, W = image.shape[:2]
        specs = self.palm_passes(passes) if isinstance(passes, str) else passes
        views = {"full": image}
        out = []
        for vname, flip, crop in specs:
            if vname not in views:
                lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)
                lab[..., 0] = self.clahe.apply(lab[..., 0])
                views[vname] = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
            view = views[vname]
            if crop == 0:
                x0, y0, tw, th = 0, 0, W, H
            else:
                # 2x2 overlapping tiles of 60% size: a hand gets 1.7x the detector's pixels.
                tw, th = round(0.6 * W), round(0.6 * H)
                x0, y0 = (0, W - tw)[(crop - 1) % 2], (0, H - th)[(crop - 1) // 2]
            src = view[:, ::-1] if flip else view
            # The stock threshold for the plain full frame, the lower one for the extra passes
            # (all their proposals are verified by the landmark model).
            g = self.palm_main if (crop == 0 and not flip and vname == "full") else self.palm_low
            for rect, score in self._palm(src[y0:y0 + th, x0:x0 + tw], g):
                r = Rect((x0 + rect.xc * tw) / W, (y0 + rect.yc * th) / H, rect.w * tw / W, rect.h * th / H, rect.rot)
                if flip:
                    r = Rect(1.0 - r.xc, r.yc, r.w, r.h, -r.rot)
                out.append((r, score, f"{vname}{'-flip' if flip else ''}@{x0},{y0}"))
        return out

    @staticmethod
    def window_rotations(frac: float) -> tuple[float, ...]:
        # Fingers up, and (large windows only) fingers pointing left / right: tabletop hands on a
        # mouse or keyboard. Small windows stay upright to bound the cost.
        return (0.0, 0.5 * math.pi, -0.5 * math.pi) if frac > 0.5 else (0.0,)

    def window_proposals(self, image) -> list[tuple[Rect, float, str]]:
        """A grid of square regions at three sizes and three finger directions, for hands the palm
        detector misses (palm hidden: backs of hands, gloves, hands gripping objects)."""
        H, W = image.shape[:2]
        out = []
        m = min(W, H)
        # The landmark model only recovers a hand from a region ~1.5-2x the hand's extent that is
        # roughly centred on it (its basin is narrow), hence large windows at 1/3 stride.
        for frac in (1.0, 0.7, 0.5):
            side = frac * m
            # Centres spread over the whole image (windows may hang over the border: hands entering
            # the frame, egocentric hands cut by the bottom edge).
            nx, ny = math.ceil(W / (side / 3)), math.ceil(H / (side / 3))
            for j in range(ny):
                for i in range(nx):
                    cx, cy = (i + 0.5) * W / nx, (j + 0.5) * H / ny
                    for rot in self.window_rotations(frac):
                        out.append((Rect(cx / W, cy / H, side / W, side / H, rot), 0.0, f"win{frac}"))
        return out

    def _nms(self, hands: list[Hand]) -> list[Hand]:
        keep: list[Hand] = []
        for h in sorted(hands, key=lambda h: (h.tracked, h.presence), reverse=True):
            dup = None
            for k in keep:
                same_side = (k.p_right > 0.5) == (h.p_right > 0.5)
                inside = _containment(k.box, h.box)
                # Two hands may overlap (interlocked fingers) but then they are of opposite sides
                # and neither box lies almost wholly inside the other.
                if _iou(k.box, h.box) > 0.45 or inside > 0.8 or (same_side and inside > 0.6):
                    dup = k
                    break
            if dup is None:
                keep.append(h)
            else:
                dup.support += h.support
                dup.sources |= h.sources
        return keep

    # ------------------------------------------------------------------ public
    def recovery_proposals(self, lost: list[tuple[int, Hand]], image_shape,
                           centred_only: bool = False) -> list[tuple[Rect, float, str]]:
        """Windows around where hands were last seen: a hand lost to motion blur or a fast move
        is usually within a hand's size of its last place, at its last scale and rotation.

        ``lost``: (frame last seen, Hand). 18 windows per hand (2 scales x 3x3 offsets), or with
        ``centred_only`` the 2 centred ones (the budgeted video search: a hand that moved further
        is left to the palm passes, and backtracking fills the frames in between).
        """
        H, W = image_shape[:2]
        offsets = (0.0,) if centred_only else (-0.3, 0.0, 0.3)
        out = []
        for _f, h in lost:
            x0, y0, x1, y1 = h.box
            cx, cy, size = 0.5 * (x0 + x1), 0.5 * (y0 + y1), max(x1 - x0, y1 - y0, 16.0)
            for k in (1.6, 2.4):
                side = k * size
                for dy in offsets:
                    for dx in offsets:
                        out.append((Rect((cx + dx * size) / W, (cy + dy * size) / H, side / W, side / H,
                                         h.next_rect.rot), 0.0, "recover"))
        return out

    def verify(self, image, proposals: list[tuple[Rect, float, str]], exclude: list[Hand],
               min_p: float, palm_first: float = 0.01) -> list[Hand]:
        """Landmark-refined, merged candidates from proposals (no acceptance rule applied yet).

        ``palm_first``: the first presence a palm proposal needs to be refined."""
        H, W = image.shape[:2]
        mirrored = bool(self.opt["mirrored"])
        found: list[Hand] = []
        for rect, _score, src in proposals:
            src = src.split("@")[0]
            # A palm proposal centred inside a hand already tracked is that hand again; skipping
            # it before the landmark call keeps tracked frames cheap.
            if not src.startswith(("win", "recover")) and any(
                    e.box[0] <= rect.xc * W <= e.box[2] and e.box[1] <= rect.yc * H <= e.box[3] for e in exclude):
                continue
            first = self._landmarks(image, rect, mirrored)
            # A region whose first presence is this low never converged to a hand in our tests
            # (palm proposals converge from lower values: they are centred on a palm).
            if first is None or first.presence < (0.08 if src.startswith(("win", "recover")) else palm_first):
                continue
            if any(_iou(first.box, e.box) > 0.5 for e in exclude):
                continue
            # A region that lands on an already confirmed hand only adds agreement (cross-pass
            # support); counting it saves the refinement.
            known = next((h for h in found if h.presence >= min_p and _iou(h.box, first.box) > 0.5), None)
            if known is not None and first.presence >= 0.5:
                known.support += 1
                known.sources.add(src)
                continue
            hand = self.refine(image, rect, first=first)
            if hand is None or not hand.stable or any(_iou(hand.box, e.box) > 0.3 for e in exclude):
                continue
            hand.sources = {src}
            found.append(hand)
        merged = self._nms(found)
        self.last_candidates = merged  # for diagnostics: what the acceptance rules saw
        return merged

    def accept(self, image, candidates: list[Hand], min_p: float, need_support: bool,
               confirm: bool = False) -> list[Hand]:
        """The acceptance rules: presence, plausibility and (``need_support``) cross-pass agreement
        -- a candidate found by one proposal only needs ``single_support_presence``. With
        ``confirm``, such a candidate first gets a second chance at agreement (``confirm``)."""
        single = float(self.opt["single_support_presence"])
        accepted = []
        for h in candidates:
            if h.presence < min_p or not self.plausible(h, image.shape):
                continue
            if need_support and h.support < 2 and h.presence < single:
                if not confirm:
                    continue
                self.confirm(image, h)
                if h.support < 2:
                    continue
            accepted.append(h)
        return accepted

    def confirm(self, image, hand: Hand) -> None:
        """Cross-pass agreement on demand: the palm detector on a square crop around a candidate,
        straight and mirrored; each palm there whose landmarks land on the candidate is support.

        The budgeted video search runs one or two palm passes per frame, so a real hand is often
        found by one proposal only; the whole-image passes that would have agreed are replaced by
        two passes where they matter (about 2 palm + 2 landmark calls, for borderline candidates)."""
        H, W = image.shape[:2]
        x0, y0, x1, y1 = hand.box
        side = 2.5 * max(x1 - x0, y1 - y0)
        cw, ch = round(min(W, side)), round(min(H, side))
        cx0 = round(min(max(0.5 * (x0 + x1) - 0.5 * cw, 0), W - cw))
        cy0 = round(min(max(0.5 * (y0 + y1) - 0.5 * ch, 0), H - ch))
        crop = image[cy0:cy0 + ch, cx0:cx0 + cw]
        mirrored = bool(self.opt["mirrored"])
        for flip in (False, True):
            for rect, _score in self._palm(crop[:, ::-1] if flip else crop, self.palm_low):
                xc = 1.0 - rect.xc if flip else rect.xc
                r = Rect((cx0 + xc * cw) / W, (cy0 + rect.yc * ch) / H, rect.w * cw / W, rect.h * ch / H,
                         -rect.rot if flip else rect.rot)
                first = self._landmarks(image, r, mirrored)
                if first is not None and first.presence >= 0.5 and _iou(first.box, hand.box) > 0.5:
                    hand.support += 1
                    hand.sources.add("confirm-flip" if flip else "confirm")
                    break
        if hand.support >= 2:
            return
        # No palm to be seen (a gripping or gloved hand, the window grid's finds): agreement of
        # two windows around it at other scales, as the overlapping grid windows give it in
        # thorough mode.
        size = max(x1 - x0, y1 - y0)
        cx, cy = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
        for k in (1.6, 2.4):
            r = Rect(cx / W, cy / H, k * size / W, k * size / H, hand.next_rect.rot)
            first = self._landmarks(image, r, mirrored)
            if first is not None and first.presence >= 0.5 and _iou(first.box, hand.box) > 0.5:
                hand.support += 1
                hand.sources.add("confirm-window")

    def detect(self, image, search: str | None = None, exclude: list[Hand] | None = None,
               extra: list[tuple[Rect, float, str]] | None = None, min_presence: float | None = None) -> list[Hand]:
        """Find new hands in one image; hands in ``exclude`` (already tracked) are not searched for.

        ``search``: "single" (the full frame once, like the stock solution), "palm" (full frame and
        mirrored), "standard" (all palm passes), "thorough" (standard plus the window grid),
        "none" (``extra`` proposals only).
        """
        search = search or self.opt["search"]
        search = "palm" if search == "fast" else search
        exclude = exclude or []
        if min_presence is None:
            min_presence = self.opt["min_presence"] if search != "single" else self.opt["min_tracking_confidence"]
        min_p = float(min_presence)
        proposals = self.palm_proposals(image, passes=search) if search != "none" else []
        if search == "thorough":
            proposals += self.window_proposals(image)
        proposals += extra or []
        candidates = self.verify(image, proposals, exclude, min_p)
        return self.accept(image, candidates, min_p, need_support=search not in ("single", "none"))

    def finish(self, image, hands: list[Hand], opinion_for_tracked: bool = True) -> list[Hand]:
        hands = self._nms(hands)
        hands = sorted(hands, key=lambda h: h.presence, reverse=True)[: int(self.opt["max_num_hands"])]
        for h in hands:
            if opinion_for_tracked or not h.tracked:
                self.second_opinion(image, h)
        return hands

    def _follow(self, image, previous: list[Hand], frame_no: int) -> list[Hand]:
        """Track the previous frame's hands (one landmark call each); lost ones go to ``_last_seen``."""
        tracked = []
        for prev in previous:
            h = self.refine(image, prev.next_rect, iters=0)
            if h is None or h.presence < float(self.opt["min_tracking_confidence"]) or not self.plausible(h, image.shape):
                self._last_seen.append((frame_no - 1, prev))
                continue
            h.tracked = True
            h.support = prev.support
            tracked.append(h)
        return self._nms(tracked)

    def _forget(self, hands: list[Hand], frame_no: int, near: float = 0.0) -> None:
        """Drop lost hands that are too old or found again: overlapping a current hand or, with
        ``near`` > 0, a current hand's centre within ``near`` hand sizes of its last centre (a
        fast move between two frames: the same hand, re-acquired elsewhere)."""
        def found_again(h: Hand) -> bool:
            x0, y0, x1, y1 = h.box
            size = max(x1 - x0, y1 - y0)
            for k in hands:
                if _iou(h.box, k.box) > 0.2:
                    return True
                dx = 0.5 * (k.box[0] + k.box[2] - x0 - x1)
                dy = 0.5 * (k.box[1] + k.box[3] - y0 - y1)
                if math.hypot(dx, dy) < near * size:
                    return True
            return False

        self._last_seen = [(f, h) for f, h in self._last_seen
                           if frame_no - f <= int(self.opt["recover_frames"]) and not found_again(h)]

    def track(self, image, previous: list[Hand], frame_no: int) -> list[Hand]:
        """One video frame: follow the previous frame's hands, search for missing ones.

        ``search`` "thorough" searches every frame exhaustively; "standard" and "fast" keep to a
        budget of model calls per frame (``track_budgeted``).
        """
        if frame_no == 0:
            self._last_seen = []  # (frame, Hand) of hands that disappeared
            self._rotation = 0  # next extra palm pass of the budgeted search
            self._window = 0  # next window of the budgeted search's grid
            self._tick = 0  # frames searched with a hand tracked (alternating passes)
        if self.opt["search"] in ("standard", "fast"):
            return self.track_budgeted(image, previous, frame_no)
        tracked = self._follow(image, previous, frame_no)
        every = int(self.opt["redetect_every"])
        periodic = every > 0 and frame_no % every == 0
        mode = self.opt["search"]
        if len(tracked) < int(self.opt["max_num_hands"]) or periodic:
            if mode == "single":
                found = self.detect(image, "single", exclude=tracked)
            elif tracked:
                found = self.detect(image, "standard" if periodic else "palm", exclude=tracked)
            else:
                found = self.detect(image, "standard")
                if not found and mode == "thorough":
                    recent = [(f, h) for f, h in self._last_seen if frame_no - f <= int(self.opt["recover_frames"])]
                    if recent:
                        # Re-acquiring a hand that was here a moment ago is tracking, not a new
                        # detection: the tracking threshold applies.
                        found = self.detect(image, "none", extra=self.recovery_proposals(recent, image.shape),
                                            min_presence=float(self.opt["min_tracking_confidence"]))
                    if not found and periodic:
                        found = self.detect(image, "none", extra=self.window_proposals(image))
            tracked += found
        hands = self.finish(image, tracked)
        self._forget(hands, frame_no)
        return hands

    def video_windows(self, image_shape) -> list[tuple[Rect, float, str]]:
        """The window grid in the order the budgeted search visits it: large windows first (each
        covers more of the frame), and within a size a stride through the grid so that
        consecutive frames look at distant places."""
        if getattr(self, "_grid_shape", None) != image_shape[:2]:
            grid = self.window_proposals(self.np.empty(image_shape[:2], self.np.uint8))
            order = []
            for size in dict.fromkeys(src for _, _, src in grid):
                ws = [w for w in grid if w[2] == size]
                step = next(s for s in (7, 5, 3, 1) if math.gcd(s, len(ws)) == 1)  # visits every window
                order += [ws[(i * step) % len(ws)] for i in range(len(ws))]
            self._grid_shape, self._grid = image_shape[:2], order
        return self._grid

    def track_budgeted(self, image, previous: list[Hand], frame_no: int) -> list[Hand]:
        """One video frame on a budget of model calls (``search`` "standard" or "fast").

        Per frame: one landmark call per tracked hand; with fewer than ``max_num_hands`` tracked,
        the plain full-frame palm pass (it finds nearly every hand whose palm is in view) and, in
        "standard", ``extra_passes_per_frame`` of the other palm passes (``VIDEO_RING``: tiles,
        mirrored, CLAHE) in rotation, so each covers the frame every few frames instead of every
        frame -- the first frame gets ``START_PASSES`` at once, and with a hand already tracked
        the full frame and the rotation alternate; with no hand tracked, ``windows_per_frame``
        windows of the grid in rotation (hands whose palm is hidden); and the two windows
        centred on each hand lost within ``recover_frames``. Evidence buys more work: a candidate
        with too little agreement is re-examined (``confirm``); a new hand is followed back in
        time by the caller (``backtrack``), which recovers the frames the rotation took to find
        it. The mirrored second opinion on handedness runs when a hand is acquired; afterwards
        y2r's association votes over the whole track.
        """
        o = self.opt
        standard = o["search"] == "standard"
        min_p = float(o["min_presence"])
        max_n = int(o["max_num_hands"])
        tracked = self._follow(image, previous, frame_no)
        found: list[Hand] = []
        if len(tracked) < max_n:
            passes, windows = [("full", False, 0)], []
            if standard:
                # The first frame, with nothing known yet, gets the plain view's passes at once.
                # With a hand tracked the search for another runs at half rate: the full frame
                # and the rotation's next pass on alternate frames.
                n = len(self.START_PASSES) if frame_no == 0 else int(o["extra_passes_per_frame"])
                if tracked and frame_no > 0:
                    self._tick += 1
                    passes, n = ([], 1) if self._tick % 2 else (passes, 0)
                for _ in range(n):
                    passes.append(self.VIDEO_RING[self._rotation % len(self.VIDEO_RING)])
                    self._rotation += 1
                if not tracked:
                    grid = self.video_windows(image.shape)
                    for _ in range(int(o["windows_per_frame"])):
                        windows.append(grid[self._window % len(grid)])
                        self._window += 1
            # Palm proposals whose first landmarks have presence < 0.05 never became a hand on the
            # real videos or the photos (tests/data/hands); refining them was a third of the cost.
            candidates = self.verify(image, self.palm_proposals(image, passes) + windows, tracked, min_p,
                                     palm_first=0.05)
            found = self.accept(image, candidates, min_p, need_support=True, confirm=True)
            recent = [(f, h) for f, h in self._last_seen if frame_no - f <= int(o["recover_frames"])]
            if standard and recent and len(tracked) + len(found) < max_n:
                # Re-acquiring a hand that was here a moment ago is tracking, not a new
                # detection: the tracking threshold applies.
                mt = float(o["min_tracking_confidence"])
                extra = self.recovery_proposals(recent, image.shape, centred_only=True)
                found += self.accept(image, self.verify(image, extra, tracked + found, mt), mt, need_support=False)
        hands = self.finish(image, tracked + found, opinion_for_tracked=False)
        self._forget(hands, frame_no, near=1.5)
        return hands

    def backtrack(self, frames, t: int, hand: Hand, history: list[list[Hand]]) -> int:
        """Follow a hand acquired at frame ``t`` backwards through the frames before it.

        The budgeted search looks at each region only every few frames, so a hand is often
        acquired a few frames after it came into view; following it back with the landmark
        model (one call per frame, the tracking rule) recovers those frames. Stops where that
        fails, where the hand was already reported, after ``backtrack_frames`` frames, or where
        ``max_num_hands`` hands are known. Adds to ``history`` (hands per frame); returns how
        many frames were added."""
        np = self.np
        mirrored = bool(self.opt["mirrored"])
        rect, added = hand.next_rect, 0
        for s in range(t - 1, max(-1, t - 1 - int(self.opt["backtrack_frames"])), -1):
            known = history[s]
            if len(known) >= int(self.opt["max_num_hands"]):
                break
            image = np.ascontiguousarray(frames[s])
            h = self._landmarks(image, rect, mirrored)
            if (h is None or h.presence < float(self.opt["min_tracking_confidence"])
                    or not self.plausible(h, image.shape) or any(_iou(h.box, k.box) > 0.3 for k in known)):
                break
            h.tracked, h.support = True, hand.support
            known.append(h)
            rect, added = h.next_rect, added + 1
        return added


class MediaPipeHandsHandler(y2r_shim.Handler):
    name = "mediapipe_hands"

    def __init__(self) -> None:
        self.engine: HandsEngine | None = None
        self.engine_options: dict = {}

    def hello(self) -> dict:
        import mediapipe  # noqa: PLC0415
        import numpy  # noqa: PLC0415

        return {"tool": "mediapipe", "mediapipe": mediapipe.__version__, "numpy": numpy.__version__}

    def load(self, params: dict) -> dict:
        t0 = time.time()
        self.engine_options = {**DEFAULTS, **(params.get("options") or {})}
        self.engine = HandsEngine(self.engine_options)
        return {"load_s": time.time() - t0}

    def run(self, params: dict, ctx: y2r_shim.RequestContext) -> dict:
        import numpy as np  # noqa: PLC0415

        if self.engine is None:
            self.load({"options": params.get("options") or {}})
        frames_path, out_path = params.get("frames"), params.get("output")
        if not frames_path or not out_path:
            raise y2r_shim.UserError("run needs params 'frames' (a .npy path) and 'output' (an .npz path)")
        try:
            frames = np.load(frames_path, mmap_mode="r")
        except (OSError, ValueError) as e:
            raise y2r_shim.BadInput(f"cannot read frames {frames_path}: {e}") from e
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise y2r_shim.BadInput(f"frames must be (T,H,W,3) uint8 RGB, got {frames.shape} {frames.dtype}")
        options = {**self.engine_options, **(params.get("options") or {})}
        engine = self.engine
        engine.opt = options
        T, H, W = frames.shape[:3]
        rows: dict[str, list] = {k: [] for k in ("frame", "side", "side_score", "presence", "landmarks_px",
                                                 "world", "box", "support", "tracked")}
        calls0 = dict(engine.stats)
        t0, cpu0 = time.time(), time.process_time()
        previous: list[Hand] = []
        history: list[list[Hand]] = []  # hands per frame (backtracking may add to earlier frames)
        every = max(1, int(options["progress_every"]))
        budgeted = options["mode"] != "images" and options["search"] in ("standard", "fast")
        for t in range(T):
            image = np.ascontiguousarray(frames[t])
            if options["mode"] == "images":
                hands = engine.finish(image, engine.detect(image))
            else:
                hands = engine.track(image, previous, t)
            history.append(list(hands))
            if budgeted:
                for h in hands:
                    if not h.tracked:
                        engine.backtrack(frames, t, h, history)
            previous = hands
            if (t + 1) % every == 0 or t + 1 == T:
                ctx.progress(t + 1, T)
        for t, hands in enumerate(history):
            for h in hands:
                side = 1 if h.p_right >= 0.5 else 0
                rows["frame"].append(t)
                rows["side"].append(side)
                rows["side_score"].append(h.p_right if side else 1.0 - h.p_right)
                rows["presence"].append(h.presence)
                rows["landmarks_px"].append(h.lm)
                rows["world"].append(h.world)
                rows["box"].append(h.box)
                rows["support"].append(h.support)
                rows["tracked"].append(h.tracked)
        elapsed, cpu = time.time() - t0, time.process_time() - cpu0
        n = len(rows["frame"])
        out = {
            "frame": np.asarray(rows["frame"], np.int32).reshape(n),
            "side": np.asarray(rows["side"], np.int8).reshape(n),
            "side_score": np.asarray(rows["side_score"], np.float32).reshape(n),
            "presence": np.asarray(rows["presence"], np.float32).reshape(n),
            "landmarks_px": np.asarray(rows["landmarks_px"], np.float32).reshape(n, 21, 3),
            "world": np.asarray(rows["world"], np.float32).reshape(n, 21, 3),
            "box": np.asarray(rows["box"], np.float32).reshape(n, 4),
            "support": np.asarray(rows["support"], np.int16).reshape(n),
            "tracked": np.asarray(rows["tracked"], bool).reshape(n),
            "num_frames": np.int32(T), "width": np.int32(W), "height": np.int32(H),
        }
        tmp = f"{out_path}.tmp.npz"  # np.savez appends .npz to names without it
        np.savez(tmp, **out)
        os.replace(tmp, out_path)
        # cpu_s: this process's CPU time (all threads) -- on a shared machine wall time measures
        # the neighbours as much as the search.
        return {"detections": n, "frames": T, "elapsed_s": elapsed, "fps": T / elapsed if elapsed > 0 else None,
                "cpu_s": cpu,
                "palm_calls": engine.stats["palm_calls"] - calls0["palm_calls"],
                "landmark_calls": engine.stats["landmark_calls"] - calls0["landmark_calls"]}

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()


if __name__ == "__main__":
    y2r_shim.serve(MediaPipeHandsHandler())
