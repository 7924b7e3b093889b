"""Procedural materials: polygons against OpenCV's point-in-polygon test, exactness, low texture."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from y2r.synth import textures
from y2r.synth.textures import POLY_PERIOD, make_material


@pytest.mark.parametrize("convex", [True, False])
def test_polygons_match_opencv_point_in_polygon(convex):
    rng = np.random.default_rng(11)
    layer = textures._polygon_layer(rng, cell=1.0, convex=convex, density=1.0, colour_rows=(2, 3, 4, 5))
    cells = rng.integers(0, POLY_PERIOD, size=(60, 2))
    pts = rng.random((60, 300, 2))
    a = (cells[:, None, 0] + pts[..., 0]).ravel().astype(np.float32)
    b = (cells[:, None, 1] + pts[..., 1]).ravel().astype(np.float32)
    index = np.zeros(a.size, np.uint8)
    gain = np.full(a.size, 0.5, np.float32)
    textures._paint_polygons(index, gain, layer, a, b)
    painted = (index >= 2).reshape(60, 300)
    assert np.array_equal(gain == 1.0, index >= 2)
    checked = 0
    for c, (i, j) in enumerate(cells):
        q = (i << 7) | j
        poly = np.stack([layer.cx[q] + layer.vx[:, q], layer.cy[q] + layer.vy[:, q]], -1).astype(np.float32)
        fa = (a.reshape(60, 300)[c] - i)
        fb = (b.reshape(60, 300)[c] - j)
        for k in range(300):
            dist = cv2.pointPolygonTest(poly.reshape(-1, 1, 2), (float(fa[k]), float(fb[k])), True)
            if abs(dist) < 1e-4:  # on the boundary within float32 rounding: either answer is right
                continue
            assert painted[c, k] == (dist > 0), (c, k, dist)
            checked += 1
        assert painted[c].any()  # every cell has a polygon at density 1 and 300 samples hit it
    assert checked > 17000


def test_albedo_is_a_pure_function_of_surface_coordinates():
    """Exact at any resolution: a sample's colour does not depend on the other samples."""
    mat = make_material(np.random.default_rng(3))
    rng = np.random.default_rng(4)
    a = rng.uniform(-3, 3, 100_000).astype(np.float32)
    b = rng.uniform(-3, 3, 100_000).astype(np.float32)
    full = mat.albedo(a, b)  # evaluated in several chunks
    perm = rng.permutation(a.size)
    np.testing.assert_array_equal(mat.albedo(a[perm], b[perm]), full[perm])
    np.testing.assert_array_equal(mat.albedo(a[:7], b[:7]), full[:7])
    assert full.min() >= 0 and full.max() <= 1
    # Rich textures have sharp, dense features: many distinct colours, strong contrast.
    assert len(np.unique(full.round(3), axis=0)) > 300
    assert full.mean(axis=1).std() > 0.12


def test_low_texture_is_nearly_flat():
    mat = make_material(np.random.default_rng(5), style="low")
    a, b = np.meshgrid(np.linspace(0, 2, 400), np.linspace(0, 2, 400))
    alb = mat.albedo(a.ravel(), b.ravel()).reshape(400, 400, 3)
    lum = alb.mean(-1)
    assert lum.std() / lum.mean() < 0.06
    # Neighbouring samples 5 mm apart differ by far less than one 8-bit level.
    assert np.abs(np.diff(lum, axis=1)).max() < 1 / 255


def test_material_is_deterministic_by_rng_seed():
    m1 = make_material(np.random.default_rng(9))
    m2 = make_material(np.random.default_rng(9))
    x = np.linspace(-1, 1, 1000, dtype=np.float32)
    np.testing.assert_array_equal(m1.albedo(x, x[::-1]), m2.albedo(x, x[::-1]))
