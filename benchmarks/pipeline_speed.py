#!/usr/bin/env python
"""Speed and memory of the built-in CPU pipeline on 10-second 512x384 clips (issues 2 and 3).

    python benchmarks/pipeline_speed.py                 # both clips, per stage and end to end
    python benchmarks/pipeline_speed.py --clips orbit   # only the synthetic clip

Per stage: each stage's backend runs alone in a fresh process with one thread (OpenCV, BLAS and
OpenMP limited to 1), on the previous stage's artifact, so frames/s is "on one core" and peak RAM
is that stage's own (max RSS of the process and of its children, e.g. the MediaPipe shim).
End to end: `y2r run --workers 2` on a fresh output folder with N copies of the clip (a dataset,
so the two workers overlap videos), at all 30 frames/s and at y2r's default sampling (10 frames/s);
real time means wall time <= total video length.

Clips: `orbit` -- the synthetic orbit scene rendered at 512x384, 300 frames at 30 fps (camera and
tracks do real work; no hands, so the hand detector searches every frame: its worst case);
`blocks` -- the real sam2_03_blocks video (two hands, static camera) at 512x384, 30 fps.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("Y2R_SHARED", ROOT.parent / "shared"))
STAGES = ("ingest", "camera", "tracks", "hands", "episode")
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def config_sets(fps: float = 30) -> list[str]:
    return [f"ingest.fps={fps}", "ingest.width=512", "ingest.height=384", "execution.workers=2"]


def stage_child(stage: str, video: Path, work: Path) -> None:
    """Run one stage's backend in this (fresh, single-threaded) process and print its numbers."""
    import cv2

    cv2.setNumThreads(1)
    from y2r.artifacts import VideoMeta, read_json
    from y2r.config import load_config
    from y2r.stages.base import STAGES as SPECS
    from y2r.stages.base import Job, WorkerContext, backend_class, backend_name

    peak = PeakRSS()
    cfg = load_config(None, config_sets())
    inputs = {s: work / s for s in SPECS[stage].inputs}
    meta = VideoMeta.from_dict(read_json(inputs["ingest"] / "meta.json")) if "ingest" in inputs else None
    out = work / stage
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    backend = backend_class(stage, backend_name(cfg, stage))(cfg, WorkerContext(log_dir=work))
    load_s = time.perf_counter() - t0
    job = Job(video_id=video.stem, stage=stage, meta=meta, source_path=video, inputs=inputs, out_dir=out,
              log_path=work / f"{stage}.log")
    t0, c0 = time.perf_counter(), _cpu()
    art = backend.process(job)
    art.save(out)
    secs = time.perf_counter() - t0
    backend.close()  # reaps a tool shim, so its CPU time is in RUSAGE_CHILDREN
    cpu = _cpu() - c0
    frames = meta.num_frames if meta else art.meta.num_frames
    print(json.dumps({"stage": stage, "seconds": secs, "cpu_s": cpu, "load_s": load_s, "frames": frames,
                      "peak_rss_mb": peak.stop()}))


def _cpu() -> float:
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class PeakRSS:
    """Peak resident memory of this process and its children (e.g. the MediaPipe shim), sampled.

    ru_maxrss would not do: Linux keeps it across fork+exec, so a child started by a big parent
    reports the parent's peak.
    """

    def __init__(self, period_s: float = 0.05):
        import threading

        import psutil

        self._proc = psutil.Process()
        self.peak = 0.0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, args=(period_s,), daemon=True)
        self._t.start()

    def _sample(self) -> float:
        import psutil

        total = 0
        for p in [self._proc, *self._proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total / 2**20

    def _run(self, period_s: float) -> None:
        while not self._stop.wait(period_s):
            self.peak = max(self.peak, self._sample())

    def stop(self) -> float:
        self.peak = max(self.peak, self._sample())
        self._stop.set()
        self._t.join()
        return self.peak


def prepare(clip: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if clip == "orbit":
        video = folder / "orbit_10s_512x384.mp4"
        if not video.exists():
            from y2r.synth import render, write_video

            c = render("orbit", width=512, height=384, num_frames=300, fps=30.0, seed=0)
            write_video(c, video)
            c.save_gt(folder / "orbit_10s_512x384_gt.npz")
        return video
    return SHARED / "media" / "videos" / "sam2_03_blocks.mp4"


def per_stage(video: Path, work: Path) -> list[dict]:
    rows = []
    env = {**os.environ, **ONE_THREAD}
    for stage in STAGES:
        p = subprocess.run([sys.executable, __file__, "--stage-child", stage, "--video", str(video), "--work", str(work)],
                           env=env, capture_output=True, text=True, check=False)
        if p.returncode != 0:
            raise SystemExit(f"stage {stage} failed:\n{p.stdout}\n{p.stderr[-3000:]}")
        rows.append(json.loads(p.stdout.strip().splitlines()[-1]))
    return rows


def end_to_end(video: Path, out: Path, copies: int, fps: float) -> float:
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    inputs = out.parent / f"{out.name}_inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    for k in range(copies):
        dst = inputs / f"{video.stem}_{k}{video.suffix}"
        if not dst.exists():
            shutil.copy(video, dst)
    sets = [x for s in config_sets(fps) for x in ("--set", s)]
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "y2r.cli", "run", str(inputs), "-o", str(out), "-q", *sets], check=True)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", default="orbit,blocks")
    ap.add_argument("--work", type=Path, default=Path("/tmp/y2r_speed"))
    ap.add_argument("--copies", type=int, default=4, help="videos in the end-to-end runs")
    ap.add_argument("--stage-child")
    ap.add_argument("--video", type=Path)
    a = ap.parse_args()
    if a.stage_child:
        stage_child(a.stage_child, a.video, a.work)
        return 0
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    report = {}
    for clip in a.clips.split(","):
        video = prepare(clip, a.work / "input")
        rows = per_stage(video, a.work / clip / "stages")
        frames = rows[0]["frames"]
        duration = frames / 30.0
        e2e = {fps: end_to_end(video, a.work / clip / f"run_{fps}fps", a.copies, fps) for fps in (30, 10)}
        report[clip] = {"stages": rows, "end_to_end_s": e2e, "clip_s": duration, "copies": a.copies}
        print(f"\n### {clip}: {frames} frames at 512x384 ({duration:.1f} s of video at 30 fps)\n")
        print("| stage | wall s | CPU s | frames/s per core (CPU) | model/tool load s | peak RAM MB |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['stage']} | {r['seconds']:.1f} | {r['cpu_s']:.1f} | {r['frames'] / r['cpu_s']:.1f} | "
                  f"{r['load_s']:.1f} | {r['peak_rss_mb']:.0f} |")
        total = sum(r["cpu_s"] for r in rows)
        print(f"| all stages | {sum(r['seconds'] for r in rows):.1f} | {total:.1f} | {frames / total:.1f} | | |")
        for fps, wall in e2e.items():
            video_s = a.copies * duration
            print(f"\nend to end, {a.copies} videos, ingest {fps} frames/s, `y2r run --workers 2`: {wall:.1f} s wall "
                  f"for {video_s:.0f} s of video ({video_s / wall:.2f}x real time)")
    (a.work / "speed.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
