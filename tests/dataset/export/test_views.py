from __future__ import annotations

import numpy as np

from y2r.artifacts import HandTrack
from y2r.dataset.export.views import quat_xyzw, rot6d, wrist_motion, wrist_state
from y2r.geometry import axis_angle_to_matrix, invert_se3, make_se3


def _moving_camera(T: int) -> np.ndarray:
    R = axis_angle_to_matrix(np.stack([np.zeros(T), np.linspace(0, 0.4, T), np.zeros(T)], -1))
    return make_se3(R, np.stack([np.linspace(0, 0.5, T), np.zeros(T), np.linspace(0, 0.2, T)], -1))


def test_hand_static_in_world_has_zero_motion_despite_camera_motion():
    T = 6
    W = _moving_camera(T)
    world_T_wrist = make_se3(axis_angle_to_matrix(np.array([0.3, 0.1, 0.0])), np.array([0.1, 0.0, 1.0]))
    h = HandTrack.empty(T)
    h.valid[:] = True
    h.cam_T_wrist[:] = invert_se3(W) @ world_T_wrist  # what the camera sees each frame
    motion, ok = wrist_motion(h, W)
    assert ok.tolist() == [True] * (T - 1) + [False]
    np.testing.assert_allclose(motion, 0, atol=1e-6)


def test_hand_moving_in_world_is_expressed_in_current_camera():
    T = 3
    W = _moving_camera(T)
    h = HandTrack.empty(T)
    h.valid[:] = [True, True, False]
    world_p = np.array([[0.0, 0.0, 1.0], [0.05, 0.0, 1.0], [0.1, 0, 1]])
    for t in range(T):
        h.cam_T_wrist[t] = invert_se3(W[t]) @ make_se3(np.eye(3), world_p[t])
    motion, ok = wrist_motion(h, W)
    expected = W[0, :3, :3].T @ (world_p[1] - world_p[0])  # world displacement rotated into camera 0
    np.testing.assert_allclose(motion[0], expected, atol=1e-6)
    assert ok.tolist() == [True, False, False] and (motion[1:] == 0).all()


def test_wrist_state_and_rotations():
    h = HandTrack.empty(2)
    R = axis_angle_to_matrix(np.array([0.2, -0.4, 0.9]))
    h.valid[1] = True
    h.cam_T_wrist[1] = make_se3(R, np.array([1.0, 2.0, 3.0]))
    s = wrist_state(h)
    assert (s[0] == 0).all()
    np.testing.assert_allclose(s[1, :4], [1, 1, 2, 3])
    np.testing.assert_allclose(s[1, 4:], np.concatenate([R[:, 0], R[:, 1]]), atol=1e-6)
    np.testing.assert_allclose(rot6d(np.eye(3)), [1, 0, 0, 0, 1, 0])
    q = quat_xyzw(R)
    assert abs(np.linalg.norm(q) - 1) < 1e-9
    angle = 2 * np.arccos(abs(q[3]))
    assert abs(angle - np.linalg.norm([0.2, -0.4, 0.9])) < 1e-9
