"""Helpers that write small valid episodes for the dataset tests."""

from __future__ import annotations

from pathlib import Path

from y2r.config import Config
from y2r.dataset.episode_writer import write_episode
from y2r.dataset.sample_artifacts import sample_artifacts


def write_sample(path: Path, **kw) -> Path:
    """A small valid episode (T=8, 64x48, N=5 unless overridden) written at ``path``."""
    art = kw.pop("artifacts", None) or sample_artifacts(
        **{
            k: kw.pop(k)
            for k in list(kw)
            if k in ("T", "W", "H", "N", "seed", "video_id", "fps", "with_mano")
        }
    )
    write_episode(
        path, *art, config_yaml=Config().to_yaml(), backends={"camera": {"backend": "sample"}}, **kw
    )
    return path
