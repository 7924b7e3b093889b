from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET

import cv2
import numpy as np
import pytest

from y2r.config import Config
from y2r.dataset.episode_writer import write_episode
from y2r.dataset.manifest import write_manifest
from y2r.dataset.sample_artifacts import sample_artifacts
from y2r.dataset.stats import write_stats
from y2r.viz.overlay import overlay_path
from y2r.viz.report import quality_issues, trajectory_svg, write_report

from viz_samples import room_orbit_episode


@pytest.fixture
def out_root(tmp_path):
    root = tmp_path / "OUT"
    (root / "episodes").mkdir(parents=True)
    room_orbit_episode(root / "episodes" / "room_orbit.h5")
    art = sample_artifacts(T=12, W=96, H=64, video_id="shaky_clip", seed=2)
    art[1].quality = {"degenerate": "pure_rotation"}
    art[1].metric_scale = False
    write_episode(root / "episodes" / "shaky_clip.h5", *art, config_yaml=Config().to_yaml(), backends={})
    return root


def test_report_shows_every_video(out_root):
    write_manifest(
        out_root,
        [
            {
                "video_id": "broken_video",
                "source_path": "/in/broken_video.mp4",
                "stage": "ingest",
                "kind": "bad_input",
                "error": "moov atom not found <truncated>",
            }
        ],
    )
    write_stats(out_root)
    overlay_path(out_root, "room_orbit").parent.mkdir()
    overlay_path(out_root, "room_orbit").write_bytes(b"")
    path = write_report(out_root)
    assert path == out_root / "report.html"
    text = path.read_text()
    for eid in ("room_orbit", "shaky_clip", "broken_video"):
        assert eid in text
    assert "moov atom not found &lt;truncated&gt;" in text  # escaped, shown with the failure
    assert 'id="ep-room_orbit"' in text and 'id="ep-shaky_clip"' in text
    assert 'class="card bad" id="ep-shaky_clip"' in text  # degenerate camera is highlighted
    assert "camera: pure_rotation" in text and "relative scale" in text
    assert 'class="card ok" id="ep-room_orbit"' in text
    assert '<video src="viz/room_orbit.overlay.mp4"' in text
    assert "<h2>Statistics</h2>" in text and "depth/depth" in text
    # 6 frame thumbnails + 6 depth thumbnails per episode, all decodable JPEGs
    uris = re.findall(r'src="data:image/jpeg;base64,([^"]+)"', text)
    assert len(uris) == 24
    img = cv2.imdecode(np.frombuffer(base64.b64decode(uris[0]), np.uint8), cv2.IMREAD_COLOR)
    assert img.shape[1] == 200
    # the plots are well-formed SVG
    svgs = re.findall(r"<svg.*?</svg>", text, re.S)
    assert len(svgs) == 4
    for s in svgs:
        ET.fromstring(s)
    assert "http" not in re.sub(r'xmlns="http://www.w3.org/2000/svg"', "", text)  # self-contained


def test_report_without_manifest(out_root):
    text = write_report(out_root).read_text()
    assert "room_orbit" in text and "shaky_clip" in text and "Failed videos" not in text


def test_trajectory_top_view_geometry():
    """A camera moving forward (+z, OpenCV) draws a path going up the plot, 1 m on a 1 m scale bar."""
    T = 5
    P = np.repeat(np.eye(4)[None], T, 0)
    P[:, 2, 3] = np.linspace(0, 1, T)
    svg = trajectory_svg(P, metric=True)
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    segs = [e for e in root.iter(f"{ns}line") if e.get("stroke-width") == "2.5"]
    y = [float(segs[0].get("y1"))] + [float(s.get("y2")) for s in segs]
    x = [float(segs[0].get("x1"))] + [float(s.get("x2")) for s in segs]
    assert np.all(np.diff(y) < 0) and np.ptp(x) < 1e-6  # straight up
    assert "path 1.00 m" in svg
    assert "static camera" in trajectory_svg(np.repeat(np.eye(4)[None], 3, 0), metric=True)


