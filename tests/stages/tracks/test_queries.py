import numpy as np

from y2r.stages.tracks.queries import grid_points, grid_queries, snap_to_valid_depth


def test_grid_is_regular_inside_the_margin():
    pts = grid_points((100, 200), 5, margin_px=10)
    assert pts.shape == (25, 2)
    assert np.allclose(np.unique(pts[:, 0]), np.linspace(10, 189, 5))
    assert np.allclose(np.unique(pts[:, 1]), np.linspace(10, 89, 5))
    # row-major: u varies fastest
    assert np.allclose(pts[:5, 1], 10) and np.all(np.diff(pts[:5, 0]) > 0)


def test_single_point_grid_is_the_image_centre():
    assert np.allclose(grid_points((48, 64), 1, margin_px=4), [[31.5, 23.5]])


def test_invalid_depth_points_move_to_the_nearest_valid_pixel_or_are_dropped():
    valid = np.ones((40, 40), bool)
    valid[:, :20] = False  # left half without depth
    pts = np.array([[30.0, 10.0], [18.0, 10.0], [2.0, 10.0]])
    out = snap_to_valid_depth(pts, valid, max_shift_px=5)
    # kept as is; moved 2 px right to the first valid column; dropped (18 px away)
    assert np.allclose(out, [[30.0, 10.0], [20.0, 10.0]])


def test_grid_queries_without_any_depth_keep_every_point():
    q = grid_queries((48, 64), 4, query_frame=3, margin_px=5, depth_valid=np.zeros((48, 64), bool))
    assert q.shape == (16, 3) and q.dtype == np.float32
    assert np.all(q[:, 0] == 3)


def test_grid_queries_skip_regions_without_depth():
    valid = np.ones((48, 64), bool)
    valid[:24] = False  # top half: no depth anywhere near the top grid rows
    q = grid_queries((48, 64), 4, query_frame=0, margin_px=5, depth_valid=valid)
    assert 8 <= len(q) < 16
    assert valid[np.rint(q[:, 2]).astype(int), np.rint(q[:, 1]).astype(int)].all()
