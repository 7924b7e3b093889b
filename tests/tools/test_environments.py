"""Managed tool environments: idempotent builds, half-made envs rebuilt, clear errors.

Uses a tiny spec with no packages (a real venv, real subprocesses, no network) so it runs in seconds.
"""

import json
import sys

import pytest

from y2r.errors import ToolUnavailable
from y2r.tools import environments as envs


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    monkeypatch.setenv("Y2R_HOME", str(tmp_path / "home"))
    spec = envs.EnvSpec(name="tiny", requirements=(), no_deps=(), check="import sys; print('1.0', sys.version_info[0])",
                        python_min=(3, 8), python_max=(3, 99), why="tests")
    monkeypatch.setitem(envs.SPECS, "tiny", spec)
    return spec


def test_build_is_idempotent_and_writes_marker_last(tiny):
    st = envs.env_status("tiny")
    assert not st.exists and not st.ok and "y2r setup" in st.fix
    msgs = []
    py = envs.ensure_env("tiny", progress=msgs.append)
    assert py.exists() and py == envs.env_python("tiny")
    marker = json.loads((envs.env_dir("tiny") / envs.MARKER_NAME).read_text())
    assert marker["requirement_hash"] == tiny.requirement_hash() and marker["versions"].startswith("1.0")
    assert any("ready" in m for m in msgs)
    mtime = (envs.env_dir("tiny") / envs.MARKER_NAME).stat().st_mtime_ns
    assert envs.ensure_env("tiny") == py  # second call: nothing rebuilt
    assert (envs.env_dir("tiny") / envs.MARKER_NAME).stat().st_mtime_ns == mtime
    assert envs.env_status("tiny").ok


def test_half_made_or_stale_env_is_detected_and_rebuilt(tiny, monkeypatch):
    envs.ensure_env("tiny")
    (envs.env_dir("tiny") / envs.MARKER_NAME).unlink()  # as if setup was killed before the end
    st = envs.env_status("tiny")
    assert st.exists and not st.ok and "incomplete" in st.problem
    stray = envs.env_dir("tiny") / "half-installed.txt"
    stray.write_text("x")
    envs.ensure_env("tiny")
    assert envs.env_status("tiny").ok and not stray.exists()
    # A changed requirement set makes the old env stale.
    monkeypatch.setitem(envs.SPECS, "tiny", envs.EnvSpec(**{**tiny.__dict__, "requirements": ("nothing-here==0",)}))
    st = envs.env_status("tiny")
    assert not st.ok and "another requirement set" in st.problem


def test_failed_step_raises_one_line_error_naming_the_log(tiny, monkeypatch):
    monkeypatch.setitem(envs.SPECS, "tiny", envs.EnvSpec(**{**tiny.__dict__, "check": "raise SystemExit(3)"}))
    with pytest.raises(ToolUnavailable) as e:
        envs.ensure_env("tiny")
    msg = e.value.one_line()
    assert "import check failed" in msg and "setup.log" in msg and "y2r setup --force" in msg and "\n" not in msg
    assert not envs.env_status("tiny").ok  # no marker: the next run rebuilds


def test_unsupported_python_and_tool_python_resolution(tiny, monkeypatch, tmp_path):
    monkeypatch.setitem(envs.SPECS, "tiny", envs.EnvSpec(**{**tiny.__dict__, "python_max": (3, 0)}))
    with pytest.raises(ToolUnavailable, match="tools.tiny.python"):
        envs.ensure_env("tiny")
    with pytest.raises(ToolUnavailable, match="run `y2r setup`"):  # Y2R_HOME is empty here
        envs.resolve_tool_python("mediapipe", None)
    with pytest.raises(ToolUnavailable, match="does not exist"):
        envs.resolve_tool_python("mediapipe", tmp_path / "nope" / "python")
    assert envs.resolve_tool_python("mediapipe", sys.executable) == envs.Path(sys.executable)


def test_mediapipe_spec_pins_everything_and_avoids_libgl_opencv():
    spec = envs.SPECS["mediapipe"]
    assert all("==" in r for r in spec.requirements + spec.no_deps)
    assert any(r.startswith("opencv-contrib-python-headless==") for r in spec.requirements)
    assert not any(r.startswith("opencv-contrib-python==") for r in spec.requirements)
    assert any(r.startswith("numpy==1.") for r in spec.requirements)
