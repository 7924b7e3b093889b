#!/usr/bin/env python
"""Accuracy of the built-in backends against exact ground truth (issue 3), as one table.

    python benchmarks/accuracy.py                      # the whole suite at 512x384, 60 frames
    python benchmarks/accuracy.py --scenes orbit,pan --frames 30 --size 320x240 --no-hands

Camera, depth and tracks: every synthetic scene of the suite (rendered deterministically by seed,
encoded with H.264 like a user's video) plus the shared room_orbit fixture (ViPE's own lossy
encode), run through `y2r run` with the built-in backends, compared with the ground truth.
Hands: the real photos (counted hands, hand-drawn boxes) and real videos (per-frame labels) of
../shared/media. Metric definitions: docs/benchmarks.md. Writes WORK/accuracy.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("Y2R_SHARED", ROOT.parent / "shared"))


def main() -> int:
    from y2r.evaluation.suite import SCENES, markdown_table, run_suite

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", default=",".join(SCENES))
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--size", default="512x384")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path("/tmp/y2r_accuracy"))
    ap.add_argument("--no-fixture", action="store_true")
    ap.add_argument("--no-hands", action="store_true")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="extra config overrides")
    a = ap.parse_args()
    W, H = (int(x) for x in a.size.split("x"))
    scenes = tuple(s for s in a.scenes.split(",") if s)
    t0 = time.monotonic()
    results = run_suite(a.work, scenes, width=W, height=H, frames=a.frames, seed=a.seed, workers=a.workers,
                        fixture=None if a.no_fixture else SHARED / "fixtures", extra_sets=a.sets)
    print(f"\n## Camera, depth, tracks ({W}x{H}, {a.frames} frames, seed {a.seed}; fixture at 320x240)\n")
    print(markdown_table(results))
    report = {"scenes": {r.scene: {"frames": r.frames, "metrics": r.metrics, "failures": r.failures}
                         for r in results}}
    if not a.no_hands:
        from y2r.evaluation.hand_suite import evaluate_photos, evaluate_videos, load_labels
        from y2r.tools.environments import ensure_env

        py = ensure_env("mediapipe")
        boxes, vis = load_labels(ROOT / "tests" / "data" / "hands")
        counts = json.loads((SHARED / "media/images/hand_counts.json").read_text())
        photos = evaluate_photos(SHARED / "media/images", counts, boxes, py)
        videos = evaluate_videos(SHARED / "media/videos", vis, py)
        report["hands"] = {"photos": photos, "videos": videos}
        print("\n## Hands (real media)\n")
        print(f"photos: {photos['found']}/{photos['counted']} counted hands found "
              f"(recall {photos['recall']:.1%}), {photos['phantoms']} phantoms, "
              f"{photos['seconds_per_photo']:.1f} s/photo")
        print("\n| video | hand frames / visible frames | rate | missed | frames/s | jitter before → after (m/s²) |")
        print("|---|---|---|---|---|---|")
        for name, r in videos["videos"].items():
            jit = "; ".join(f"{s} {j['jitter_before_mps2']:.1f} → {j['jitter_after_mps2']:.1f}"
                            for s, j in r["jitter"].items()
                            if j.get("jitter_before_mps2") is not None)  # null: that side never seen
            print(f"| {name} | {r['hit_frames']}/{r['visible_frames']} | {r['rate']:.1%} | {r['missed']} | "
                  f"{r['frames_per_s']:.1f} | {jit} |")
        print(f"\nall videos: {videos['hit_rate']:.1%} of visible frames have a hand")
    a.work.mkdir(parents=True, exist_ok=True)
    (a.work / "accuracy.json").write_text(json.dumps(report, indent=1, default=float))
    print(f"\n({time.monotonic() - t0:.0f} s; details in {a.work / 'accuracy.json'})")
    return 0 if all(r.passed() for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
