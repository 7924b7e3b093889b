"""``y2r demo``: render a synthetic clip with exact ground truth and run the whole pipeline on it.

Needs nothing but y2r itself (no GPU, no downloads). Afterwards it compares the estimated camera,
depth and tracks with the ground truth, so the user sees at once whether the install works *and*
how accurate the built-in backends are.
"""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from y2r.config import load_config
from y2r.console import RichRunDisplay, console
from y2r.stages.base import STAGE_ORDER


def run_demo(out: Path, *, scene: str = "orbit", frames: int = 45, sets: list[str] | None = None) -> int:
    from y2r import pipeline  # noqa: PLC0415
    from y2r.synth import render, write_video  # noqa: PLC0415

    out = Path(out)
    inp = out / "input"
    inp.mkdir(parents=True, exist_ok=True)
    video = inp / f"demo_{scene}.mp4"
    gt_path = inp / f"demo_{scene}_gt.npz"
    if not video.exists() or not gt_path.exists():
        console.print(f"rendering synthetic '{scene}' clip ({frames} frames, 512x384) with exact ground truth ...")
        clip = render(scene, width=512, height=384, num_frames=frames, fps=15.0, seed=0)
        write_video(clip, video)
        clip.save_gt(gt_path)
    overrides = ["ingest.fps=null", *(sets or [])]
    if not any(s.startswith("hands.backend") for s in overrides):
        from y2r.tools.environments import env_status  # noqa: PLC0415

        st = env_status("mediapipe")
        if not st.ok:
            console.print(f"[yellow]note[/]: hands skipped ({st.problem}); run `y2r setup` to enable built-in hands")
            overrides.append("hands.backend=none")
    cfg = load_config(None, overrides)
    display = RichRunDisplay(STAGE_ORDER)
    result = pipeline.run([video], out, cfg, display=display, argv=["y2r", "demo"])
    rep = result.report
    if rep.failures:
        for f in rep.failures:
            console.print(f"[red]failed[/] {f['stage']}: {f['message']}", markup=False)
        return 1
    episode = out / "episodes" / f"{video.stem}.h5"
    _print_accuracy(episode, gt_path)
    console.print(f"\nepisode: {episode}\nreport:  {out / 'report.html'}\n"
                  f"next:    y2r validate {out}   |   y2r overlay {episode}")
    return 0


def _print_accuracy(episode: Path, gt_path: Path) -> None:
    from y2r.evaluation.episode_accuracy import episode_vs_ground_truth  # noqa: PLC0415
    from y2r.evaluation.suite import COLUMNS, TARGETS, format_value  # noqa: PLC0415

    metrics = episode_vs_ground_truth(episode, gt_path)
    t = Table("metric", "value", "target (textured scenes)", title="built-in backends against the exact ground truth")
    for label, key, fmt in COLUMNS:
        op, thr = TARGETS.get(key, ("", None))
        t.add_row(label, format_value(fmt, metrics.get(key)), f"{op} {thr}" if thr is not None else "")
    t.add_row("degenerate flag", str(metrics.get("degenerate") or "none"), "none")
    console.print(t)
