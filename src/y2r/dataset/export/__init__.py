"""Exporters: y2r episodes -> the formats training code expects.

Each exporter is ``export_<fmt>(episodes_dir_or_files, out_dir, options) -> path`` and derives its
model-specific views (vectors without NaN, wrist motion in the camera frame, ...) from the episode
through ``views.py``; the episodes themselves are never changed.

| fmt | writes | needs |
|---|---|---|
| ``lerobot`` | a LeRobot v3.0 folder (parquet + mp4 + meta) | pyarrow (``pip install 'y2r[export]'``) |
| ``robomimic`` | one HDF5 file ``data/demo_N/{obs,actions,...}`` | — |
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from y2r.errors import UsageError

# fmt -> "module:function", imported lazily so an exporter's optional dependency is only needed
# when that format is asked for.
EXPORTERS: dict[str, str] = {
    "lerobot": "y2r.dataset.export.lerobot:export_lerobot",
    "robomimic": "y2r.dataset.export.robomimic:export_robomimic",
}


def export(fmt: str, out_root: str | Path, dest: str | Path, options: dict[str, Any] | None = None) -> Path:
    """Export the episodes of ``out_root`` (an output folder, an episodes folder or one file) to ``dest``."""
    try:
        target = EXPORTERS[fmt]
    except KeyError:
        raise UsageError(
            f"unknown export format '{fmt}'; choose from: {', '.join(sorted(EXPORTERS))}"
        ) from None
    module, _, func = target.partition(":")
    return getattr(importlib.import_module(module), func)(out_root, dest, options)
