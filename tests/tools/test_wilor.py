"""WiLoR conventions: un-mirroring left hands (joints and MANO) and re-solving the metric translation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from y2r.geometry import matrix_to_axis_angle
from y2r.tools import wilor

K = np.array([[520.0, 0.0, 318.0], [0.0, 515.0, 241.0], [0.0, 0.0, 1.0]])


def hand_joints(seed: int = 0) -> np.ndarray:
    """21 joints of a plausible hand (metres, around the MANO origin)."""
    rng = np.random.default_rng(seed)
    base = np.array([[0.0, 0.0, 0.0]] + [[0.02 * (f - 2), -0.03 - 0.025 * j, 0.005 * j] for f in range(5)
                                         for j in range(4)])
    return base + rng.normal(scale=0.002, size=base.shape)


def test_focal_of_wilors_camera():
    assert wilor.wilor_focal(640, 480) == pytest.approx(5000 / 256 * 640)
    assert wilor.wilor_focal(480, 640) == pytest.approx(12500.0)


def test_left_hand_mano_unmirroring_negates_y_and_z_of_axis_angle():
    R = Rotation.random(16, random_state=1).as_matrix()
    M = np.diag([-1.0, 1.0, 1.0])
    left = wilor.mano_axis_angle(R, False)
    np.testing.assert_allclose(left, matrix_to_axis_angle(M @ R @ M), atol=1e-9)
    aa = matrix_to_axis_angle(R)
    np.testing.assert_allclose(left, aa * [1, -1, -1], atol=1e-12)
    np.testing.assert_allclose(wilor.mano_axis_angle(R, True), aa, atol=1e-12)
    # Per-row sides.
    sides = np.array([True, False] * 8)
    mixed = wilor.mano_axis_angle(R[:, None], sides)[:, 0]
    np.testing.assert_allclose(mixed[sides], aa[sides])
    np.testing.assert_allclose(mixed[~sides], aa[~sides] * [1, -1, -1])
    # Mirroring twice is the identity, and the rotation version agrees with the axis-angle one.
    np.testing.assert_allclose(wilor.unmirror_rotation(wilor.unmirror_rotation(R[0], False), False), R[0], atol=1e-12)
    np.testing.assert_allclose(matrix_to_axis_angle(wilor.unmirror_rotation(R[0], False)), left[0], atol=1e-9)


def test_unmirror_points():
    P = np.random.default_rng(2).normal(size=(2, 21, 3))
    out = wilor.unmirror_points(P, np.array([True, False]))
    assert np.array_equal(out[0], P[0])
    assert np.array_equal(out[1], P[1] * [-1, 1, 1])


def test_translation_is_exact_from_perfect_keypoints():
    J = hand_joints()
    t = np.array([0.08, -0.05, 0.55])
    uvw = (K @ (J + t).T).T
    kp = uvw[:, :2] / uvw[:, 2:3]
    fit = wilor.solve_translation(J, kp, K)
    np.testing.assert_allclose(fit.t, t, atol=1e-9)
    assert fit.reproj_rms_px < 1e-6 and not fit.used_depth


def test_depth_anchors_the_hand_and_rejects_occluders():
    J = hand_joints(3)
    t = np.array([-0.1, 0.04, 0.7])
    uvw = (K @ (J + t).T).T
    rng = np.random.default_rng(4)
    kp = uvw[:, :2] / uvw[:, 2:3] + rng.normal(scale=1.5, size=(21, 2))  # 1.5 px keypoint noise
    surface = (J + t)[:, 2] - wilor.JOINT_BEHIND_SURFACE_M
    image_only = wilor.solve_translation(J, kp, K)
    surface[[3, 7, 11]] = 0.35  # an object held in front of three joints
    surface[[19]] = np.nan  # no depth there
    fit = wilor.solve_translation(J, kp, K, surface)
    assert fit.used_depth and fit.depth_inliers == 17
    assert abs(fit.t[2] - t[2]) < 2e-3 < abs(image_only.t[2] - t[2])  # depth beats size-from-image under noise
    np.testing.assert_allclose(fit.t, t, atol=4e-3)


def test_convert_hand_left_from_wilor_conventions():
    """A left hand as WiLoR reports it (mirrored) comes back as the true left hand."""
    J_true = hand_joints(5)
    R_true = Rotation.from_rotvec([0.3, -0.8, 0.2]).as_matrix()
    pose_true = Rotation.random(15, random_state=6).as_matrix()
    t = np.array([0.02, 0.03, 0.5])
    M = np.diag([-1.0, 1.0, 1.0])
    uvw = (K @ (J_true + t).T).T
    out = wilor.WiLoROutput(
        frame=np.array([4]), box=np.array([[0, 0, 10, 10.0]]), score=np.array([0.9]), is_right=np.array([False]),
        global_orient=(M @ R_true @ M)[None], hand_pose=np.einsum("ij,kjl,lm->kim", M, pose_true, M)[None],
        betas=np.zeros((1, 10)), keypoints_3d=(J_true * [-1, 1, 1])[None], cam_t_full=np.zeros((1, 3)),
        keypoints_2d=(uvw[:, :2] / uvw[:, 2:3])[None], focal_length=12500.0, image_size=(640, 480))
    h = wilor.convert_hand(out, 0, K)
    assert h.side == "left" and h.frame == 4
    np.testing.assert_allclose(h.joints_cam, J_true + t, atol=1e-9)
    np.testing.assert_allclose(h.mano["global_orient"], matrix_to_axis_angle(R_true), atol=1e-9)
    np.testing.assert_allclose(h.mano["hand_pose"], matrix_to_axis_angle(pose_true), atol=1e-9)


def test_background_majority_does_not_pull_the_hand_away():
    """Most keypoints of a small hand fall just outside its silhouette: the hand's own samples win."""
    J = hand_joints(7)
    t = np.array([0.12, 0.0, 0.6])
    uvw = (K @ (J + t).T).T
    kp = uvw[:, :2] / uvw[:, 2:3]
    surface = (J + t)[:, 2] - wilor.JOINT_BEHIND_SURFACE_M
    surface[:14] = 1.5  # background wall
    fit = wilor.solve_translation(J, kp, K, surface)
    assert fit.used_depth and fit.depth_inliers == 7
    np.testing.assert_allclose(fit.t, t, atol=1e-6)
    surface[14:] = 1.5  # only background: not plausible, the image-only solution stands
    fit = wilor.solve_translation(J, kp, K, surface)
    assert not fit.used_depth
    np.testing.assert_allclose(fit.t, t, atol=1e-6)
