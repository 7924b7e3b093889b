from __future__ import annotations

import csv
import json

import h5py
import pytest

from y2r.dataset.manifest import COLUMNS, read_manifest, write_manifest
from y2r.dataset.schema import QUALITY_FLAGS


def test_manifest_rows(out_root):
    (out_root / "episodes" / "broken.h5").write_bytes(b"junk")
    failed = [
        {
            "video_id": "bad_video",
            "source_path": "/in/bad_video.mp4",
            "stage": "ingest",
            "kind": "bad_input",
            "error": "no decodable frames\n(truncated file)",
        }
    ]
    path = write_manifest(out_root, failed)
    assert path == out_root / "manifest.csv"
    rows = read_manifest(out_root)
    assert [r["id"] for r in rows] == ["bad_video", "broken", "clip0", "clip1", "clip2"]
    by_id = {r["id"]: r for r in rows}
    c1 = by_id["clip1"]
    assert c1["status"] == "ok" and c1["frames"] == 11 and c1["fps"] == 10.0
    assert c1["duration_s"] == pytest.approx(1.1)
    assert (c1["width"], c1["height"]) == (64, 48)
    assert c1["path"] == "episodes/clip1.h5"
    assert c1["metric_scale"] is True and c1["camera_degenerate"] == ""
    with h5py.File(out_root / "episodes" / "clip1.h5") as f:
        assert c1["hands_left_frac"] == pytest.approx(f["hands/left/valid"][()].mean())
        assert c1["tracks_visible_frac"] == pytest.approx(f["tracks/visible"][()].mean())
    bad = by_id["bad_video"]
    assert bad["status"] == "failed" and bad["failed_stage"] == "ingest" and bad["error_kind"] == "bad_input"
    assert bad["error"] == "no decodable frames (truncated file)"  # one line
    assert bad["frames"] is None
    assert by_id["broken"]["status"] == "unreadable" and by_id["broken"]["error"]
    # the CSV has the same rows and columns
    with open(path) as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == list(COLUMNS)
    assert [r["id"] for r in table] == [r["id"] for r in rows]
    assert {r["id"]: r["metric_scale"] for r in table}["clip0"] == "true"
    # JSONL is strict JSON (no NaN)
    for line in (out_root / "manifest.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))


def test_failed_video_with_a_stale_episode(out_root):
    write_manifest(
        out_root, [{"id": "clip0", "stage": "camera", "kind": "oom", "message": "CUDA out of memory"}]
    )
    (row,) = [r for r in read_manifest(out_root) if r["id"] == "clip0"]
    assert row["status"] == "failed" and row["frames"] == 8 and row["error"] == "CUDA out of memory"


def test_columns_cover_every_quality_flag():
    assert set(QUALITY_FLAGS) <= set(COLUMNS)


def test_several_failures_of_one_video_are_kept(tmp_path):
    write_manifest(
        tmp_path,
        [
            {"video_id": "v", "stage": "tracks", "kind": "oom", "message": "CUDA OOM"},
            {"video_id": "v", "stage": "hands", "kind": "crash", "message": "segfault"},
        ],
    )
    (row,) = read_manifest(tmp_path)
    assert (row["failed_stage"], row["error_kind"], row["error"]) == (
        "tracks; hands",
        "oom; crash",
        "CUDA OOM; segfault",
    )
