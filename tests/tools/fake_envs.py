"""Fake tool environments for the tool tests: a separate interpreter that cannot import y2r.

One venv per (Python version, requirement set), created once under ``$Y2R_TEST_ENVS`` (default
``~/.cache/y2r/test-envs/<hash>``) with numpy, OpenEXR and headless OpenCV from PyPI -- the
libraries the real tools' formats need -- and nothing of y2r. The fake tools themselves
(``fakes/site``: torch stand-in, ``vipe``, ``ultralytics``; ``fakes/*_checkout``: TAPIP3D's and
WiLoR's checkout trees) come in through the worker's PYTHONPATH / working directory, exactly where
a user's real installation would be. A lock serialises creation across pytest-xdist workers; a
marker written last makes an interrupted build count as absent.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

FAKES = Path(__file__).resolve().parent / "fakes"
SITE = FAKES / "site"
REQUIREMENTS = ("numpy>=1.26,<3", "OpenEXR>=3.3,<4", "opencv-python-headless>=4.9,<6")
MARKER = "y2r-test-env.json"


def envs_root() -> Path:
    return Path(os.environ.get("Y2R_TEST_ENVS") or Path.home() / ".cache" / "y2r" / "test-envs").expanduser()


def fake_python() -> Path:
    """The fake tools' interpreter (built on first use, then reused across sessions)."""
    key = hashlib.sha256(json.dumps([sys.version_info[:2], REQUIREMENTS]).encode()).hexdigest()[:12]
    env = envs_root() / key
    py = env / "bin" / "python"
    if (env / MARKER).exists():
        return py
    env.parent.mkdir(parents=True, exist_ok=True)
    with open(env.parent / f".{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (env / MARKER).exists():
            return py
        shutil.rmtree(env, ignore_errors=True)
        # sys.executable is y2r's venv python; `-m venv` builds from its base interpreter, so the new
        # environment sees none of y2r's site-packages (y2r's editable install included).
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True, capture_output=True)
        subprocess.run([str(py), "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "-q",
                        *REQUIREMENTS], check=True, capture_output=True, timeout=900)
        (env / MARKER).write_text(json.dumps({"requirements": REQUIREMENTS}))
    return py


def copy_checkout(name: str, dst: Path) -> Path:
    """A writable copy of a fake checkout (tests add checkpoints to it)."""
    root = dst / name
    shutil.copytree(FAKES / f"{name}_checkout", root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def tool_env(work: Path, root: Path | None = None, **extra: str) -> dict:
    """A ``tools.<tool>`` section for a fake tool: fake interpreter, fake site on PYTHONPATH,
    load log and failure control files under ``work``, short heartbeats for fast hang detection."""
    work.mkdir(parents=True, exist_ok=True)
    env = {"PYTHONPATH": str(SITE), "FAKE_TOOL_LOG": str(work / "loads.log"),
           "FAKE_TOOL_CONTROL": str(work / "control"), "FAKE_TORCH_CUDA": "1", **extra}
    return {"python": str(fake_python()), "root": str(root) if root else None, "env": env,
            # 6 missed beats = a hang: 3 s, short for the hang tests, but not so short that a busy
            # 2-core CI machine delaying one beat fails a healthy worker (0.25 s did, once).
            "startup_timeout_s": 60.0, "heartbeat_s": 0.5}


def loads(work: Path) -> list[str]:
    p = work / "loads.log"
    return p.read_text().splitlines() if p.exists() else []


def fail_next(work: Path, mode: str) -> None:
    (work / "control").write_text(mode)


def tapip3d_root(dst: Path, image_size: tuple[int, int]) -> Path:
    """A fake TAPIP3D checkout whose 'checkpoint' trains at ``image_size`` (H, W)."""
    root = copy_checkout("tapip3d", dst)
    (root / "checkpoints").mkdir()
    (root / "checkpoints" / "tapip3d_final.pth").write_text(json.dumps({"image_size": list(image_size)}))
    return root


def wilor_root(dst: Path) -> Path:
    """A fake WiLoR checkout with its demo's checkpoint files and a MANO model in mano_data/."""
    root = copy_checkout("wilor", dst)
    (root / "pretrained_models").mkdir()
    for name in ("wilor_final.ckpt", "model_config.yaml", "detector.pt"):
        (root / "pretrained_models" / name).write_text("fake")
    (root / "mano_data").mkdir()
    (root / "mano_data" / "MANO_RIGHT.pkl").write_bytes(b"fake")
    return root
