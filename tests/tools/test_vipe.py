"""ViPE output format: reading ViPE v1.1.0's own files, writing the same format, mapping into y2r."""

from __future__ import annotations

import io
import pickle
import zipfile

import numpy as np
import OpenEXR
import pytest

from tools.stage_inputs import meta_for
from y2r.errors import InputError
from y2r.tools import vipe

NAME = "room_orbit"


@pytest.fixture(scope="module")
def gt(shared):
    with np.load(shared / "fixtures" / "room_orbit_gt.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def fixture_result(shared):
    return vipe.load_result(shared / "fixtures" / "vipe_v1.1.0", NAME)


def test_fixture_written_by_vipe_reads_back_to_ground_truth(fixture_result, gt, shared):
    r = fixture_result
    assert vipe.discover(shared / "fixtures" / "vipe_v1.1.0") == [NAME]
    assert r.num_frames == 32 and r.size == (240, 320) and r.camera_types == ["PINHOLE"] * 32
    np.testing.assert_allclose(r.world_T_cam, gt["c2w"], rtol=0, atol=1e-6)
    assert np.array_equal(r.world_T_cam[0], np.eye(4))
    K = vipe.intrinsics_matrix(r.intrinsics)
    assert np.array_equal(K, np.broadcast_to(gt["K"].astype(np.float32), (32, 3, 3)))  # exact at float32
    rel = np.abs(r.depth - gt["depth"]) / gt["depth"]
    assert rel.max() <= 2.0 ** -11
    assert np.array_equal(r.depth, gt["depth"].astype(np.float16).astype(np.float32))  # float16, bit for bit
    assert np.array_equal(r.masks == 1, gt["moving_mask"]) and r.masks.max() == 1
    assert r.phrases == {0: "background", 1: "cube"}
    assert r.info == {"ba_residual": 0.0}


def test_fixture_to_camera_artifact_is_exact_at_the_same_resolution(fixture_result, gt, tmp_path):
    meta = meta_for(NAME, 32, 240, 320, fps=30.0, source=f"/data/{NAME}.mp4")
    art = vipe.to_camera_artifact(fixture_result, meta, np.arange(32), tmp_path, vipe_saw="source",
                                  source="vipe-results")
    np.testing.assert_allclose(art.world_T_cam, gt["c2w"], atol=1e-6)
    assert np.array_equal(art.K, np.broadcast_to(gt["K"].astype(np.float32), (32, 3, 3)))
    assert art.depth_valid.all() and art.metric_scale
    assert (np.abs(art.depth - gt["depth"]) / gt["depth"]).max() <= 2.0 ** -11


def test_depth_zip_writer_matches_vipe_format(tmp_path, shared):
    depth = np.random.default_rng(1).uniform(0.2, 30.0, (3, 7, 9)).astype(np.float32)
    path = tmp_path / "depth" / "x.zip"
    vipe.write_depth_zip(path, depth)
    with zipfile.ZipFile(path) as z:
        assert z.namelist() == ["00000.exr", "00001.exr", "00002.exr"]
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in z.infolist())
        f = OpenEXR.File(io.BytesIO(z.read("00001.exr")), separate_channels=True)
    part = f.parts[0]
    assert list(part.channels) == ["Z"] and part.channels["Z"].pixels.dtype == np.float16
    assert part.header["compression"] == OpenEXR.ZIP_COMPRESSION
    inds, back = vipe.read_depth_zip(path)
    assert np.array_equal(inds, [0, 1, 2])
    assert np.array_equal(back, depth.astype(np.float16).astype(np.float32))
    # Same header fields as the files ViPE's own writer produced.
    with zipfile.ZipFile(shared / "fixtures" / "vipe_v1.1.0" / "depth" / f"{NAME}.zip") as z:
        ref = OpenEXR.File(io.BytesIO(z.read("00000.exr")), separate_channels=True).parts[0]
    assert ref.header["compression"] == part.header["compression"]
    assert ref.channels["Z"].pixels.dtype == part.channels["Z"].pixels.dtype


def test_full_layout_round_trip(tmp_path):
    T, H, W = 4, 6, 8
    rng = np.random.default_rng(2)
    poses = np.stack([np.eye(4)] * T)
    poses[:, :3, 3] = rng.normal(size=(T, 3))
    params = np.tile([100.0, 101.0, 4.0, 3.0], (T, 1))
    masks = rng.integers(0, 3, (T, H, W)).astype(np.uint8)
    p = vipe.ViPEPaths(tmp_path, "clip")
    vipe.write_poses(p.pose, poses)
    vipe.write_intrinsics(p.intrinsics, p.camera_type, params)
    vipe.write_depth_zip(p.depth, rng.uniform(1, 2, (T, H, W)))
    vipe.write_mask_zip(p.mask, masks, {0: "background", 1: "person", 2: "sky"}, p.mask_phrases)
    vipe.write_info(p.info)
    r = vipe.load_result(tmp_path, "clip")
    assert vipe.discover(tmp_path) == ["clip"]
    np.testing.assert_allclose(r.world_T_cam, poses, atol=1e-6)
    np.testing.assert_allclose(r.intrinsics, params)
    assert np.array_equal(r.masks, masks) and r.phrases == {0: "background", 1: "person", 2: "sky"}


