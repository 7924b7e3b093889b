"""Which detection is the left hand and which the right, frame after frame.

A per-frame handedness classifier flips now and then (MediaPipe does on fists, occluded and
side-on hands), and two detections may claim the same side in one frame. Handedness is a property
of a *hand over time*, so it is decided per tracklet:

1. Tracklets: detections are linked frame to frame by Hungarian matching (scipy's
   ``linear_sum_assignment``) on the mean 2D keypoint distance, normalised by hand size, plus the
   3D wrist distance when joints are known. Links beyond ``max_link_cost`` start a new tracklet.
   A tracklet never holds two detections of one frame.
2. Votes: each tracklet sums the log-odds of "right" over its frames, weighted by detection
   score, so a few confident frames outvote many unsure ones and single-frame flips are ignored.
3. Sides: tracklets are assigned strongest-evidence first; a tracklet takes its preferred side
   unless that side is already taken in any of its frames by a stronger tracklet, then the other
   side; frames where both sides are taken are dropped from the weaker tracklet.

The result has at most one detection per side per frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

SIDES = ("left", "right")


@dataclass
class Detection:
    frame: int
    p_right: float  # the detector's probability that this is a right hand (anatomical)
    keypoints_2d: np.ndarray  # (21,2) pixels
    score: float = 1.0
    joints_cam: np.ndarray | None = None  # (21,3) metres, when lifted
    payload: object = None  # whatever the caller wants back (e.g. the lifted hand)


@dataclass
class Tracklet:
    detections: list[Detection] = field(default_factory=list)
    side: str | None = None

    @property
    def frames(self) -> set[int]:
        return {d.frame for d in self.detections}

    def vote(self) -> float:
        """Summed, score-weighted log-odds that this is a right hand (clipped per frame)."""
        total = 0.0
        for d in self.detections:
            p = float(np.clip(d.p_right, 0.02, 0.98))
            total += d.score * np.log(p / (1 - p))
        return total


def link_cost(a: Detection, b: Detection, frame_gap: int) -> float:
    """Motion-normalised distance between two detections (about 1 = one hand size of motion)."""
    size = 0.5 * (_size(a.keypoints_2d) + _size(b.keypoints_2d))
    d2 = float(np.linalg.norm(a.keypoints_2d - b.keypoints_2d, axis=1).mean()) / max(size, 1.0)
    cost = d2
    if a.joints_cam is not None and b.joints_cam is not None:
        # 3D wrist distance in units of 10 cm: separates two hands that overlap in the image.
        cost += float(np.linalg.norm(a.joints_cam[0] - b.joints_cam[0])) / 0.10
    return cost / max(1, frame_gap) ** 0.5


def _size(kp: np.ndarray) -> float:
    span = kp.max(0) - kp.min(0)
    return float(np.hypot(*span))


def build_tracklets(detections: list[Detection], max_link_cost: float = 1.0, max_frame_gap: int = 3) -> list[Tracklet]:
    """Link detections over time (Hungarian per frame against the tracklets alive recently)."""
    by_frame: dict[int, list[Detection]] = {}
    for d in detections:
        by_frame.setdefault(d.frame, []).append(d)
    tracklets: list[Tracklet] = []
    for t in sorted(by_frame):
        dets = by_frame[t]
        alive = [k for k in tracklets if t - k.detections[-1].frame <= max_frame_gap]
        assigned: set[int] = set()
        if alive:
            cost = np.array([[link_cost(k.detections[-1], d, t - k.detections[-1].frame) for d in dets] for k in alive])
            rows, cols = linear_sum_assignment(cost)
            for r, c in zip(rows, cols):
                if cost[r, c] <= max_link_cost:
                    alive[r].detections.append(dets[c])
                    assigned.add(c)
        for i, d in enumerate(dets):
            if i not in assigned:
                tracklets.append(Tracklet([d]))
    return tracklets


def assign_sides(tracklets: list[Tracklet]) -> dict[str, dict[int, Detection]]:
    """Side per tracklet by votes, strongest first, never two detections on one side in a frame."""
    out: dict[str, dict[int, Detection]] = {s: {} for s in SIDES}
    for k in sorted(tracklets, key=lambda k: abs(k.vote()), reverse=True):
        prefer = "right" if k.vote() >= 0 else "left"
        other = "left" if prefer == "right" else "right"
        frames = k.frames
        clash_pref = len(frames & out[prefer].keys())
        clash_other = len(frames & out[other].keys())
        # The preferred side unless it is mostly taken and the other side is freer.
        side = prefer if clash_pref == 0 or clash_pref <= clash_other else other
        k.side = side
        for d in k.detections:
            if d.frame not in out[side]:  # else a stronger tracklet holds this side in this frame
                out[side][d.frame] = d
    return out


def associate(detections: list[Detection], max_link_cost: float = 1.0,
              max_frame_gap: int = 3) -> tuple[dict[str, dict[int, Detection]], dict]:
    """Detections of a video -> {side: {frame: detection}} and a few counts for quality reports."""
    tracklets = build_tracklets(detections, max_link_cost, max_frame_gap)
    sides = assign_sides(tracklets)
    flips = 0
    for s, per_frame in sides.items():
        for d in per_frame.values():
            if (d.p_right >= 0.5) != (s == "right"):
                flips += 1
    kept = sum(len(v) for v in sides.values())
    return sides, {"tracklets": len(tracklets), "detections": len(detections), "kept": kept,
                   "dropped": len(detections) - kept, "handedness_corrected": flips}
