"""Accuracy of a finished episode against a synthetic clip's ground truth (``y2r eval``, demo, suite).

The episode may have been resampled and resized by ingest: its ``/time/frame_index`` says which
source frame each stored frame is, and stored pixels map to source pixels by the resize (same
aspect ratio assumed, as for every suite clip; a different aspect is refused). Monocular estimates
live in their own scale, so 3D track errors are measured after a similarity anchored at the first
camera (both worlds are the first camera's frame) whose scale is fitted on the camera centres (or,
for a camera that does not move, the median depth scale).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from y2r.errors import UsageError
from y2r.evaluation.camera_metrics import camera_report
from y2r.evaluation.ground_truth import tracks_for_queries
from y2r.evaluation.track_metrics import evaluate_tracks
from y2r.geometry import transform_points


def _scale_K(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    K = np.array(K, np.float64)
    K[0, 0] *= sx
    K[1, 1] *= sy
    K[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
    K[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
    return K


def episode_vs_ground_truth(episode: str | Path, gt: str | Path | object) -> dict:
    """All camera, depth and track metrics of one episode against its ground-truth clip."""
    from y2r.dataset.reader import Episode  # noqa: PLC0415
    from y2r.synth import load_gt  # noqa: PLC0415

    clip = load_gt(gt) if isinstance(gt, (str, Path)) else gt
    Tg, Hg, Wg = clip.depth.shape
    with Episode(episode) as ep:
        fi, _ = ep.time()
        W, H = ep.width, ep.height
        if abs(W / H - Wg / Hg) > 1e-3:
            raise UsageError(f"{episode}: aspect {W}x{H} differs from the ground truth's {Wg}x{Hg}")
        if fi.max() >= Tg:
            raise UsageError(f"{episode}: frame {fi.max()} beyond the ground truth's {Tg} frames")
        sx, sy = W / Wg, H / Hg
        K_gt = _scale_K(clip.K, sx, sy)
        c2w_gt = np.asarray(clip.c2w, np.float64)[fi]
        depth_gt = clip.depth[fi]
        if (W, H) != (Wg, Hg):
            depth_gt = np.stack([cv2.resize(d, (W, H), interpolation=cv2.INTER_NEAREST) for d in depth_gt])
        est_pose = ep.world_T_cam().astype(np.float64)
        has_depth = ep.has("depth/depth")
        out = camera_report(ep.K(), est_pose, ep.depth() if has_depth else None,
                            ep.depth_valid() if has_depth else None, K_gt, c2w_gt, depth_gt, metric=ep.metric_scale)
        out["degenerate"] = ep.quality_flags().get("camera_degenerate") or None
        tracks = ep.tracks()
    if tracks is not None and tracks.query.shape[0] > 0:
        q = np.asarray(tracks.query, np.float64)
        q_src = np.stack([fi[q[:, 0].astype(int)], (q[:, 1] + 0.5) / sx - 0.5, (q[:, 2] + 0.5) / sy - 0.5], 1)
        g = tracks_for_queries(clip, q_src)
        gt_uv = np.stack([(g["uv"][fi, :, 0] + 0.5) * sx - 0.5, (g["uv"][fi, :, 1] + 0.5) * sy - 0.5], -1)
        gt_xyz, gt_vis = g["xyz_world"][fi], g["visible"][fi]
        pred_xyz = _align_points(np.asarray(tracks.xyz_world, np.float64), est_pose, c2w_gt, out)
        m = evaluate_tracks(tracks.uv, tracks.visible, gt_uv, gt_vis, query_t=q[:, 0], pred_xyz=pred_xyz,
                            gt_xyz=gt_xyz, world_T_cam=c2w_gt)
        out.update({f"tracks_{k}": v for k, v in m.as_dict().items()})
    return out


def _align_points(xyz: np.ndarray, est_pose: np.ndarray, gt_pose: np.ndarray, cam: dict) -> np.ndarray:
    """Estimated world points in the true world frame: a similarity anchored at the first camera.

    Both worlds are the first camera's frame (y2r's convention), so the rotation and translation
    come from the first poses and only the scale is fitted (least squares on the camera centres
    relative to the first one). A free Sim(3) fitted on camera centres alone is ill-posed for
    near-straight paths (any roll about the path fits) and would inflate the point errors.
    """
    R = gt_pose[0, :3, :3] @ est_pose[0, :3, :3].T
    est_c = (est_pose[:, :3, 3] - est_pose[0, :3, 3]) @ R.T
    gt_c = gt_pose[:, :3, 3] - gt_pose[0, :3, 3]
    denom = float(np.sum(est_c * est_c))
    if denom > 1e-12 and float(np.sum(gt_c * gt_c)) > 1e-12:
        s = float(np.sum(gt_c * est_c) / denom)
    else:
        s = cam.get("depth_scale", 1.0)  # no baseline: the depth maps fix the scale
        s = 1.0 if s is None or not np.isfinite(s) else float(s)
    T = np.eye(4)
    T[:3, :3] = s * R
    T[:3, 3] = gt_pose[0, :3, 3] - s * R @ est_pose[0, :3, 3]
    return transform_points(T, xyz)


def find_ground_truth(gt_dir: Path, video_id: str) -> Path | None:
    """``<id>_gt.npz``, ``<id>.gt.npz`` or ``<id>.npz`` in ``gt_dir`` (suffix-free ids first)."""
    for name in (f"{video_id}_gt.npz", f"{video_id}.gt.npz", f"{video_id}.npz"):
        p = Path(gt_dir) / name
        if p.exists():
            return p
    return None
