"""The schema table is self-consistent and the user docs are generated from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from y2r.dataset import schema
from y2r.errors import SchemaError

DOCS = Path(__file__).resolve().parents[2] / "docs" / "format.md"


def test_every_dataset_belongs_to_a_declared_part():
    parts = set(schema.parts())
    for d in schema.DATASETS:
        assert d.part in parts, d.path
        assert "{side}" not in d.path


def test_sides_are_expanded():
    paths = {d.path for d in schema.DATASETS}
    assert {"hands/left/joints_cam", "hands/right/joints_cam", "hands/right/mano/betas"} <= paths
    assert len(paths) == len(schema.DATASETS)


def test_resolve_shapes():
    d = schema.DATASETS_BY_PATH["rgb"]
    assert schema.resolve(d.shape, {"T": 4, "H": 3, "W": 2}) == (4, 3, 2, 3)
    assert schema.resolve(d.chunks, {"T": 4, "H": 3, "W": 2}) == (1, 3, 2, 3)
    with pytest.raises(KeyError):
        schema.resolve(schema.DATASETS_BY_PATH["tracks/query"].shape, {"T": 4})


def test_version_mismatch_says_what_to_do():
    with pytest.raises(SchemaError, match="upgrade y2r"):
        schema.check_version({"schema": "y2r.episode", "schema_version": 2}, "f.h5")
    with pytest.raises(SchemaError, match="re-write it with `y2r run`"):
        schema.check_version({"schema": "y2r.episode", "schema_version": 0}, "f.h5")
    with pytest.raises(SchemaError, match="not a y2r episode"):
        schema.check_version({"schema": "other"}, "f.h5")
    schema.check_version({"schema": b"y2r.episode", "schema_version": 1}, "f.h5")


def test_docs_contain_the_generated_tables():
    """docs/format.md embeds schema.markdown() verbatim; regenerate with `python -m y2r.dataset.schema`."""
    text = DOCS.read_text()
    assert schema.markdown() in text
    for d in schema.DATASETS:
        generic = d.path.replace("/left/", "/{side}/").replace("/right/", "/{side}/")
        assert f"`/{generic}`" in text, d.path
    for a in schema.ROOT_ATTRS:
        assert f"`{a.name}`" in text
