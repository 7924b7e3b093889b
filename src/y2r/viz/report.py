"""One self-contained HTML report of an output folder: ``OUT/report.html``.

Made to be looked at, not read: for every episode a strip of frames with the tracks and hands
drawn on them, the matching depth strip, a top view of the camera path, and a timeline of when
each hand was seen and how many tracks were visible, with quality problems highlighted; a
filterable table of all videos; the failed videos with their errors; the dataset statistics.

Everything is inline (CSS, a few lines of JS for the table filter, images as data URIs, plots as
SVG), so the file can be mailed or opened from any folder. Drawing uses OpenCV; there is no
matplotlib dependency.

Cards are cached (``OUT/viz/.cards/``, keyed by the episode file's size and mtime, its manifest row,
its flags and its overlay video): every run ends by rewriting the report, and rendering a card reads
and draws frames (~0.4 s for a 10-second episode), so without the cache a no-op re-run of a large
dataset would spend over a minute redrawing up to ``max_detailed`` unchanged cards.

Quality highlights (thresholds below): a degenerate camera estimate and failed / unreadable videos
are errors (red); relative (non-metric) scale, little valid depth, few visible tracks, and hands
seen in almost no frames are warnings (amber).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from y2r.artifacts import ArtifactStore, file_fingerprint, read_json, write_atomic, write_json_atomic
from y2r.dataset.manifest import MANIFEST_JSONL, build_manifest, read_manifest
from y2r.dataset.reader import Episode
from y2r.errors import SchemaError
from y2r.viz.overlay import SIDE_COLOURS, FrameRenderer, colourise_depth, overlay_path

REPORT_FILE = "report.html"
MIN_DEPTH_VALID = 0.5
MIN_TRACKS_VISIBLE = 0.3
MIN_HANDS_SEEN = 0.2  # of frames, for the better-seen hand
THUMB_WIDTH = 200
CARD_CACHE = Path("viz") / ".cards"
CARD_VERSION = 1  # bump when a card's HTML changes, so cached cards are redrawn


# ------------------------------------------------------------------------------------ quality
def quality_issues(row: dict[str, Any]) -> list[tuple[str, str]]:
    """(level, text) per problem of a manifest row; level is 'bad' or 'warn'."""
    out: list[tuple[str, str]] = []
    if row.get("status") not in (None, "ok"):
        out.append(("bad", str(row.get("status"))))
    if row.get("camera_degenerate"):
        out.append(("bad", f"camera: {row['camera_degenerate']}"))
    if row.get("metric_scale") is False:
        out.append(("warn", "relative scale"))
    d = row.get("depth_valid_frac")
    if isinstance(d, (int, float)) and d < MIN_DEPTH_VALID:
        out.append(("warn", f"depth valid {d:.0%}"))
    tv = row.get("tracks_visible_frac")
    if isinstance(tv, (int, float)) and tv < MIN_TRACKS_VISIBLE:
        out.append(("warn", f"tracks visible {tv:.0%}"))
    hl, hr = row.get("hands_left_frac"), row.get("hands_right_frac")
    if isinstance(hl, (int, float)) and isinstance(hr, (int, float)) and max(hl, hr) < MIN_HANDS_SEEN:
        out.append(("warn", f"hands in {max(hl, hr):.0%} of frames"))
    return out


# ------------------------------------------------------------------------------------ pictures
def _data_uri(img_rgb: np.ndarray, quality: int = 82) -> str:
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(img_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:  # pragma: no cover - OpenCV always encodes uint8 RGB
        return ""
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode()


def _thumb(img: np.ndarray, width: int = THUMB_WIDTH) -> np.ndarray:
    h = max(1, round(img.shape[0] * width / img.shape[1]))
    return cv2.resize(img, (width, h), interpolation=cv2.INTER_AREA)


def frames_strip(ep: Episode, n: int = 6) -> tuple[list[tuple[int, str]], list[str]]:
    """(frame, jpeg uri) with overlays, and the matching depth thumbnails (may be empty)."""
    # Draw on a canvas about twice the thumbnail's width with heavier marks, then shrink: lines stay
    # visible and antialiased whatever the stored resolution.
    r = FrameRenderer(
        ep,
        scale=max(1, math.ceil(2 * THUMB_WIDTH / ep.width)),
        trail=4,
        depth_inset=False,
        counter=False,
        marks=2.0,
        joint_dots=False,
    )
    idx = r.sample_frames(n)
    rgb = [(t, _data_uri(_thumb(r.render(t)))) for t in idx]
    depth: list[str] = []
    if r.depth_range is None and ep.has("depth/depth"):
        r.depth_range = r._depth_range()
    if r.depth_range is not None:
        near, far = r.depth_range
        for t in idx:
            depth.append(_data_uri(_thumb(colourise_depth(ep.depth(t), ep.depth_valid(t), near, far))))
    return rgb, depth


# The episode stage draws its episode's frame strip in its worker (in parallel with other work, on
# the node that wrote the file) and leaves it in its stage folder; a card uses it while it is current.
EPISODE_STRIP_FILE = "strip.json"


def save_frames_strip(episode_path: Path, dest: Path) -> None:
    """``frames_strip`` of an episode file, saved with the file's fingerprint and the card version."""
    with Episode(episode_path) as ep:
        rgb, depth = frames_strip(ep)
    write_json_atomic(Path(dest), {"card_version": CARD_VERSION, "episode": file_fingerprint(Path(episode_path)),
                                   "rgb": rgb, "depth": depth})


