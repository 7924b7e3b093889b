"""Scheduler benchmark: 1000 videos through ViPE/TAPIP3D/WiLoR-like GPU stages, in simulated time.

Drives the real ``y2r.execution.scheduler.Scheduler`` with ``y2r.execution.simulator.Simulation``
(compute saturation per GPU, true memory = model x log-normal error so OOMs really happen, CPU
ingest/episode). Prints makespan against the ideal bound (defined in simulator.py's docstring),
OOMs, GPU busy %, and ends with exactly one line::

    ideal_ratio=<ideal makespan / y2r makespan> ooms=<count> lost=<count>

Examples::

    python benchmarks/scheduler_sim.py --gpus 8x141 --videos 1000 --seed 0
    python benchmarks/scheduler_sim.py --gpus 2x80,1x24 --videos 300 --seed 3 --crash-rate 0.01
"""

from __future__ import annotations

import argparse
import sys
import time

from y2r.execution.simulator import Simulation, parse_gpus


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gpus", default="8x141", help="GPU list: NxGB[,NxGB...] (e.g. 1x32, 8x141, 2x80,1x24)")
    ap.add_argument("--videos", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cpu-workers", type=int, default=None, help="CPU workers for ingest/episode (default 4 per GPU)")
    ap.add_argument("--max-workers-per-gpu", type=int, default=8)
    ap.add_argument("--margin-mb", type=float, default=2048.0)
    ap.add_argument("--crash-rate", type=float, default=0.0, help="probability a task attempt crashes its worker")
    ap.add_argument("--hang-rate", type=float, default=0.0, help="probability a task attempt hangs")
    ap.add_argument("--faulty-gpu", type=int, default=None, help="index of a GPU on which most tasks crash")
    ap.add_argument("--seed-scale", type=float, default=1.0,
                    help="scale of the memory model's seed vs the true profile (<1: optimistic seeds, more OOMs)")
    a = ap.parse_args(argv)
    gpus = parse_gpus(a.gpus)
    t0 = time.perf_counter()
    sim = Simulation(gpus, a.videos, seed=a.seed, cpu_workers=a.cpu_workers, margin_mb=a.margin_mb,
                     max_workers_per_gpu=a.max_workers_per_gpu, crash_rate=a.crash_rate, hang_rate=a.hang_rate,
                     faulty_gpu=a.faulty_gpu, seed_scale=a.seed_scale)
    r = sim.run()
    wall = time.perf_counter() - t0
    print(f"gpus: {a.gpus} ({len(gpus)} x {', '.join(sorted({f'{g / 1000:.0f} GB' for g in gpus}))}), "
          f"videos: {a.videos}, CPU workers: {sim.cpu_workers}, seed: {a.seed}")
    print(f"makespan: {r.makespan_s:.0f} s simulated ({r.makespan_s / 3600:.2f} h); ideal bound: {r.ideal_s:.0f} s")
    print("  bounds: " + ", ".join(f"{k} {v:.0f} s" for k, v in sorted(r.bounds.items(), key=lambda kv: -kv[1])))
    print(f"GPU compute busy (mean): {100 * sum(r.gpu_compute_busy) / len(r.gpu_compute_busy):.1f} %  "
          f"per GPU: {' '.join(f'{100 * x:.0f}' for x in r.gpu_compute_busy)}")
    print(f"GPU occupied (a task running): {100 * sum(r.gpu_occupied) / len(r.gpu_occupied):.1f} %")
    print(f"model loading: {r.load_s_total:.0f} worker-s of {r.worker_s_total:.0f} ({100 * r.load_s_total / max(1, r.worker_s_total):.1f} %); "
          f"workers started: {r.counters.get('workers_started', 0)}")
    print(f"failures: ooms {r.ooms}, crashes {r.counters.get('failed:crash', 0)}, hangs {r.counters.get('failed:hang', 0)}, "
          f"failed tasks {r.failed_tasks}, GPUs retired {r.counters.get('gpus_retired', 0)}")
    print(f"videos in flight (max): {r.max_in_flight}; events: {r.events}; wall: {wall:.1f} s")
    print(f"ideal_ratio={r.ideal_ratio:.3f} ooms={r.ooms} lost={r.lost}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
