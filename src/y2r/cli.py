"""The ``y2r`` command line: a thin shell over the library.

Typed errors are translated to one-line messages here and nowhere else; ``--verbose`` adds the
details (tracebacks, tool log tails). Exit codes: 0 all good, 1 some videos failed / validation
problems, 2 usage or config error, 3 a tool environment is unusable, 130 interrupted.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from y2r import __version__
from y2r.console import RichRunDisplay, console
from y2r.errors import UsageError, Y2RError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


def _load_config(config: str | None, sets: tuple[str, ...]):
    from y2r.config import load_config  # noqa: PLC0415

    return load_config(config, list(sets))


def _parse_shard(shard: str | None) -> tuple[int, int] | None:
    if not shard:
        return None
    try:
        i, n = (int(x) for x in shard.split("/"))
    except ValueError:
        raise UsageError(f"--shard {shard!r}: expected I/N, e.g. 3/16") from None
    if not (n >= 1 and 0 <= i < n):
        raise UsageError(f"--shard {shard!r}: need 0 <= I < N")
    return i, n


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, prog_name="y2r")
@click.option("-v", "--verbose", is_flag=True, help="Show details (tracebacks, tool log tails) with errors.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Turn folders of human-demonstration videos into robot-learning datasets.

    Per video y2r computes camera intrinsics, poses and metric depth, 3D point tracks and 3D hand
    poses, and writes one HDF5 episode. It resumes where it stopped, retries what failed, and never
    lets one bad video stop the others.

    \b
    Quick start:
      y2r demo -o demo_out                 # synthetic clip through the whole pipeline
      y2r run videos/ -o dataset/          # your videos (files, folders, or a .txt list)
      y2r status dataset/                  # what is done, running, failed (and why)
      y2r validate dataset/                # check every episode against the schema
    """
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose


