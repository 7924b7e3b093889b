"""The command line: help everywhere, one-line errors with exit codes, and the main commands."""

import json

from cli_runner import run_main

from y2r.cli import cli

COMMANDS = sorted(cli.commands)


def test_every_command_has_help_and_is_documented(capsys):
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "cli.md").read_text()
    for name in COMMANDS:
        assert cli.commands[name].help, f"y2r {name} has no help text"
        assert f"y2r {name}" in doc, f"docs/cli.md does not document `y2r {name}`"
        code, out = run_main([name, "--help"], capsys)
        assert code == 0 and "Usage: y2r" in out
    code, out = run_main(["--help"], capsys)
    assert code == 0 and all(name in out for name in COMMANDS)


def test_docs_cli_is_generated_from_the_help():
    from pathlib import Path

    from y2r.cli import cli_reference_markdown

    doc = (Path(__file__).parents[1] / "docs" / "cli.md").read_text()
    assert doc == cli_reference_markdown(), (
        "docs/cli.md is stale: python -c 'from y2r.cli import cli_reference_markdown as m; "
        "open(\"docs/cli.md\", \"w\").write(m())'")


def test_docs_cli_usage_lines_are_what_the_commands_print():
    import subprocess
    import sys

    from y2r.cli import cli_reference_markdown

    doc = cli_reference_markdown()
    for name in ("run", "status", "init"):
        help_text = subprocess.run([sys.executable, "-m", "y2r.cli", name, "--help"], capture_output=True,
                                   text=True, check=True).stdout
        usage = help_text.splitlines()[0]
        assert usage.startswith(f"Usage: y2r {name} ") and usage in doc, usage


def test_config_error_is_one_line_with_exit_2(tmp_path, capsys):
    code, out = run_main(["run", str(tmp_path), "-o", str(tmp_path / "o"), "--set", "camera.backnd=vipe"], capsys)
    assert code == 2
    lines = [l for l in out.splitlines() if l.strip()]
    assert lines == ["error: defaults + --set: unknown key 'camera.backnd'; did you mean 'camera.backend'?"]
    assert "Traceback" not in out


def test_no_inputs_found_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, out = run_main(["run", str(tmp_path / "empty"), "-o", str(tmp_path / "o")], capsys)
    assert code == 2 and "no input videos found" in out


def test_init_writes_a_valid_commented_config(tmp_path, capsys):
    p = tmp_path / "y2r.yaml"
    code, _ = run_main(["init", str(p)], capsys)
    assert code == 0 and p.read_text().startswith("# y2r configuration")
    from y2r.config import load_config

    assert load_config(p).camera.backend == "builtin"
    code, out = run_main(["init", str(p)], capsys)
    assert code == 2 and "exists (use --force" in out


def test_run_status_validate_and_exit_codes(tmp_path, video_factory, capsys):
    good = video_factory("good.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"")
    out = tmp_path / "out"
    sets = ["--set", "camera.backend=synthetic", "--set", "tracks.backend=synthetic", "--set", "hands.backend=synthetic",
            "--set", "ingest.width=64", "--set", "ingest.height=48"]
    code, text = run_main(["run", str(good), str(bad), "-o", str(out), "-w", "1", "-q", *sets], capsys)
    assert code == 1  # one video failed
    assert f"bad [ingest, bad_input]: {bad}: empty file (0 bytes)" in text
    code, text = run_main(["status", str(out), "--json"], capsys)
    st = json.loads(text)
    assert st["stages"]["episode"]["done"] == 1 and st["stages"]["ingest"]["failed"] == 1
    assert st["failures"][0]["message"] == f"{bad}: empty file (0 bytes)"
    code, text = run_main(["status", str(out)], capsys)
    assert code == 0 and "empty file (0 bytes)" in text and "[ingest, bad_input, 1 attempts]" in text
    code, text = run_main(["status", str(out), "--unfinished"], capsys)
    assert text.strip() == str(bad.resolve())
    code, text = run_main(["validate", str(out)], capsys)
    assert code == 0 and "1/1 episodes valid" in text
    # corrupt the episode: validate names the file and exits 1
    import h5py

    with h5py.File(out / "episodes" / "good.h5", "r+") as f:
        del f["camera/K"]
    code, text = run_main(["validate", str(out)], capsys)
    assert code == 1 and "good.h5" in text and "camera/K" in text


def test_dry_run_prints_the_plan_without_writing(tmp_path, video_factory, capsys):
    v = video_factory("v.mp4")
    out = tmp_path / "never"
    code, text = run_main(["run", str(v), "-o", str(out), "--dry-run", "--set", "camera.backend=synthetic",
                           "--set", "hands.backend=none"], capsys)
    assert code == 0 and "1 videos" in text and "synthetic" in text
    assert not out.exists()


def test_status_of_a_folder_without_ledger(tmp_path, capsys):
    code, text = run_main(["status", str(tmp_path)], capsys)
    assert code == 2 and "no ledger here" in text
