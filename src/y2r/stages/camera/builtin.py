"""The built-in CPU camera backend: intrinsics, poses and dense depth from the video alone.

Pipeline (each step in its own module):

1. ``features``: KLT tracks of Shi-Tomasi corners through every frame;
2. ``intrinsics``: K from the config, from a field-of-view prior, or self-calibrated;
3. ``degeneracy``: is there parallax at all (static camera, pure rotation, too little texture)?
4. ``poses``: keyframe SfM (two-view init, PnP, bundle adjustment) or the rotation-only model;
5. ``depth``: plane-sweep stereo against neighbouring frames, with a consistency-checked mask.

Conventions of the result (``CameraArtifact``): world frame = camera of frame 0, so
``world_T_cam[0] = I``; K is for the stored frames. Monocular video has no scale, so the scale is
fixed deterministically: the median depth of the sparse points seen in frame 0 is 1 (unit-less,
``metric_scale`` False), or ``builtin.metric_scale_m`` metres when the user states it (then
``metric_scale`` True: the user vouches for it). In a degenerate video depth is all invalid and
the reason is in ``quality["degenerate"]``.

``quality`` (JSON): ``degenerate`` (None, "pure_rotation", "static", "low_texture"),
``focal_source`` ("config", "fov_prior", "self_calibrated", "fallback_prior"), ``focal_px``,
``focal_rel_std`` and ``focal_rel_std_tracks`` (marginal std of a self-calibrated focal, classic
and cluster-robust; the latter decides), ``self_calibration_rejected``, ``warnings`` (sentences,
e.g. why the focal fell back to the prior),
``reproj_px`` (robust RMS of the final keyframe BA), ``keyframes``, ``registered_fraction``
(frames with a measured pose; the rest are interpolated and get no depth), ``tracks_per_frame``,
``motion_px``, ``parallax_px`` (the degeneracy evidence), ``depth_valid_fraction``, ``scale``
(how the scale was fixed, None without parallax) and ``timings_s``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from y2r.artifacts import CameraArtifact, VideoMeta
from y2r.config import CameraConfig
from y2r.errors import InputError
from y2r.geometry import focal_from_fov, invert_se3
from y2r.stages.base import Backend, Job, MemoryProfile, Resources
from y2r.stages.camera.degeneracy import DegeneracyOptions, MotionEvidence, classify, motion_evidence
from y2r.stages.camera.depth import DepthOptions, plane_sweep_video
from y2r.stages.camera.features import FeatureTracker, TrackerOptions, TrackSet, to_grey
from y2r.stages.camera.intrinsics import K_from_config, K_from_focal, K_from_fov
from y2r.stages.camera.poses import (
    PoseOptions,
    Reconstruction,
    incremental_sfm,
    rotation_only_poses,
    select_keyframes,
    sfm_focal_search,
    wide_keyframe_pairs,
)

# A self-calibrated focal whose uncertainty exceeds this fraction is not trusted (the motion does
# not constrain it, e.g. pure translation) and the fallback field of view is used instead, which
# ``quality`` says (``focal_source``, ``self_calibration_rejected``, ``warnings``). The uncertainty
# is the cluster-robust marginal std (points as clusters, ``bundle_adjust``): the classic marginal
# assumes independent observations and a right model, and was 7x optimistic on a forward walk
# (error 1.2%, std 0.17%). Over 10 synthetic clips (5 motions, 2 sizes, 30-60 frames) the error
# was at most 2.5x the robust std, so 2% keeps accepted focals within the 5% target.
MAX_FOCAL_REL_STD = 0.02


def _calibration_trusted(rec: Reconstruction, quality: dict) -> bool:
    """Whether a self-calibrated reconstruction's focal is pinned down; records a rejection."""
    std = rec.focal_rel_std_tracks
    if std is not None and np.isfinite(std) and std <= MAX_FOCAL_REL_STD:
        return True
    quality["self_calibration_rejected"] = {
        "focal_px": rec.focal,
        "focal_rel_std": rec.focal_rel_std,
        "focal_rel_std_tracks": std,
    }
    quality.setdefault("warnings", []).append(
        "self-calibration rejected: the camera motion does not pin the focal down (relative std "
        + ("unknown" if std is None or not np.isfinite(std) else f"{std:.1%}")
        + f" > {MAX_FOCAL_REL_STD:.0%}); the fallback field of view is used instead"
    )
    return False


