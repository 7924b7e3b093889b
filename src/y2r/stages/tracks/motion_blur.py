"""Motion-blur-matched templates: the query patch smeared the way the current frame smears the point.

A frame exposed while the image moves shows each point spread along its motion over the exposure:
the sharp image convolved with a line kernel of length ``exposure * motion``, centred on the
point's mid-exposure position. A sharp query template fits such a frame badly: the frame has lost
the template's texture along the motion, so Gauss-Newton steps follow gradients the image no longer
has and oscillate (on the fast_blur scene half the fits did not converge in 5 iterations), and the
NCC that judges visibility drops. Blurring the *template* with the same kernel makes the two alike
again: the fit sees only the structure the frame still shows, and the score compares like with like.

The kernel is the point's image motion into this frame (its flow, or its predicted motion when it
is searched for) times the camera's exposure fraction (exposure time / frame interval). A user's
video does not say its exposure, so it is estimated from the clip (``ExposureEstimate``): on the
first frames with fast-moving points, a few of those points are aligned with templates blurred for
each candidate fraction, and the fraction whose fits correlate best over those frames wins, if it
beats the sharp template clearly. A sharp clip keeps fraction 0 however fast it moves, and its
templates are never blurred.
"""

from __future__ import annotations

import numpy as np

from y2r.stages.tracks.template_alignment import (
    TemplateAligner,
    sample,
    steepest_descent,
    weighted_normalise,
    window_offsets,
)

# Streaks shorter than this (pixels) are left to the smoothing every frame gets: sharp template.
MIN_BLUR_PX = 1.0
# Mean NCC gain per frame over the sharp template that a blurred candidate needs to win. A sharp
# clip's fits also gain a little from a slightly blurred template (its frames are anti-aliased and
# lossily encoded: about 0.001 on the orbit scene); real blur gains 0.03-0.2 (fast_blur).
_MIN_GAIN = 0.01
# Samples along the streaks of one call, at most: one per pixel of the longest, up to this many
# (longer streaks are sampled more sparsely; the frames are smoothed, so the gaps stay small).
_MAX_SAMPLES = 16


def streak_positions(longest_px: float) -> np.ndarray:
    """Where along a streak (-0.5 .. 0.5 of it) to sample: about one per pixel of the longest one."""
    n = int(np.clip(np.ceil(longest_px) + 1, 2, _MAX_SAMPLES))
    return np.linspace(-0.5, 0.5, n, dtype=np.float32)


class BlurredTemplates:
    """Motion-blurred copies of an aligner's query templates, re-extracted from the query image.

    Args:
        aligner: the query templates (their window, validity mask and normalisation are kept).
        image: the query frame the aligner's templates were taken from (smoothed float32 grey).
        points: (N,2) the query positions.
    """

    def __init__(self, aligner: TemplateAligner, image: np.ndarray, points: np.ndarray):
        self._aligner = aligner
        self._image = image
        self._points = np.asarray(points, np.float32).reshape(-1, 2)
        # One pixel wider than the template on every side, for central-difference gradients.
        self._side = 2 * aligner.radius + 3
        self._grid = window_offsets(aligner.radius + 1)
        # The last blurred template of each point, with the shape and streak it was made for: one
        # frame asks for the same ones several times (flow fit, static hypothesis, search).
        N, P = aligner.template.shape
        self._made_A = np.full((N, 2, 2), np.nan)
        self._made_blur = np.full((N, 2), np.nan)
        self._values = np.zeros((N, P), np.float32)
        self._sd = np.zeros((N, P, 6), np.float32)

    def templates(self, index: np.ndarray, A: np.ndarray,
                  blur: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(values (M,P), steepest descent (M,P,6)) of templates ``index`` for ``TemplateAligner.align``.

        ``blur`` (M,2): each point's streak in image pixels (exposure times motion); ``A`` (M,2,2)
        its template shape. Streaks below ``MIN_BLUR_PX`` keep the stored sharp template; None
        when no streak reaches it (use the stored templates as they are).
        """
        index = np.asarray(index)
        blur = np.asarray(blur, np.float64).reshape(-1, 2)
        smeared = np.linalg.norm(blur, axis=1) >= MIN_BLUR_PX
        if not smeared.any():
            return None
        A = np.asarray(A, np.float64).reshape(-1, 2, 2)
        made = ((self._made_A[index] == A).all((1, 2)) & (self._made_blur[index] == blur).all(1))
        k = np.flatnonzero(smeared & ~made)
        if k.size:
            i = index[k]
            self._values[i], self._sd[i] = self._blurred(i, A[k], blur[k])
            self._made_A[i], self._made_blur[i] = A[k], blur[k]
        al = self._aligner
        values = np.where(smeared[:, None], self._values[index], al.template[index])
        sd = np.where(smeared[:, None, None], self._sd[index], al.sd[index])
        return values, sd

    def _blurred(self, index: np.ndarray, A: np.ndarray, blur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        al = self._aligner
        M = len(index)
        # The image streak in template coordinates (the template is seen through W(x) = c + A x).
        streak = np.linalg.solve(A, blur[:, :, None])[:, :, 0].astype(np.float32)
        s = streak_positions(np.linalg.norm(streak, axis=1).max())
        base = self._points[index][:, None, :] + self._grid[None]  # (M,G,2)
        v = sum(sample(self._image, base + sk * streak[:, None, :]) for sk in s)
        v = (v / len(s)).reshape(M, self._side, self._side)
        inner = v[:, 1:-1, 1:-1].reshape(M, -1)
        tx = 0.5 * (v[:, 1:-1, 2:] - v[:, 1:-1, :-2]).reshape(M, -1)
        ty = 0.5 * (v[:, 2:, 1:-1] - v[:, :-2, 1:-1]).reshape(M, -1)
        # Normalised like the stored templates (TemplateAligner._extract), gradients scaled alike.
        values, std = weighted_normalise(inner, al.template_valid[index] * al.fit_window[None])
        scale = 1.0 / np.maximum(std, 1e-6)[:, None]
        return values, steepest_descent(tx * scale, ty * scale, al.offsets).astype(np.float32)


class ExposureEstimate:
    """The clip's exposure fraction, voted on by template fits of fast-moving points.

    ``vote`` takes, for one frame, the typical fit score of each candidate fraction; after
    ``frames_needed`` frames the estimate stops listening (exposure is a setting of the camera, and
    the probe costs fits). The best-scoring candidate wins if it beats the sharp template (fraction
    0) by ``_MIN_GAIN`` per frame; until then, and before the first vote, the fraction is 0.
    """

    CANDIDATES = np.array([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])

    def __init__(self, frames_needed: int = 8):
        self.frames_needed = frames_needed
        self._votes = np.zeros(len(self.CANDIDATES))
        self.frames = 0

    @property
    def settled(self) -> bool:
        return self.frames >= self.frames_needed

    @property
    def fraction(self) -> float:
        best = int(np.argmax(self._votes))
        gain = (self._votes[best] - self._votes[0]) / max(self.frames, 1)
        return float(self.CANDIDATES[best]) if gain >= _MIN_GAIN else 0.0

    def vote(self, scores: np.ndarray) -> None:
        """``scores`` (len(CANDIDATES),): one frame's median fit NCC per candidate fraction."""
        self._votes += np.asarray(scores, np.float64)
        self.frames += 1
