"""Overlay video of one episode: what y2r saw and estimated, on top of the frames.

Each frame shows:
- point tracks coloured by track id (the same colour for the whole video): a filled dot where the
  point is visible, a hollow ring where it is occluded but its position is known, and a short trail
  of its recent image positions;
- hand skeletons (21 joints, bones), left and right in their own colours, labelled L / R;
- a colour-mapped depth inset (near = warm, far = cool; black = invalid), with its range;
- a frame counter: stored frame, source frame index, time.

Small frames are upscaled by an integer factor first so that the drawing stays legible. The
same ``FrameRenderer`` draws the report's thumbnails. Written with PyAV (H.264, yuv420p, plays in
browsers), to a temporary file renamed into place.
"""

from __future__ import annotations

import math
import os
import uuid
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from y2r.artifacts import HAND_SIDES
from y2r.dataset.reader import Episode
from y2r.errors import ToolUnavailable

# Bones of the 21-joint hand (wrist = 0, then 4 joints per finger base -> tip) plus the palm arch.
HAND_BONES: tuple[tuple[int, int], ...] = (
    (0, 1),
    (1, 2),
    (2, 3),
    (3, 4),
    (0, 5),
    (5, 6),
    (6, 7),
    (7, 8),
    (0, 9),
    (9, 10),
    (10, 11),
    (11, 12),
    (0, 13),
    (13, 14),
    (14, 15),
    (15, 16),
    (0, 17),
    (17, 18),
    (18, 19),
    (19, 20),
    (5, 9),
    (9, 13),
    (13, 17),
)
SIDE_COLOURS: dict[str, tuple[int, int, int]] = {"left": (70, 170, 255), "right": (255, 140, 40)}  # RGB
TEXT = (255, 255, 255)
SHADOW = (0, 0, 0)
MIN_CANVAS_WIDTH = 640


def track_colours(n: int) -> np.ndarray:
    """(n,3) uint8 RGB, well separated hues (golden-ratio steps), stable per track id."""
    hue = (np.arange(n) * 0.618033988749895) % 1.0
    hsv = np.stack([hue * 179, np.full(n, 220), np.full(n, 255)], -1).astype(np.uint8)[None]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0]


