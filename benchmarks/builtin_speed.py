#!/usr/bin/env python
"""One-core speed of the built-in camera and tracks backends, in process CPU time (issue 3).

    python benchmarks/builtin_speed.py                                  # orbit: 60/300 frames, 30/10 fps
    python benchmarks/builtin_speed.py --scenes orbit,pan --frames 60 --fps 30

Each clip is rendered at 512x384 (the source clip at the given frame rate: at 10 fps the camera
moves three times as far between frames as at 30 fps), encoded with H.264 and ingested like a
user's video. Then each stage's backend runs alone in a fresh process limited to one thread
(OpenCV, BLAS, OpenMP) on the previous stage's artifact. Frames/s is frames divided by the
*process CPU time* of ``backend.process`` (user + system, all threads): on a shared machine wall
time measures the neighbours as much as the code. Saving the artifact is not counted (disk).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
STAGES = ("camera", "tracks")


def _sets(width: int, height: int) -> list[str]:
    return ["ingest.fps=null", f"ingest.width={width}", f"ingest.height={height}", "hands.backend=none"]


def _job(stage: str, video: Path, work: Path, cfg):
    from y2r.artifacts import VideoMeta, read_json
    from y2r.stages.base import STAGES as SPECS
    from y2r.stages.base import Job

    inputs = {s: work / s for s in SPECS[stage].inputs}
    meta = VideoMeta.from_dict(read_json(work / "ingest" / "meta.json")) if "ingest" in inputs else None
    out = work / stage
    out.mkdir(parents=True, exist_ok=True)
    return Job(video_id=video.stem, stage=stage, meta=meta, source_path=video, inputs=inputs, out_dir=out,
               log_path=work / f"{stage}.log")


def run_stage(stage: str, video: Path, work: Path, width: int, height: int) -> dict:
    """Run one stage's backend in this process; CPU seconds of ``process`` only."""
    import cv2

    cv2.setNumThreads(1)
    from y2r.config import load_config
    from y2r.stages.base import WorkerContext, backend_class, backend_name

    cfg = load_config(None, _sets(width, height))
    backend = backend_class(stage, backend_name(cfg, stage))(cfg, WorkerContext(log_dir=work))
    job = _job(stage, video, work, cfg)
    c0, w0 = time.process_time(), time.perf_counter()
    art = backend.process(job)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    art.save(job.out_dir)
    backend.close()
    return {"stage": stage, "cpu_s": cpu, "wall_s": wall, "frames": int(job.meta.num_frames) if job.meta else None,
            "quality": {k: v for k, v in (art.quality or {}).items() if k in ("timings_s", "focal_source")}}


def prepare(scene: str, frames: int, fps: float, width: int, height: int, folder: Path) -> tuple[Path, Path]:
    """Render + encode the clip and ingest it (cached); returns (video, work folder)."""
    from y2r.synth import render, write_video

    name = f"{scene}_{frames}f_{fps:g}fps_{width}x{height}"
    video, work = folder / f"{name}.mp4", folder / name
    if not video.exists():
        clip = render(scene, width=width, height=height, num_frames=frames, fps=fps, seed=0)
        write_video(clip, video)
        clip.save_gt(folder / f"{name}_gt.npz")  # (for accuracy checks of the same clips)
    if not (work / "ingest" / "frames.npy").exists():
        from y2r.config import load_config
        from y2r.stages.base import WorkerContext, backend_class, backend_name

        cfg = load_config(None, _sets(width, height))
        work.mkdir(parents=True, exist_ok=True)
        ingest = backend_class("ingest", backend_name(cfg, "ingest"))(cfg, WorkerContext(log_dir=work))
        job = _job("ingest", video, work, cfg)
        ingest.process(job).save(job.out_dir)
    return video, work


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", default="orbit")
    ap.add_argument("--frames", default="60,300")
    ap.add_argument("--fps", default="30,10")
    ap.add_argument("--size", default="512x384")
    ap.add_argument("--work", type=Path, default=Path("/tmp/y2r_builtin_speed"))
    ap.add_argument("--stage-child", help=argparse.SUPPRESS)
    ap.add_argument("--video", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--clip-work", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    W, H = (int(x) for x in a.size.split("x"))
    if a.stage_child:
        print(json.dumps(run_stage(a.stage_child, a.video, a.clip_work, W, H)))
        return 0
    rows = []
    print("| scene | frames | fps | stage | CPU s | frames/s (1 core, CPU) | wall s |")
    print("|---|---|---|---|---|---|---|")
    for scene in a.scenes.split(","):
        for frames in (int(x) for x in a.frames.split(",")):
            for fps in (float(x) for x in a.fps.split(",")):
                video, work = prepare(scene, frames, fps, W, H, a.work)
                for stage in STAGES:
                    p = subprocess.run(
                        [sys.executable, __file__, "--stage-child", stage, "--video", str(video),
                         "--clip-work", str(work), "--size", a.size],
                        env={**os.environ, **ONE_THREAD}, capture_output=True, text=True, check=False)
                    if p.returncode != 0:
                        raise SystemExit(f"{stage} failed on {video.name}:\n{p.stderr[-3000:]}")
                    r = json.loads(p.stdout.strip().splitlines()[-1])
                    r.update(scene=scene, fps=fps)
                    rows.append(r)
                    print(f"| {scene} | {r['frames']} | {fps:g} | {stage} | {r['cpu_s']:.2f} | "
                          f"{r['frames'] / r['cpu_s']:.1f} | {r['wall_s']:.2f} |", flush=True)
    a.work.mkdir(parents=True, exist_ok=True)
    (a.work / "speed.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