def _saved_frames_strip(root: Path, episode_path: Path) -> tuple[list[tuple[int, str]], list[str]] | None:
    """The strip the episode stage saved for this very file and card version, else None."""
    saved = ArtifactStore(root).stage_dir(episode_path.stem, "episode") / EPISODE_STRIP_FILE
    try:
        d = read_json(saved)
    except (OSError, ValueError):
        return None
    if d.get("card_version") != CARD_VERSION or d.get("episode") != file_fingerprint(episode_path):
        return None
    return [(int(t), str(uri)) for t, uri in d.get("rgb", [])], [str(uri) for uri in d.get("depth", [])]


def _nice_step(span: float) -> float:
    """A round scale-bar length of about a quarter of ``span``."""
    if not span > 0:
        return 1.0
    raw = span / 4
    p = 10 ** math.floor(math.log10(raw))
    return next(m * p for m in (1, 2, 5, 10) if m * p >= raw)


def trajectory_svg(world_T_cam: np.ndarray, metric: bool, size: int = 240) -> str:
    """Top view of the camera path: looking down the scene's up axis (opposite the mean camera
    y axis, which points down in OpenCV), camera 0's right to the right, its forward up."""
    P = world_T_cam.astype(np.float64)
    c = P[:, :3, 3]
    up = -P[:, :3, 1].mean(0)
    up /= np.linalg.norm(up) + 1e-12
    right = P[0, :3, 0] - up * (P[0, :3, 0] @ up)
    right /= np.linalg.norm(right) + 1e-12
    fwd = np.cross(up, right)
    xy = np.stack([c @ right, c @ fwd], -1)
    heading = np.stack([P[:, :3, 2] @ right, P[:, :3, 2] @ fwd], -1)
    lo, hi = xy.min(0), xy.max(0)
    span = float(max(hi - lo))
    pad = 24
    if span < 1e-9:
        body = (
            f'<circle cx="{size / 2}" cy="{size / 2}" r="5" fill="#2a9d8f"/>'
            f'<text x="{size / 2}" y="{size / 2 + 22}" text-anchor="middle">static camera</text>'
        )
        return _svg(size, size, body)
    s = (size - 2 * pad) / span
    centre = (lo + hi) / 2

    def to_px(p: np.ndarray) -> tuple[float, float]:
        q = (p - centre) * s
        return size / 2 + q[0], size / 2 - q[1]

    parts = []
    T = len(xy)
    for k in range(T - 1):  # time-coloured segments (blue -> yellow)
        a, b = to_px(xy[k]), to_px(xy[k + 1])
        parts.append(
            f'<line x1="{a[0]:.1f}" y1="{a[1]:.1f}" x2="{b[0]:.1f}" y2="{b[1]:.1f}" '
            f'stroke="{_time_colour(k / max(1, T - 2))}" stroke-width="2.5" stroke-linecap="round"/>'
        )
    step = max(1, T // 12)
    for k in range(0, T, step):  # where the camera looks
        a = to_px(xy[k])
        h = heading[k]
        n = np.linalg.norm(h)
        if n < 1e-6:
            continue
        d = h / n * 14
        parts.append(
            f'<line x1="{a[0]:.1f}" y1="{a[1]:.1f}" x2="{a[0] + d[0]:.1f}" y2="{a[1] - d[1]:.1f}" '
            'stroke="#555" stroke-width="1" marker-end="url(#arrow)"/>'
        )
    a, b = to_px(xy[0]), to_px(xy[-1])
    parts.append(
        f'<circle cx="{a[0]:.1f}" cy="{a[1]:.1f}" r="5" fill="#2a9d8f"><title>start</title></circle>'
    )
    parts.append(
        f'<rect x="{b[0] - 4:.1f}" y="{b[1] - 4:.1f}" width="8" height="8" fill="#e63946">'
        "<title>end</title></rect>"
    )
    bar = _nice_step(span)
    unit = "m" if metric else "units"
    x0, y0 = pad, size - 8
    parts.append(
        f'<line x1="{x0}" y1="{y0}" x2="{x0 + bar * s:.1f}" y2="{y0}" stroke="#222" stroke-width="2"/>'
    )
    parts.append(f'<text x="{x0}" y="{y0 - 4}">{bar:g} {unit}</text>')
    parts.append(f'<text x="{size - 4}" y="12" text-anchor="end">path {_path_length(c):.2f} {unit}</text>')
    defs = (
        '<defs><marker id="arrow" markerWidth="6" markerHeight="6" refX="5" refY="3" orient="auto">'
        '<path d="M0,0 L6,3 L0,6 z" fill="#555"/></marker></defs>'
    )
    return _svg(size, size, defs + "".join(parts))


def _path_length(c: np.ndarray) -> float:
    return float(np.linalg.norm(np.diff(c, axis=0), axis=1).sum()) if len(c) > 1 else 0.0


def _time_colour(x: float) -> str:
    """Viridis-like ramp, early = dark blue, late = yellow."""
    stops = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], float)
    pos = np.clip(x, 0, 1) * (len(stops) - 1)
    i = min(int(pos), len(stops) - 2)
    r, g, b = stops[i] + (stops[i + 1] - stops[i]) * (pos - i)
    return f"rgb({r:.0f},{g:.0f},{b:.0f})"


