"""Accuracy of point tracks against ground truth.

The 2D metrics follow TAP-Vid (Doersch et al., NeurIPS 2022) where they overlap: position error is
measured only where the ground truth says the point is visible, and the query frame itself is left
out (a tracker is given its position there). A prediction without a position (NaN) where the
point is visible counts as an infinite error, so it shows up in the percentiles instead of being
silently skipped.

- ``median_px``, ``p90_px``: position error percentiles (pixels) on GT-visible points.
- ``delta_avg``: TAP-Vid's < delta^x_avg, the fraction within 1, 2, 4, 8, 16 px, averaged.
- visibility: accuracy over all evaluated (t, n) pairs; precision, recall and F1 with "visible" as
  the positive class.
- 3D: ``|xyz_pred - xyz_gt| / z_gt`` in percent, where z_gt is the ground-truth point's depth in
  the camera of that frame, on GT-visible points with a finite prediction; ``xyz_coverage`` is the
  share of GT-visible points that have one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from y2r.geometry import invert_se3, transform_points

DELTA_THRESHOLDS_PX = (1.0, 2.0, 4.0, 8.0, 16.0)


@dataclass(frozen=True)
class TrackMetrics:
    num_points: int
    num_evaluated: int  # GT-visible (t, n) pairs that the position metrics use
    median_px: float
    p90_px: float
    delta_avg: float
    vis_accuracy: float
    vis_precision: float
    vis_recall: float
    vis_f1: float
    err3d_median_pct: float  # NaN when no 3D was given
    err3d_p90_pct: float
    xyz_coverage: float

    def as_dict(self) -> dict:
        return asdict(self)


def camera_depth(xyz_world: np.ndarray, world_T_cam: np.ndarray) -> np.ndarray:
    """z of world points (T,N,3) in the camera of each frame (T,4,4) -> (T,N)."""
    return transform_points(invert_se3(world_T_cam), np.asarray(xyz_world, np.float64))[..., 2]


def evaluation_mask(shape: tuple[int, int], query_t: np.ndarray | None) -> np.ndarray:
    """(T,N) bool: every (t, n) except each point's own query frame."""
    T, N = shape
    mask = np.ones((T, N), bool)
    if query_t is not None:
        qt = np.asarray(query_t).astype(int).reshape(-1)
        inside = (qt >= 0) & (qt < T)
        mask[qt[inside], np.flatnonzero(inside)] = False
    return mask


def evaluate_tracks(
    pred_uv: np.ndarray,
    pred_visible: np.ndarray,
    gt_uv: np.ndarray,
    gt_visible: np.ndarray,
    *,
    query_t: np.ndarray | None = None,
    pred_xyz: np.ndarray | None = None,
    gt_xyz: np.ndarray | None = None,
    world_T_cam: np.ndarray | None = None,
) -> TrackMetrics:
    """Compare predicted tracks with ground truth; all arrays time-first, point n = GT point n.

    Args:
        pred_uv, gt_uv: (T,N,2) pixels. pred_visible, gt_visible: (T,N) bool.
        query_t: (N,) query frame of each point, left out of the evaluation; None keeps every frame.
        pred_xyz, gt_xyz: (T,N,3) world points, optional (3D metrics are NaN without them).
        world_T_cam: (T,4,4) ground-truth poses, needed with the 3D arrays (for the depth z_gt).
    """
    pred_uv = np.asarray(pred_uv, np.float64)
    gt_uv = np.asarray(gt_uv, np.float64)
    pv = np.asarray(pred_visible, bool)
    gv = np.asarray(gt_visible, bool)
    if pred_uv.shape != gt_uv.shape or pv.shape != gv.shape or pv.shape != gt_uv.shape[:2]:
        raise ValueError(f"shape mismatch: pred_uv {pred_uv.shape}, gt_uv {gt_uv.shape}, "
                         f"pred_visible {pv.shape}, gt_visible {gv.shape}")
    mask = evaluation_mask(gv.shape, query_t)
    on = mask & gv
    err = np.linalg.norm(pred_uv - gt_uv, axis=-1)[on]
    err = np.where(np.isfinite(err), err, np.inf)
    if err.size:
        median, p90 = float(np.median(err)), float(np.percentile(err, 90, method="higher"))
        delta = float(np.mean([(err < d).mean() for d in DELTA_THRESHOLDS_PX]))
    else:
        median = p90 = delta = float("nan")

    p, g = pv[mask], gv[mask]
    tp, fp, fn = float((p & g).sum()), float((p & ~g).sum()), float((~p & g).sum())
    acc = float((p == g).mean()) if p.size else float("nan")
    prec = tp / (tp + fp) if tp + fp else float("nan")
    rec = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")

    e3_med = e3_p90 = cov = float("nan")
    if pred_xyz is not None and gt_xyz is not None:
        if world_T_cam is None:
            raise ValueError("3D metrics need world_T_cam (the depth each error is relative to)")
        z = camera_depth(gt_xyz, world_T_cam)
        diff = np.asarray(pred_xyz, np.float64) - np.asarray(gt_xyz, np.float64)
        e3 = np.linalg.norm(diff, axis=-1) / z * 100
        e3 = e3[on]
        have = np.isfinite(e3)
        cov = float(have.mean()) if e3.size else float("nan")
        if have.any():
            e3_med, e3_p90 = float(np.median(e3[have])), float(np.percentile(e3[have], 90, method="higher"))
    return TrackMetrics(
        num_points=int(gv.shape[1]), num_evaluated=int(on.sum()),
        median_px=median, p90_px=p90, delta_avg=delta,
        vis_accuracy=acc, vis_precision=prec, vis_recall=rec, vis_f1=f1,
        err3d_median_pct=e3_med, err3d_p90_pct=e3_p90, xyz_coverage=cov,
    )
