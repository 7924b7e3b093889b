from __future__ import annotations

import av
import numpy as np
import pytest

from y2r.dataset.reader import Episode
from y2r.viz.overlay import HAND_BONES, SIDE_COLOURS, FrameRenderer, render_overlay, track_colours

from viz_samples import room_orbit_episode


@pytest.fixture(scope="module")
def room(tmp_path_factory):
    return room_orbit_episode(tmp_path_factory.mktemp("viz") / "room_orbit.h5")


def test_overlay_video_decodes_with_every_frame(room, tmp_path):
    out = render_overlay(room, tmp_path / "o" / "room.mp4")
    assert out.exists() and not list(out.parent.glob(".*tmp*"))
    with av.open(str(out)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        rate = c.streams.video[0].average_rate
    assert len(frames) == 32
    assert frames[0].shape == (480, 640, 3)  # 320x240 upscaled x2 for legibility
    assert float(rate) == pytest.approx(30.0)


def _canvas_px(r: FrameRenderer, uv: np.ndarray) -> tuple[int, int]:
    p = (uv + 0.5) * r.scale - 0.5
    return int(round(p[1])), int(round(p[0]))


def test_marks_are_where_the_data_says(room):
    t = 20
    with Episode(room) as ep:
        full = FrameRenderer(ep, trail=0)
        img = full.render(t)
        tracks_only = FrameRenderer(ep, trail=0, depth_inset=False, counter=False)
        tracks_only.hands = {}
        marks = tracks_only.render(t)
        plain = FrameRenderer(ep, trail=0, depth_inset=False, counter=False)
        plain.uv, plain.hands = None, {}
        base = plain.render(t)
        tr = ep.tracks()
        right = ep.hand("right")
    colours = track_colours(tr.uv.shape[1])

    def isolated(n: int) -> bool:
        d = np.linalg.norm(np.delete(tr.uv[t], n, axis=0) - tr.uv[t, n], axis=1)
        return np.nanmin(d) > 6 and 5 < tr.uv[t, n, 0] < 315 and 5 < tr.uv[t, n, 1] < 235

    vis = [n for n in np.flatnonzero(tr.visible[t]) if isolated(n)]
    occluded = [n for n in np.flatnonzero(~tr.visible[t] & np.isfinite(tr.uv[t]).all(-1)) if isolated(n)]
    assert len(vis) >= 5 and occluded
    for n in vis[:5]:  # visible: a filled dot of the track's colour
        y, x = _canvas_px(tracks_only, tr.uv[t, n])
        np.testing.assert_allclose(marks[y, x], colours[n], atol=2)
    for n in occluded:  # occluded: a ring of the track's colour; its centre shows the frame
        y, x = _canvas_px(tracks_only, tr.uv[t, n])
        np.testing.assert_array_equal(marks[y, x], base[y, x])
        ring = marks[y - 6 : y + 7, x - 6 : x + 7].reshape(-1, 3).astype(int)
        assert (np.abs(ring - colours[n]).max(1) <= 2).any()
    assert right.valid[t]
    kp = right.keypoints_2d[t]
    i, j = HAND_BONES[20]  # the palm arch index-middle base: its midpoint is drawn in the side's colour
    y, x = _canvas_px(full, (kp[i] + kp[j]) / 2)
    np.testing.assert_allclose(img[y, x], SIDE_COLOURS["right"], atol=40)
    # depth inset in the top-right corner, frame counter bottom-left
    assert np.abs(img[10:60, -120:-10].astype(int) - base[10:60, -120:-10]).mean() > 20
    assert (img[-20:-5, 5:60] != base[-20:-5, 5:60]).any()


def test_episode_without_rgb_or_tracks_still_renders(tmp_path):
    from y2r.config import Config
    from y2r.dataset.episode_writer import write_episode
    from y2r.dataset.sample_artifacts import sample_artifacts

    ingest, camera, tracks, hands = sample_artifacts(T=4, W=62, H=46)
    tracks.source = "none"
    p = tmp_path / "bare.h5"
    write_episode(
        p, ingest, camera, tracks, hands, config_yaml=Config().to_yaml(), backends={}, store_rgb=False
    )
    out = render_overlay(p, tmp_path / "bare.mp4")
    with av.open(str(out)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 4 and frames[0].shape[0] % 2 == 0 and frames[0].shape[1] % 2 == 0
