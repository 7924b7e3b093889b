"""The episode stage: loads the four upstream artifact folders, writes episode.h5, records provenance."""

from __future__ import annotations

import json

import h5py
import numpy as np

from y2r.artifacts import MARKER, ArtifactStore, file_fingerprint, write_json_atomic
from y2r.config import Config
from y2r.dataset.sample_artifacts import sample_artifacts
from y2r.dataset.stats import EPISODE_STATS_FILE, StatsSet
from y2r.dataset.validate import validate_episode
from y2r.stages.base import Job, WorkerContext, backend_class


def test_episode_stage_end_to_end(tmp_path):
    store = ArtifactStore(tmp_path / "OUT")
    arts = dict(
        zip(("ingest", "camera", "tracks", "hands"), sample_artifacts(T=7, video_id="vid"), strict=True)
    )
    inputs = {}
    for stage, art in arts.items():
        d = store.stage_dir("vid", stage)
        d.mkdir(parents=True)
        art.save(d)
        inputs[stage] = d
    # camera and hands have completion markers (as the pipeline writes them); the others do not
    write_json_atomic(
        inputs["camera"] / MARKER,
        {
            "backend": "vipe",
            "backend_version": "1.1.0",
            "describe": {"backend": "vipe", "pipeline": "default"},
        },
    )
    write_json_atomic(inputs["hands"] / MARKER, {"backend": "wilor", "backend_version": "2"})
    config = Config()
    config.episode.compression = "lzf"
    cls = backend_class("episode", "builtin")
    backend = cls(config, WorkerContext())
    out = store.new_tmp_dir("vid", "episode")
    seen = []
    job = Job(
        video_id="vid",
        stage="episode",
        meta=arts["ingest"].meta,
        source_path=tmp_path / "vid.mp4",
        inputs=inputs,
        out_dir=out,
        log_path=tmp_path / "log.txt",
        progress=lambda d, t: seen.append((d, t)),
    )
    art = backend.process(job)
    assert art.path == out / "episode.h5" and art.path.exists()
    assert art.summary["num_frames"] == 7 and art.summary["parts"][-1] == "hands"
    assert seen[-1] == (14, 14)  # rgb and depth frames
    with h5py.File(art.path) as f:
        backends = json.loads(f.attrs["backends"])
        assert f["rgb"].compression == "lzf"
    assert backends["camera"] == {"backend": "vipe", "version": "1.1.0", "pipeline": "default"}
    assert backends["hands"] == {"backend": "wilor", "version": "2"}
    assert backends["tracks"] == {"backend": "sample"}  # from the artifact's source
    assert backends["ingest"] == {"backend": "builtin"}
    assert backends["episode"] == {"backend": "builtin", "version": "1"}
    assert validate_episode(art.path) == []

    # the store publishes the file as OUT/episodes/<id>.h5
    art.save(out)
    store.commit(out, "vid", "episode", {"backend": "builtin"})
    published = store.episode_path("vid")
    assert published.exists() and validate_episode(published) == []
    with h5py.File(published) as f:
        np.testing.assert_array_equal(f["rgb"][()], arts["ingest"].frames)
    # its statistics were computed by the stage, for the very file that was published
    saved, held = StatsSet.load(store.stage_dir("vid", "episode") / EPISODE_STATS_FILE)
    assert held == {"episode": file_fingerprint(published)}
    assert saved.episodes == 1 and saved.frames == 7
    assert np.all(saved.stats["camera/K"].count == 7)
