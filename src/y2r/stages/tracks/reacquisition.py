"""Finding a lost point again: normalised template matching in a window around its prediction.

A point that was occluded or out of view has no flow to follow. Its query-frame patch, warped by
the point's last known affine shape and, in a motion-blurred clip, smeared along its predicted
motion (so it looks as the point would look now), is correlated over
a search window centred on the predicted position (``cv2.matchTemplate``, zero-mean normalised
cross-correlation); the best match is the start for the sub-pixel template alignment, which then
decides (with a stricter threshold than for continuous tracking) whether the point is back.
"""

from __future__ import annotations

import cv2
import numpy as np

from y2r.stages.tracks.motion_blur import MIN_BLUR_PX, streak_positions
from y2r.stages.tracks.template_alignment import sample, window_offsets


def warped_patches(query_image: np.ndarray, points: np.ndarray, A: np.ndarray, radius: int,
                   streak: np.ndarray | None = None) -> np.ndarray:
    """(M, 2r+1, 2r+1) float32 query patches around ``points`` as seen under shapes ``A`` (M,2,2).

    Image offset ``y`` of the warped patch shows the query image at ``point + A^-1 y``; with
    ``streak`` (M,2) image pixels, averaged over ``y`` moving along it (motion blur, motion_blur.py).
    """
    offsets = window_offsets(radius)
    AinvT = np.swapaxes(np.linalg.inv(np.asarray(A, np.float64)), 1, 2)
    pos = np.asarray(points, np.float64)[:, None, :] + np.matmul(offsets, AinvT)  # (M,P,2)
    side = 2 * radius + 1
    if streak is None or not (np.linalg.norm(streak, axis=1) >= MIN_BLUR_PX).any():
        return sample(query_image, pos).reshape(-1, side, side).astype(np.float32)
    s = streak_positions(np.linalg.norm(streak, axis=1).max()).astype(np.float64)
    along = s[:, None, None] * np.matmul(np.asarray(streak, np.float64)[:, None, :], AinvT)[None, :, 0]  # (S,M,2)
    smeared = sample(query_image, pos[None] + along[:, :, None, :]).mean(0)
    return smeared.reshape(-1, side, side).astype(np.float32)


def search(image: np.ndarray, patches: np.ndarray, centres: np.ndarray, radius: np.ndarray,
           min_score: float = 0.5, min_margin: float = 0.1,
           trust_px: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """Best match of each patch (M,h,w) within ``radius`` (M,) pixels of ``centres`` (M,2) in ``image``.

    Returns (positions (M,2), scores (M,)): the best match's centre where its score reaches
    ``min_score`` and, unless it lies within ``trust_px`` of the prediction, is *distinct*: it beats
    the best match elsewhere in the window (more than the patch's half size away) by ``min_margin``.
    In a repetitive texture (a checkerboard, tiles) several places match about equally well, and
    picking a far one would be a guess; the prediction is kept instead and the refinement judges
    it. The score is -1 where no window fits in the image.
    """
    H, W = image.shape
    found = np.array(centres, np.float64, copy=True).reshape(-1, 2)
    scores = np.full(len(found), -1.0)
    for k, patch in enumerate(patches):
        r_y, r_x = patch.shape[0] // 2, patch.shape[1] // 2
        if not np.isfinite(found[k]).all() or patch.std() < 1e-3:
            continue  # a flat patch matches anything equally well
        cu, cv = np.rint(found[k]).astype(int)
        R = int(np.ceil(radius[k]))
        x0, x1 = max(cu - R - r_x, 0), min(cu + R + r_x + 1, W)
        y0, y1 = max(cv - R - r_y, 0), min(cv + R + r_y + 1, H)
        if x1 - x0 < patch.shape[1] or y1 - y0 < patch.shape[0]:
            continue
        score = cv2.matchTemplate(image[y0:y1, x0:x1], patch, cv2.TM_CCOEFF_NORMED)
        _, best, _, (bx, by) = cv2.minMaxLoc(score)
        scores[k] = best
        others = score.copy()
        others[max(by - r_y, 0):by + r_y + 1, max(bx - r_x, 0):bx + r_x + 1] = -1.0
        second = float(others.max())
        pos = (x0 + bx + r_x, y0 + by + r_y)
        close = np.hypot(pos[0] - found[k, 0], pos[1] - found[k, 1]) <= trust_px
        if best >= min_score and (close or best - second >= min_margin):
            found[k] = pos
    return found, scores
