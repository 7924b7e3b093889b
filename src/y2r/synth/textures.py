"""Procedural surface materials, evaluated analytically from surface coordinates in metres.

A material maps 2D surface coordinates ``(a, b)`` (metres, in the surface's own frame, so a texture
moves with its surface) to an albedo in [0, 1]. Nothing is rasterised: every feature is a closed-form
function of ``(a, b)``, so the pattern is exact at any resolution and any sub-pixel sample.

The random parameters (cell jitter, noise lattices, polygons) live in tables of ``PERIOD x PERIOD``
cells that wrap around. With the cell sizes used here the wrap happens after tens of metres, far
beyond any surface of the synthetic room, so the pattern never visibly repeats.

``rich`` materials have what trackers and SfM need and what stresses them: a checkerboard with
per-cell brightness jitter (a regular structure that is not exactly periodic), random polygons and
rectangles (many sharp corners) and two-level blotch noise (sharp, irregular contours).
``low`` materials are nearly flat colours with weak gradients, the low-texture failure case.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import Literal

import numpy as np

PERIOD = 256  # cells per table side; a power of two so that `& (PERIOD - 1)` wraps negative indices too
_MASK = PERIOD - 1
_SHIFT = 8  # log2(PERIOD)
POLY_PERIOD = 128  # polygon cells are larger than checker/noise cells: a smaller table still never repeats
_POLY_MASK = POLY_PERIOD - 1
_POLY_SHIFT = 7
CHUNK = 32768  # samples per vectorised batch

Style = Literal["rich", "low"]


@dataclass(frozen=True, eq=False)
class PolygonLayer:
    """At most one polygon per square cell of side ``cell`` metres (tables of POLY_PERIOD^2 cells).

    Coordinates are in cell units, relative to the polygon's centre. Polygons stay inside their
    cell, so a sample only ever needs its own cell's polygon. Edge k is the half-plane
    ``A_k qx + B_k qy > C_k`` (its inside).

    - ``convex``: the polygon is the intersection of its edge half-planes (triangles have their
      first edge repeated to fill the fourth slot).
    - otherwise star-shaped around the centre, vertices ``(vx, vy)`` counter-clockwise and less
      than pi apart: a point is inside when it is inside the edge of its own angular sector.
    """

    cell: float
    convex: bool
    present: np.ndarray  # (Q,) bool
    cx: np.ndarray  # (Q,) float32 centre, cell units, in [0,1)
    cy: np.ndarray
    A: np.ndarray  # (K,Q) float32 edge half-planes (edge-major: each edge's column is contiguous)
    B: np.ndarray
    C: np.ndarray
    vx: np.ndarray  # (K,Q) float32 vertices relative to the centre
    vy: np.ndarray
    r_in2: np.ndarray  # (Q,) float32 squared radius of the largest disc around the centre inside
    r_out2: np.ndarray  # (Q,) float32 squared radius of the smallest disc around the centre outside
    colour_index: np.ndarray  # (Q,) uint8 row of the material's palette


@dataclass(frozen=True, eq=False)
class Material:
    style: Style
    palette: np.ndarray  # (6,3) float32: the two checkerboard colours, then the polygon colours
    # (low style: the base colour in row 0)
    cell: float  # checker cell size (m)
    jitter: np.ndarray  # (P*P,) float32 per-cell brightness factor
    noise_scales: tuple[float, float]  # lattice spacing (m) of the coarse and the fine value noise
    noise: np.ndarray  # (2,P*P) float32 lattice values in [0,1]
    blotch: tuple[tuple[float, float], tuple[float, float]]  # ((threshold, factor), ...) ascending
    layers: tuple[PolygonLayer, ...]
    gradient: np.ndarray  # (2,) float32, relative brightness change per metre along a and b (low style)

    def albedo(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Albedo (n,3) float32 at surface coordinates ``a``, ``b`` (n,) in metres."""
        a = np.asarray(a, dtype=np.float32)
        b = np.asarray(b, dtype=np.float32)
        evaluate = self._low if self.style == "low" else self._rich
        if a.shape[0] <= CHUNK:
            return evaluate(a, b)
        # In chunks: temporaries of a whole frame fall out of cache (and are mmap'd afresh for every
        # operation), which makes this element-wise maths several times slower.
        out = np.empty((a.shape[0], 3), dtype=np.float32)
        for i in range(0, a.shape[0], CHUNK):
            out[i:i + CHUNK] = evaluate(a[i:i + CHUNK], b[i:i + CHUNK])
        return out

    # ------------------------------------------------------------------------------------ styles
    def _rich(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        # A palette row and a brightness gain per sample; the (n,3) colour is formed once at the end.
        ia = np.floor(a / self.cell).astype(np.int32)
        ib = np.floor(b / self.cell).astype(np.int32)
        index = ((ia + ib) & 1).astype(np.uint8)  # checkerboard: palette row 0 or 1
        gain = self.jitter.take(_flat_index(ia, ib))  # per-cell brightness jitter
        for layer in self.layers:
            _paint_polygons(index, gain, layer, a, b)
        n = 0.62 * _value_noise(self.noise[0], a / self.noise_scales[0], b / self.noise_scales[0])
        n += 0.38 * _value_noise(self.noise[1], a / self.noise_scales[1], b / self.noise_scales[1])
        (t1, f1), (t2, f2) = self.blotch
        gain *= np.where(n > t2, np.float32(f2), np.where(n > t1, np.float32(f1), np.float32(1.0)))
        out = self.palette.take(index, axis=0)
        out *= gain[:, None]
        return out

    def _low(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        # Weak, smooth variation only: a coarse noise of +-4 % and a linear gradient of a few % per
        # metre. Enough to look like a real matte wall, too little for reliable feature matching.
        n = _value_noise(self.noise[0], a / self.noise_scales[0], b / self.noise_scales[0])
        f = 1.0 + 0.08 * (n - 0.5) + self.gradient[0] * a + self.gradient[1] * b
        return self.palette[0][None, :] * f[:, None].astype(np.float32)


# ---------------------------------------------------------------------------------- primitives
# Tables are stored flattened and indexed with `take`, which is several times faster than 2D fancy
# indexing on these sizes.
def _flat_index(i: np.ndarray, j: np.ndarray, mask: int = _MASK, shift: int = _SHIFT) -> np.ndarray:
    return ((i & mask) << shift) | (j & mask)


def _value_noise(table: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear value noise with smoothstep weights on an integer lattice of random values.

    ``table`` is the flattened (P*P,) lattice.
    """
    x0 = np.floor(x)
    y0 = np.floor(y)
    fx = x - x0
    fy = y - y0
    fx = fx * fx * (3.0 - 2.0 * fx)
    fy = fy * fy * (3.0 - 2.0 * fy)
    i0 = x0.astype(np.int32)
    j0 = y0.astype(np.int32)
    k00 = _flat_index(i0, j0)
    k10 = _flat_index(i0 + 1, j0)
    k01 = _flat_index(i0, j0 + 1)
    k11 = _flat_index(i0 + 1, j0 + 1)
    top = table.take(k00) * (1 - fx) + table.take(k10) * fx
    bot = table.take(k01) * (1 - fx) + table.take(k11) * fx
    return top * (1 - fy) + bot * fy


def _paint_polygons(index: np.ndarray, gain: np.ndarray, layer: PolygonLayer, a: np.ndarray,
                    b: np.ndarray) -> None:
    """Where (a, b) is inside its cell's polygon, set the palette row to the polygon's colour and
    the gain to 1 (polygons are flat paint on top of the checkerboard)."""
    inv = 1.0 / layer.cell
    ca = a * inv
    cb = b * inv
    fa = np.floor(ca)
    fb = np.floor(cb)
    cell = _flat_index(fa.astype(np.int32), fb.astype(np.int32), _POLY_MASK, _POLY_SHIFT)
    rows = np.flatnonzero(layer.present.take(cell))
    if rows.size == 0:
        return
    cell = cell[rows]
    qx = (ca - fa)[rows] - layer.cx.take(cell)
    qy = (cb - fb)[rows] - layer.cy.take(cell)
    # Inside the inscribed disc: inside; outside the circumscribed disc: outside. Only the ring
    # between them (a minority of samples) needs the edge tests.
    r2 = qx * qx + qy * qy
    inside = r2 < layer.r_in2.take(cell)
    ring = np.flatnonzero((r2 < layer.r_out2.take(cell)) & ~inside)
    if ring.size:
        c, x, y = cell[ring], qx[ring], qy[ring]
        A, B, C = layer.A, layer.B, layer.C
        K = A.shape[0]
        if layer.convex:
            ok = A[0].take(c) * x + B[0].take(c) * y > C[0].take(c)
            for k in range(1, K):
                ok &= A[k].take(c) * x + B[k].take(c) * y > C[k].take(c)
        else:
            # cross(v_k, q) >= 0: q is counter-clockwise of vertex k (seen from the centre).
            ccw = [layer.vx[k].take(c) * y - layer.vy[k].take(c) * x >= 0 for k in range(K)]
            ok = np.zeros(ring.size, dtype=bool)
            for k in range(K):
                sector = ccw[k] & ~ccw[(k + 1) % K]
                ok |= sector & (A[k].take(c) * x + B[k].take(c) * y > C[k].take(c))
        inside[ring[ok]] = True
    hit = rows[inside]
    index[hit] = layer.colour_index[cell[inside]]
    gain[hit] = 1.0


# -------------------------------------------------------------------------------- generation
def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, float(np.clip(s, 0, 1)), float(np.clip(v, 0, 1))),
                    dtype=np.float32)


def _edges(vx: np.ndarray, vy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Half-planes of the edges v_k -> v_k+1 of counter-clockwise polygons (...,K)."""
    ex = np.roll(vx, -1, axis=-1) - vx
    ey = np.roll(vy, -1, axis=-1) - vy
    # cross(e, q - v) > 0  <=>  -ey qx + ex qy > ex vy - ey vx
    return -ey, ex, ex * vy - ey * vx


def _polygon_layer(rng: np.random.Generator, *, cell: float, convex: bool, density: float,
                   colour_rows: tuple[int, ...]) -> PolygonLayer:
    Q = POLY_PERIOD * POLY_PERIOD
    margin = 0.12
    centre = (0.5 + rng.uniform(-margin, margin, size=(Q, 2))).astype(np.float32)
    rmax = 0.5 - margin  # keeps every vertex inside the cell
    phase = rng.uniform(0, 2 * np.pi, size=(Q, 1))
    if convex:
        # Quads on a circle (cyclic, hence convex): rotated rectangles (angles +-alpha, pi-+alpha)
        # and general quads; and triangles, whose first edge is repeated as a fourth constraint.
        alpha = rng.uniform(0.3, 1.25, size=(Q, 1))
        rect = np.concatenate([alpha, np.pi - alpha, np.pi + alpha, 2 * np.pi - alpha], axis=-1)
        quad = np.pi / 2 * (np.arange(4) + rng.uniform(-0.3, 0.3, size=(Q, 4)))
        tri = 2 * np.pi / 3 * (np.arange(3) + rng.uniform(-0.2, 0.2, size=(Q, 3)))
        tri = np.concatenate([tri, tri[:, :1] + 2 * np.pi], axis=-1)  # 4th vertex = 1st: a null edge
        kind = rng.random((Q, 1))
        ang = phase + np.where(kind < 0.45, tri, np.where(kind < 0.8, rect, quad))
        rad = rmax * rng.uniform(0.55, 1.0, size=(Q, 1))
        vx, vy = rad * np.cos(ang), rad * np.sin(ang)
        A, B, C = _edges(vx, vy)
        is_tri = (kind < 0.45)[:, 0]
        for arr in (A, B, C):  # replace the null edge (v3 = v0) of triangles by a copy of edge 0
            arr[is_tri, 3] = arr[is_tri, 0]
    else:
        K = 5
        # Angle jitter of at most +-0.2 of a sector keeps neighbouring vertices < pi apart;
        # small radii make concave, arrow-like shapes.
        ang = phase + 2 * np.pi / K * (np.arange(K) + rng.uniform(-0.2, 0.2, size=(Q, K)))
        rad = rng.uniform(0.3, 1.0, size=(Q, K)) * rmax
        vx, vy = rad * np.cos(ang), rad * np.sin(ang)
        A, B, C = _edges(vx, vy)
    present = rng.random(Q) < density
    colour_index = np.asarray(colour_rows, dtype=np.uint8)[rng.integers(0, len(colour_rows), size=Q)]
    # Distance from the centre to each edge segment; the polygon is star-shaped around its centre,
    # so the disc of the smallest such distance lies inside it.
    ex, ey = np.roll(vx, -1, axis=-1) - vx, np.roll(vy, -1, axis=-1) - vy
    along = np.clip(-(vx * ex + vy * ey) / np.maximum(ex * ex + ey * ey, 1e-12), 0.0, 1.0)
    r_in = np.hypot(vx + along * ex, vy + along * ey).min(axis=-1)
    r_out = np.hypot(vx, vy).max(axis=-1)
    # Float32 rounding of the tables must not move a sample across a disc: shrink/grow by a margin.
    f32 = np.float32

    def edge_major(arr: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(arr.T.astype(f32))

    return PolygonLayer(cell=float(cell), convex=convex, present=present, cx=centre[:, 0].copy(),
                        cy=centre[:, 1].copy(), A=edge_major(A), B=edge_major(B), C=edge_major(C),
                        vx=edge_major(vx), vy=edge_major(vy), r_in2=((r_in * (1 - 1e-4)) ** 2).astype(f32),
                        r_out2=((r_out * (1 + 1e-4)) ** 2).astype(f32), colour_index=colour_index)


def make_material(rng: np.random.Generator, *, style: Style = "rich", scale: float = 1.0,
                  hue: float | None = None) -> Material:
    """A random material. ``scale`` multiplies every feature size (cube faces use ~0.3)."""
    P = PERIOD
    h = float(rng.random()) if hue is None else hue
    scale = float(scale)
    noise = rng.random((2, P * P)).astype(np.float32)
    gradient = rng.uniform(-0.04, 0.04, size=2).astype(np.float32)
    if style == "low":
        base = _hsv(h, rng.uniform(0.15, 0.35), rng.uniform(0.55, 0.75))
        return Material(style="low", palette=base[None, :], cell=1.0,
                        jitter=np.ones(P * P, np.float32), noise_scales=(1.7 * scale, 1.7 * scale),
                        noise=noise, blotch=((2.0, 1.0), (2.0, 1.0)), layers=(), gradient=gradient)
    # Contrast is mostly in luminance, as in real textures: colour changes at the pixel scale are
    # what yuv420p chroma subsampling destroys (strongly coloured edges cap an H.264 roundtrip near
    # 30 dB PSNR however high its quality setting).
    sat = rng.uniform(0.3, 0.5)
    c0 = _hsv(h, sat, rng.uniform(0.72, 0.85))
    c1 = _hsv(h + rng.uniform(-0.03, 0.03), sat * 1.1, rng.uniform(0.35, 0.48))
    jitter = rng.uniform(0.8, 1.15, size=P * P).astype(np.float32)
    polygon_colours = np.stack([
        _hsv(h, 0.3, 0.15), _hsv(h, 0.1, 0.97),
        _hsv(h + rng.uniform(0.2, 0.35), 0.35, 0.75), _hsv(h - rng.uniform(0.2, 0.35), 0.35, 0.3),
    ])
    cell = float(rng.uniform(0.17, 0.23)) * scale
    layers = (
        _polygon_layer(rng, cell=0.83 * cell, convex=True, density=0.6, colour_rows=(2, 3, 4, 5)),
        _polygon_layer(rng, cell=1.07 * cell, convex=False, density=0.35, colour_rows=(2, 3, 4, 5)),
    )
    return Material(style="rich", palette=np.concatenate([c0[None], c1[None], polygon_colours]),
                    cell=cell, jitter=jitter, noise_scales=(0.55 * scale, 0.17 * scale), noise=noise,
                    blotch=((0.56, 0.86), (0.66, 0.72)), layers=layers, gradient=gradient)
