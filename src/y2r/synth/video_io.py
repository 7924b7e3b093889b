"""Encode a rendered clip as a video file with PyAV, to feed it to the real pipeline.

- ``libx264``: yuv420p, constant quality ``crf`` (10-14 is visually lossless for these textures);
  the format real phone videos come in.
- ``ffv1``: lossless (bgr0, a channel reorder of RGB), for tests that need the exact pixels back;
  needs a container that carries FFV1 (.mkv, .avi, .nut).
- ``mpeg4``: MPEG-4 part 2, yuv420p, fixed quantiser ``qscale`` (2 = best), an old-codec case.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np

from y2r.errors import UsageError
from y2r.synth.clip import SynthClip

Codec = Literal["libx264", "ffv1", "mpeg4"]
_FFV1_CONTAINERS = {".mkv", ".avi", ".nut"}
_FF_QP2LAMBDA = 118  # ffmpeg's quantiser -> lambda factor, for a fixed mpeg4 qscale


def write_video(clip: SynthClip | np.ndarray, path: str | Path, *, codec: Codec = "libx264", crf: int = 12,
                fps: float | None = None, qscale: int = 2) -> Path:
    """Write ``clip.rgb`` (or a (T,H,W,3) uint8 array) to ``path``; returns the path."""
    frames = clip.rgb if isinstance(clip, SynthClip) else np.asarray(clip)
    rate = fps if fps is not None else (clip.fps if isinstance(clip, SynthClip) else None)
    if rate is None or rate <= 0:
        raise UsageError("write_video needs the frame rate (fps=) for a bare array")
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise UsageError(f"write_video expects (T,H,W,3) uint8 frames, got {frames.shape} {frames.dtype}")
    T, H, W, _ = frames.shape
    path = Path(path)
    if codec == "ffv1":
        if path.suffix.lower() not in _FFV1_CONTAINERS:
            raise UsageError(f"{path}: FFV1 needs one of {sorted(_FFV1_CONTAINERS)} as container")
        pix_fmt, options = "bgr0", {"level": "3", "g": "1"}
    elif codec == "libx264":
        if H % 2 or W % 2:
            raise UsageError(f"yuv420p H.264 needs even width and height, got {W}x{H}")
        pix_fmt, options = "yuv420p", {"crf": str(int(crf)), "preset": "medium"}
    elif codec == "mpeg4":
        if H % 2 or W % 2:
            raise UsageError(f"yuv420p MPEG-4 needs even width and height, got {W}x{H}")
        pix_fmt, options = "yuv420p", {"flags": "+qscale", "global_quality": str(int(qscale) * _FF_QP2LAMBDA)}
    else:
        raise UsageError(f"unsupported codec {codec!r}; choose libx264, ffv1 or mpeg4")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(rate).limit_denominator(100000), options=options)
        stream.width, stream.height, stream.pix_fmt = W, H, pix_fmt
        for frame in frames:
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path
