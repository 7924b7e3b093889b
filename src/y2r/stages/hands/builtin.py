"""``hands.backend: builtin``: MediaPipe Hands on CPU, in its own environment, plus y2r's 3D/temporal logic.

MediaPipe runs in the managed environment ``y2r setup`` makes (or ``tools.mediapipe.python``),
behind ``tools/shims/mediapipe_hands_shim.py``: one persistent worker per backend instance, the
models loaded once. Per video the worker reads the ingest's ``frames.npy`` (memory-mapped) and
writes per-frame detections to an npz; y2r then

1. lifts each detection to metric camera-frame joints with the camera stage's K (PnP of the
   metric world landmarks, anchored to metric depth where it agrees; ``lifting.py``),
2. associates detections to the left and right hand over time (tracklets, handedness votes;
   ``association.py``),
3. cleans each side's track: outliers, short gaps, RTS smoothing (``temporal.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from y2r.artifacts import HAND_SIDES, CameraArtifact, HandsArtifact, HandTrack
from y2r.errors import ToolError
from y2r.stages.base import Backend, Job, Resources, WorkerContext
from y2r.stages.hands.association import Detection, associate
from y2r.stages.hands.lifting import lift_hand, wrist_frame
from y2r.stages.hands.temporal import TrackArrays, clean_track
from y2r.tools.environments import resolve_tool_python
from y2r.tools.launch import ToolSession, request_timeout, worker_log_path
from y2r.tools.worker import LaunchSpec, shim_argv

SHIM = "mediapipe_hands_shim.py"
# Variables of y2r's interpreter that must not leak into the tool's (its own numpy 1.x etc.).
_SCRUBBED = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONSAFEPATH")


def shim_options(config) -> dict:
    """What the shim needs from the config (its own defaults cover the rest)."""
    b = config.hands.builtin
    return {"mode": "video", "model_complexity": int(b.model_complexity), "max_num_hands": int(b.max_num_hands),
            "min_detection_confidence": float(b.min_detection_confidence),
            "min_tracking_confidence": float(b.min_tracking_confidence), "search": str(b.search)}


def detections_from_npz(z, camera: CameraArtifact | None, K_fallback: np.ndarray | None = None) -> list[Detection]:
    """Shim output -> lifted detections (one ``Detection`` per row, its ``payload`` the LiftedHand)."""
    dets = []
    metric = bool(camera.metric_scale) if camera is not None else False
    for i in range(len(z["frame"])):
        t = int(z["frame"][i])
        K = np.asarray(camera.K[t] if camera is not None else K_fallback, dtype=np.float64)
        is_right = bool(z["side"][i] == 1)
        p_right = float(z["side_score"][i]) if is_right else 1.0 - float(z["side_score"][i])
        lifted = lift_hand(z["landmarks_px"][i][:, :2], z["world"][i], K, is_right=is_right,
                           presence=float(z["presence"][i]),
                           depth=camera.depth[t] if camera is not None else None,
                           depth_valid=camera.depth_valid[t] if camera is not None else None, metric=metric)
        dets.append(Detection(frame=t, p_right=p_right, keypoints_2d=lifted.keypoints_2d, score=lifted.score,
                              joints_cam=lifted.joints_cam, payload=lifted))
    return dets


def build_hands(detections: list[Detection], T: int, fps: float, temporal) -> tuple[HandsArtifact, dict]:
    """Associated, cleaned left/right tracks from lifted detections (``temporal``: HandTemporalOptions)."""
    sides, assoc = associate(detections)
    quality: dict = {"association": assoc}
    tracks = {}
    for side in HAND_SIDES:
        arr = TrackArrays(valid=np.zeros(T, bool), joints_cam=np.full((T, 21, 3), np.nan),
                          keypoints_2d=np.full((T, 21, 2), np.nan), score=np.zeros(T), is_right=side == "right")
        for t, d in sides[side].items():
            arr.valid[t] = True
            arr.joints_cam[t] = d.joints_cam
            arr.keypoints_2d[t] = d.keypoints_2d
            arr.score[t] = d.score
        raw_frames = int(arr.valid.sum())
        clean, stats = clean_track(arr, fps, temporal.max_speed_mps, temporal.max_gap_frames, temporal.smoothing)
        quality[side] = {"detected_frames": raw_frames, **stats}
        cam_T_wrist = np.full((T, 4, 4), np.nan)
        for t in np.flatnonzero(clean.valid):
            cam_T_wrist[t] = wrist_frame(clean.joints_cam[t], clean.is_right)
        tracks[side] = HandTrack(valid=clean.valid.copy(), joints_cam=clean.joints_cam.astype(np.float32),
                                 keypoints_2d=clean.keypoints_2d.astype(np.float32),
                                 cam_T_wrist=cam_T_wrist.astype(np.float32), score=clean.score.astype(np.float32))
    return HandsArtifact(left=tracks["left"], right=tracks["right"], source="builtin", quality=quality), quality


class BuiltinHands(Backend):
    stage = "hands"
    name = "builtin"
    resources = Resources(cpus=1, tool="mediapipe")
    version = "1"

    def __init__(self, config, ctx: WorkerContext):
        super().__init__(config, ctx)
        env = config.tools.mediapipe
        python = resolve_tool_python("mediapipe", env.python)  # ToolUnavailable: "run `y2r setup`"
        extra: dict[str, str | None] = {k: None for k in _SCRUBBED}
        extra.update({"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **{k: str(v) for k, v in env.env.items()}})
        spec = LaunchSpec(name="mediapipe", argv=shim_argv(python, SHIM), cwd=None, env=extra,  # type: ignore[arg-type]
                          startup_timeout_s=env.startup_timeout_s, heartbeat_s=env.heartbeat_s)
        self.session = ToolSession(spec, worker_log_path(ctx, "mediapipe"), {"options": shim_options(config)})
        self.session.ensure()  # start + load once, here: a broken environment fails at construction

    def describe(self) -> dict:
        hello = self.session.hello or {}
        return {"backend": self.name, "version": self.version, "model": f"mediapipe {hello.get('mediapipe', '?')} "
                f"hands (complexity {self.config.hands.builtin.model_complexity})"}

    def process(self, job: Job) -> HandsArtifact:
        ingest_dir = Path(job.inputs["ingest"])
        frames_path = ingest_dir / "frames.npy"
        camera: CameraArtifact = job.load("camera")
        T = int(camera.K.shape[0])
        fps = float(job.meta.fps) if job.meta is not None else 10.0
        out = Path(job.out_dir) / "mediapipe_detections.npz"
        result = self.session.run({"frames": str(frames_path), "output": str(out), "options": shim_options(self.config)},
                                  timeout_s=request_timeout(self.config, T, self.config.execution.task_timeout_s_per_frame),
                                  log_path=job.log_path, progress=job.progress)
        try:
            with np.load(out) as npz:
                z = {k: npz[k] for k in npz.files}
        except (OSError, ValueError) as e:
            raise ToolError(f"mediapipe: unreadable detections file {out}: {e}") from e
        if int(z["num_frames"]) != T:
            raise ToolError(f"mediapipe: detections for {int(z['num_frames'])} frames, camera has {T}")
        detections = detections_from_npz(z, camera)
        artifact, quality = build_hands(detections, T, fps, self.config.hands.temporal)
        quality["shim"] = {k: result.get(k) for k in ("detections", "elapsed_s", "cpu_s", "fps", "palm_calls",
                                                      "landmark_calls")}
        quality["depth_anchored"] = int(sum(bool(d.payload.depth_anchored) for d in detections))
        out.unlink(missing_ok=True)  # intermediate; the artifact holds everything downstream needs
        return artifact

    def close(self) -> None:
        self.session.close()
