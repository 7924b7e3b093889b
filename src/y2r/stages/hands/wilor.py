"""Hands backend built on WiLoR, run by a persistent worker in WiLoR's environment.

Per video: WiLoR's worker detects hands on every stored frame and reconstructs each one
(``tools/shims/wilor_shim.py``); this adapter then
1. converts every detection to y2r's conventions (``tools/wilor.py``): left hands un-mirrored --
   joints and MANO axis-angle -- and the translation re-solved with the camera stage's K and metric
   depth instead of WiLoR's 5000/256*max(W,H) focal;
2. associates detections to the left and right hand over time, like the built-in backend
   (``association.py``: tracklets, handedness votes from the detector's class and confidence);
3. cleans each side's track (``temporal.py``: outliers, short gaps, smoothing) and derives the wrist
   frame from the joints (``lifting.wrist_frame``), so ``cam_T_wrist`` means the same for every
   backend. MANO parameters stay WiLoR's, per frame; in a filled gap they are interpolated (slerp
   per joint rotation, linear betas); frames rejected as outliers lose them with the joints.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from y2r.artifacts import HAND_SIDES, CameraArtifact, HandsArtifact, HandTrack, IngestArtifact
from y2r.errors import ToolError
from y2r.stages.base import Backend, Job, MemoryProfile, Resources, WorkerContext
from y2r.stages.hands.association import Detection, associate
from y2r.stages.hands.lifting import wrist_frame
from y2r.stages.hands.temporal import TrackArrays, clean_track
from y2r.tools.launch import (
    ToolSession,
    checkpoint_path,
    launch_spec,
    request_timeout,
    tool_root,
    worker_log_path,
)
from y2r.tools.wilor import HandObservation, convert_hand, read_output

CHECKPOINTS = {  # key in tools.wilor.checkpoints -> default path in the checkout (demo.py's)
    "wilor": "pretrained_models/wilor_final.ckpt",
    "model_config": "pretrained_models/model_config.yaml",
    "detector": "pretrained_models/detector.pt",
}
MANO_SHAPES = {"global_orient": (3,), "hand_pose": (15, 3), "betas": (10,)}


def depth_sampler(cam: CameraArtifact):
    """``(frame, uv (K,2)) -> (K,)`` metric z-depth at the nearest pixel centre, NaN where invalid."""
    depth, valid = cam.depth, cam.depth_valid

    def sample(frame: int, uv: np.ndarray) -> np.ndarray:
        H, W = depth.shape[1:]
        u = np.rint(np.nan_to_num(uv[:, 0], nan=-1)).astype(np.int64)
        v = np.rint(np.nan_to_num(uv[:, 1], nan=-1)).astype(np.int64)
        inside = np.isfinite(uv).all(1) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
        out = np.full(len(uv), np.nan)
        ui, vi = u[inside], v[inside]
        ok = np.asarray(valid[frame][vi, ui], bool)
        out[np.flatnonzero(inside)[ok]] = np.asarray(depth[frame][vi, ui], np.float64)[ok]
        return out

    return sample


def to_detection(o: HandObservation) -> Detection:
    """WiLoR's detector class is its handedness call; its confidence, the probability of that call."""
    p = float(np.clip(o.score, 0.5, 1.0))
    return Detection(frame=o.frame, p_right=p if o.side == "right" else 1.0 - p, keypoints_2d=o.keypoints_2d,
                     score=o.score, joints_cam=o.joints_cam, payload=o)


def interpolate_mano(mano: dict[str, np.ndarray], has: np.ndarray, want: np.ndarray) -> None:
    """Fill MANO at frames ``want & ~has`` between the nearest frames that have it, in place."""
    known = np.flatnonzero(has)
    for t in np.flatnonzero(want & ~has):
        a, b = known[known < t], known[known > t]
        if not len(a) or not len(b):
            continue
        a, b = a[-1], b[0]
        s = (t - a) / (b - a)
        for k in ("global_orient", "hand_pose"):
            ra = Rotation.from_rotvec(mano[k][a].reshape(-1, 3))
            rb = Rotation.from_rotvec(mano[k][b].reshape(-1, 3))
            mano[k][t] = np.stack([Slerp([0.0, 1.0], Rotation.concatenate([ra[j], rb[j]]))([s]).as_rotvec()[0]
                                   for j in range(len(ra))]).reshape(mano[k][t].shape)
        mano["betas"][t] = (1 - s) * mano["betas"][a] + s * mano["betas"][b]


