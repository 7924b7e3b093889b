"""Reading videos with PyAV: probing, streaming decode, frame-rate resampling and resizing.

Every problem with a source file becomes an ``InputError`` naming the file and the problem in one
line (empty file, not a video, no video stream, unsupported codec, absurd resolution, truncated,
too few frames), so the pipeline can record it and go on with the other videos.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from y2r.errors import InputError

# PyAV's own logging is noisy for damaged files; we report problems ourselves.
av.logging.set_level(av.logging.PANIC)


@dataclass(frozen=True)
class SourceInfo:
    path: Path
    codec: str
    width: int
    height: int
    fps: float
    num_frames: int  # container's count (0 if unknown; decoding gives the truth)
    duration_s: float
    size_bytes: int


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def _open(path: Path) -> av.container.InputContainer:
    if not path.exists():
        raise InputError(path, "file not found")
    if path.is_dir():
        raise InputError(path, "is a folder, not a video file")
    size = path.stat().st_size
    if size == 0:
        raise InputError(path, "empty file (0 bytes)")
    try:
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except av.error.InvalidDataError as e:
        raise InputError(path, "not a readable video (unknown format, or the file is truncated or corrupt)",
                         detail=str(e)) from e
    except av.error.FFmpegError as e:
        raise InputError(path, f"cannot open video: {e}", detail=repr(e)) from e
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(path, f"cannot read file: {e}") from e


def _video_stream(path: Path, container) -> av.video.stream.VideoStream:
    streams = container.streams.video
    if not streams:
        raise InputError(path, "contains no video stream")
    stream = streams[0]
    if stream.codec_context is None:
        raise InputError(path, f"unsupported codec ({_fourcc(path) or 'unknown'}): no decoder for this video stream")
    return stream


def _fourcc(path: Path) -> str | None:
    """Best-effort codec tag of an AVI/MOV stream whose codec FFmpeg does not know (for the message)."""
    try:
        head = path.open("rb").read(4096)
    except OSError:
        return None
    for marker in (b"vids", b"stsd"):
        i = head.find(marker)
        if i >= 0:
            tag = head[i + 4:i + 8] if marker == b"vids" else head[i + 16:i + 20]
            if all(32 <= c < 127 for c in tag):
                return f"fourcc '{tag.decode()}'"
    return None


def probe(path: str | Path, max_pixels: int | None = None) -> SourceInfo:
    """Container-level facts about a video, validated enough to reject hopeless inputs early."""
    path = Path(path)
    with _open(path) as c:
        s = _video_stream(path, c)
        w, h = int(s.codec_context.width or 0), int(s.codec_context.height or 0)
        if w <= 0 or h <= 0:
            raise InputError(path, f"video stream has no valid size ({w}x{h})")
        if max_pixels is not None and w * h > max_pixels:
            raise InputError(path, f"resolution {w}x{h} exceeds ingest.max_source_pixels ({max_pixels})")
        rate = s.average_rate or s.guessed_rate or s.base_rate
        fps = float(rate) if rate else 0.0
        duration = float(s.duration * s.time_base) if s.duration and s.time_base else (
            c.duration / av.time_base if c.duration else 0.0)
        return SourceInfo(path=path, codec=s.codec_context.name, width=w, height=h, fps=fps,
                          num_frames=int(s.frames or 0), duration_s=float(duration), size_bytes=path.stat().st_size)


@dataclass(frozen=True)
class ResizePlan:
    """How source frames map onto stored frames: crop box in source pixels, then resize."""

    crop: tuple[int, int, int, int]  # x0, y0, w, h (source pixels)
    out_w: int
    out_h: int

    @classmethod
    def make(cls, src_w: int, src_h: int, out_w: int, out_h: int, mode: str) -> ResizePlan:
        if mode == "stretch":
            return cls((0, 0, src_w, src_h), out_w, out_h)
        if mode == "fit":
            # Keep the whole frame and its aspect: the stored size adapts (long side -> target long side).
            s = min(out_w / src_w, out_h / src_h)
            w = max(2, int(round(src_w * s / 2)) * 2)
            h = max(2, int(round(src_h * s / 2)) * 2)
            return cls((0, 0, src_w, src_h), w, h)
        # crop: largest centred box with the target aspect, then an isotropic resize.
        target = out_w / out_h
        if src_w / src_h > target:
            cw, ch = int(round(src_h * target)), src_h
        else:
            cw, ch = src_w, int(round(src_w / target))
        x0, y0 = (src_w - cw) // 2, (src_h - ch) // 2
        return cls((x0, y0, cw, ch), out_w, out_h)

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        x0, y0, w, h = self.crop
        img = rgb[y0:y0 + h, x0:x0 + w]
        if (w, h) == (self.out_w, self.out_h):
            return np.ascontiguousarray(img)
        interp = cv2.INTER_AREA if w >= self.out_w else cv2.INTER_LINEAR
        return cv2.resize(img, (self.out_w, self.out_h), interpolation=interp)


@dataclass
class DecodedVideo:
    frames: np.ndarray  # (T,H,W,3) uint8 RGB
    frame_index: np.ndarray  # (T,) int32
    timestamp: np.ndarray  # (T,) float64 seconds from the stream start
    fps: float  # stored frame rate
    source_frames_decoded: int
    truncated: bool  # decoding stopped on an error before the end of the stream
    plan: ResizePlan


def _iter_frames(path: Path, container, stream) -> Iterator[tuple[int, float, av.VideoFrame]]:
    stream.thread_type = "AUTO"
    start = stream.start_time or 0
    tb = stream.time_base
    i = 0
    for frame in container.decode(stream):
        pts = frame.pts if frame.pts is not None else None
        t = float((pts - start) * tb) if pts is not None and tb else float("nan")
        yield i, t, frame
        i += 1


def decode(path: str | Path, *, fps: float | None, width: int, height: int, resize: str = "crop",
           max_frames: int | None = None, min_frames: int = 2, max_pixels: int | None = None,
           progress: Callable[[int, int], None] | None = None) -> DecodedVideo:
    """Decode, resample to ``fps`` (never up: frames are not duplicated) and resize, streaming.

    Resampling picks, for each target time k/fps, the source frame nearest in time, so stored frames
    are real frames and ``frame_index`` says which.
    """
    path = Path(path)
    info = probe(path, max_pixels=max_pixels)
    src_fps = info.fps if info.fps > 0 else 30.0
    out_fps = src_fps if fps is None else min(float(fps), src_fps)
    plan = ResizePlan.make(info.width, info.height, width, height, resize)
    frames: list[np.ndarray] = []
    idx: list[int] = []
    ts: list[float] = []
    truncated = False
    n_src = 0
    expected = info.num_frames or int(round(info.duration_s * src_fps)) or 0
    step = 1.0 / out_fps
    next_t = 0.0
    prev: tuple[int, float, av.VideoFrame] | None = None
    last_chosen = -1
    last_t = -np.inf
    full = False

    def emit(cand: tuple[int, float, av.VideoFrame]) -> None:
        nonlocal last_chosen
        frames.append(plan.apply(cand[2].to_ndarray(format="rgb24")))
        idx.append(cand[0])
        ts.append(cand[1])
        last_chosen = cand[0]

    with _open(path) as c:
        stream = _video_stream(path, c)
        try:
            for i, t, frame in _iter_frames(path, c, stream):
                n_src = i + 1
                if not np.isfinite(t):
                    t = i / src_fps
                if t <= last_t:  # damaged timestamps: fall back to the nominal rate
                    t = last_t + 1.0 / src_fps
                last_t = t
                if progress and expected and i % 10 == 0:
                    progress(min(i, expected), expected)
                # Each target time k/fps takes the nearer of the frames just before and at/after it.
                while t >= next_t - 1e-9:
                    cand = (i, t, frame)
                    if prev is not None and abs(prev[1] - next_t) <= abs(t - next_t):
                        cand = prev
                    if cand[0] != last_chosen:
                        emit(cand)
                    next_t += step
                    if max_frames and len(frames) >= max_frames:
                        full = True
                        break
                if full:
                    break
                prev = (i, t, frame)
        except (av.error.InvalidDataError, av.error.FFmpegError, ValueError) as e:
            truncated = True
            if not frames and prev is None:
                raise InputError(path, f"cannot decode any frame ({info.codec}): {e}") from e
    # The last frame still covers [t, t + 1/src_fps): it serves a target time that falls inside it.
    if not full and prev is not None and prev[0] != last_chosen and next_t < prev[1] + 1.0 / src_fps - 1e-9:
        emit(prev)
    if not truncated and expected and n_src < 0.9 * expected - 1:
        truncated = True  # the container promised more frames than the stream holds
    if len(frames) < min_frames:
        what = "no frame" if not frames else f"only {len(frames)} frame{'s' if len(frames) != 1 else ''}"
        raise InputError(path, f"{what} decoded; need at least {min_frames}" + (" (truncated file?)" if truncated else ""))
    if progress:
        progress(expected or n_src, expected or n_src)
    return DecodedVideo(frames=np.stack(frames), frame_index=np.asarray(idx, np.int32), timestamp=np.asarray(ts, np.float64),
                        fps=out_fps, source_frames_decoded=n_src, truncated=truncated, plan=plan)


def write_video(path: str | Path, frames: np.ndarray, fps: float, *, codec: str = "libx264", crf: int = 18,
                pix_fmt: str = "yuv420p") -> Path:
    """Encode (T,H,W,3) uint8 RGB frames. Sizes must be even for libx264/yuv420p."""
    path = Path(path)
    T, H, W, _ = frames.shape
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), mode="w") as c:
        s = c.add_stream(codec, rate=rate)
        s.width, s.height = W, H
        s.pix_fmt = pix_fmt if codec != "ffv1" else "yuv444p"
        if codec == "libx264":
            s.options = {"crf": str(crf), "preset": "veryfast"}
        for img in frames:
            for pkt in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return path
