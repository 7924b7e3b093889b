"""Hand detection and tracking metrics against hand-made labels.

Photos: detections are matched one-to-one to labelled hand boxes (Hungarian on box IoU); recall
counts matched *counted* hands (the hands a reference count such as ``hand_counts.json`` lists),
phantoms are detections that match no labelled hand at all (labels may also list visible hands
the reference count left out, so finding those is not punished). Videos: the fraction of frames
with a visible hand in which the tracker reports a hand, and jitter, the RMS joint acceleration,
before vs after temporal filtering.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from y2r.stages.hands.temporal import rms_acceleration

__all__ = ["box_iou", "match_boxes", "PhotoScore", "score_photo", "summarise_photos", "frame_hit_rate",
           "ranges_to_mask", "rms_acceleration", "jitter_reduction"]


def box_iou(a, b) -> float:
    """IoU of two (x0, y0, x1, y1) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match_boxes(detected: list, labelled: list, min_iou: float = 0.2) -> list[tuple[int, int]]:
    """One-to-one (detection index, label index) pairs maximising total IoU, each pair >= ``min_iou``."""
    if not detected or not labelled:
        return []
    iou = np.array([[box_iou(d, g) for g in labelled] for d in detected])
    rows, cols = linear_sum_assignment(-iou)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if iou[r, c] >= min_iou]


@dataclass
class PhotoScore:
    name: str
    counted: int  # hands in the reference count
    found: int  # counted hands matched by a detection (capped at ``counted``)
    extra_found: int  # labelled-but-uncounted visible hands that were detected
    phantoms: int  # detections matching no labelled hand
    detections: int


def score_photo(name: str, detected: list, labels: list[dict], counted: int, min_iou: float = 0.2) -> PhotoScore:
    """``labels``: [{"box": [x0,y0,x1,y1], "counted": bool}, ...] for every visible hand."""
    pairs = match_boxes(detected, [lb["box"] for lb in labels], min_iou)
    matched_counted = sum(1 for _, g in pairs if labels[g].get("counted", True))
    matched_extra = len(pairs) - matched_counted
    return PhotoScore(name=name, counted=counted, found=min(matched_counted, counted), extra_found=matched_extra,
                      phantoms=len(detected) - len(pairs), detections=len(detected))


def summarise_photos(scores: list[PhotoScore]) -> dict:
    counted = sum(s.counted for s in scores)
    found = sum(s.found for s in scores)
    return {"counted": counted, "found": found, "recall": found / counted if counted else float("nan"),
            "phantoms": sum(s.phantoms for s in scores), "extra_found": sum(s.extra_found for s in scores)}


def ranges_to_mask(ranges: list, n: int) -> np.ndarray:
    """[[first, last], ...] inclusive frame ranges -> (n,) bool."""
    m = np.zeros(n, bool)
    for a, b in ranges:
        m[int(a): int(b) + 1] = True
    return m


def frame_hit_rate(has_hand: np.ndarray, visible: np.ndarray, ambiguous: np.ndarray | None = None) -> dict:
    """Fraction of frames with a visible hand where a hand was reported; and reports on hand-free frames."""
    has_hand = np.asarray(has_hand, bool)
    visible = np.asarray(visible, bool)
    amb = np.zeros_like(visible) if ambiguous is None else np.asarray(ambiguous, bool)
    vis = visible & ~amb
    free = ~visible & ~amb
    return {"visible_frames": int(vis.sum()), "hit_frames": int((has_hand & vis).sum()),
            "rate": float((has_hand & vis).sum() / vis.sum()) if vis.any() else float("nan"),
            "missed": np.flatnonzero(vis & ~has_hand).tolist(),
            "hand_free_frames": int(free.sum()), "reported_on_hand_free": int((has_hand & free).sum())}


def jitter_reduction(raw_joints: np.ndarray, raw_valid: np.ndarray, filtered_joints: np.ndarray,
                     filtered_valid: np.ndarray, fps: float) -> dict:
    """RMS joint acceleration (m/s^2) of the raw and the filtered track, on the frames both have."""
    both = np.asarray(raw_valid, bool) & np.asarray(filtered_valid, bool)
    before = rms_acceleration(raw_joints, both, fps)
    after = rms_acceleration(filtered_joints, both, fps)
    return {"before_mps2": before, "after_mps2": after, "ratio": after / before if before and before > 0 else float("nan")}
