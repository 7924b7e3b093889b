"""The dataset manifest: one row per video, ``OUT/manifest.csv`` and ``OUT/manifest.jsonl``.

Rows come from the episode files' root attributes (nothing large is read, so this is fast for
thousands of episodes) plus the videos that failed, as passed in by the caller (the pipeline knows
them from the ledger). CSV is for people and spreadsheets, JSONL for programs (typed values, null
for unknown); both hold the same columns, in ``COLUMNS`` order.

Statuses: ``ok`` (episode readable), ``unreadable`` (the file exists but is not a readable episode of
this schema version; ``error`` says why), ``failed`` (no episode: a stage failed; ``error``,
``failed_stage`` and ``error_kind`` say how).
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from y2r.artifacts import write_atomic
from y2r.dataset.reader import Episode, find_episode_files
from y2r.errors import SchemaError

MANIFEST_CSV = "manifest.csv"
MANIFEST_JSONL = "manifest.jsonl"

COLUMNS: tuple[str, ...] = (
    "id",
    "status",
    "path",
    "source_path",
    "frames",
    "fps",
    "duration_s",
    "width",
    "height",
    "camera_degenerate",
    "metric_scale",
    "depth_valid_frac",
    "tracks_visible_frac",
    "hands_left_frac",
    "hands_right_frac",
    "camera_backend",
    "tracks_backend",
    "hands_backend",
    "size_mb",
    "created_utc",
    "failed_stage",
    "error_kind",
    "error",
)


def episode_row(path: Path, root: Path | None = None) -> dict[str, Any]:
    """The manifest row of one episode file (status ``unreadable`` with the reason if it is not one)."""
    path = Path(path)
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row["id"] = path.stem
    row["path"] = _rel(path, root)
    try:
        row["size_mb"] = round(path.stat().st_size / 2**20, 3)
        with Episode(path) as ep:
            a = ep.attrs
            backends = _json(a.get("backends"))
            row.update(
                id=ep.episode_id,
                status="ok",
                source_path=a.get("source_path"),
                frames=ep.num_frames,
                fps=ep.fps,
                duration_s=round(ep.duration_s, 4),
                width=ep.width,
                height=ep.height,
                metric_scale=ep.metric_scale,
                created_utc=a.get("created_utc"),
                camera_backend=_backend(backends, "camera"),
                tracks_backend=_backend(backends, "tracks"),
                hands_backend=_backend(backends, "hands"),
            )
            for flag, value in ep.quality_flags().items():
                row[flag] = value
    except (OSError, KeyError, ValueError, SchemaError) as e:
        row["status"] = "unreadable"
        row["error"] = (
            e.message if isinstance(e, SchemaError) else " ".join(f"{type(e).__name__}: {e}".split())
        )
    return row


def failed_row(entry: dict[str, Any]) -> dict[str, Any]:
    """A row for a video that has no episode. Accepts the keys the pipeline uses
    (``video_id``/``id``, ``source_path``/``path``, ``stage``, ``kind``, ``error``/``message``)."""
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row["id"] = str(entry.get("video_id") or entry.get("id") or Path(str(entry.get("source_path", "?"))).stem)
    row["status"] = "failed"
    row["source_path"] = entry.get("source_path") or entry.get("path")
    row["failed_stage"] = entry.get("stage")
    row["error_kind"] = entry.get("kind") or entry.get("error_kind")
    message = entry.get("error") or entry.get("message") or ""
    row["error"] = " ".join(str(message).split()) or None
    return row


def build_manifest(out_root: str | Path, failed: list[dict] | None = None) -> list[dict[str, Any]]:
    """All rows: one per episode under ``OUT/episodes`` and one per failed video, sorted by id.

    A failed video that also has an (older) episode file keeps the episode's columns but is marked
    ``failed`` with the new error: the file on disk does not reflect the latest run.
    """
    root = Path(out_root)
    rows: dict[str, dict[str, Any]] = {}
    folder = root / "episodes"
    if folder.is_dir():
        for p in find_episode_files(folder):
            r = episode_row(p, root)
            rows[r["id"]] = r
    failed_ids: set[str] = set()
    for entry in failed or []:
        fr = failed_row(entry)
        key = fr["id"]
        if key in failed_ids:  # several stages of one video failed: keep every reason
            r = rows[key]
            for col in ("failed_stage", "error_kind", "error"):
                if fr[col] and fr[col] != r.get(col):
                    r[col] = f"{r[col]}; {fr[col]}" if r.get(col) else fr[col]
            continue
        failed_ids.add(key)
        if key in rows:
            rows[key].update({k: v for k, v in fr.items() if v is not None})
        else:
            rows[key] = fr
    return [rows[k] for k in sorted(rows)]


def write_manifest(out_root: str | Path, failed: list[dict] | None = None) -> Path:
    """Write ``OUT/manifest.csv`` and ``OUT/manifest.jsonl`` atomically; returns the CSV path."""
    root = Path(out_root)
    root.mkdir(parents=True, exist_ok=True)
    rows = build_manifest(root, failed)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _csv_value(r.get(k)) for k in COLUMNS})
    csv_path = root / MANIFEST_CSV
    write_atomic(csv_path, buf.getvalue())
    lines = "".join(
        json.dumps({k: _json_value(r.get(k)) for k in COLUMNS}, allow_nan=False) + "\n" for r in rows
    )
    write_atomic(root / MANIFEST_JSONL, lines)
    return csv_path


def read_manifest(out_root: str | Path) -> list[dict[str, Any]]:
    """Rows of ``OUT/manifest.jsonl`` (typed; null for unknown)."""
    p = Path(out_root) / MANIFEST_JSONL
    with open(p) as f:
        return [json.loads(line) for line in f if line.strip()]


# ------------------------------------------------------------------------------------ helpers
def _rel(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return str(path.resolve().relative_to(root.resolve()))
        except ValueError:
            pass
    return str(path)


def _json(text: Any) -> dict:
    try:
        v = json.loads(text) if isinstance(text, str) else {}
    except ValueError:
        return {}
    return v if isinstance(v, dict) else {}


def _backend(backends: dict, stage: str) -> str | None:
    b = backends.get(stage)
    return b.get("backend") if isinstance(b, dict) else None


def _json_value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "item"):
        return _json_value(v.item())
    return v


def _csv_value(v: Any) -> Any:
    v = _json_value(v)
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.6g}"
    return v
