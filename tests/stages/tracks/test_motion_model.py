import numpy as np

from y2r.stages.tracks.motion_model import NeighbourMotion


def test_a_hidden_point_follows_the_affine_motion_of_its_neighbours():
    g = np.stack(np.meshgrid(np.arange(0, 100, 20.0), np.arange(0, 100, 20.0)), -1).reshape(-1, 2)
    M = np.array([[1.1, 0.2], [-0.1, 0.95]])
    moved = g @ M.T + [5.0, -3.0]
    known = np.ones(len(g), bool)
    hidden = 12  # the centre of the grid
    known[hidden] = False
    nm = NeighbourMotion(g, None, k=8)
    pred = nm.predict(np.array([hidden]), np.where(known[:, None], moved, np.nan), known)
    assert np.allclose(pred, moved[hidden:hidden + 1])


def test_neighbours_in_3d_stay_on_their_own_surface():
    # two rows of points close in the image but on surfaces 2 m apart in depth
    uv = np.array([[x, y] for y in (0.0, 1.0) for x in range(10)])
    xyz = np.column_stack([uv[:, 0] * 0.01, np.zeros(20), np.where(uv[:, 1] == 0, 1.0, 3.0)])
    nm = NeighbourMotion(uv, xyz, k=4)
    assert (uv[nm.neighbours[:10], 1] == 0).all() and (uv[nm.neighbours[10:], 1] == 1).all()
    # the near row moves right, the far row stays: a hidden near point moves with the near row
    pos = uv + np.where(uv[:, 1:] == 0, [4.0, 0.0], [0.0, 0.0])
    known = np.ones(20, bool)
    known[5] = False
    assert np.allclose(nm.predict(np.array([5]), pos, known), [[9.0, 0.0]])


def test_too_few_known_neighbours_give_no_prediction():
    uv = np.random.default_rng(0).uniform(0, 50, (6, 2))
    nm = NeighbourMotion(uv, None, k=4)
    known = np.zeros(6, bool)
    known[:2] = True
    assert np.isnan(nm.predict(np.array([4]), uv, known)).all()
    assert NeighbourMotion(uv[:1], None).predict(np.array([0]), uv[:1], np.ones(1, bool)).shape == (1, 2)
