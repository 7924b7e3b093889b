"""Running ``y2r``'s CLI in-process in a test (importable as `cli_runner`: tests/ is on sys.path)."""

from __future__ import annotations

import pytest

from y2r.cli import main


def run_main(argv, capsys) -> tuple[int, str]:
    """(exit code, stdout + stderr) of ``y2r ARGV``; a command that returns normally exits 0."""
    with pytest.raises(SystemExit) as e:
        main(argv)
        raise SystemExit(0)
    cap = capsys.readouterr()
    return e.value.code or 0, cap.out + cap.err
