"""Shared test fixtures: small generated videos, the shared fixtures folder, GPU-test guard."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from shared_data import SHARED
from video_samples import make_frames

FAST_SYNTHETIC = [
    "camera.backend=synthetic", "tracks.backend=synthetic", "hands.backend=synthetic",
    "ingest.width=64", "ingest.height=48",
]


def pytest_collection_modifyitems(config, items):
    """GPU tests fail loudly when selected on a machine without a GPU (never skip silently)."""
    gpu_items = [i for i in items if i.get_closest_marker("gpu")]
    if not gpu_items:
        return
    selected = config.getoption("-m") or ""
    if "gpu" not in selected:
        skip = pytest.mark.skip(reason="GPU test: run with -m gpu on a machine with an NVIDIA GPU")
        for i in gpu_items:
            i.add_marker(skip)
        return
    from y2r.execution.gpus import inventory

    if not inventory("all"):
        raise pytest.UsageError("GPU tests selected (-m gpu) but no NVIDIA GPU is visible through NVML")


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.exists():
        pytest.fail(f"shared fixtures folder not found at {SHARED} (set Y2R_SHARED)")
    return SHARED


@pytest.fixture
def video_factory(tmp_path):
    from y2r.video import write_video

    def make(name: str = "clip.mp4", T: int = 12, H: int = 48, W: int = 64, fps: float = 10.0, codec: str = "libx264",
             folder: Path | None = None, seed: int = 0) -> Path:
        folder = folder or tmp_path
        folder.mkdir(parents=True, exist_ok=True)
        return write_video(folder / name, make_frames(T, H, W, seed), fps, codec=codec)

    return make


@pytest.fixture
def fast_config():
    from y2r.config import load_config

    def make(*extra: str):
        return load_config(None, [*FAST_SYNTHETIC, "execution.workers=2", *extra])

    return make


@pytest.fixture(autouse=True)
def _no_leaked_workers():
    """Every test must leave no worker process behind."""
    yield
    from y2r.tools.worker import _LIVE

    alive = [w for w in list(_LIVE) if w.alive()]
    for w in alive:
        w.kill()
    assert not alive, f"test leaked live workers: {[w.spec.name for w in alive]}"


def have(cmd: str) -> bool:
    return shutil.which(cmd) is not None
