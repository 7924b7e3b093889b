"""Accuracy and single-core speed of the built-in camera backend on the synthetic scene suite.

Not a test (pytest does not collect it); run it to reproduce the numbers of the camera report::

    .venv/bin/python tests/stages/camera/benchmark_synth.py --width 512 --height 384 --frames 32

Threads are limited to one (BLAS, OpenMP, OpenCV) before numpy is imported, and CPU time of the
process is what counts (best of ``--repeats`` runs), so that a busy machine does not distort it.
Rendered clips are cached in ``--cache`` (rendering takes longer than reconstructing).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from y2r.artifacts import VideoMeta
from y2r.config import CameraConfig, Intrinsics
from y2r.evaluation.camera_metrics import camera_report
from y2r.stages.camera.builtin import reconstruct
from y2r.synth import SCENES, render


def _clip(scene: str, args) -> dict:
    name = f"{scene}_{args.width}x{args.height}_{args.frames}_fps{args.fps:g}_fov{args.fov:g}.npz"
    path = Path(args.cache) / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        c = render(
            scene,
            width=args.width,
            height=args.height,
            num_frames=args.frames,
            fps=args.fps,
            seed=0,
            fov_deg=args.fov,
        )
        np.savez(path, rgb=c.rgb, depth=c.depth, K=c.K, c2w=c.c2w)
    z = np.load(path)
    return {k: z[k] for k in z.files}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--height", type=int, default=384)
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--fps", type=float, default=30.0, help="frame rate of the rendered clip")
    ap.add_argument("--fov", type=float, default=60.0, help="horizontal FOV of the rendered camera")
    ap.add_argument("--known-k", action="store_true", help="give the true K (no self-calibration)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cache", default="/tmp/y2r_synth_cache")
    ap.add_argument("scenes", nargs="*", default=list(SCENES))
    args = ap.parse_args()
    cv2.setNumThreads(1)

    cols = [
        "scene",
        "degenerate",
        "focal",
        "ATE %path",
        "rot deg/fr",
        "focal err %",
        "AbsRel",
        "d<1.25",
        "valid",
        "fps (1 core)",
    ]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for scene in args.scenes:
        z = _clip(scene, args)
        T, H, W = z["rgb"].shape[:3]
        meta = VideoMeta(
            scene,
            f"{scene}.mp4",
            "0" * 64,
            30.0,
            W,
            H,
            T,
            "raw",
            30.0,
            W,
            H,
            T,
            (0.0, 0.0, float(W), float(H)),
        )
        K = z["K"]
        cfg = (
            CameraConfig(intrinsics=Intrinsics(fx=K[0, 0], fy=K[1, 1], cx=K[0, 2], cy=K[1, 2]))
            if args.known_k
            else CameraConfig()
        )
        best = np.inf
        for _ in range(args.repeats):
            c0 = time.process_time()
            art = reconstruct(z["rgb"], meta, cfg)
            best = min(best, time.process_time() - c0)
        r = camera_report(art.K, art.world_T_cam, art.depth, art.depth_valid, K, z["c2w"], z["depth"])
        q = art.quality
        # ATE relative to the path means nothing when the camera hardly moves (rotation, static).
        moving = r["path_length"] > 0.02 * float(np.median(z["depth"]))
        has_depth = bool(art.depth_valid.any())

        def fmt(v, spec, ok=True):
            return format(v, spec) if ok and np.isfinite(v) else "-"

        row = [
            scene,
            str(q["degenerate"]),
            q["focal_source"],
            fmt(r["ate_pct_path"], ".3f", moving),
            fmt(r["rot_err_deg_per_frame"], ".4f"),
            fmt(r["focal_err_pct"], ".2f"),
            fmt(r.get("depth_abs_rel", np.nan), ".4f", has_depth),
            fmt(r.get("depth_delta1", np.nan), ".4f", has_depth),
            fmt(r.get("depth_coverage", np.nan), ".3f"),
            f"{T / best:.1f}",
        ]
        print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