def timeline_svg(ep: Episode, width: int = 600) -> str:
    """Per-frame bars: hands seen (left / right), fraction of tracks visible, camera speed."""
    T = ep.num_frames
    rows: list[tuple[str, np.ndarray, str, str]] = []  # label, value in [0, 1] per frame, colour, summary
    for side in ("left", "right"):
        h = ep.hand(side)
        if h is not None:
            c = "rgb({},{},{})".format(*SIDE_COLOURS[side])
            rows.append((f"{side} hand", h.valid.astype(float), c, f"{h.valid.mean():.0%} of frames"))
    tr = ep.tracks()
    if tr is not None and tr.visible.shape[1]:
        frac = tr.visible.mean(1)
        rows.append(("tracks visible", frac, "#6a4c93", f"{frac.mean():.0%} on average"))
    if T > 1:
        P = ep.world_T_cam().astype(np.float64)
        sp = np.linalg.norm(np.diff(P[:, :3, 3], axis=0), axis=1) * ep.fps
        sp = np.concatenate([sp, sp[-1:]])
        top = float(sp.max()) or 1.0
        unit = "m/s" if ep.metric_scale else "units/s"
        rows.append(("camera speed", sp / top, "#457b9d", f"max {sp.max():.2f} {unit}"))
    label_w, value_w, row_h, gap = 100, 120, 14, 6
    height = len(rows) * (row_h + gap) + 18
    x_w = width - label_w - value_w
    parts = []
    for i, (name, val, colour, summary) in enumerate(rows):
        y = i * (row_h + gap) + 4
        parts.append(f'<text x="0" y="{y + row_h - 3}">{html.escape(name)}</text>')
        parts.append(f'<rect x="{label_w}" y="{y}" width="{x_w}" height="{row_h}" fill="#eee"/>')
        parts.append(
            f'<text x="{label_w + x_w + 6}" y="{y + row_h - 3}" fill="#555">{html.escape(summary)}</text>'
        )
        # one bar per frame, height = value (runs of equal values merged to keep the SVG small)
        k = 0
        while k < T:
            j = k
            while j + 1 < T and val[j + 1] == val[k]:
                j += 1
            v = float(val[k]) if np.isfinite(val[k]) else 0.0
            if v > 0:
                x = label_w + x_w * k / T
                w = x_w * (j - k + 1) / T
                hh = row_h * v
                parts.append(
                    f'<rect x="{x:.2f}" y="{y + row_h - hh:.2f}" width="{w + 0.3:.2f}" height="{hh:.2f}" '
                    f'fill="{colour}"/>'
                )
            k = j + 1
    y = len(rows) * (row_h + gap) + 12
    parts.append(f'<text x="{label_w}" y="{y}">frame 0</text>')
    parts.append(
        f'<text x="{label_w + x_w}" y="{y}" text-anchor="end">{T - 1} ({(T - 1) / ep.fps:.1f} s)</text>'
    )
    return _svg(width, height, "".join(parts))


