import numpy as np

from y2r.geometry import make_se3
from y2r.stages.tracks.camera_geometry import CameraModel


def _cam(T=3, H=40, W=60, depth=2.0):
    K = np.array([[50.0, 0, 29.5], [0, 50.0, 19.5], [0, 0, 1]])
    poses = np.stack([make_se3(np.eye(3), [0.1 * t, 0, 0]) for t in range(T)])
    d = np.full((T, H, W), depth, np.float32)
    return CameraModel(K=np.tile(K, (T, 1, 1)), world_T_cam=poses, depth=d, depth_valid=d > 0)


def test_depth_lookups():
    cam = _cam()
    cam.depth_valid = cam.depth_valid.copy()
    cam.depth_valid[1, :, :10] = False
    z = cam.depth_at(1, np.array([[5.0, 5.0], [30.0, 20.0], [-3.0, 5.0], [np.nan, 1.0]]))
    assert np.isinf(z[0]) and z[1] == 2.0 and np.isinf(z[2]) and np.isinf(z[3])
    assert np.isnan(cam.observed_depth(1, np.array([[5.0, 5.0]])))[0]


def test_projection_lift_roundtrip_and_translation_parallax():
    cam = _cam()
    X = cam.lift(0, np.array([[29.5, 19.5]]), np.array([2.0]))
    assert np.allclose(X, [[0, 0, 2.0]])
    uv, z = cam.project(2, X)  # camera moved 0.2 m to the right: the point moves 5 px left
    assert np.allclose(uv, [[24.5, 19.5]]) and np.allclose(z, 2.0)
    cam.poses_usable = False
    assert np.isnan(cam.project(2, X)[0]).all()


def test_local_affine_of_a_fronto_parallel_plane_is_a_pure_scale():
    cam = _cam()
    # the camera moves towards the plane: 2 m -> 1 m, everything doubles in size
    cam.world_T_cam[2] = make_se3(np.eye(3), [0, 0, 1.0])
    cam.cam_T_world = np.linalg.inv(cam.world_T_cam)
    offsets = np.array([[dx, dy] for dy in (-3, 0, 3) for dx in (-3, 0, 3)], float)
    uv = np.array([29.5, 19.5]) + offsets
    patch = cam.lift(0, uv, np.full(9, 2.0))[None]
    A = cam.local_affine(2, patch, offsets, np.array([[29.5, 19.5]]))
    assert np.allclose(A[0], 2 * np.eye(2), atol=1e-9)


def test_an_absent_camera_knows_nothing():
    cam = CameraModel.absent(4, 30, 40)
    assert np.isinf(cam.depth_at(2, np.array([[10.0, 10.0]]))).all()
    assert np.isnan(cam.observed_depth(3, np.array([[10.0, 10.0]]))).all()
    assert np.isnan(cam.project(1, np.zeros((1, 3)))[0]).all()
    assert np.isnan(cam.anchor_depth(np.array([np.nan]))).all()


def test_a_rotating_camera_places_anchors_at_a_nominal_depth():
    cam = _cam()
    cam.rotation_only_depth = 1.0
    assert cam.anchor_depth(np.array([np.nan, 3.0])).tolist() == [1.0, 3.0]
