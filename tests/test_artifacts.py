import json

import numpy as np

from y2r.artifacts import (
    MARKER,
    ArtifactStore,
    CameraArtifact,
    HandsArtifact,
    HandTrack,
    IngestArtifact,
    TracksArtifact,
    VideoMeta,
)


def _meta(**kw):
    d = dict(video_id="v", source_path="/v.mp4", source_sha256="0" * 64, source_fps=30.0, source_width=640,
             source_height=480, source_num_frames=10, codec="h264", fps=10.0, width=64, height=48, num_frames=4,
             crop=(0.0, 0.0, 640.0, 480.0))
    d.update(kw)
    return VideoMeta(**d)


def test_commit_is_atomic_and_marker_last(tmp_path):
    store = ArtifactStore(tmp_path)
    tmp = store.new_tmp_dir("v", "tracks")
    (tmp / "tracks.npz").write_bytes(b"x")
    assert store.marker("v", "tracks") is None
    final = store.commit(tmp, "v", "tracks", {"config_hash": "abc"})
    assert not tmp.exists() and (final / "tracks.npz").exists()
    assert store.marker("v", "tracks")["config_hash"] == "abc"
    # re-commit replaces the old artifact entirely
    tmp2 = store.new_tmp_dir("v", "tracks")
    (tmp2 / "other.npz").write_bytes(b"y")
    store.commit(tmp2, "v", "tracks", {"config_hash": "def"})
    assert not (final / "tracks.npz").exists() and (final / "other.npz").exists()


def test_clean_stale_removes_tmp_and_unmarked(tmp_path):
    store = ArtifactStore(tmp_path)
    store.new_tmp_dir("v", "camera")  # killed mid-write
    half = store.stage_dir("v", "hands")
    half.mkdir(parents=True)
    (half / "hands.npz").write_bytes(b"partial")  # renamed but marker never written
    good = store.new_tmp_dir("v", "ingest")
    store.commit(good, "v", "ingest", {"config_hash": "h"})
    assert store.clean_stale() == 2
    assert sorted(p.name for p in store.video_dir("v").iterdir()) == ["ingest"]


def test_episode_commit_publishes_h5(tmp_path):
    store = ArtifactStore(tmp_path)
    tmp = store.new_tmp_dir("v", "episode")
    (tmp / "episode.h5").write_bytes(b"h5")
    store.commit(tmp, "v", "episode", {"config_hash": "h"})
    assert store.episode_path("v").read_bytes() == b"h5"
    assert json.loads((store.stage_dir("v", "episode") / MARKER).read_text())["episode_path"] == "episodes/v.h5"


def test_source_to_stored_K_with_centre_crop():
    # 640x480 source cropped to the centre 640x480 -> stored 64x48: K scales by 0.1 with pixel centres kept
    meta = _meta()
    K = np.array([[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]])
    Ks = meta.source_to_stored_K(K)
    assert np.allclose(Ks, [[50, 0, 31.5], [0, 50, 23.5], [0, 0, 1]])
    # a crop offset moves the principal point: source x0=80 -> stored cx shifts by -80 * sx
    meta2 = _meta(crop=(80.0, 0.0, 480.0, 480.0), width=48, height=48)
    Ks2 = meta2.source_to_stored_K(K)
    u_src = np.array([400.0, 100.0, 1.0])
    u_st = Ks2 @ np.linalg.inv(K) @ u_src
    sx = 48 / 480
    assert np.allclose(u_st[:2], [(400 - 80 + 0.5) * sx - 0.5, (100 + 0.5) * sx - 0.5])


def test_artifacts_round_trip(tmp_path):
    T, H, W, N = 4, 6, 8, 3
    rng = np.random.default_rng(0)
    ing = IngestArtifact(frames=rng.integers(0, 255, (T, H, W, 3), dtype=np.uint8), frame_index=np.arange(T) * 3,
                         timestamp=np.arange(T) / 10.0, meta=_meta(), quality={"truncated": False})
    d = tmp_path / "i"
    d.mkdir()
    ing.save(d)
    back = IngestArtifact.load(d)
    assert np.array_equal(back.frames, ing.frames) and back.meta == ing.meta and back.quality == {"truncated": False}

    valid = rng.random((T, H, W)) > 0.3
    cam = CameraArtifact(K=np.repeat(np.eye(3)[None], T, 0), world_T_cam=np.repeat(np.eye(4)[None], T, 0),
                         depth=rng.random((T, H, W)) + 1, depth_valid=valid, metric_scale=False, source="builtin",
                         quality={"degenerate": "pure_rotation"})
    d = tmp_path / "c"
    d.mkdir()
    cam.save(d)
    c2 = CameraArtifact.load(d)
    assert c2.quality["degenerate"] == "pure_rotation" and not c2.metric_scale
    assert np.all(c2.depth[~valid] == 0)
    assert np.allclose(c2.depth[valid], cam.depth[valid], rtol=2 ** -10)

    tr = TracksArtifact(xyz_world=np.full((T, N, 3), np.nan, np.float32), uv=np.zeros((T, N, 2)),
                        visible=np.zeros((T, N), bool), query=np.zeros((N, 3)))
    d = tmp_path / "t"
    d.mkdir()
    tr.save(d)
    assert TracksArtifact.load(d).xyz_world.shape == (T, N, 3)

    left = HandTrack.empty(T)
    right = HandTrack.empty(T)
    right.valid[1] = True
    right.joints_cam[1] = 0.5
    right.mano = {"betas": np.ones((T, 10))}
    hands = HandsArtifact(left=left, right=right)
    d = tmp_path / "h"
    d.mkdir()
    hands.save(d)
    h2 = HandsArtifact.load(d)
    assert h2.right.valid.tolist() == [False, True, False, False] and h2.left.mano is None
    assert h2.right.mano["betas"].shape == (T, 10)


def test_write_atomic_replaces_whole_or_not_at_all(tmp_path, monkeypatch):
    import builtins

    from y2r import artifacts
    from y2r.artifacts import file_fingerprint, write_atomic

    p = tmp_path / "f.txt"
    assert file_fingerprint(p) is None
    write_atomic(p, "old")
    fp = file_fingerprint(p)
    assert p.read_text() == "old" and fp[0] == 3

    class HalfWritten:  # a write that fails part-way (disk full, interrupt)
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[:2])
            raise OSError("No space left on device")

    monkeypatch.setattr(artifacts, "open", lambda path, mode: HalfWritten(builtins.open(path, mode)), raising=False)
    try:
        write_atomic(p, b"new contents", durable=False)
        raise AssertionError("the failing write was not reported")
    except OSError as e:
        assert "No space" in str(e)
    monkeypatch.undo()
    assert p.read_text() == "old" and file_fingerprint(p) == fp  # untouched
    assert [q.name for q in tmp_path.iterdir()] == ["f.txt"]  # no temporary left behind
    write_atomic(p, b"new")
    assert p.read_bytes() == b"new"