def _svg(w: float, h: float, body: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
        f'font-family="sans-serif" font-size="11">{body}</svg>'
    )


# ------------------------------------------------------------------------------------ html
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{margin:0 0 4px}h2{margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
.sub{color:#666;margin-bottom:16px}
.tiles{display:flex;gap:12px;flex-wrap:wrap}.tile{background:#fff;border:1px solid #ddd;border-radius:8px;
padding:10px 16px;min-width:110px}.tile b{display:block;font-size:22px}
table{border-collapse:collapse;background:#fff;font-size:13px}th,td{border:1px solid #ddd;padding:4px 8px;
text-align:left;white-space:nowrap}th{background:#f0f0f0;position:sticky;top:0}
tr.bad td{background:#fde8e8}tr.warn td{background:#fff6e0}td.num{text-align:right}
.badge{display:inline-block;border-radius:10px;padding:1px 8px;margin:0 4px 2px 0;font-size:12px}
.badge.bad{background:#e63946;color:#fff}.badge.warn{background:#f4a261;color:#222}
.badge.ok{background:#2a9d8f;color:#fff}
.card{background:#fff;border:1px solid #ddd;border-radius:8px;padding:12px 16px;margin:16px 0}
.card.bad{border-left:6px solid #e63946}.card.warn{border-left:6px solid #f4a261}
.card.ok{border-left:6px solid #2a9d8f}
.card h3{margin:0 0 6px}.meta{color:#555;font-size:13px;margin-bottom:8px}
.strip{display:flex;gap:4px;flex-wrap:wrap}.strip figure{margin:0}.strip img{display:block;border-radius:3px}
.strip figcaption{font-size:11px;color:#666;text-align:center}
.row{display:flex;gap:24px;flex-wrap:wrap;align-items:flex-start;margin-top:8px}
.err{font-family:ui-monospace,monospace;white-space:pre-wrap;color:#a00}
#filter{padding:4px 8px;width:260px;margin:8px 12px 8px 0}
"""

_JS = """
function filt(){const q=document.getElementById('filter').value.toLowerCase();
const only=document.getElementById('flagged').checked;
document.querySelectorAll('#videos tbody tr').forEach(r=>{const t=r.textContent.toLowerCase();
const show=t.includes(q)&&(!only||r.classList.contains('bad')||r.classList.contains('warn'));
r.style.display=show?'':'none';});}
"""

_TABLE_COLUMNS = (
    ("id", "id"),
    ("status", "status"),
    ("frames", "frames"),
    ("fps", "fps"),
    ("duration_s", "duration s"),
    ("width", "W"),
    ("height", "H"),
    ("camera_degenerate", "camera"),
    ("metric_scale", "metric"),
    ("depth_valid_frac", "depth valid"),
    ("tracks_visible_frac", "tracks vis."),
    ("hands_left_frac", "left hand"),
    ("hands_right_frac", "right hand"),
    ("size_mb", "MB"),
    ("error", "error"),
)


def _cell(key: str, v: Any) -> str:
    if v is None:
        return "<td></td>"
    if key.endswith("_frac") and isinstance(v, (int, float)):
        return f'<td class="num">{v:.0%}</td>'
    if isinstance(v, bool):
        return f"<td>{'yes' if v else 'no'}</td>"
    if isinstance(v, float):
        return f'<td class="num">{v:.3g}</td>'
    if isinstance(v, int):
        return f'<td class="num">{v}</td>'
    text = html.escape(str(v))
    return f'<td title="{text}">{text[:80]}</td>'


def _level(issues: list[tuple[str, str]]) -> str:
    return "bad" if any(lv == "bad" for lv, _ in issues) else "warn" if issues else "ok"


def _badges(issues: list[tuple[str, str]]) -> str:
    if not issues:
        return '<span class="badge ok">ok</span>'
    return "".join(f'<span class="badge {lv}">{html.escape(t)}</span>' for lv, t in issues)


def _overlay_candidates(root: Path, row: dict[str, Any]) -> list[Path]:
    # `y2r overlay` writes next to the episode by default; the pipeline's place is OUT/viz/.
    return [overlay_path(root, row["id"]), (root / str(row["path"])).with_suffix(".overlay.mp4")]


def cached_card(root: Path, row: dict[str, Any], issues: list[tuple[str, str]]) -> str:
    """``_render_card``, reused from OUT/viz/.cards when nothing it depends on has changed."""
    path = root / str(row["path"])
    fp = file_fingerprint(path)
    if fp is None:
        return _render_card(root, row, issues)[0]
    deps = [CARD_VERSION, fp, row, issues, [file_fingerprint(c) for c in _overlay_candidates(root, row)]]
    key = hashlib.sha256(json.dumps(deps, sort_keys=True, default=str).encode()).hexdigest()
    cache = root / CARD_CACHE / f"{hashlib.sha256(str(row['id']).encode()).hexdigest()[:24]}.html"
    head = f"<!-- {key} -->\n"
    try:
        text = cache.read_text(encoding="utf-8")
        if text.startswith(head):
            return text[len(head):]
    except OSError:
        pass
    card, drawn = _render_card(root, row, issues)
    if drawn:  # an unreadable episode's error card is not kept: the next run tries again
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(cache, head + card, durable=False)
        except OSError:  # a read-only OUT still gets its report
            pass
    return card


def _render_card(root: Path, row: dict[str, Any], issues: list[tuple[str, str]]) -> tuple[str, bool]:
    """One episode's card, and whether the episode could be read (else the card shows the error)."""
    path = root / str(row["path"])
    try:
        with Episode(path) as ep:
            rgb, depth = _saved_frames_strip(root, path) or frames_strip(ep)
            traj = trajectory_svg(ep.world_T_cam(), ep.metric_scale)
            timeline = timeline_svg(ep)
            backends = ep.backends()
    except (OSError, KeyError, ValueError, SchemaError) as e:
        msg = e.message if isinstance(e, SchemaError) else str(e)
        return (
            f'<div class="card bad" id="ep-{html.escape(row["id"])}"><h3>{html.escape(row["id"])}</h3>'
            f'<div class="err">{html.escape(msg)}</div></div>'
        ), False
    fps = row.get("fps") or 0
    strip = "".join(
        f'<figure><img src="{uri}" width="{THUMB_WIDTH}" alt="frame {t}"><figcaption>frame {t} · '
        f"{t / fps if fps else 0:.1f} s</figcaption></figure>"
        for t, uri in rgb
    )
    dstrip = "".join(f'<figure><img src="{uri}" width="{THUMB_WIDTH}" alt="depth"></figure>' for uri in depth)
    be = ", ".join(
        f"{html.escape(s)}: {html.escape(str(b.get('backend', '?')))}"
        for s, b in backends.items()
        if isinstance(b, dict) and s != "episode"
    )
    links = [f'<a href="{html.escape(str(row["path"]))}">episode file</a>']
    video = ""
    ov = next((c for c in _overlay_candidates(root, row) if c.exists()), None)
    if ov is not None:
        rel = html.escape(str(ov.relative_to(root)))
        links.append(f'<a href="{rel}">overlay video</a>')
        video = (
            f'<div><b>overlay</b><br><video src="{rel}" controls muted loop preload="metadata" '
            f'width="{2 * THUMB_WIDTH}"></video></div>'
        )
    facts = [
        f"{row.get('frames')} frames",
        f"{fps:g} fps",
        f"{row.get('duration_s') or 0:.1f} s",
        f"{row.get('width')}×{row.get('height')}",
        f"{row.get('size_mb') or 0:.1f} MB",
    ]
    meta = " · ".join(facts + ([be] if be else []) + links)
    src = html.escape(str(row.get("source_path") or ""))
    return f"""
<div class="card {_level(issues)}" id="ep-{html.escape(row["id"])}">
<h3>{html.escape(row["id"])} {_badges(issues)}</h3>
<div class="meta">{meta}<br><span title="source">{src}</span></div>
<div class="strip">{strip}</div>
{f'<div class="strip" style="margin-top:4px">{dstrip}</div>' if dstrip else ""}
<div class="row"><div><b>camera path (top view)</b><br>{traj}</div>
<div><b>timeline</b><br>{timeline}</div>{video}</div>
</div>""", True


def _stats_table(stats: dict[str, Any]) -> str:
    keys = stats.get("keys", {})
    if not keys:
        return ""
    head = (
        "<tr><th>key</th><th>selection</th><th>count</th><th>mean</th><th>std</th><th>min</th><th>q05</th>"
        "<th>q50</th><th>q95</th><th>max</th></tr>"
    )

    def fmt(v: Any) -> str:
        if isinstance(v, list):
            return " ".join("—" if x is None else f"{x:.3g}" for x in v)
        return "" if v is None else f"{v:.3g}"

    def row(k: str, s: dict) -> str:
        units = f" ({html.escape(s['units'])})" if s.get("units") else ""
        cells = [
            f"{html.escape(k)}{units}",
            html.escape(s.get("selection", "")),
            str(max(s.get("count") or [0])),
        ]
        cells += [fmt(s.get(f)) for f in ("mean", "std", "min", "q05", "q50", "q95", "max")]
        return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"

    body = "".join(row(k, s) for k, s in keys.items())
    return (
        f"<h2>Statistics</h2><p class='sub'>{html.escape(stats.get('method', {}).get('quantiles', ''))}</p>"
        f"<table>{head}{body}</table>"
    )


def render_report(out_root: str | Path, *, max_detailed: int = 200) -> str:
    """The report's HTML text (see ``write_report``)."""
    root = Path(out_root)
    rows = read_manifest(root) if (root / MANIFEST_JSONL).exists() else build_manifest(root)
    stats = {}
    if (root / "stats.json").exists():
        try:
            stats = json.loads((root / "stats.json").read_text())
        except ValueError:
            stats = {}
    issues = {r["id"]: quality_issues(r) for r in rows}
    ok = [r for r in rows if r.get("status") == "ok"]
    failed = [r for r in rows if r.get("status") != "ok"]
    frames = sum(int(r.get("frames") or 0) for r in ok)
    seconds = sum(float(r.get("duration_s") or 0) for r in ok)
    flagged = sum(1 for r in ok if issues[r["id"]])
    tiles = [
        ("episodes", len(ok)),
        ("failed", len(failed)),
        ("flagged", flagged),
        ("frames", f"{frames:,}"),
        ("duration", f"{seconds / 60:.1f} min"),
        ("size", f"{sum(float(r.get('size_mb') or 0) for r in ok):,.0f} MB"),
    ]
    tiles_html = "".join(
        f'<div class="tile"><b>{html.escape(str(v))}</b>{html.escape(k)}</div>' for k, v in tiles
    )

    table_rows = []
    for r in rows:
        lvl = _level(issues[r["id"]])
        cells = []
        for key, _ in _TABLE_COLUMNS:
            if key == "id" and r.get("status") == "ok":
                cells.append(f'<td><a href="#ep-{html.escape(r["id"])}">{html.escape(r["id"])}</a></td>')
            else:
                cells.append(_cell(key, r.get(key)))
        table_rows.append(f'<tr class="{lvl if lvl != "ok" else ""}">{"".join(cells)}</tr>')
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in _TABLE_COLUMNS)

    cards = [cached_card(root, r, issues[r["id"]]) for r in ok[:max_detailed]]
    more = (
        f"<p class='sub'>{len(ok) - max_detailed} more episodes are in the table only.</p>"
        if len(ok) > max_detailed
        else ""
    )
    failed_html = ""
    if failed:

        def failed_row(r: dict) -> str:
            cells = [
                r["id"],
                r.get("status"),
                r.get("failed_stage"),
                r.get("error_kind"),
                r.get("source_path") or r.get("path"),
            ]
            tds = "".join(f"<td>{html.escape(str(c or ''))}</td>" for c in cells)
            return f"<tr class='bad'>{tds}<td class='err'>{html.escape(str(r.get('error') or ''))}</td></tr>"

        frows = "".join(failed_row(r) for r in failed)
        failed_html = (
            "<h2>Failed videos</h2><table><tr><th>id</th><th>status</th><th>stage</th><th>kind</th>"
            f"<th>source</th><th>error</th></tr>{frows}</table>"
        )
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>y2r report: {html.escape(root.name)}</title>
<style>{_CSS}</style><script>{_JS}</script></head><body>
<h1>y2r dataset report</h1>
<div class="sub">{html.escape(str(root.resolve()))} · generated {now}</div>
<div class="tiles">{tiles_html}</div>
{failed_html}
<h2>Videos</h2>
<input id="filter" placeholder="filter (id, flag, error…)" oninput="filt()">
<label><input type="checkbox" id="flagged" onchange="filt()"> only flagged</label>
<div style="max-height:480px;overflow:auto"><table id="videos"><thead><tr>{head}</tr></thead>
<tbody>{"".join(table_rows)}</tbody></table></div>
<h2>Episodes</h2>
<p class="sub">Frames: tracks coloured by id (dot = visible, ring = occluded, line = recent path),
hands as skeletons (<span style="color:rgb{SIDE_COLOURS["left"]}">left</span> /
<span style="color:rgb{SIDE_COLOURS["right"]}">right</span>). Depth: near = red, far = blue, invalid = black.
Camera path: top view, start ● end ■, arrows = viewing direction, colour = time.</p>
{"".join(cards)}{more}
{_stats_table(stats)}
</body></html>
"""


def write_report(out_root: str | Path, *, max_detailed: int = 200) -> Path:
    """Write ``OUT/report.html`` (atomically) and return its path."""
    root = Path(out_root)
    path = root / REPORT_FILE
    write_atomic(path, render_report(root, max_detailed=max_detailed))
    return path
