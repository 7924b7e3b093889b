"""Is this video geometrically usable for monocular reconstruction? If not, why not.

Monocular depth needs parallax: image motion that depends on depth. Three cases give none, and the
backend must then report the case and mark depth invalid rather than invent it:

- ``low_texture``: too few trackable corners to measure motion at all (flat walls, heavy blur,
  darkness). Decided from the number of tracks the tracker keeps per frame.
- ``static``: the camera does not move; every static point stays where it is (moving hands do not
  count: the decision uses the median over tracks).
- ``pure_rotation``: the camera turns about its centre (or translates by a negligible fraction of
  the scene depth). A rotation, with the best focal for the rotation model, then explains every
  static track up to tracking noise. Decided by fitting that model to wide keyframe pairs and
  measuring what it leaves unexplained: the rotation-compensated parallax.

Poses are still estimated in these cases: identity for ``static``, rotation-only (poses.py) for
``pure_rotation`` and, when enough tracks exist, for ``low_texture``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from y2r.stages.camera.features import TrackSet
from y2r.stages.camera.intrinsics import K_from_focal
from y2r.stages.camera.poses import KeyframePair, rotation_focal_search, rotation_residuals


@dataclass
class DegeneracyOptions:
    # Fewer tracks than this per frame (median over the video) is low texture.
    min_tracks: int = 40
    # The camera is static when static tracks move less than this (pixels, median) in every pair.
    static_px: float = 1.0
    # Pure rotation when the rotation model leaves less than this unexplained (pixels; per pair the
    # PARALLAX_QUANTILE of the residuals, the largest over the pairs). Measured with the rotation
    # model's own best focal: a rotating camera 0.1-0.45 px (tracker noise, and drift of tracks
    # over a 30 degree turn); translating cameras 1.5 px (the 320x240 fixture: narrow view, little
    # depth range) to 48 px (512x384 synthetic suite). The threshold sits between, ~1.8x from both.
    rotation_parallax_px: float = 0.8


# A low quantile rather than the median: independently moving objects (hands!) add large
# residuals to a minority of tracks, which must not turn a rotating camera into a translating one.
PARALLAX_QUANTILE = 35


@dataclass
class MotionEvidence:
    tracks_per_frame: float  # median number of tracks followed from one frame to the next
    motion_px: float  # largest median displacement over wide keyframe pairs
    parallax_px: float  # largest rotation-compensated residual quantile over wide pairs
    rotation_focal: float | None  # focal that best fits the rotation model (searched when unknown)
    pairs: int

    def as_dict(self) -> dict:
        return {
            "tracks_per_frame": float(self.tracks_per_frame),
            "motion_px": float(self.motion_px),
            "parallax_px": float(self.parallax_px),
            "rotation_focal_px": None if self.rotation_focal is None else float(self.rotation_focal),
            "evidence_pairs": int(self.pairs),
        }


def motion_evidence(
    tracks: TrackSet, pairs: list[KeyframePair], width: int, height: int, focal: float | None
) -> MotionEvidence:
    """Measure motion and rotation-compensated parallax on wide keyframe pairs.

    With an unknown focal, the rotation model gets its own best focal (searched over horizontal
    fields of view of about 20-140 degrees), so a rotating camera is not mistaken for a translating
    one merely because the focal guess was wrong.
    """
    counts = tracks.tracked_counts()
    tpf = float(np.median(counts)) if len(counts) else 0.0
    if not pairs:
        return MotionEvidence(tpf, 0.0, 0.0, focal, 0)
    motion = max(float(np.median(np.linalg.norm(p.ub - p.ua, axis=1))) for p in pairs)
    f = focal
    if f is None:
        found = rotation_focal_search(pairs, width, height, f_min=0.18 * width, f_max=2.8 * width)
        f = found[0] if found is not None else None
    if f is None:
        return MotionEvidence(tpf, motion, float("inf"), None, len(pairs))
    K = K_from_focal(f, width, height)
    parallax = max(float(np.percentile(rotation_residuals(K, p), PARALLAX_QUANTILE)) for p in pairs)
    return MotionEvidence(tpf, motion, parallax, f, len(pairs))


def classify(ev: MotionEvidence, opt: DegeneracyOptions) -> str | None:
    """The degenerate case this evidence shows, or None for a video with usable parallax."""
    if ev.tracks_per_frame < opt.min_tracks or ev.pairs == 0:
        # No pair of keyframes shares enough tracks: motion cannot be measured at all.
        return "low_texture"
    if ev.motion_px < opt.static_px:
        return "static"
    if ev.parallax_px < opt.rotation_parallax_px:
        return "pure_rotation"
    return None
