"""The accuracy suite: synthetic scenes with exact ground truth through the real pipeline.

Each scene is rendered, encoded to H.264 (as a user's video would be), run through ``y2r run``
with the built-in backends, and the episode is compared with the ground truth
(``episode_accuracy``). Used by ``benchmarks/accuracy.py`` (the full table) and by the regression
tests (two small scenes, pinned with tolerances).
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from y2r.config import load_config
from y2r.evaluation.episode_accuracy import episode_vs_ground_truth

SCENES = ("pan", "orbit", "forward", "rotation", "static_object", "fast_blur", "low_texture", "occluder")
# Scenes whose camera geometry is degenerate: y2r must flag them (and not invent depth).
EXPECTED_DEGENERACY = {"rotation": "pure_rotation", "static_object": "static", "low_texture": "low_texture"}
TEXTURED = ("pan", "orbit", "forward", "occluder", "room_orbit")

# Issue targets on textured scenes: metric -> (comparison, threshold)
TARGETS = {
    "ate_pct_path": ("<=", 1.0),
    "rot_err_deg_per_frame": ("<=", 0.2),
    "focal_err_pct": ("<=", 5.0),
    "depth_abs_rel": ("<=", 0.08),
    "depth_coverage": (">=", 0.70),
    "tracks_median_px": ("<=", 0.5),
    "tracks_p90_px": ("<=", 2.0),
    "tracks_vis_f1": (">=", 0.95),
}


@dataclass
class SceneResult:
    scene: str
    frames: int
    size: tuple[int, int]
    metrics: dict
    seconds: float
    failures: list[str] = field(default_factory=list)  # targets missed (textured) / flags wrong

    def passed(self) -> bool:
        return not self.failures


def check_targets(scene: str, m: dict) -> list[str]:
    fails = []
    expected = EXPECTED_DEGENERACY.get(scene)
    if expected is not None:
        if m.get("degenerate") != expected:
            fails.append(f"degenerate={m.get('degenerate')!r}, expected {expected!r}")
        if (m.get("depth_coverage") or 0) > 0.05:
            fails.append(f"depth coverage {m.get('depth_coverage'):.2f} on a degenerate scene (should be invalid)")
    if scene in TEXTURED:
        if m.get("degenerate"):
            fails.append(f"flagged degenerate ({m['degenerate']}) on a textured scene")
        for k, (op, thr) in TARGETS.items():
            v = m.get(k)
            if v is None or not isinstance(v, float) or math.isnan(v):
                fails.append(f"{k} missing")
            elif (op == "<=" and v > thr) or (op == ">=" and v < thr):
                fails.append(f"{k} {v:.3g} (target {op} {thr})")
    return fails


# The suite's lens. Not the camera backend's 60-degree fallback prior: a backend that gives up on
# self-calibration must show a focal error, not score 0% by coincidence.
SUITE_FOV_DEG = 66.0


def render_inputs(folder: Path, scenes: tuple[str, ...], *, width: int, height: int, frames: int, fps: float,
                  seed: int, fov_deg: float = SUITE_FOV_DEG) -> dict[str, tuple[Path, Path]]:
    """Render each scene to ``<scene>.mp4`` + ``<scene>_gt.npz`` (reused when already there)."""
    from y2r.synth import render, write_video  # noqa: PLC0415

    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for s in scenes:
        video, gt = folder / f"{s}.mp4", folder / f"{s}_gt.npz"
        # (file names carry no size/fov: use a fresh folder per configuration)
        if not (video.exists() and gt.exists()):
            clip = render(s, width=width, height=height, num_frames=frames, fps=fps, seed=seed, fov_deg=fov_deg)
            write_video(clip, video)
            clip.save_gt(gt)
        out[s] = (video, gt)
    return out


def run_suite(work: Path, scenes: tuple[str, ...] = SCENES, *, width: int = 512, height: int = 384, frames: int = 60,
              fps: float = 30.0, seed: int = 0, workers: int = 2, fixture: Path | None = None,
              extra_sets: list[str] | None = None, display=None) -> list[SceneResult]:
    """Render, run the built-in pipeline, evaluate. ``fixture``: also room_orbit (video + GT npz folder)."""
    from y2r import pipeline  # noqa: PLC0415

    work = Path(work)
    inputs = render_inputs(work / "input", scenes, width=width, height=height, frames=frames, fps=fps, seed=seed)
    sets = ["ingest.fps=null", f"ingest.width={width}", f"ingest.height={height}", "hands.backend=none",
            f"execution.workers={workers}", *(extra_sets or [])]
    runs = [(work / "out", {s: v for s, v in inputs.items()}, sets)]
    if fixture is not None:
        fx_dir = work / "input_fixture"
        fx_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(fixture / "vipe_v1.1.0" / "rgb" / "room_orbit.mp4", fx_dir / "room_orbit.mp4")
        runs.append((work / "out_fixture", {"room_orbit": (fx_dir / "room_orbit.mp4", fixture / "room_orbit_gt.npz")},
                     ["ingest.fps=null", "ingest.width=320", "ingest.height=240", "hands.backend=none",
                      f"execution.workers={workers}", *(extra_sets or [])]))
    results = []
    for out, vids, run_sets in runs:
        cfg = load_config(None, run_sets)
        t0 = time.monotonic()
        res = pipeline.run([v for v, _ in vids.values()], out, cfg, display=display, argv=["y2r", "eval-suite"])
        elapsed = time.monotonic() - t0
        failed = {f["video_id"]: f["message"] for f in res.report.failures}
        for scene, (video, gt) in vids.items():
            ep = out / "episodes" / f"{video.stem}.h5"
            if not ep.exists():
                results.append(SceneResult(scene, 0, (0, 0), {}, elapsed, [f"no episode: {failed.get(video.stem)}"]))
                continue
            m = episode_vs_ground_truth(ep, gt)
            from y2r.dataset.reader import Episode  # noqa: PLC0415

            with Episode(ep) as e:
                T, size = e.num_frames, (e.width, e.height)
            results.append(SceneResult(scene, T, size, m, elapsed / max(1, len(vids)), check_targets(scene, m)))
    return results


COLUMNS = (("ATE %path", "ate_pct_path", "{:.2f}"), ("rot °/fr", "rot_err_deg_per_frame", "{:.3f}"),
           ("focal %", "focal_err_pct", "{:.2f}"), ("depth AbsRel", "depth_abs_rel", "{:.3f}"),
           ("δ<1.25", "depth_delta1", "{:.3f}"), ("coverage", "depth_coverage", "{:.2f}"),
           ("trk med px", "tracks_median_px", "{:.2f}"), ("trk p90 px", "tracks_p90_px", "{:.2f}"),
           ("vis F1", "tracks_vis_f1", "{:.3f}"), ("3D %depth", "tracks_err3d_median_pct", "{:.2f}"))


def format_value(fmt: str, v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return fmt.format(v)


def markdown_table(results: list[SceneResult]) -> str:
    head = ["scene", "frames"] + [c[0] for c in COLUMNS] + ["degenerate flag", "verdict"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cells = [r.scene, str(r.frames)] + [format_value(f, r.metrics.get(k)) for _, k, f in COLUMNS]
        cells += [str(r.metrics.get("degenerate") or "–"), "ok" if r.passed() else "MISS: " + "; ".join(r.failures)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
