"""Hands backend built on WiLoR, run by a persistent worker in WiLoR's environment.

Per video: WiLoR's worker detects hands on every stored frame and reconstructs each one
(``tools/shims/wilor_shim.py``); this adapter converts every detection to y2r's conventions
(``tools/wilor.py``: left hands un-mirrored -- joints, wrist rotation and MANO axis-angle -- and the
translation re-solved with the camera stage's K and metric depth instead of WiLoR's 5000/256*max(W,H)
focal), then assigns detections to the left / right tracks frame by frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from y2r.artifacts import HAND_SIDES, CameraArtifact, HandsArtifact, HandTrack, IngestArtifact
from y2r.errors import ToolError
from y2r.stages.base import Backend, Job, MemoryProfile, Resources, WorkerContext
from y2r.tools.launch import ToolSession, checkpoint_path, launch_spec, request_timeout, tool_root, worker_log_path
from y2r.tools.wilor import HandObservation, convert_hand, read_output

CHECKPOINTS = {  # key in tools.wilor.checkpoints -> default path in the checkout (demo.py's)
    "wilor": "pretrained_models/wilor_final.ckpt",
    "model_config": "pretrained_models/model_config.yaml",
    "detector": "pretrained_models/detector.pt",
}


def depth_sampler(cam: CameraArtifact):
    """``(frame, uv (K,2)) -> (K,)`` metric z-depth at the nearest pixel centre, NaN where invalid."""
    depth, valid = cam.depth, cam.depth_valid

    def sample(frame: int, uv: np.ndarray) -> np.ndarray:
        H, W = depth.shape[1:]
        u = np.rint(uv[:, 0]).astype(np.int64)
        v = np.rint(uv[:, 1]).astype(np.int64)
        inside = np.isfinite(uv).all(1) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
        out = np.full(len(uv), np.nan)
        ui, vi = u[inside], v[inside]
        ok = np.asarray(valid[frame][vi, ui], bool)
        out[np.flatnonzero(inside)[ok]] = np.asarray(depth[frame][vi, ui], np.float64)[ok]
        return out

    return sample


def assign_sides(observations: list[HandObservation], T: int) -> dict[str, list[HandObservation | None]]:
    """Per frame, the best-scoring detection of each side (WiLoR's detector labels left / right)."""
    best: dict[str, list[HandObservation | None]] = {s: [None] * T for s in HAND_SIDES}
    for o in observations:
        cur = best[o.side][o.frame]
        if cur is None or o.score > cur.score:
            best[o.side][o.frame] = o
    return best


def build_track(per_frame: list[HandObservation | None], T: int) -> HandTrack:
    h = HandTrack.empty(T)
    mano = {"global_orient": np.full((T, 3), np.nan, np.float32), "hand_pose": np.full((T, 15, 3), np.nan, np.float32),
            "betas": np.full((T, 10), np.nan, np.float32)}
    for t, o in enumerate(per_frame):
        if o is None:
            continue
        h.valid[t] = True
        h.joints_cam[t] = o.joints_cam
        h.keypoints_2d[t] = o.keypoints_2d
        h.cam_T_wrist[t] = o.cam_T_wrist
        h.score[t] = o.score
        for k in mano:
            mano[k][t] = o.mano[k]
    h.mano = mano
    return h


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
        sides = assign_sides(obs, T)
        tracks = {s: build_track(sides[s], T) for s in HAND_SIDES}
        if self.opts.save_vertices and raw.vertices is not None:
            verts = {s: np.full((T, 778, 3), np.nan, np.float32) for s in HAND_SIDES}
            for s in HAND_SIDES:
                for t, o in enumerate(sides[s]):
                    if o is not None and o.vertices_cam is not None:
                        verts[s][t] = o.vertices_cam
            np.savez(Path(job.out_dir) / "vertices.npz", **verts)
        fits = [o.fit for o in obs]
        quality = {
            "detections": len(obs), "frames_with_hands": int(run.get("frames_with_hands", 0)),
            "valid_frames": {s: int(tracks[s].valid.sum()) for s in HAND_SIDES},
            "reproj_rms_px_median": float(np.median([f.reproj_rms_px for f in fits])) if fits else None,
            "depth_anchored_fraction": float(np.mean([f.used_depth for f in fits])) if fits else None,
            "wilor_focal_px": raw.focal_length,
        }
        return HandsArtifact(left=tracks["left"], right=tracks["right"], source="wilor", quality=quality)

    def close(self) -> None:
        self.session.close()
