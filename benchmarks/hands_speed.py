#!/usr/bin/env python
"""One-core speed and accuracy of the built-in hands stage (MediaPipe shim + y2r's lifting,
association and temporal cleaning), per search level.

    python benchmarks/hands_speed.py                          # hands.builtin.search=standard (the default)
    python benchmarks/hands_speed.py --search thorough,standard,fast
    python benchmarks/hands_speed.py --frames 100             # a shorter hand-free clip

Clips, all through ``BuiltinHands.process`` with one persistent worker per search level:
- ``orbit``: the synthetic orbit scene rendered at 512x384 (``--frames``, default 300). No hand
  anywhere, so the detector searches every frame: the stage's worst case for speed, and any hand
  reported is a phantom.
- the labelled real videos of ../shared/media/videos, decoded as their labels were made (10 fps,
  512 wide, resize fit; tests/data/hands/video_visibility.json): hit rate = frames with a hand
  among the frames where one is visible.

Frames/s is frames / CPU seconds: this process's CPU time during ``process`` plus the shim's own
(all threads, as the shim reports it). The machine may be shared; CPU time is what one core
spends, wall time would measure the neighbours too. The worker runs with OMP_NUM_THREADS=1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("Y2R_SHARED", ROOT.parent / "shared"))


def main() -> int:
    import numpy as np

    from y2r.config import load_config
    from y2r.evaluation.hand_metrics import frame_hit_rate, ranges_to_mask
    from y2r.evaluation.hand_suite import load_labels, run_clip
    from y2r.stages.base import WorkerContext
    from y2r.stages.hands.builtin import BuiltinHands
    from y2r.synth import render
    from y2r.tools.environments import ensure_env
    from y2r.video import decode

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--search", default="standard", help="comma-separated hands.builtin.search levels")
    ap.add_argument("--frames", type=int, default=300, help="frames of the hand-free synthetic clip")
    ap.add_argument("--out", type=Path, default=Path("/tmp/y2r_hands_speed.json"))
    a = ap.parse_args()

    python = ensure_env("mediapipe")
    _, vis = load_labels(ROOT / "tests" / "data" / "hands")
    clips = {"orbit (hand-free)": (render("orbit", width=512, height=384, num_frames=a.frames).rgb, 30.0, None)}
    for name, spec in vis["videos"].items():
        clips[name] = (decode(SHARED / "media" / "videos" / name, **vis["decode"]).frames,
                       float(vis["decode"]["fps"]), spec)
    report: dict = {}
    for level in a.search.split(","):
        cfg = load_config(None, [f"hands.builtin.search={level}"])
        cfg.tools.mediapipe.python = python
        rows = report[level] = {}
        with tempfile.TemporaryDirectory() as tmp:
            backend = BuiltinHands(cfg, WorkerContext(log_dir=Path(tmp)))
            try:
                for i, (name, (frames, fps, spec)) in enumerate(clips.items()):
                    hands, wall, cpu = run_clip(backend, np.ascontiguousarray(frames), fps, name,
                                                Path(tmp) / str(i))
                    has = hands.left.valid | hands.right.valid
                    row = {"frames": len(frames), "cpu_s": cpu, "frames_per_cpu_s": len(frames) / cpu,
                           "wall_s": wall, "frames_with_hand": int(has.sum()), "shim": hands.quality["shim"]}
                    if spec is not None:
                        n = spec["num_frames"]
                        row.update(frame_hit_rate(has, ranges_to_mask(spec["visible"], n),
                                                  ranges_to_mask(spec["ambiguous"], n)))
                    rows[name] = row
            finally:
                backend.close()
        hit = sum(r.get("hit_frames", 0) for r in rows.values())
        visible = sum(r.get("visible_frames", 0) for r in rows.values())
        print(f"\n### hands.builtin.search={level}\n")
        print("| clip | frames | frames/s (1 core, CPU time) | palm / landmark calls | hand frames / visible | hit rate |")
        print("|---|---|---|---|---|---|")
        for name, r in rows.items():
            hits = (f"{r['hit_frames']}/{r['visible_frames']} | {r['rate']:.1%}" if "rate" in r
                    else f"{r['frames_with_hand']} frames with a hand | -")
            print(f"| {name} | {r['frames']} | {r['frames_per_cpu_s']:.1f} | {r['shim']['palm_calls']} / "
                  f"{r['shim']['landmark_calls']} | {hits} |")
        print(f"\nreal videos: {hit}/{visible} visible frames with a hand ({hit / max(1, visible):.1%})")
    a.out.write_text(json.dumps(report, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
