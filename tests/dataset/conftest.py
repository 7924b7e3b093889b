from __future__ import annotations

from pathlib import Path

import pytest

from episode_samples import write_sample


@pytest.fixture
def episode(tmp_path: Path) -> Path:
    return write_sample(tmp_path / "sample.h5")


@pytest.fixture
def out_root(tmp_path: Path) -> Path:
    """An output folder with three episodes of different lengths."""
    root = tmp_path / "OUT"
    (root / "episodes").mkdir(parents=True)
    for i, T in enumerate((8, 11, 6)):
        write_sample(root / "episodes" / f"clip{i}.h5", T=T, seed=i, video_id=f"clip{i}")
    return root