def _square_pixels(tracks: TrackSet, K: np.ndarray) -> tuple[TrackSet, np.ndarray]:
    """Pose estimation assumes fx == fy; rescale rows of non-square pixels (e.g. 'stretch' ingest)."""
    ratio = K[0, 0] / K[1, 1]
    if abs(ratio - 1.0) < 1e-9:
        return tracks, K
    uv = []
    for p in tracks.uv:
        q = p.copy()
        q[:, 1] = (q[:, 1] - K[1, 2]) * ratio + K[1, 2]
        uv.append(q)
    Ks = K.copy()
    Ks[1, 1] = K[0, 0]
    return TrackSet(tracks.ids, uv, tracks.num_tracks, tracks.corners_detected), Ks


def _anchor_and_scale(
    rec: Reconstruction, tracks: TrackSet, target_depth: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """world_T_cam with world = camera 0, and points, scaled so frame 0's median point depth = target."""
    A = rec.cam_T_world[0].copy()  # old world -> camera 0
    cam_T_world = rec.cam_T_world @ invert_se3(A)
    X = rec.points @ A[:3, :3].T + A[:3, 3] if len(rec.points) else rec.points
    scale = 1.0
    if len(X):
        Xmap = np.full((tracks.num_tracks, 3), np.nan)
        Xmap[rec.point_ids] = X
        z = Xmap[tracks.ids[0], 2]
        z = z[np.isfinite(z) & (z > 0)]
        if len(z) < 10:  # frame 0 sees few points: median over every frame's view of its points
            z = np.concatenate(
                [
                    (Xmap[tracks.ids[t]] @ cam_T_world[t, :3, :3].T + cam_T_world[t, :3, 3])[:, 2]
                    for t in range(len(cam_T_world))
                ]
            )
            z = z[np.isfinite(z) & (z > 0)]
        if len(z):
            scale = target_depth / float(np.median(z))
    cam_T_world[:, :3, 3] *= scale
    X = X * scale
    world_T_cam = invert_se3(cam_T_world)
    world_T_cam[0] = np.eye(4)  # exact, not 1e-16 off
    return world_T_cam, X, scale


def _depth_ranges(
    world_T_cam: np.ndarray, X: np.ndarray, point_ids: np.ndarray, tracks: TrackSet
) -> np.ndarray:
    """Per frame [near, far] from the depths of the sparse points it sees, with margins."""
    T = len(world_T_cam)
    cam_T_world = invert_se3(world_T_cam)
    Xmap = np.full((tracks.num_tracks, 3), np.nan)
    Xmap[point_ids] = X
    ranges = np.full((T, 2), np.nan)
    for t in range(T):
        P = Xmap[tracks.ids[t]]
        P = P[np.isfinite(P[:, 0])]
        if len(P) < 15:
            continue
        z = (P @ cam_T_world[t, :3, :3].T + cam_T_world[t, :3, 3])[:, 2]
        z = z[z > 0]
        if len(z) < 15:
            continue
        lo, hi = np.percentile(z, [2, 98])
        # Sparse corners miss the extremes of the dense scene (the image border nearest to the
        # camera, textureless far walls): widen the range by a factor 1.5 at both ends.
        ranges[t] = [lo / 1.5, hi * 1.5]
    # Frames without enough points borrow the range of the nearest frame that has one.
    have = np.flatnonzero(np.isfinite(ranges[:, 0]))
    if len(have):
        for t in np.flatnonzero(~np.isfinite(ranges[:, 0])):
            ranges[t] = ranges[have[np.argmin(np.abs(have - t))]]
    return ranges


def _solve_poses(
    tracks: TrackSet,
    K: np.ndarray | None,
    K_fallback: np.ndarray,
    W: int,
    H: int,
    kfs: np.ndarray,
    ev: MotionEvidence,
    degenerate: str | None,
    popt: PoseOptions,
    quality: dict,
    focal_source: str,
) -> tuple[Reconstruction | None, str]:
    """The best pose estimate this video allows, and where its focal came from.

    ``K`` is None when the focal must be self-calibrated. With parallax: keyframe SfM (focal from
    ``sfm_focal_search`` then bundle adjustment, replaced by the fallback field of view when the
    video does not pin it down). Pure rotation, or SfM that could not start: the rotation-only
    model (its focal self-calibrated only for a true pure rotation). Static, or nothing to track:
    None (the caller keeps the camera still).
    """
    rec: Reconstruction | None = None
    if degenerate is None:
        if K is None:
            found = sfm_focal_search(tracks, kfs, W, H, popt, f_min=0.18 * W, f_max=2.8 * W)
            f0 = found[0] if found is not None else float(K_fallback[0, 0])
            quality["initial_focal_px"] = f0
            rec = incremental_sfm(tracks, K_from_focal(f0, W, H), popt, optimize_focal=True, keyframes=kfs)
            if rec is not None and not _calibration_trusted(rec, quality):
                focal_source = "fallback_prior"
                rec = incremental_sfm(tracks, K_fallback, popt, optimize_focal=False, keyframes=kfs)
        else:
            rec = incremental_sfm(tracks, K, popt, optimize_focal=False, keyframes=kfs)
        if rec is None:
            # Parallax was measured but no pair initialised: keep rotation-only poses, no depth.
            quality["reconstruction"] = "rotation_only_fallback"
    if rec is None and degenerate != "static" and ev.tracks_per_frame >= 8 and len(kfs) >= 2:
        calibrate = K is None and degenerate == "pure_rotation"
        K_rot = K if K is not None else K_from_focal(ev.rotation_focal or K_fallback[0, 0], W, H)
        if K is None and not calibrate:
            K_rot, focal_source = K_fallback, "fallback_prior"
        rec = rotation_only_poses(tracks, K_rot, popt, optimize_focal=calibrate, keyframes=kfs)
        if calibrate and not _calibration_trusted(rec, quality):
            focal_source = "fallback_prior"
            rec = rotation_only_poses(tracks, K_fallback, popt, optimize_focal=False, keyframes=kfs)
    if rec is None and K is None:
        focal_source = "fallback_prior"
    return rec, focal_source


def reconstruct(
    frames: np.ndarray, meta: VideoMeta, cfg: CameraConfig, progress: Callable[[int, int], None] | None = None
) -> CameraArtifact:
    """Everything the camera stage computes, for RGB frames (T,H,W,3) uint8 described by ``meta``."""
    opts = cfg.builtin
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) < 1:
        raise InputError(meta.source_path, f"frames have shape {tuple(frames.shape)}, expected (T,H,W,3)")
    T, H, W = frames.shape[:3]
    total = 2 * T + 1
    report = progress or (lambda done, total: None)
    timings: dict[str, float] = {}
    quality: dict = {}

    # 1. tracks (grey frames are kept: depth needs them too)
    t0 = time.perf_counter()
    grey = np.empty((T, H, W), np.uint8)
    tracker = FeatureTracker(W, H, TrackerOptions(max_features=opts.max_features))
    for t in range(T):
        grey[t] = to_grey(frames[t])
        tracker.add(grey[t])
        report(t + 1, total)
    tracks = tracker.result()
    timings["tracking"] = time.perf_counter() - t0

    # 2. intrinsics as far as the config knows them
    t0 = time.perf_counter()
    if cfg.intrinsics is not None:
        K, focal_source = K_from_config(cfg.intrinsics, meta), "config"
    elif cfg.fov_deg is not None:
        K, focal_source = K_from_fov(cfg.fov_deg, meta), "fov_prior"
    else:
        K, focal_source = None, "self_calibrated"
    K_fallback = K_from_focal(focal_from_fov(W, opts.fallback_fov_deg), W, H)
    if K is not None:
        tracks_sq, K_sq = _square_pixels(tracks, K)
    else:
        tracks_sq, K_sq = tracks, None

    # 3. degeneracy
    popt = PoseOptions(keyframe_parallax_px=opts.keyframe_parallax_px, refine=opts.refine)
    kfs = select_keyframes(tracks_sq, popt.keyframe_parallax_px, popt.keyframe_min_shared, popt.min_keyframes)
    pairs = wide_keyframe_pairs(tracks_sq, kfs, popt.ransac_px)
    ev = motion_evidence(tracks_sq, pairs, W, H, None if K_sq is None else float(K_sq[0, 0]))
    # A single frame has no motion at all: that is a static camera, not missing texture.
    degenerate = classify(ev, DegeneracyOptions()) if T > 1 else "static"
    quality.update(ev.as_dict())
    timings["degeneracy"] = time.perf_counter() - t0

    # 4. poses
    t0 = time.perf_counter()
    rec, focal_source = _solve_poses(
        tracks_sq, K_sq, K_fallback, W, H, kfs, ev, degenerate, popt, quality, focal_source
    )
    if rec is None:  # static, or nothing to track: the camera is taken to stand still
        world_T_cam = np.tile(np.eye(4), (T, 1, 1))
        focal = float(K_sq[0, 0]) if K_sq is not None else float(K_fallback[0, 0])
        X, point_ids = np.zeros((0, 3)), np.zeros(0, int)
    else:
        target = opts.metric_scale_m if opts.metric_scale_m is not None else 1.0
        world_T_cam, X, _ = _anchor_and_scale(rec, tracks_sq, target)
        focal, point_ids = rec.focal, rec.point_ids
        quality.update(
            {
                "reproj_px": None if not np.isfinite(rec.rms_px) else float(rec.rms_px),
                "keyframes": len(rec.keyframes),
                "registered_fraction": float(rec.registered.mean()),
                "focal_rel_std": rec.focal_rel_std,
                "focal_rel_std_tracks": rec.focal_rel_std_tracks,
                **rec.stats,
            }
        )
    # The final K: estimated focal (square pixels) or the given K unchanged.
    if focal_source in ("config", "fov_prior"):
        K_out = K
    else:
        K_out = K_from_focal(focal, W, H)
    timings["poses"] = time.perf_counter() - t0
    report(T + 1, total)

    # 5. depth
    t0 = time.perf_counter()
    # Only a reconstruction with parallax has a scale (and depth); a rotation-only or static one
    # has neither, whatever metric_scale_m says.
    has_scale = degenerate is None and rec is not None and len(X) > 0 and "reconstruction" not in quality
    if has_scale and opts.depth == "plane_sweep":
        dopt = DepthOptions(planes=opts.depth_planes, scale=opts.depth_scale)
        ranges = _depth_ranges(world_T_cam, X, point_ids, tracks_sq)
        # Frames whose pose is only interpolated (PnP failed) neither get nor lend depth.
        res = plane_sweep_video(
            grey,
            K_out,
            invert_se3(world_T_cam),
            ranges,
            dopt,
            usable=rec.registered,
            progress=lambda d, n: report(T + 1 + d, total),
        )
        depth, valid = res.depth, res.valid
        depth[~valid] = 0.0  # the artifact's convention: 0 where invalid (NaN inside plane_sweep)
        quality.update(res.stats)
    else:
        depth = np.zeros((T, H, W), np.float32)
        valid = np.zeros((T, H, W), bool)
    quality["depth_valid_fraction"] = float(valid.mean())
    timings["depth"] = time.perf_counter() - t0
    report(total, total)

    metric = opts.metric_scale_m is not None and has_scale
    if focal_source == "fallback_prior" and "self_calibration_rejected" not in quality:
        quality.setdefault("warnings", []).append(
            f"the focal cannot be self-calibrated ({degenerate or 'no reconstruction'}); "
            f"the fallback field of view ({opts.fallback_fov_deg:g} degrees) is used instead"
        )
    quality.update(
        {
            "degenerate": degenerate,
            "focal_source": focal_source,
            "focal_px": float(K_out[0, 0]),
            "scale": (
                f"median depth of frame 0 = {opts.metric_scale_m:g} m (builtin.metric_scale_m)"
                if metric
                else "median depth of frame 0 = 1 (arbitrary unit)"
                if has_scale
                else None
            ),  # no parallax: nothing has a scale
            "timings_s": {k: round(v, 3) for k, v in timings.items()},
        }
    )
    return CameraArtifact(
        K=np.repeat(K_out[None].astype(np.float32), T, 0),
        world_T_cam=world_T_cam.astype(np.float32),
        depth=depth,
        depth_valid=valid,
        metric_scale=bool(metric),
        source="builtin",
        quality=_jsonable(quality),
    )


def _jsonable(d):
    """Quality values as plain JSON types (NaN/inf become None)."""
    if isinstance(d, dict):
        return {str(k): _jsonable(v) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return [_jsonable(v) for v in d]
    if isinstance(d, (np.floating, float)):
        return float(d) if np.isfinite(d) else None
    if isinstance(d, (np.integer,)):
        return int(d)
    if isinstance(d, np.bool_):
        return bool(d)
    return d


class BuiltinCamera(Backend):
    """Camera stage on the CPU: no GPU, no model weights (see module docstring)."""

    stage = "camera"
    name = "builtin"
    version = "1"
    # Per stored megapixel-frame: grey copy (1 B/px), float32 depth + mask and their float16 copy
    # on save (~8 B/px), plus the sweep's working set at half resolution.
    resources = Resources(cpus=1.0, host_memory=MemoryProfile(base_mb=250.0, mb_per_mpix_frame=12.0))

    def process(self, job: Job) -> CameraArtifact:
        ingest = job.load("ingest")
        return reconstruct(ingest.frames, ingest.meta, self.config.camera, progress=job.progress)
