from pathlib import Path

import numpy as np

from y2r.artifacts import TracksArtifact, VideoMeta
from y2r.config import Config
from y2r.stages.base import Job, WorkerContext
from y2r.stages.tracks.none import NoTracks, empty_tracks


def test_no_tracks_has_zero_points_with_the_schema_shapes(tmp_path):
    meta = VideoMeta(video_id="v", source_path="v.mp4", source_sha256="", source_fps=10.0, source_width=64,
                     source_height=48, source_num_frames=7, codec="h264", fps=10.0, width=64, height=48,
                     num_frames=7)
    job = Job(video_id="v", stage="tracks", meta=meta, source_path=Path("v.mp4"), inputs={}, out_dir=tmp_path,
              log_path=tmp_path / "log")
    art = NoTracks(Config(), WorkerContext()).process(job)
    assert art.xyz_world.shape == (7, 0, 3) and art.uv.shape == (7, 0, 2)
    assert art.visible.shape == (7, 0) and art.visible.dtype == bool and art.query.shape == (0, 3)
    assert art.source == "none"
    art.save(tmp_path)
    back = TracksArtifact.load(tmp_path)
    assert back.xyz_world.shape == (7, 0, 3) and back.query.shape == (0, 3)


def test_empty_tracks_dtypes():
    a = empty_tracks(3)
    assert a.xyz_world.dtype == np.float32 and a.uv.dtype == np.float32 and a.query.dtype == np.float32
