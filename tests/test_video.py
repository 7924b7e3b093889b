"""Decoding, resampling, resizing, and a clear one-line error for every kind of bad input."""

import av
import numpy as np
import pytest

from video_samples import make_frames
from y2r.errors import InputError
from y2r.video import ResizePlan, decode, probe, write_video


def test_decode_resamples_to_target_fps_by_nearest_time(video_factory):
    p = video_factory(T=30, fps=30.0)
    v = decode(p, fps=10, width=64, height=48)
    assert v.fps == 10 and v.frame_index.tolist() == list(range(0, 30, 3))
    assert np.allclose(v.timestamp, np.arange(10) / 10, atol=1e-6)
    # never upsample: asking for 60 fps from a 30 fps source keeps every source frame once
    v2 = decode(p, fps=60, width=64, height=48)
    assert v2.fps == 30 and v2.frame_index.tolist() == list(range(30))


def test_decode_keeps_content_and_max_frames(tmp_path):
    src = make_frames(12)
    p = write_video(tmp_path / "lossless.mkv", src, 10.0, codec="ffv1")
    v = decode(p, fps=None, width=64, height=48, max_frames=5)
    assert v.frames.shape == (5, 48, 64, 3)
    # ffv1 (yuv444) round trip is close to lossless
    assert np.abs(v.frames.astype(int) - src[:5]).mean() < 2.0


@pytest.mark.parametrize("mode, size, crop", [
    ("crop", (64, 48), (20, 0, 160, 120)),  # 200x120 -> 4:3 centre crop
    ("stretch", (64, 48), (0, 0, 200, 120)),
    ("fit", (64, 38), (0, 0, 200, 120)),  # keeps 5:3, long side 64
])
def test_resize_plans(mode, size, crop):
    plan = ResizePlan.make(200, 120, 64, 48, mode)
    assert (plan.out_w, plan.out_h) == size and plan.crop == crop
    img = np.zeros((120, 200, 3), np.uint8)
    assert plan.apply(img).shape == (size[1], size[0], 3)


# ------------------------------------------------------------------------------ bad inputs
def _message(fn, *a, **kw) -> str:
    with pytest.raises(InputError) as e:
        fn(*a, **kw)
    msg = e.value.one_line()
    assert "\n" not in msg
    return msg


def test_missing_path(tmp_path):
    p = tmp_path / "nope.mp4"
    assert _message(probe, p) == f"{p}: file not found"


def test_zero_byte_file(tmp_path):
    p = tmp_path / "empty.mp4"
    p.write_bytes(b"")
    assert _message(probe, p) == f"{p}: empty file (0 bytes)"


def test_text_file_named_mp4(tmp_path):
    p = tmp_path / "notes.mp4"
    p.write_text("this is not a video\n" * 20)
    assert "not a readable video" in _message(probe, p)


def test_truncated_mp4_without_index_is_rejected(video_factory):
    p = video_factory(T=30)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])  # the moov index sits at the end: gone
    msg = _message(decode, p, fps=None, width=64, height=48)
    assert str(p) in msg and ("truncated" in msg or "not a readable video" in msg)


def test_truncated_faststart_mp4_keeps_decodable_frames(tmp_path):
    p = tmp_path / "fast.mp4"
    frames = make_frames(40)
    with av.open(str(p), "w", options={"movflags": "faststart"}) as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for f in frames:
            for pkt in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    data = p.read_bytes()
    p.write_bytes(data[: int(len(data) * 0.6)])
    v = decode(p, fps=None, width=64, height=48)
    assert 2 <= len(v.frames) < 40 and v.truncated


def test_one_frame_video(video_factory):
    p = video_factory(T=1)
    assert _message(decode, p, fps=None, width=64, height=48).endswith("only 1 frame decoded; need at least 2")


def test_unsupported_codec(video_factory, tmp_path):
    p = video_factory("x.avi", codec="mpeg4")
    bad = tmp_path / "weird.avi"
    bad.write_bytes(p.read_bytes().replace(b"FMP4", b"QQZ9"))
    assert "unsupported codec (fourcc 'QQZ9')" in _message(probe, bad)


def test_absurd_resolution_is_rejected_before_decoding(video_factory):
    p = video_factory(T=3, H=48, W=64)
    assert "resolution 64x48 exceeds ingest.max_source_pixels (1000)" in _message(probe, p, max_pixels=1000)


def test_folder_given_as_video(tmp_path):
    assert _message(probe, tmp_path).endswith("is a folder, not a video file")