# --------------------------------------------------------------------------------------- run
@cli.command(context_settings=CONTEXT)
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Output folder (dataset + ledger).")
@click.option("-c", "--config", type=click.Path(dir_okay=False), help="YAML config (see `y2r init`).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a config key, e.g. camera.backend=builtin.")
@click.option("-w", "--workers", type=click.IntRange(min=1), help="CPU worker processes (default: cores).")
@click.option("--executor", type=click.Choice(["local", "ray"]), help="Where workers run (default from config: local).")
@click.option("--address", help="Ray cluster address (auto or HOST:PORT) for --executor ray.")
@click.option("--shard", metavar="I/N", help="Process only shard I of N (SLURM arrays): hash of the video id.")
@click.option("--dry-run", is_flag=True, help="Print the plan (videos, stages to run, worker placement) and exit.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def run(inputs, out, config, sets, workers, executor, address, shard, dry_run, quiet) -> None:
    """Process videos into episodes under OUT (re-run the same command to resume).

    INPUTS are video files, folders (searched recursively by extension) or text files listing one
    path per line. Finished work is never redone unless its stage's config changed; changing one
    stage's config re-runs that stage and the ones after it.
    """
    from y2r import pipeline  # noqa: PLC0415

    sets = list(sets)
    if workers:
        sets.append(f"execution.workers={workers}")
    if executor:
        sets.append(f"execution.executor={executor}")
    if address:
        sets.append(f"execution.ray_address={address}")
    cfg = _load_config(config, tuple(sets))
    shard_t = _parse_shard(shard)
    if dry_run:
        from y2r.execution.plan import print_plan  # noqa: PLC0415

        print_plan(inputs, Path(out), cfg, shard_t)
        return
    display = RichRunDisplay(("ingest", "camera", "tracks", "hands", "episode"), live=None if not quiet else False)
    result = pipeline.run(list(inputs), out, cfg, display=display, shard=shard_t, argv=sys.argv)
    rep = result.report
    summary = (f"{result.videos} videos: {rep.done} tasks done, {rep.failed} failed, {rep.skipped} skipped "
               f"in {rep.elapsed_s:.1f} s -> {Path(out) / 'episodes'}")
    if rep.interrupted:
        console.print(f"[yellow]interrupted[/]: {summary}. Run the same command again to resume.")
        sys.exit(EXIT_INTERRUPTED)
    console.print(summary)
    if rep.failures:
        console.print("[red]failed videos[/] (details: y2r status, logs under OUT/logs/):")
        for f in rep.failures:
            console.print(f"  {f['video_id']} [{f['stage']}, {f['kind']}]: {f['message']}", markup=False)
        sys.exit(EXIT_FAILED)


# ------------------------------------------------------------------------------------ status
@cli.command(context_settings=CONTEXT)
@click.argument("out", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--unfinished", is_flag=True, help="Print the videos that are not finished (to resubmit), one per line.")
@click.option("--shards", is_flag=True,
              help="With --unfinished: print the SLURM array indices of unfinished shards instead (e.g. 3,7-9).")
def status(out, as_json, unfinished, shards) -> None:
    """Per-stage progress, failed videos with their errors, and the live run (GPUs, workers, ETA)."""
    from y2r.status import array_ranges, collect_status, print_status, shards_to_resubmit  # noqa: PLC0415

    if shards:
        if not unfinished:
            raise UsageError("--shards goes with --unfinished: y2r status OUT --unfinished --shards")
        todo = shards_to_resubmit(Path(out))
        if todo:  # nothing printed when every shard is finished, so `[ -n "$(...)" ]` works in scripts
            click.echo(array_ranges(todo))
        return
    st = collect_status(Path(out))
    if unfinished:
        for v in st["unfinished"]:
            click.echo(v["source_path"])
        return
    if as_json:
        click.echo(json.dumps(st, indent=1, default=str))
        return
    print_status(st)


# ---------------------------------------------------------------------------------- validate
@cli.command(context_settings=CONTEXT)
@click.argument("path", type=click.Path(exists=True))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def validate(path, as_json) -> None:
    """Check every episode (an OUT folder or one .h5 file) against the schema and conventions."""
    from y2r.dataset.validate import validate_path  # noqa: PLC0415

    problems = validate_path(Path(path))
    bad = {f: p for f, p in problems.items() if p}
    if as_json:
        click.echo(json.dumps({"files": len(problems), "problems": problems}, indent=1))
    else:
        for f, ps in bad.items():
            for p in ps:
                console.print(p, markup=False)
        ok = len(problems) - len(bad)
        colour = "green" if not bad else "red"
        console.print(f"[{colour}]{ok}/{len(problems)} episodes valid[/]")
    if bad or not problems:
        if not problems and not as_json:
            console.print("[red]no episodes found[/]")
        sys.exit(EXIT_FAILED)


# -------------------------------------------------------------------------------------- init
@cli.command(context_settings=CONTEXT)
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(file, force) -> None:
    """Write a commented config with every key and its default (to FILE, or stdout)."""
    from y2r.config import INIT_HEADER, commented_yaml  # noqa: PLC0415

    text = INIT_HEADER + "\n" + commented_yaml()
    if not file:
        click.echo(text, nl=False)
        return
    p = Path(file)
    if p.exists() and not force:
        raise UsageError(f"{p}: exists (use --force to overwrite)")
    p.write_text(text)
    console.print(f"wrote {p}")


# -------------------------------------------------------------------------------------- demo
@cli.command(context_settings=CONTEXT)
@click.option("-o", "--out", default="y2r_demo", show_default=True, type=click.Path(file_okay=False))
@click.option("--scene", default="orbit", show_default=True, help="Synthetic scene (see y2r.synth.SCENES).")
@click.option("--frames", default=45, show_default=True, type=click.IntRange(min=9), help="Frames to render.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a config key.")
def demo(out, scene, frames, sets) -> None:
    """Render a short synthetic clip with exact ground truth and run the whole pipeline on it."""
    from y2r.demo import run_demo  # noqa: PLC0415

    code = run_demo(Path(out), scene=scene, frames=frames, sets=list(sets))
    sys.exit(code)


# ------------------------------------------------------------------------------------- setup
@cli.command(context_settings=CONTEXT)
@click.option("--force", is_flag=True, help="Rebuild the environments from scratch.")
def setup(force) -> None:
    """Create the isolated environments of built-in tools (MediaPipe Hands) under $Y2R_HOME."""
    from y2r.tools.environments import setup_builtin_envs  # noqa: PLC0415

    setup_builtin_envs(progress=lambda msg: console.print(msg, markup=False), force=force)
    console.print("[green]built-in tool environments ready[/]")


# ------------------------------------------------------------------------------------ doctor
@cli.command(context_settings=CONTEXT)
@click.option("-c", "--config", type=click.Path(dir_okay=False), help="YAML config naming the tool environments.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a config key.")
def doctor(config, sets) -> None:
    """Check each configured tool (interpreter, import, checkpoints, CUDA) and say how to fix problems."""
    from y2r.tools.doctor import check_tools  # noqa: PLC0415

    cfg = _load_config(config, sets)
    checks = check_tools(cfg)
    table = Table("tool", "check", "result", "fix", show_lines=False)
    bad = 0
    for c in checks:
        ok = c.ok
        bad += not ok and not getattr(c, "optional", False)
        table.add_row(c.tool, c.check, ("[green]ok[/] " if ok else "[red]FAIL[/] ") + (c.detail or ""), c.fix or "")
    console.print(table)
    if bad:
        sys.exit(EXIT_FAILED)


# ------------------------------------------------------------------------------------ export
@cli.command(context_settings=CONTEXT)
@click.argument("fmt", type=click.Choice(["lerobot", "robomimic"]))
@click.argument("out", type=click.Path(exists=True, file_okay=False))
@click.argument("dest", type=click.Path())
@click.option("-O", "--option", "options", multiple=True, metavar="KEY=VALUE",
              help="Exporter option, e.g. task='pick the cup', include_depth=true, val_fraction=0.2.")
def export(fmt, out, dest, options) -> None:
    """Export the episodes of OUT into another dataset format at DEST.

    \b
    lerobot options:   task, robot_type, vcodec, crf, gop, include_depth, include_tracks,
                       include_hands, include_camera, overwrite
    robomimic options: val_fraction, seed, next_obs, compression, file_name
    """
    from y2r.config import parse_override  # noqa: PLC0415
    from y2r.dataset.export import export as do_export  # noqa: PLC0415

    opts = dict(parse_override(o) for o in options)
    path = do_export(fmt, Path(out), Path(dest), opts or None)
    console.print(f"wrote {path}")


# -------------------------------------------------------------------------------------- eval
@cli.command(name="eval", context_settings=CONTEXT)
@click.argument("out", type=click.Path(exists=True, file_okay=False))
@click.option("--gt", "gt_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Folder of ground-truth .npz files (<video_id>_gt.npz, as y2r.synth writes them).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def evaluate(out, gt_dir, as_json) -> None:
    """Compare OUT's episodes with ground truth: camera (ATE, rotation, focal), depth, tracks.

    Metrics are defined in docs/benchmarks.md (ATE after Sim(3) alignment in % of path length,
    relative rotation error, focal error, depth AbsRel / delta<1.25 / coverage, track position
    error percentiles, visibility F1, 3D error in % of depth).
    """
    from y2r.evaluation.episode_accuracy import episode_vs_ground_truth, find_ground_truth  # noqa: PLC0415
    from y2r.evaluation.suite import COLUMNS, format_value  # noqa: PLC0415

    rows = {}
    for ep in sorted((Path(out) / "episodes").glob("*.h5")):
        gt = find_ground_truth(Path(gt_dir), ep.stem)
        if gt is not None:
            rows[ep.stem] = episode_vs_ground_truth(ep, gt)
    if not rows:
        raise UsageError(f"no episode of {out} has a ground-truth file in {gt_dir} (<id>_gt.npz)")
    if as_json:
        click.echo(json.dumps(rows, indent=1, default=float))
        return
    table = Table("episode", *(c[0] for c in COLUMNS), "degenerate")
    for vid, m in rows.items():
        table.add_row(vid, *(format_value(f, m.get(k)) for _, k, f in COLUMNS), str(m.get("degenerate") or "-"))
    console.print(table)


# ------------------------------------------------------------------------------------ report
@cli.command(context_settings=CONTEXT)
@click.argument("out", type=click.Path(exists=True, file_okay=False))
def report(out) -> None:
    """(Re)build OUT/report.html: episodes, thumbnails, camera paths, quality flags, failures."""
    from y2r.viz.report import write_report  # noqa: PLC0415

    console.print(f"wrote {write_report(Path(out))}")


@cli.command(context_settings=CONTEXT)
@click.argument("episode", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="MP4 to write (default: OUT/viz/<id>.overlay.mp4, where the report links it).")
def overlay(episode, output) -> None:
    """Render an episode as a video with tracks, hand skeletons and a depth inset."""
    from y2r.viz.overlay import overlay_path, render_overlay  # noqa: PLC0415

    ep = Path(episode)
    if output:
        dst = Path(output)
    elif ep.parent.name == "episodes":
        dst = overlay_path(ep.parent.parent, ep.stem)
    else:
        dst = ep.with_suffix(".overlay.mp4")
    dst.parent.mkdir(parents=True, exist_ok=True)
    console.print(f"wrote {render_overlay(ep, dst)}")


# -------------------------------------------------------------------------------------- docs
def cli_reference_markdown() -> str:
    """docs/cli.md, generated from the commands' own help (a test keeps the file equal to this)."""
    ctx = click.Context(cli, info_name="y2r", terminal_width=100, max_content_width=100,
                        help_option_names=["-h", "--help"])
    parts = ["# Command line reference\n",
             "Generated from the commands' own help: `y2r COMMAND --help` prints the same text.\n",
             "Exit codes: 0 all good; 1 some videos failed or episodes are invalid; 2 usage or config error; "
             "3 a tool environment is unusable; 130 interrupted (run the same command again to resume).\n",
             "```\n" + cli.get_help(ctx) + "\n```\n"]
    for name in sorted(cli.commands):
        cmd = cli.commands[name]
        sub = click.Context(cmd, info_name=name, parent=ctx, terminal_width=100, max_content_width=100,
                            help_option_names=["-h", "--help"])
        parts.append(f"## y2r {name}\n\n```\n{cmd.get_help(sub)}\n```\n")
    return "\n".join(parts)


# -------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="y2r", standalone_mode=False)
    except click.exceptions.Abort:
        console.print("aborted")
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as e:
        e.show()
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        sys.exit(EXIT_INTERRUPTED)
    except Y2RError as e:
        console.print(f"[red]error:[/] {escape(e.one_line())}", highlight=False)
        verbose = "-v" in (argv or sys.argv) or "--verbose" in (argv or sys.argv)
        if verbose:
            if e.detail:
                console.print(e.detail, markup=False)
            console.print(traceback.format_exc(), markup=False)
        sys.exit(e.exit_code)
    except SystemExit:
        raise


if __name__ == "__main__":  # pragma: no cover
    main()