def colourise_depth(depth: np.ndarray, valid: np.ndarray, near: float, far: float) -> np.ndarray:
    """Depth (H,W) -> RGB uint8 with the turbo map on inverse depth (more contrast close by)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / np.maximum(depth.astype(np.float32), 1e-6)
    lo, hi = 1.0 / far, 1.0 / near
    x = np.clip((inv - lo) / max(hi - lo, 1e-9), 0, 1)
    img = cv2.applyColorMap((x * 255).astype(np.uint8), cv2.COLORMAP_TURBO)
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    img[~valid] = 0
    return img


def _text(
    img: np.ndarray,
    s: str,
    org: tuple[int, int],
    scale: float,
    colour=TEXT,
    thickness: int = 1,
    box: bool = True,
) -> None:
    """Text at ``org`` (bottom-left), on a translucent dark box so it reads on any background."""
    (w, h), base = cv2.getTextSize(s, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    x, y = org
    if box:
        x0, y0 = max(0, x - 3), max(0, y - h - 3)
        x1, y1 = min(img.shape[1], x + w + 3), min(img.shape[0], y + base + 2)
        if x1 > x0 and y1 > y0:
            img[y0:y1, x0:x1] = (img[y0:y1, x0:x1] * 0.35).astype(np.uint8)
    else:
        cv2.putText(img, s, (x + 1, y + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, SHADOW, thickness, cv2.LINE_AA)
    cv2.putText(img, s, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thickness, cv2.LINE_AA)


class FrameRenderer:
    """Draws overlays for any frame of an episode (small arrays are loaded once)."""

    def __init__(
        self,
        ep: Episode,
        *,
        scale: int | None = None,
        trail: int = 8,
        max_tracks: int = 400,
        depth_inset: bool = True,
        counter: bool = True,
        marks: float = 1.0,
        joint_dots: bool = True,
    ):
        self.ep = ep
        self.T, self.W, self.H = ep.num_frames, ep.width, ep.height
        self.scale = int(scale) if scale else max(1, math.ceil(MIN_CANVAS_WIDTH / self.W))
        self.trail = int(trail)
        self.counter = counter
        self.marks = float(marks)  # size multiplier of dots / lines (thumbnails that get shrunk use > 1)
        self.joint_dots = joint_dots  # small thumbnails read better with bones only
        self.has_rgb = ep.has("rgb")
        self.has_depth = ep.has("depth/depth") and depth_inset
        self.frame_index, self.timestamp = ep.time()
        tr = ep.tracks()
        self.uv = self.vis = None
        if tr is not None and tr.query.shape[0]:
            N = tr.query.shape[0]
            keep = (
                np.linspace(0, N - 1, min(N, max_tracks)).round().astype(int)
                if N > max_tracks
                else np.arange(N)
            )
            self.uv = tr.uv[:, keep]
            self.vis = tr.visible[:, keep]
            self.colours = track_colours(N)[keep]
        self.hands = {s: h for s in HAND_SIDES if (h := ep.hand(s)) is not None}
        self.depth_range = self._depth_range() if self.has_depth else None

    def _depth_range(self) -> tuple[float, float]:
        """Robust near/far over a few frames (2nd and 98th percentile of valid depth)."""
        idx = np.unique(np.linspace(0, self.T - 1, min(self.T, 8)).round().astype(int))
        d = self.ep.depth(idx)
        v = self.ep.depth_valid(idx)
        vals = d[v]
        if vals.size == 0:
            return 0.1, 10.0
        near, far = np.percentile(vals, [2, 98])
        near = max(float(near), 1e-3)
        return near, max(float(far), near * 1.01)

    def _px(self, uv: np.ndarray) -> np.ndarray:
        """Stored-image pixel coordinates (integer = pixel centre) -> canvas coordinates."""
        return (uv + 0.5) * self.scale - 0.5

    def render(self, t: int) -> np.ndarray:
        s = self.scale
        Hs, Ws = self.H * s, self.W * s
        if self.has_rgb:
            base = self.ep.rgb(t)
            canvas = cv2.resize(
                base, (Ws, Hs), interpolation=cv2.INTER_LINEAR if s > 1 else cv2.INTER_NEAREST
            )
        else:
            canvas = np.full((Hs, Ws, 3), 40, np.uint8)
        canvas = np.ascontiguousarray(canvas)
        # Mark sizes follow the canvas, not the upscale factor, so they look the same at any input size.
        m = self.marks
        lw = max(1, round(m * Ws / 400))
        r = max(2, round(m * Ws / 160))
        rj = max(2, round(m * Ws / 240))
        font = max(0.3, m * Ws / 1600)
        shift = 4  # sub-pixel drawing: cv2 takes fixed-point coordinates with this many fractional bits
        f = 1 << shift

        def pt(p: np.ndarray) -> tuple[int, int]:
            return int(round(p[0] * f)), int(round(p[1] * f))

        if self.uv is not None:
            a = max(0, t - self.trail)
            hist = self._px(self.uv[a : t + 1])
            fin = np.isfinite(hist).all(-1)
            for n in range(hist.shape[1]):
                c = tuple(int(x) for x in self.colours[n])
                for k in range(hist.shape[0] - 1):
                    if fin[k, n] and fin[k + 1, n]:
                        cv2.line(canvas, pt(hist[k, n]), pt(hist[k + 1, n]), c, lw, cv2.LINE_AA, shift)
                if fin[-1, n]:
                    if self.vis[t, n]:
                        cv2.circle(canvas, pt(hist[-1, n]), r * f, c, -1, cv2.LINE_AA, shift)
                    else:
                        cv2.circle(canvas, pt(hist[-1, n]), r * f, c, max(1, lw), cv2.LINE_AA, shift)
        for side, h in self.hands.items():
            if not h.valid[t]:
                continue
            kp = self._px(h.keypoints_2d[t].astype(np.float64))
            c = SIDE_COLOURS[side]
            for i, j in HAND_BONES:
                if np.isfinite(kp[[i, j]]).all():
                    cv2.line(canvas, pt(kp[i]), pt(kp[j]), c, lw + 1, cv2.LINE_AA, shift)
            for p in kp[np.isfinite(kp).all(-1)] if self.joint_dots else ():
                cv2.circle(canvas, pt(p), rj * f, c, -1, cv2.LINE_AA, shift)
                cv2.circle(canvas, pt(p), rj * f, (255, 255, 255), 1, cv2.LINE_AA, shift)
            if np.isfinite(kp[0]).all():
                _text(
                    canvas,
                    side[0].upper(),
                    (int(kp[0, 0]) + 2 * r, int(kp[0, 1]) + 2 * r),
                    1.4 * font,
                    c,
                    2,
                    box=False,
                )
        if self.depth_range is not None:
            self._inset(canvas, t, font)
        if self.counter:
            ts = float(self.timestamp[t] - self.timestamp[0])
            label = f"{t + 1}/{self.T}  src #{int(self.frame_index[t])}  {ts:.2f} s"
            _text(canvas, label, (6, Hs - 8), font)
        return canvas

    def _inset(self, canvas: np.ndarray, t: int, font: float) -> None:
        Hs, Ws = canvas.shape[:2]
        w = max(16, Ws // 4)
        h = max(12, round(w * self.H / self.W))
        near, far = self.depth_range
        d = colourise_depth(self.ep.depth(t), self.ep.depth_valid(t), near, far)
        d = cv2.resize(d, (w, h), interpolation=cv2.INTER_NEAREST)
        x0, y0 = Ws - w - 6, 6
        canvas[y0 : y0 + h, x0 : x0 + w] = d
        cv2.rectangle(canvas, (x0 - 1, y0 - 1), (x0 + w, y0 + h), (255, 255, 255), 1)
        unit = " m" if self.ep.metric_scale else ""
        _text(canvas, f"depth {near:.2f}-{far:.2f}{unit}", (x0 + 4, y0 + h - 5), 0.9 * font)

    def sample_frames(self, n: int) -> list[int]:
        return np.unique(np.linspace(0, self.T - 1, min(n, self.T)).round().astype(int)).tolist()


def overlay_path(out_root: str | Path, episode_id: str) -> Path:
    """Where overlays of an output folder live (the report links them from there)."""
    return Path(out_root) / "viz" / f"{episode_id}.overlay.mp4"


def _encoder() -> str:
    import av

    for c in ("libx264", "h264", "mpeg4"):
        if c in av.codecs_available:
            return c
    raise ToolUnavailable("this PyAV build has no H.264 or MPEG-4 encoder for overlay videos")


def render_overlay(
    episode_path: str | Path,
    out_mp4: str | Path,
    *,
    fps: float | None = None,
    trail: int = 8,
    scale: int | None = None,
    max_tracks: int = 400,
) -> Path:
    """Write the overlay video of one episode; returns the mp4 path."""
    import av

    out = Path(out_mp4)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.{uuid.uuid4().hex[:8]}.tmp.mp4")
    try:
        with Episode(episode_path) as ep:
            r = FrameRenderer(ep, scale=scale, trail=trail, max_tracks=max_tracks)
            rate = fps or ep.fps
            Hs, Ws = ep.height * r.scale, ep.width * r.scale
            He, We = Hs + Hs % 2, Ws + Ws % 2  # yuv420p needs even sizes
            with av.open(str(tmp), "w") as c:
                codec = _encoder()
                stream = c.add_stream(
                    codec,
                    rate=Fraction(rate).limit_denominator(1001),
                    options={"crf": "20", "preset": "veryfast"} if codec == "libx264" else {},
                )
                stream.width, stream.height, stream.pix_fmt = We, He, "yuv420p"
                for t in range(ep.num_frames):
                    img = r.render(t)
                    if (He, We) != (Hs, Ws):
                        img = cv2.copyMakeBorder(img, 0, He - Hs, 0, We - Ws, cv2.BORDER_CONSTANT, value=0)
                    frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                    frame.pts = t
                    for pkt in stream.encode(frame):
                        c.mux(pkt)
                for pkt in stream.encode(None):
                    c.mux(pkt)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
