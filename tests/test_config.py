import pytest
import yaml

from y2r.config import INIT_HEADER, Config, commented_yaml, load_config, parse_override
from y2r.errors import ConfigError


def test_defaults_are_valid_and_builtin():
    c = load_config()
    assert c.camera.backend == "builtin" and c.tracks.backend == "builtin" and c.hands.backend == "builtin"
    assert (c.ingest.width, c.ingest.height) == (512, 384)


@pytest.mark.parametrize("override, expected", [
    ("camera.backnd=vipe", "unknown key 'camera.backnd'; did you mean 'camera.backend'?"),
    ("camra.backend=vipe", "unknown key 'camra'; did you mean 'camera'?"),
    ("tracks.builtin.fb_treshold_px=2", "did you mean 'tracks.builtin.fb_threshold_px'?"),
])
def test_unknown_keys_name_the_key_and_the_closest(override, expected):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert expected in str(e.value)


@pytest.mark.parametrize("override, expected", [
    ("ingest.fps=abc", "'ingest.fps' must be a number or null (got 'abc')"),
    ("ingest.width=wide", "'ingest.width' must be an integer (got 'wide')"),
    ("camera.backend=colmap", "'camera.backend' must be one of 'builtin', 'vipe', 'vipe-results', 'synthetic'"),
    ("episode.store_rgb=maybe", "'episode.store_rgb' must be true/false"),
])
def test_wrong_types_name_the_key_and_the_expected_type(override, expected):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert expected in str(e.value)
    assert "\n" not in str(e.value)


def test_value_constraints_are_explained():
    with pytest.raises(ConfigError, match="must be even"):
        load_config(None, ["ingest.width=511"])
    with pytest.raises(ConfigError, match="needs camera.results_dir"):
        load_config(None, ["camera.backend=vipe-results"])


def test_set_overrides_parse_yaml_values():
    assert parse_override("a.b=3") == ("a.b", 3)
    assert parse_override("a.b=null") == ("a.b", None)
    assert parse_override("a.b=[0, 1]") == ("a.b", [0, 1])
    assert parse_override("a.b=text with spaces") == ("a.b", "text with spaces")
    c = load_config(None, ["camera.intrinsics={fx: 500, fy: 500, cx: 320, cy: 240}", "execution.gpus.devices=[1]"])
    assert c.camera.intrinsics.fx == 500 and c.execution.gpus.devices == [1]
    with pytest.raises(ConfigError, match="expected section.key=value"):
        parse_override("camera.backend")


def test_file_errors_are_one_line(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("camera:\n  backend: [unclosed\n")
    with pytest.raises(ConfigError, match=r"not valid YAML \(line"):
        load_config(p)
    p.write_text("- a list\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(p)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_file_then_set_precedence(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("ingest:\n  fps: 5\ncamera:\n  backend: synthetic\n")
    c = load_config(p, ["ingest.fps=7.5"])
    assert c.ingest.fps == 7.5 and c.camera.backend == "synthetic"


def test_init_yaml_documents_every_key_and_round_trips():
    text = INIT_HEADER + commented_yaml()
    assert Config.model_validate(yaml.safe_load(text)) == Config()
    # every leaf key appears with a comment line above it
    lines = text.splitlines()
    for i, line in enumerate(lines):
        s = line.strip()
        if s and not s.startswith("#") and s.endswith(":") is False and ":" in s:
            assert lines[i - 1].strip().startswith("#"), f"key without description: {s}"


def test_section_hash_changes_only_with_that_section():
    a, b = Config(), load_config(None, ["tracks.grid_size=8"])
    assert a.section_hash("camera") == b.section_hash("camera")
    assert a.section_hash("tracks") != b.section_hash("tracks")


def test_docs_configuration_is_current():
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "configuration.md").read_text()
    assert INIT_HEADER + "\n" + commented_yaml() in doc, (
        "docs/configuration.md is stale: paste the output of `y2r init` into its yaml block")
