"""Tool environments that y2r creates and manages itself (``y2r setup``).

Some built-in backends need a library whose pins clash with y2r's own: MediaPipe 0.10.21, the last
release whose wheel still carries the hand models (legacy ``solutions.hands``), wants numpy<2 and
OpenCV-contrib, while y2r uses numpy 2 and opencv-python-headless. Such a library runs like any
other tool: in its own virtual environment, behind a shim (``tools/shims``) speaking y2r's worker
protocol. This module makes those environments.

Layout::

    $Y2R_HOME/envs/<name>/              a venv (Y2R_HOME defaults to ~/.cache/y2r)
    $Y2R_HOME/envs/<name>/y2r-env.json  marker: requirement hash + versions, written LAST
    $Y2R_HOME/envs/<name>.setup.log     pip's output of the last build
    $Y2R_HOME/envs/.<name>.lock         serialises concurrent builds (pytest-xdist, several CLIs)

A folder without a marker whose hash matches the current requirement set is a half-made or stale
environment and is rebuilt from scratch, so an interrupted ``y2r setup`` never leaves a broken tool.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from y2r.errors import ToolUnavailable

Progress = Callable[[str], None]
MARKER_NAME = "y2r-env.json"


@dataclass(frozen=True)
class EnvSpec:
    """A pinned, tested requirement set and the check that proves an environment works."""

    name: str
    # Installed first, with pip's resolver (the list is the full closure, so it only confirms).
    requirements: tuple[str, ...]
    # Installed afterwards with --no-deps: packages whose declared dependencies we replace.
    no_deps: tuple[str, ...]
    # A Python snippet run by the new interpreter; it must exit 0 (and may print versions).
    check: str
    python_min: tuple[int, int]
    python_max: tuple[int, int]
    why: str

    def requirement_hash(self) -> str:
        text = json.dumps({"req": self.requirements, "no_deps": self.no_deps, "check": self.check}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# MediaPipe's wheel declares opencv-contrib-python, which links the system libGL.so.1 and libX11
# (checked with ldd) and so fails to import on a headless server without Mesa. The -headless build
# of the same version has the identical cv2 API without those links; mediapipe itself bundles its
# own EGL/GLES libraries. So mediapipe goes in with --no-deps and its real needs are listed here:
# jax/jaxlib (model-maker only), sentencepiece (text tasks) and sounddevice (audio tasks, needs
# PortAudio) are not used by the hands solution and are left out. matplotlib is needed because
# mediapipe/__init__ imports solutions.drawing_utils, which imports pyplot.
# Tested: CPython 3.11, manylinux x86_64, import verified with system libGL hidden.
MEDIAPIPE = EnvSpec(
    name="mediapipe",
    requirements=(
        "numpy==1.26.4",
        "opencv-contrib-python-headless==4.11.0.86",
        "protobuf==4.25.9",
        "absl-py==2.5.1",
        "attrs==26.1.0",
        "flatbuffers==25.12.19",
        "matplotlib==3.10.9",
        "contourpy==1.3.3",
        "cycler==0.12.1",
        "fonttools==4.68.0",
        "kiwisolver==1.5.1",
        "packaging==26.4",
        "pillow==13.0.0",
        "pyparsing==3.3.3",
        "python-dateutil==4.0.0",
    ),
    no_deps=("mediapipe==0.10.21",),
    check=(
        "import numpy as np, cv2, mediapipe as mp\n"
        "h = mp.solutions.hands.Hands(static_image_mode=True, max_num_hands=1)\n"
        "h.process(np.zeros((64, 64, 3), np.uint8))\n"
        "h.close()\n"
        "print(mp.__version__, cv2.__version__, np.__version__)\n"
    ),
    python_min=(3, 9),
    python_max=(3, 12),  # mediapipe 0.10.21 ships no cp313 wheel
    why="built-in hands backend (MediaPipe Hands)",
)

SPECS: dict[str, EnvSpec] = {MEDIAPIPE.name: MEDIAPIPE}
BUILTIN_ENVS: tuple[str, ...] = ("mediapipe",)


@dataclass
class EnvStatus:
    """What ``y2r doctor`` shows for one managed environment."""

    name: str
    path: Path
    exists: bool
    python: Path | None
    ok: bool
    problem: str | None = None
    fix: str | None = None
    versions: str | None = None


def y2r_home() -> Path:
    return Path(os.environ.get("Y2R_HOME") or Path.home() / ".cache" / "y2r").expanduser()


def env_dir(name: str) -> Path:
    return y2r_home() / "envs" / name


def env_python(name: str) -> Path:
    return env_dir(name) / "bin" / "python"


def _spec(name: str) -> EnvSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise ToolUnavailable(f"unknown managed environment '{name}'; known: {', '.join(sorted(SPECS))}") from None


def _read_marker(name: str) -> dict | None:
    try:
        with open(env_dir(name) / MARKER_NAME) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def env_status(name: str) -> EnvStatus:
    """Whether a managed environment is there and complete (no subprocess; cheap)."""
    spec = _spec(name)
    path = env_dir(name)
    py = env_python(name)
    fix = "run `y2r setup`"
    if not path.exists():
        return EnvStatus(name, path, False, None, False, f"{name} environment not created ({spec.why})", fix)
    marker = _read_marker(name)
    if marker is None:
        return EnvStatus(name, path, True, py if py.exists() else None, False,
                         f"{name} environment at {path} is incomplete (setup was interrupted or failed)",
                         "run `y2r setup --force`")
    if marker.get("requirement_hash") != spec.requirement_hash():
        return EnvStatus(name, path, True, py if py.exists() else None, False,
                         f"{name} environment at {path} was built for another requirement set", "run `y2r setup`")
    if not py.exists():
        return EnvStatus(name, path, True, None, False, f"{name} environment at {path} has no interpreter",
                         "run `y2r setup --force`")
    return EnvStatus(name, path, True, py, True, versions=marker.get("versions"))


@contextmanager
def _locked(name: str):
    lock_path = y2r_home() / "envs" / f".{name}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _run(argv: list[str], log_path: Path, step: str, name: str, timeout_s: float = 1800.0) -> str:
    """Run one build step (argv list, no shell), appending its output to the setup log."""
    with open(log_path, "a") as log:
        log.write(f"\n$ {' '.join(argv)}\n")
        log.flush()
        try:
            proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,  # noqa: S603
                                  timeout=timeout_s, stdin=subprocess.DEVNULL, check=False)
        except subprocess.TimeoutExpired as e:
            raise ToolUnavailable(f"{name} setup: {step} timed out after {timeout_s:.0f} s; see {log_path}, "
                                  f"then run `y2r setup --force`") from e
        except OSError as e:
            raise ToolUnavailable(f"{name} setup: cannot run {argv[0]} ({e.strerror}); see {log_path}") from e
        log.write(proc.stdout)
    if proc.returncode != 0:
        last = next((ln for ln in reversed(proc.stdout.splitlines()) if ln.strip()), "")
        raise ToolUnavailable(f"{name} setup: {step} failed ({last.strip()[:200]}); see {log_path}, fix the cause "
                              f"(network / package index) and run `y2r setup --force`",
                              detail=proc.stdout[-8000:])
    return proc.stdout


def ensure_env(name: str, force: bool = False, progress: Progress | None = None) -> Path:
    """Create (if needed) the managed environment ``name`` and return its interpreter path.

    Idempotent and safe to call from several processes at once: a complete environment with the
    current requirement hash returns at once; anything else is wiped and rebuilt under a file lock.
    """
    spec = _spec(name)
    say = progress or (lambda msg: None)
    status = env_status(name)
    if status.ok and not force:
        return env_python(name)
    if not (spec.python_min <= sys.version_info[:2] <= spec.python_max):
        lo, hi = (".".join(map(str, v)) for v in (spec.python_min, spec.python_max))
        raise ToolUnavailable(
            f"{name} environment needs Python {lo}-{hi} but y2r runs on {sys.version.split()[0]}; create one by hand "
            f"(pip install {' '.join(spec.no_deps)}) and set tools.{name}.python to its interpreter")
    with _locked(name):
        # Another process may have finished the build while we waited for the lock.
        if env_status(name).ok and not force:
            return env_python(name)
        path = env_dir(name)
        log_path = path.parent / f"{name}.setup.log"
        log_path.write_text(f"y2r setup of '{name}' at {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        if path.exists():
            say(f"{name}: removing the old environment at {path}")
            shutil.rmtree(path)
        t0 = time.monotonic()
        say(f"{name}: creating a virtual environment at {path}")
        _run([sys.executable, "-m", "venv", str(path)], log_path, "creating the venv", name)
        py = env_python(name)
        pip = [str(py), "-m", "pip", "--disable-pip-version-check", "--no-input"]
        if spec.requirements:
            say(f"{name}: installing {len(spec.requirements)} pinned packages")
            _run([*pip, "install", *spec.requirements], log_path, "pip install (dependencies)", name)
        if spec.no_deps:
            say(f"{name}: installing {', '.join(spec.no_deps)} (--no-deps)")
            _run([*pip, "install", "--no-deps", *spec.no_deps], log_path, "pip install (--no-deps)", name)
        say(f"{name}: checking that it imports and runs")
        out = _run([str(py), "-c", spec.check], log_path, "the import check", name, timeout_s=300.0)
        versions = next((ln.strip() for ln in reversed(out.splitlines()) if ln.strip() and ln[0].isdigit()), "")
        from y2r.artifacts import write_json_atomic  # local: keep this module light for `y2r doctor`

        write_json_atomic(path / MARKER_NAME, {
            "name": name, "requirement_hash": spec.requirement_hash(), "requirements": list(spec.requirements),
            "no_deps": list(spec.no_deps), "versions": versions, "python": sys.version.split()[0],
            "built_s": round(time.monotonic() - t0, 1), "created_utc": time.time(),
        })
        say(f"{name}: ready ({versions}) in {time.monotonic() - t0:.0f} s")
        return py


def setup_builtin_envs(progress: Progress | None = None, force: bool = False) -> dict[str, Path]:
    """Build every environment the built-in backends need (what ``y2r setup`` runs)."""
    return {name: ensure_env(name, force=force, progress=progress) for name in BUILTIN_ENVS}


def resolve_tool_python(name: str, configured: str | os.PathLike | None) -> Path:
    """The interpreter for a tool: the configured one if given, else the managed environment's.

    Never builds anything (workers must not run pip); a missing environment is a user error
    whose message says to run ``y2r setup``.
    """
    if configured:
        p = Path(configured).expanduser()
        if not p.exists():
            raise ToolUnavailable(f"tools.{name}.python: {p} does not exist; fix the path or unset it to use "
                                  f"the environment `y2r setup` makes")
        return p
    status = env_status(name)
    if not status.ok:
        raise ToolUnavailable(f"{status.problem}; {status.fix} (or set tools.{name}.python)")
    return env_python(name)