def test_corrupt_exr_frame_reads_as_nan_like_vipe(tmp_path):
    path = tmp_path / "d.zip"
    vipe.write_depth_zip(path, np.ones((2, 4, 5), np.float32))
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("00002.exr", b"not an exr")
    inds, d = vipe.read_depth_zip(path)
    assert np.array_equal(inds, [0, 1, 2]) and np.all(d[:2] == 1) and np.isnan(d[2]).all()


def test_info_pickle_that_would_run_code_is_refused(tmp_path):
    path = tmp_path / "x_info.pkl"
    path.write_bytes(pickle.dumps({"ba_residual": 0.5, "evil": np.float64(1.0)}))  # needs a global: numpy
    with pytest.raises(InputError, match="refusing"):
        vipe.read_info(path)
    vipe.write_info(path, 0.25)
    assert vipe.read_info(path) == {"ba_residual": 0.25}


def test_pixel_map_from_vipe_resolution_to_stored_crop():
    # ViPE ran on a 2x downscaled source (640x360 of 1280x720); y2r stored a centre crop 960x720 -> 512x384.
    meta = meta_for("v", 10, 384, 512, source_hw=(720, 1280), crop=(160.0, 0.0, 960.0, 720.0))
    a, b = vipe.pixel_map_to_stored((360, 640), meta, vipe_saw="source")
    # A ViPE pixel centre u maps to source pixel (u + 0.5) * 2 - 0.5, then into the crop.
    u_vipe = np.array([0.0, 100.0, 639.0])
    u_src = (u_vipe + 0.5) * 2 - 0.5
    u_st = (u_src - 160 + 0.5) * (512 / 960) - 0.5
    np.testing.assert_allclose(a[0] * u_vipe + b[0], u_st)
    K = vipe.intrinsics_matrix(np.array([400.0, 400.0, 320.0, 180.0]))
    K_st = vipe.K_to_stored(K, a, b)
    X = np.array([0.3, -0.2, 2.0])
    p_vipe = K @ X
    p_st = K_st @ X
    np.testing.assert_allclose(p_st[0] / p_st[2], a[0] * p_vipe[0] / p_vipe[2] + b[0])
    np.testing.assert_allclose(p_st[1] / p_st[2], a[1] * p_vipe[1] / p_vipe[2] + b[1])
    # The same map agrees with VideoMeta's own source -> stored intrinsics at source resolution.
    a1, b1 = vipe.pixel_map_to_stored((720, 1280), meta, vipe_saw="source")
    np.testing.assert_allclose(vipe.K_to_stored(K, a1, b1), meta.source_to_stored_K(K))


def test_depth_resampling_is_nearest_and_zero_outside():
    d = np.arange(12, dtype=np.float32).reshape(1, 3, 4) + 1
    a, b = np.array([2.0, 2.0]), np.array([0.5, 0.5])  # stored = 2 * vipe + 0.5 (a 2x upsample)
    out = vipe.resample_to_stored(d, a, b, (6, 8))
    assert set(np.unique(out)) <= set(np.unique(d))  # no interpolated values
    assert out[0, 0, 0] == d[0, 0, 0] and out[0, 5, 7] == d[0, 2, 3]


def _result(n: int, fps: float | None) -> vipe.ViPEResult:
    return vipe.ViPEResult(name="x", world_T_cam=np.tile(np.eye(4), (n, 1, 1)),
                           intrinsics=np.tile([100.0, 100.0, 32.0, 24.0], (n, 1)), camera_types=["PINHOLE"] * n,
                           size=(48, 64), fps=fps)


def test_frame_matching_identity_skip_and_truncation(tmp_path):
    meta = meta_for("x", 10, 48, 64, fps=10.0, source_fps=30.0, source_frames=30)
    idx = np.arange(0, 30, 3)
    assert np.array_equal(vipe.match_frames(_result(10, 10.0), meta, idx, tmp_path), np.arange(10))
    assert np.array_equal(vipe.match_frames(_result(30, 30.0), meta, idx, tmp_path), idx)
    assert np.array_equal(vipe.match_frames(_result(15, 15.0), meta, idx[::2], tmp_path), idx[::2] // 2)
    with pytest.raises(InputError, match="one source frame in 2"):
        vipe.match_frames(_result(15, 15.0), meta, idx, tmp_path)
    with pytest.raises(InputError, match="stops at 1000 frames"):
        vipe.match_frames(_result(15, 30.0), meta, np.arange(0, 60, 3), tmp_path)


def test_non_pinhole_vipe_output_is_refused(tmp_path):
    r = _result(3, None)
    r.camera_types = ["MEI"] * 3
    with pytest.raises(InputError, match="MEI is not pinhole"):
        vipe.to_camera_artifact(r, meta_for("x", 3, 48, 64), np.arange(3), tmp_path, vipe_saw="stored", source="t")


def test_pose_only_output_gives_invalid_depth(tmp_path):
    r = _result(3, None)
    r.size = None
    art = vipe.to_camera_artifact(r, meta_for("x", 3, 48, 64), np.arange(3), tmp_path, vipe_saw="stored", source="t")
    assert not art.depth_valid.any() and "depth" in art.quality and art.quality["vipe_size_assumed"]


def test_lossless_video_is_bit_exact_through_opencv(tmp_path):
    import cv2

    frames = np.random.default_rng(3).integers(0, 256, (5, 48, 64, 3), dtype=np.uint8)
    path = vipe.write_lossless_video(tmp_path / "x.mp4", frames, 10.0)
    cap = cv2.VideoCapture(str(path))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    got = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        got.append(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
    assert np.array_equal(np.stack(got), frames)
