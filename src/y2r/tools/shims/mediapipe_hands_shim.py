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

Detection strategy (images, or video frames needing (re-)detection):

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

In video mode, hands are tracked like the stock solution (region from the previous frame's
landmarks, presence >= ``min_tracking_confidence``), and the palm passes run again whenever fewer
than ``max_num_hands`` hands are tracked, plus every ``redetect_every`` frames anyway.

Cost on one CPU core (this machine): see ``run``'s returned timing; roughly 20-40 frames/s for
512x384 video frames with tracking, ~0.5-2 s per photo in thorough mode.

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
    "search": "thorough",  # "thorough" | "standard" (no window grid) | "single" (stock-like, one pass)
    "redetect_every": 10,
    "recover_frames": 5,  # video: search around a lost hand's last place for this many frames  # video: run the palm passes at least this often even with all hands tracked
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
        H, W = image.shape[:2]
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

    def palm_proposals(self, image, passes: str) -> list[tuple[Rect, float, str]]:
        """Regions from the palm detector over several views of the image, in full-image coordinates.

        ``passes``: "single" (full frame), "palm" (+ mirrored), "standard"/"thorough" (+ CLAHE and
        2x2 overlapping tiles, each also mirrored).
        """
        cv2 = self.cv2
        H, W = image.shape[:2]
        with_extra = passes in ("standard", "thorough")
        views = [("full", image, self.palm_main)]
        if with_extra:
            lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)
            lab[..., 0] = self.clahe.apply(lab[..., 0])
            views.append(("clahe", cv2.cvtColor(lab, cv2.COLOR_LAB2RGB), self.palm_low))
        out = []
        for vname, view, graph in views:
            crops = [(0, 0, W, H)]
            if with_extra:
                # 2x2 overlapping tiles of 60% size: a hand gets 1.7x the detector's pixels.
                tw, th = int(round(0.6 * W)), int(round(0.6 * H))
                crops += [(x, y, tw, th) for y in (0, H - th) for x in (0, W - tw)]
            for flip in ((False,) if passes == "single" else (False, True)):
                src = view[:, ::-1] if flip else view
                for (x0, y0, tw, th) in crops:
                    g = graph if (tw, th) == (W, H) and not flip else self.palm_low
                    for rect, score in self._palm(src[y0:y0 + th, x0:x0 + tw], g):
                        xc = (x0 + rect.xc * tw) / W
                        r = Rect(xc, (y0 + rect.yc * th) / H, rect.w * tw / W, rect.h * th / H, rect.rot)
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
    def recovery_proposals(self, lost: list[Hand], image_shape) -> list[tuple[Rect, float, str]]:
        """Windows around where hands were last seen: a hand lost to motion blur or a fast move
        is usually within a hand's size of its last place, at its last scale and rotation."""
        H, W = image_shape[:2]
        out = []
        for h in lost:
            x0, y0, x1, y1 = h.box
            cx, cy, size = 0.5 * (x0 + x1), 0.5 * (y0 + y1), max(x1 - x0, y1 - y0, 16.0)
            for k in (1.6, 2.4):
                side = k * size
                for dy in (-0.3, 0.0, 0.3):
                    for dx in (-0.3, 0.0, 0.3):
                        out.append((Rect((cx + dx * size) / W, (cy + dy * size) / H, side / W, side / H,
                                         h.next_rect.rot), 0.0, "recover"))
        return out

    def detect(self, image, search: str | None = None, exclude: list[Hand] | None = None,
               extra: list[tuple[Rect, float, str]] | None = None, min_presence: float | None = None) -> list[Hand]:
        """Find new hands in one image; hands in ``exclude`` (already tracked) are not searched for.

        ``search``: "single" (the full frame once, like the stock solution), "palm" (full frame and
        mirrored), "standard" (all palm passes), "thorough" (standard plus the window grid).
        """
        search = search or self.opt["search"]
        exclude = exclude or []
        mirrored = bool(self.opt["mirrored"])
        if min_presence is None:
            min_presence = self.opt["min_presence"] if search != "single" else self.opt["min_tracking_confidence"]
        min_p = float(min_presence)
        proposals = self.palm_proposals(image, passes=search) if search != "none" else []
        if search == "thorough":
            proposals += self.window_proposals(image)
        proposals += extra or []
        found: list[Hand] = []
        for rect, _score, src in proposals:
            src = src.split("@")[0]
            first = self._landmarks(image, rect, mirrored)
            # A region whose first presence is this low never converged to a hand in our tests
            # (palm proposals converge from lower values: they are centred on a palm).
            if first is None or first.presence < (0.08 if src.startswith(("win", "recover")) else 0.01):
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
        single = float(self.opt["single_support_presence"])
        accepted = []
        for h in merged:
            if h.presence < min_p or not self.plausible(h, image.shape):
                continue
            if search not in ("single", "none") and h.support < 2 and h.presence < single:
                continue
            accepted.append(h)
        return accepted

    def finish(self, image, hands: list[Hand]) -> list[Hand]:
        hands = self._nms(hands)
        hands = sorted(hands, key=lambda h: h.presence, reverse=True)[: int(self.opt["max_num_hands"])]
        for h in hands:
            self.second_opinion(image, h)
        return hands

    def track(self, image, previous: list[Hand], frame_no: int) -> list[Hand]:
        """One video frame: follow the previous frame's hands, search for missing ones.

        Cost control: with a hand tracked, the search for another is the cheap "palm" one; with
        none tracked, all palm passes; in thorough mode, hands lost within ``recover_frames``
        are searched for around their last place, and the full window grid runs only every
        ``redetect_every`` frames (so a hand-free video stays cheap).
        """
        if frame_no == 0:
            self._last_seen = []  # (frame, Hand) of hands that disappeared
        tracked = []
        for prev in previous:
            h = self.refine(image, prev.next_rect, iters=0)
            if h is None or h.presence < float(self.opt["min_tracking_confidence"]) or not self.plausible(h, image.shape):
                self._last_seen.append((frame_no - 1, prev))
                continue
            h.tracked = True
            h.support = prev.support
            tracked.append(h)
        tracked = self._nms(tracked)
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
                    recent = [h for f, h in self._last_seen if frame_no - f <= int(self.opt["recover_frames"])]
                    if recent:
                        # Re-acquiring a hand that was here a moment ago is tracking, not a new
                        # detection: the tracking threshold applies.
                        found = self.detect(image, "none", extra=self.recovery_proposals(recent, image.shape),
                                            min_presence=float(self.opt["min_tracking_confidence"]))
                    if not found and periodic:
                        found = self.detect(image, "none", extra=self.window_proposals(image))
            tracked += found
        hands = self.finish(image, tracked)
        self._last_seen = [(f, h) for f, h in self._last_seen
                           if frame_no - f <= int(self.opt["recover_frames"])
                           and not any(_iou(h.box, k.box) > 0.2 for k in hands)]
        return hands


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
        t0 = time.time()
        previous: list[Hand] = []
        every = max(1, int(options["progress_every"]))
        for t in range(T):
            image = np.ascontiguousarray(frames[t])
            if options["mode"] == "images":
                hands = engine.finish(image, engine.detect(image))
            else:
                hands = engine.track(image, previous, t)
            previous = hands
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
            if (t + 1) % every == 0 or t + 1 == T:
                ctx.progress(t + 1, T)
        elapsed = time.time() - t0
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
        return {"detections": n, "frames": T, "elapsed_s": elapsed, "fps": T / elapsed if elapsed > 0 else None,
                "palm_calls": engine.stats["palm_calls"] - calls0["palm_calls"],
                "landmark_calls": engine.stats["landmark_calls"] - calls0["landmark_calls"]}

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()


if __name__ == "__main__":
    y2r_shim.serve(MediaPipeHandsHandler())
