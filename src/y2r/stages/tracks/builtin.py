"""The built-in CPU tracks backend: a grid of query points tracked through the clip and lifted to 3D.

No GPU and no model weights. Modules:

- ``queries``: the grid of query points on ``tracks.query_frame`` (on valid depth where there is depth);
- ``optical_flow``: frame-to-frame pyramidal Lucas-Kanade with a forward-backward check;
- ``template_alignment``: affine re-alignment of the query-frame patch (drift control, appearance);
- ``motion_blur``: query templates smeared like a motion-blurred frame, and the clip's exposure;
- ``occlusion``: the visibility evidence (image bounds, depth consistency);
- ``lifting``: pixel + depth + K + pose -> world xyz;
- ``anchors``: a static point's world position fused from its depth sample and the rays it was seen along;
- ``camera_geometry``: the camera stage's output as the tracker queries it;
- ``motion_model``: hidden points carried by their neighbours' motion;
- ``reacquisition``: finding a lost point again by template matching;
- ``point_tracker``: the per-frame loop that ties them together, with static-point prediction from
  the camera stage's poses and re-acquisition after occlusion.

Output (``TracksArtifact``), for N query points and T frames:

- ``uv`` (T,N,2): where the point is visible, its measured position; where it is not (occluded or
  out of view), its *predicted* position (the projection of its world position for a static point,
  its constant-velocity extrapolation otherwise) -- the best estimate, as TAPIP3D and CoTracker
  report occluded points too. ``visible`` says which is which. NaN only where no estimate exists
  (a prediction behind the camera).
- ``xyz_world`` (T,N,3): where visible, the point lifted with that frame's depth (NaN where the
  depth is invalid); where not visible, the point's world position if it is static (its anchor),
  else NaN (a moving point's hidden 3D position is not known).
- ``visible`` (T,N); ``query`` (N,3) ``[t, u, v]``.
"""

from __future__ import annotations

import time

import numpy as np

from y2r.artifacts import CameraArtifact, IngestArtifact, TracksArtifact
from y2r.errors import Y2RError
from y2r.stages.base import Backend, Job, MemoryProfile, Resources
from y2r.stages.tracks.camera_geometry import CameraModel
from y2r.stages.tracks.point_tracker import PointTracker, TrackerSettings
from y2r.stages.tracks.queries import grid_queries

# Camera reprojection error (px) above which its poses are not used to predict points.
MAX_USABLE_REPROJ_PX = 5.0
# Assumed projection error of a static point when the camera stage does not report one.
DEFAULT_PROJECTION_SIGMA_PX = 1.0


def camera_model(cam: CameraArtifact) -> CameraModel:
    """What the tracker takes from a camera artifact, with how far to trust its poses.

    Poses are used for prediction when they are finite and the camera stage's reprojection error
    (``quality["reproj_px"]``, when it reports one) is below ``MAX_USABLE_REPROJ_PX``; that error
    also sets how much a projection is trusted against an image measurement. A camera reported as
    rotating only (``quality["degenerate"] == "pure_rotation"``, no depth) still predicts static
    points: projections then do not depend on depth.
    """
    K = np.asarray(cam.K, np.float64)
    poses = np.asarray(cam.world_T_cam, np.float64)
    reproj = cam.quality.get("reproj_px") if isinstance(cam.quality, dict) else None
    usable = bool(np.isfinite(K).all() and np.isfinite(poses).all())
    sigma = DEFAULT_PROJECTION_SIGMA_PX
    if isinstance(reproj, (int, float)) and np.isfinite(reproj):
        usable &= reproj <= MAX_USABLE_REPROJ_PX
        sigma = float(np.clip(reproj, 0.25, MAX_USABLE_REPROJ_PX))
    rotating = isinstance(cam.quality, dict) and cam.quality.get("degenerate") == "pure_rotation"
    return CameraModel(K=K, world_T_cam=poses, depth=cam.depth, depth_valid=cam.depth_valid,
                       poses_usable=usable, projection_sigma_px=sigma,
                       rotation_only_depth=1.0 if rotating else None)


class BuiltinTracks(Backend):
    """Tracks stage on the CPU (see module docstring)."""

    stage = "tracks"
    name = "builtin"
    # 2: motion-blur-matched templates and noise-widened depth tests. A resumed run must not keep
    # version-1 tracks: they differ wherever depth was estimated, most on motion-blurred clips.
    # 3: a static point's projection confirmed by its template alone where depth cannot confirm it,
    # and searched matches far from it not believed.
    version = "3"
    # Frames and depth are read from memory-mapped artifacts one frame at a time; resident pages
    # grow by about 6 B per pixel-frame (RGB, float16 depth, mask). The tracks themselves are small.
    resources = Resources(cpus=1.0, host_memory=MemoryProfile(base_mb=200.0, mb_per_mpix_frame=6.0))

    def settings(self) -> TrackerSettings:
        o = self.config.tracks.builtin
        return TrackerSettings(window=o.window, levels=o.levels, fb_threshold_px=o.fb_threshold_px,
                               occlusion_depth_tol=o.occlusion_depth_tol, template_radius=o.template_radius,
                               ncc_visible=o.ncc_visible, ncc_reacquire=o.ncc_reacquire)

    def process(self, job: Job) -> TracksArtifact:
        ingest: IngestArtifact = job.load("ingest")
        cam: CameraArtifact = job.load("camera")
        return track_video(ingest.frames, cam, self.config.tracks.grid_size, self.config.tracks.query_frame,
                           self.settings(), progress=job.progress)


def track_video(frames: np.ndarray, cam: CameraArtifact, grid_size: int, query_frame: int,
                settings: TrackerSettings | None = None, progress=None) -> TracksArtifact:
    """Track a ``grid_size``^2 grid from ``query_frame`` through ``frames`` (T,H,W,3) uint8."""
    settings = settings or TrackerSettings()
    T, H, W = frames.shape[:3]
    if cam.depth.shape != (T, H, W) or cam.K.shape[0] != T or cam.world_T_cam.shape[0] != T:
        raise Y2RError(f"tracks: the camera artifact (K {tuple(cam.K.shape)}, "
                       f"depth {tuple(cam.depth.shape)}) "
                       f"does not match the frames {(T, H, W)}; re-run the camera stage")
    # A query frame past the end (a short video under a config written for longer ones) is clamped;
    # ``query`` and ``quality`` record the frame actually used.
    qf = int(min(max(query_frame, 0), T - 1))
    margin = max(settings.window // 2, settings.template_radius) + 1
    queries = grid_queries((H, W), grid_size, qf, margin_px=margin,
                           depth_valid=np.asarray(cam.depth_valid[qf]))
    model = camera_model(cam)
    t0 = time.perf_counter()
    tracks = PointTracker(settings).track(frames, queries[:, 1:], qf, model, progress=progress)
    elapsed = time.perf_counter() - t0
    quality = {
        "query_frame": qf,
        "query_frame_clamped": qf != query_frame,
        "num_queries": len(queries),
        "poses_used": model.poses_usable,
        "projection_sigma_px": model.projection_sigma_px,
        "frames_per_s": T / elapsed if elapsed > 0 else None,
        **tracks.stats,
    }
    return TracksArtifact(
        xyz_world=tracks.xyz_world.astype(np.float32), uv=tracks.uv.astype(np.float32),
        visible=tracks.visible.astype(bool), query=queries.astype(np.float32), source="builtin",
        quality=quality,
    )
