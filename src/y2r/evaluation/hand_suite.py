"""Hand-detection accuracy on real media: photos with counted hands, videos with per-frame labels.

- Photos: each image runs through the MediaPipe shim in image mode; detections are matched to
  hand-drawn boxes; recall = matched / counted, phantoms = detections matching no labelled hand.
- Videos: the built-in hands backend (association, outlier rejection, gap filling, smoothing)
  runs on the decoded clip; hit rate = frames with a hand among the frames where a hand is
  visible (ambiguous frames left out); jitter = RMS joint acceleration before / after filtering.

Labels are data (``tests/data/hands/*.json``: ``image_hands.json`` boxes, ``video_visibility.json``
visible/ambiguous frame ranges and the decode settings they were made with).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from y2r.evaluation.hand_metrics import frame_hit_rate, ranges_to_mask, score_photo, summarise_photos


def evaluate_photos(images: Path, counts: dict, labels: dict, python: Path) -> dict:
    import cv2  # noqa: PLC0415

    from y2r.tools.worker import LaunchSpec, WorkerProcess, shim_argv  # noqa: PLC0415

    scores, secs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        w = WorkerProcess(LaunchSpec(name="mediapipe", argv=shim_argv(python, "mediapipe_hands_shim.py"),
                                     env={"PYTHONPATH": None}, startup_timeout_s=300), tmp / "worker.log")
        try:
            w.start()
            w.call("load", {"options": {"mode": "images", "max_num_hands": 4}}, timeout_s=300)
            for name in sorted(k for k in counts if not k.startswith("_")):
                rgb = cv2.cvtColor(cv2.imread(str(images / name)), cv2.COLOR_BGR2RGB)
                np.save(tmp / "frames.npy", rgb[None])
                t0 = time.perf_counter()
                w.call("run", {"frames": str(tmp / "frames.npy"), "output": str(tmp / "d.npz")}, timeout_s=600)
                secs.append(time.perf_counter() - t0)
                z = np.load(tmp / "d.npz")
                scores.append(score_photo(name, [tuple(b) for b in z["box"]], labels[name], counts[name]))
        finally:
            w.stop()
    summary = summarise_photos(scores)
    summary["per_image"] = {s.name: {"found": s.found, "counted": s.counted, "phantoms": s.phantoms} for s in scores}
    summary["seconds_per_photo"] = float(np.mean(secs)) if secs else float("nan")
    return summary


def run_clip(backend, frames: np.ndarray, fps: float, name: str, folder: Path) -> tuple:
    """The hands backend on one decoded clip, with a pinhole camera (70 degree horizontal FOV,
    no depth) standing in for the camera stage. Returns (HandsArtifact, wall s, CPU s): CPU time
    of this process plus the shim's own (all threads), i.e. what one core spends on the stage."""
    from y2r.artifacts import CameraArtifact, IngestArtifact, VideoMeta  # noqa: PLC0415
    from y2r.geometry import focal_from_fov, intrinsics_matrix  # noqa: PLC0415
    from y2r.stages.base import Job  # noqa: PLC0415

    T, H, W = frames.shape[:3]
    ing, cam, res = folder / "ingest", folder / "camera", folder / "out"
    for x in (ing, cam, res):
        x.mkdir(parents=True)
    meta = VideoMeta(video_id=name, source_path=name, source_sha256="", source_fps=fps, source_width=W,
                     source_height=H, source_num_frames=T, codec="", fps=fps, width=W, height=H,
                     num_frames=T, crop=(0.0, 0.0, float(W), float(H)))
    IngestArtifact(frames=frames, frame_index=np.arange(T, dtype=np.int32), timestamp=np.arange(T) / fps,
                   meta=meta).save(ing)
    f = focal_from_fov(W, 70.0)
    CameraArtifact(K=np.repeat(intrinsics_matrix(f, f, (W - 1) / 2, (H - 1) / 2)[None], T, 0),
                   world_T_cam=np.repeat(np.eye(4)[None], T, 0), depth=np.zeros((T, H, W), np.float32),
                   depth_valid=np.zeros((T, H, W), bool), metric_scale=False, source="eval").save(cam)
    job = Job(video_id=name, stage="hands", meta=meta, source_path=Path(name),
              inputs={"ingest": ing, "camera": cam}, out_dir=res, log_path=folder / "log.txt")
    t0, cpu0 = time.perf_counter(), time.process_time()
    hands = backend.process(job)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    shim_cpu = (hands.quality.get("shim") or {}).get("cpu_s")
    return hands, wall, cpu + float(shim_cpu or 0.0)


def evaluate_videos(videos: Path, labels: dict, python: Path, config=None) -> dict:
    """Hit rate and speed per labelled video (``config``: a y2r Config, default settings if None)."""
    from y2r.config import Config  # noqa: PLC0415
    from y2r.stages.base import WorkerContext  # noqa: PLC0415
    from y2r.stages.hands.builtin import BuiltinHands  # noqa: PLC0415
    from y2r.video import decode  # noqa: PLC0415

    cfg = config.model_copy(deep=True) if config is not None else Config()
    cfg.tools.mediapipe.python = python
    out: dict = {"videos": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        backend = BuiltinHands(cfg, WorkerContext(log_dir=tmp))
        try:
            hit = vis_total = 0
            for name, spec in labels["videos"].items():
                dec = decode(videos / name, **labels["decode"])
                fps = float(labels["decode"].get("fps") or dec.fps)
                hands, secs, cpu = run_clip(backend, dec.frames, fps, name, tmp / name)
                T = len(dec.frames)
                has = hands.left.valid | hands.right.valid
                n = spec["num_frames"]
                r = frame_hit_rate(has, ranges_to_mask(spec["visible"], n), ranges_to_mask(spec["ambiguous"], n))
                hit += r["hit_frames"]
                vis_total += r["visible_frames"]
                jit = {s: {k: hands.quality[s].get(k) for k in ("jitter_before_mps2", "jitter_after_mps2")}
                       for s in ("left", "right") if isinstance(hands.quality.get(s), dict)}
                out["videos"][name] = {**r, "frames_per_s": T / secs, "cpu_frames_per_s": T / cpu, "jitter": jit}
            out["hit_rate"] = hit / max(1, vis_total)
        finally:
            backend.close()
    return out


def load_labels(data_dir: Path) -> tuple[dict, dict]:
    return (json.loads((data_dir / "image_hands.json").read_text()),
            json.loads((data_dir / "video_visibility.json").read_text()))
