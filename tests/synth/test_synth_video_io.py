"""Encoding synthetic clips to video files and decoding them back with PyAV."""

from __future__ import annotations

import av
import numpy as np
import pytest

from y2r.errors import UsageError
from y2r.synth import render, write_video


@pytest.fixture(scope="module")
def clip():
    return render("pan", width=320, height=240, num_frames=10, seed=4)


def _decode(path) -> tuple[np.ndarray, float]:
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(stream)])
        return frames, float(stream.average_rate)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(float) - b.astype(float)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def test_libx264_roundtrip_is_high_quality(clip, tmp_path):
    path = write_video(clip, tmp_path / "pan.mp4", codec="libx264", crf=12)
    frames, rate = _decode(path)
    assert frames.shape == clip.rgb.shape
    assert rate == pytest.approx(30.0)
    assert _psnr(frames, clip.rgb) > 30.0
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264" and s.codec_context.pix_fmt == "yuv420p"


def test_ffv1_roundtrip_is_lossless(clip, tmp_path):
    path = write_video(clip, tmp_path / "pan.mkv", codec="ffv1")
    frames, _ = _decode(path)
    assert np.array_equal(frames, clip.rgb)


def test_mpeg4_roundtrip(clip, tmp_path):
    frames, _ = _decode(write_video(clip, tmp_path / "pan.avi", codec="mpeg4", qscale=2))
    assert frames.shape == clip.rgb.shape
    assert _psnr(frames, clip.rgb) > 25.0


def test_bad_requests_are_usage_errors(clip, tmp_path):
    with pytest.raises(UsageError):
        write_video(clip, tmp_path / "x.mp4", codec="ffv1")  # FFV1 does not go in mp4
    with pytest.raises(UsageError):
        write_video(clip.rgb[:, :-1], tmp_path / "odd.mp4", fps=30.0)  # yuv420p needs even sizes
    with pytest.raises(UsageError):
        write_video(clip.rgb, tmp_path / "nofps.mp4")