def build_tracks(observations: list[HandObservation], T: int, fps: float, temporal) -> tuple[dict[str, HandTrack], dict]:
    """Associated, cleaned left/right tracks (with MANO) from converted WiLoR detections."""
    sides, assoc = associate([to_detection(o) for o in observations])
    quality: dict = {"association": assoc}
    tracks: dict[str, HandTrack] = {}
    for side in HAND_SIDES:
        arr = TrackArrays(valid=np.zeros(T, bool), joints_cam=np.full((T, 21, 3), np.nan),
                          keypoints_2d=np.full((T, 21, 2), np.nan), score=np.zeros(T), is_right=side == "right")
        mano = {k: np.full((T, *shape), np.nan) for k, shape in MANO_SHAPES.items()}
        for t, d in sides[side].items():
            arr.valid[t], arr.joints_cam[t], arr.keypoints_2d[t], arr.score[t] = True, d.joints_cam, d.keypoints_2d, d.score
            for k in MANO_SHAPES:
                mano[k][t] = d.payload.mano[k]
        detected = arr.valid.copy()
        clean, stats = clean_track(arr, fps, temporal.max_speed_mps, temporal.max_gap_frames, temporal.smoothing)
        interpolate_mano(mano, detected & clean.valid, clean.valid)
        for k in MANO_SHAPES:
            mano[k][~clean.valid] = np.nan
        cam_T_wrist = np.full((T, 4, 4), np.nan)
        for t in np.flatnonzero(clean.valid):
            cam_T_wrist[t] = wrist_frame(clean.joints_cam[t], clean.is_right)
        quality[side] = {"detected_frames": int(detected.sum()), **stats}
        tracks[side] = HandTrack(valid=clean.valid.copy(), joints_cam=clean.joints_cam.astype(np.float32),
                                 keypoints_2d=clean.keypoints_2d.astype(np.float32),
                                 cam_T_wrist=cam_T_wrist.astype(np.float32), score=clean.score.astype(np.float32),
                                 mano={k: v.astype(np.float32) for k, v in mano.items()})
    return tracks, quality


class WiLoRHands(Backend):
    """3D hands (21 joints, wrist pose, MANO) from WiLoR."""

    stage = "hands"
    name = "wilor"
    version = "1"
    # ViT-H backbone (~2.5 GB fp32) + RefineNet + YOLO detector + batch activations; frames are
    # streamed in detector batches, so memory does not grow with the video. Unmeasured seed.
    resources = Resources(cpus=2.0, gpu=True, gpu_memory=MemoryProfile(base_mb=6000.0, mb_per_mpix_frame=0.0),
                          host_memory=MemoryProfile(base_mb=4000.0, mb_per_mpix_frame=0.0), tool="wilor")

    def __init__(self, config, ctx: WorkerContext):
        super().__init__(config, ctx)
        env = config.tools.wilor
        self.opts = config.hands.wilor
        root = tool_root("wilor", env, required=True)
        paths = {k: checkpoint_path("wilor", env, k, default, root) for k, default in CHECKPOINTS.items()}
        spec = launch_spec("wilor", env, "wilor_shim.py", root_required=True)
        self.paths = paths
        self.session = ToolSession(spec, worker_log_path(ctx, "wilor"), {
            "root": str(root), "checkpoint": str(paths["wilor"]), "model_config": str(paths["model_config"]),
            "detector": str(paths["detector"]), "device": ctx.device if ctx.device != "cpu" else None})
        self.session.ensure()

    def describe(self) -> dict:
        return {"backend": self.name, "version": self.version, "tool": "wilor", "checkpoint": str(self.paths["wilor"]),
                "detector": str(self.paths["detector"]), "device": self.session.loaded.get("device")}

    def process(self, job: Job) -> HandsArtifact:
        ingest: IngestArtifact = job.load("ingest")
        cam: CameraArtifact = job.load("camera")
        meta = job.meta or ingest.meta
        T, H, W = ingest.frames.shape[:3]
        frames_path = Path(job.inputs["ingest"]) / "frames.npy"
        raw_path = Path(job.out_dir) / "wilor_raw.npz"
        run = self.session.run({"frames": str(frames_path), "output": str(raw_path),
                                "detector_confidence": self.opts.detector_confidence, "batch_size": self.opts.batch_size,
                                "rescale_factor": self.opts.rescale_factor, "save_vertices": self.opts.save_vertices},
                               timeout_s=request_timeout(self.config, T, self.opts.timeout_s_per_frame),
                               log_path=job.log_path, progress=job.progress)
        raw = read_output(raw_path)
        if raw.image_size != (W, H):
            raise ToolError(f"wilor: saw {raw.image_size[0]}x{raw.image_size[1]} frames, y2r stores {W}x{H}")
        K = np.asarray(cam.K, np.float64)
        sampler = depth_sampler(cam) if cam.metric_scale else None
        obs = [convert_hand(raw, i, K[int(raw.frame[i])], sampler) for i in range(len(raw))]
        tracks, quality = build_tracks(obs, T, float(meta.fps), self.config.hands.temporal)
        if self.opts.save_vertices and raw.vertices is not None:
            # Per detection (the vertices are not smoothed with the joints): frame, side, (778,3) camera frame.
            np.savez(Path(job.out_dir) / "vertices.npz", frame=np.array([o.frame for o in obs], np.int32),
                     is_right=np.array([o.side == "right" for o in obs]),
                     vertices_cam=np.array([o.vertices_cam for o in obs], np.float32).reshape(len(obs), 778, 3))
        fits = [o.fit for o in obs]
        quality.update({
            "detections": len(obs), "frames_with_hands": int(run.get("frames_with_hands", 0)),
            "valid_frames": {s: int(tracks[s].valid.sum()) for s in HAND_SIDES},
            "reproj_rms_px_median": float(np.median([f.reproj_rms_px for f in fits])) if fits else None,
            "depth_anchored_fraction": float(np.mean([f.used_depth for f in fits])) if fits else None,
            "wilor_focal_px": raw.focal_length,
        })
        return HandsArtifact(left=tracks["left"], right=tracks["right"], source="wilor", quality=quality)

    def close(self) -> None:
        self.session.close()
