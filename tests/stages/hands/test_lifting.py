import numpy as np
import pytest

from y2r.geometry import project
from y2r.stages.hands.lifting import lift_hand, solve_hand_pose, wrist_frame

from .synthetic_hand import K, posed, right_hand


@pytest.mark.parametrize("rotvec,t", [([0, 0, 0], [0.0, 0.0, 0.5]), ([0.4, -0.3, 0.6], [0.12, -0.05, 0.8]),
                                      ([-0.5, 0.8, -1.2], [-0.2, 0.1, 0.35])])
def test_pnp_recovers_metric_position_from_2d_and_world_landmarks(rotvec, t):
    world = right_hand()
    joints = posed(world, rotvec, t)
    kp = project(K, joints)
    R, tt, err = solve_hand_pose(kp, world, K)
    assert err < 1e-3
    np.testing.assert_allclose(world @ R.T + tt, joints, atol=1e-4)


def test_pnp_with_pixel_noise_stays_within_a_centimetre_laterally():
    rng = np.random.default_rng(1)
    world = right_hand()
    joints = posed(world, [0.2, 0.1, 0.3], [0.05, 0.02, 0.6])
    kp = project(K, joints) + rng.normal(scale=1.0, size=(21, 2))
    lifted = lift_hand(kp, world, K, is_right=True, presence=0.95)
    err = lifted.joints_cam - joints
    assert np.abs(err[:, :2]).mean() < 0.01
    assert abs(np.median(lifted.joints_cam[:, 2]) - np.median(joints[:, 2])) < 0.03  # 1 px noise at 0.6 m
    assert 0.5 < lifted.score <= 0.95 and lifted.reproj_px < 2.0 and not lifted.depth_anchored


def test_metric_depth_anchors_the_hand_when_it_agrees_and_is_ignored_when_not():
    # The detector's hand is 20 % too big: PnP puts it 20 % too far; the metric depth map corrects it.
    world = right_hand()
    joints = posed(world, [0.1, 0.2, 0.0], [0.0, 0.0, 0.5])
    kp = project(K, joints)
    depth = np.full((480, 640), 0.5, np.float32)
    valid = np.ones((480, 640), bool)
    lifted = lift_hand(kp, world * 1.2, K, is_right=True, depth=depth, depth_valid=valid, metric=True)
    assert lifted.depth_anchored
    assert abs(np.median(lifted.joints_cam[:, 2]) - 0.5) < 0.01
    np.testing.assert_allclose(project(K, lifted.joints_cam), kp, atol=0.5)  # projections unchanged
    # Depth of the table 1 m behind the hand: rejected, PnP kept.
    far = lift_hand(kp, world * 1.2, K, is_right=True, depth=depth * 3, depth_valid=valid, metric=True)
    assert not far.depth_anchored and abs(np.median(far.joints_cam[:, 2]) - 0.6) < 0.02
    # Non-metric depth is never used.
    assert not lift_hand(kp, world * 1.2, K, is_right=True, depth=depth, depth_valid=valid, metric=False).depth_anchored


def test_wrist_frame_axes_and_mirror_consistency():
    j = posed(right_hand(), [0, 0, 0], [0, 0, 0.5])
    T = wrist_frame(j, is_right=True)
    R = T[:3, :3]
    np.testing.assert_allclose(R.T @ R, np.eye(3), atol=1e-9)
    assert np.linalg.det(R) == pytest.approx(1.0)
    np.testing.assert_allclose(T[:3, 3], j[0])
    x = (j[5] - j[0]) / np.linalg.norm(j[5] - j[0])
    np.testing.assert_allclose(R[:, 0], x, atol=1e-9)
    # This right hand faces the camera palm-on, so the out-of-palm normal points at the camera (-z).
    assert R[2, 2] < -0.9
    # A mirrored (left) hand facing the camera the same way gets the same palm-normal direction.
    mirror = j * np.array([-1, 1, 1]) + np.array([0, 0, 0])
    Tl = wrist_frame(mirror, is_right=False)
    assert Tl[2, 2] < -0.9 and np.linalg.det(Tl[:3, :3]) == pytest.approx(1.0)
