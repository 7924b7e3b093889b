"""Standard metrics for camera trajectories, intrinsics and depth against ground truth.

- ATE: absolute trajectory error (RMSE of camera centres) after the least-squares similarity
  (Sim(3), Umeyama) alignment that monocular estimates need, reported in the GT's units and as a
  percentage of the GT path length, so that scenes of different size compare.
- RRE: relative rotation error, the mean angle (degrees) between estimated and true frame-to-frame
  rotations (the rotational part of the RPE of Sturm et al., IROS 2012, with delta = 1 frame).
- Focal error: |f_est - f_gt| / f_gt in percent.
- Depth: AbsRel = mean |d - d_gt| / d_gt and delta < 1.25 (fraction of pixels with
  max(d/d_gt, d_gt/d) < 1.25) on pixels valid in both, after one median scale for the whole clip
  when the estimate is not metric (per-frame scaling would hide scale drift); coverage = fraction
  of GT-valid pixels the estimate marks valid.
"""

from __future__ import annotations

import numpy as np

from y2r.geometry import rotation_angle_deg, umeyama


def path_length(world_T_cam: np.ndarray) -> float:
    c = np.asarray(world_T_cam)[:, :3, 3]
    return float(np.sum(np.linalg.norm(np.diff(c, axis=0), axis=1)))


def ate(est_world_T_cam: np.ndarray, gt_world_T_cam: np.ndarray, with_scale: bool = True) -> dict:
    """ATE of camera centres after Sim(3) (or SE(3)) alignment of the estimate onto the GT."""
    est = np.asarray(est_world_T_cam, np.float64)[:, :3, 3]
    gt = np.asarray(gt_world_T_cam, np.float64)[:, :3, 3]
    if np.ptp(est, axis=0).max() < 1e-12 or np.ptp(gt, axis=0).max() < 1e-12:
        # A trajectory with no extent cannot be aligned in scale: compare after centring only.
        s, R, t = 1.0, np.eye(3), gt.mean(0) - est.mean(0)
    else:
        s, R, t = umeyama(est, gt, with_scale=with_scale)
    aligned = s * est @ R.T + t
    err = np.linalg.norm(aligned - gt, axis=1)
    rmse = float(np.sqrt(np.mean(err**2)))
    length = path_length(gt_world_T_cam)
    return {
        "ate_rmse": rmse,
        "ate_pct_path": 100.0 * rmse / length if length > 0 else float("nan"),
        "path_length": length,
        "sim3_scale": float(s),
    }


def relative_rotation_error(est_world_T_cam: np.ndarray, gt_world_T_cam: np.ndarray, delta: int = 1) -> float:
    """Mean angle (degrees) between estimated and true relative rotations over ``delta`` frames."""
    Re = np.asarray(est_world_T_cam, np.float64)[:, :3, :3]
    Rg = np.asarray(gt_world_T_cam, np.float64)[:, :3, :3]
    if len(Re) <= delta:
        return float("nan")
    rel_e = np.swapaxes(Re[:-delta], 1, 2) @ Re[delta:]
    rel_g = np.swapaxes(Rg[:-delta], 1, 2) @ Rg[delta:]
    return float(np.mean(rotation_angle_deg(np.swapaxes(rel_g, 1, 2) @ rel_e)))


def focal_error_pct(K_est: np.ndarray, K_gt: np.ndarray) -> float:
    """Mean of the fx and fy relative errors, in percent (first frame's K when given per frame)."""
    Ke = np.asarray(K_est, np.float64).reshape(-1, 3, 3)[0]
    Kg = np.asarray(K_gt, np.float64).reshape(-1, 3, 3)[0]
    return float(50.0 * (abs(Ke[0, 0] - Kg[0, 0]) / Kg[0, 0] + abs(Ke[1, 1] - Kg[1, 1]) / Kg[1, 1]))


def depth_metrics(
    depth: np.ndarray,
    valid: np.ndarray,
    gt_depth: np.ndarray,
    gt_valid: np.ndarray | None = None,
    metric: bool = False,
) -> dict:
    """AbsRel, delta<1.25 and coverage over a clip (arrays (T,H,W) or (H,W))."""
    depth = np.asarray(depth, np.float64)
    gt = np.asarray(gt_depth, np.float64)
    gv = (np.isfinite(gt) & (gt > 0)) if gt_valid is None else (np.asarray(gt_valid, bool) & (gt > 0))
    ev = np.asarray(valid, bool) & np.isfinite(depth) & (depth > 0)
    both = ev & gv
    coverage = float(both.sum() / max(gv.sum(), 1))
    if not both.any():
        return {"abs_rel": float("nan"), "delta1": float("nan"), "coverage": coverage, "scale": float("nan")}
    d, g = depth[both], gt[both]
    scale = 1.0 if metric else float(np.median(g / d))
    d = d * scale
    ratio = np.maximum(d / g, g / d)
    return {
        "abs_rel": float(np.mean(np.abs(d - g) / g)),
        "delta1": float(np.mean(ratio < 1.25)),
        "coverage": coverage,
        "scale": scale,
    }


def camera_report(
    est_K: np.ndarray,
    est_world_T_cam: np.ndarray,
    est_depth: np.ndarray | None,
    est_valid: np.ndarray | None,
    gt_K: np.ndarray,
    gt_world_T_cam: np.ndarray,
    gt_depth: np.ndarray | None = None,
    metric: bool = False,
) -> dict:
    """All camera metrics in one dict (depth keys only when both depths are given)."""
    out = ate(est_world_T_cam, gt_world_T_cam)
    out["rot_err_deg_per_frame"] = relative_rotation_error(est_world_T_cam, gt_world_T_cam)
    out["focal_err_pct"] = focal_error_pct(est_K, gt_K)
    if est_depth is not None and gt_depth is not None and est_valid is not None:
        out.update(
            {f"depth_{k}": v for k, v in depth_metrics(est_depth, est_valid, gt_depth, metric=metric).items()}
        )
    return out