def test_quality_issues():
    assert quality_issues({"status": "ok", "metric_scale": True, "depth_valid_frac": 0.9}) == []
    levels = dict(
        (t, lv)
        for lv, t in quality_issues(
            {
                "status": "ok",
                "camera_degenerate": "pure_rotation",
                "metric_scale": False,
                "depth_valid_frac": 0.2,
                "tracks_visible_frac": 0.1,
                "hands_left_frac": 0.0,
                "hands_right_frac": 0.05,
            }
        )
    )
    assert levels == {
        "camera: pure_rotation": "bad",
        "relative scale": "warn",
        "depth valid 20%": "warn",
        "tracks visible 10%": "warn",
        "hands in 5% of frames": "warn",
    }


def test_cards_are_reused_until_their_episode_or_overlay_changes(out_root, monkeypatch):
    from y2r.viz import report

    write_manifest(out_root, [])
    first = write_report(out_root).read_text()
    drawn: list[str] = []
    real = report._render_card
    monkeypatch.setattr(report, "_render_card", lambda root, row, issues: drawn.append(row["id"]) or real(root, row, issues))

    def body(text):  # the report without its generation time
        return re.sub(r"generated [^<]*", "", text)

    # nothing changed: no card is drawn again, the page is the same
    assert body(write_report(out_root).read_text()) == body(first) and drawn == []
    # an overlay video appears for one episode: only its card is redrawn, and it links the video
    overlay_path(out_root, "room_orbit").parent.mkdir(exist_ok=True)
    overlay_path(out_root, "room_orbit").write_bytes(b"")
    text = write_report(out_root).read_text()
    assert drawn == ["room_orbit"] and '<video src="viz/room_orbit.overlay.mp4"' in text
    # the episode file is rewritten: its card is redrawn
    drawn.clear()
    room_orbit_episode(out_root / "episodes" / "room_orbit.h5")
    write_report(out_root)
    assert drawn == ["room_orbit"]


def test_an_unreadable_episode_card_is_not_cached(out_root):
    write_manifest(out_root, [])
    write_report(out_root)
    p = out_root / "episodes" / "shaky_clip.h5"
    p.write_bytes(b"not hdf5 any more")
    text = write_report(out_root).read_text()
    assert re.search(r'class="card bad" id="ep-shaky_clip"><h3>shaky_clip</h3><div class="err">', text)
    cached = [c.read_text() for c in (out_root / "viz" / ".cards").glob("*.html")]
    assert len(cached) == 2 and not any('class="err"' in c for c in cached)


def test_a_card_uses_the_frame_strip_the_episode_stage_saved_while_it_is_current(out_root, monkeypatch):
    from y2r.artifacts import ArtifactStore
    from y2r.viz import report

    store = ArtifactStore(out_root)
    for vid in ("room_orbit", "shaky_clip"):
        store.stage_dir(vid, "episode").mkdir(parents=True)
        report.save_frames_strip(store.episode_path(vid), store.stage_dir(vid, "episode") / report.EPISODE_STRIP_FILE)
    write_manifest(out_root, [])
    drawn: list[str] = []
    real = report.frames_strip
    monkeypatch.setattr(report, "frames_strip", lambda ep, n=6: drawn.append(ep.episode_id) or real(ep, n))
    text = write_report(out_root).read_text()
    assert drawn == []  # both strips came from the stage folders
    thumbs = re.findall(r'<img src="(data:image/jpeg;base64,[^"]+)"', text)
    saved = report.read_json(store.stage_dir("room_orbit", "episode") / report.EPISODE_STRIP_FILE)
    assert len(saved["rgb"]) == 6 and {uri for _, uri in saved["rgb"]} <= set(thumbs)
    # the file is rewritten after the stage saved its strip: the saved one is stale and not used
    room_orbit_episode(out_root / "episodes" / "room_orbit.h5")
    write_report(out_root)
    assert drawn == ["room_orbit"]
