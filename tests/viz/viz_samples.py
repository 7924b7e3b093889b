"""Episodes for the visualisation tests: the room_orbit fixture (exact geometry) plus sample hands."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from shared_data import ROOM_ORBIT_GT

from y2r.artifacts import CameraArtifact, TracksArtifact
from y2r.config import Config
from y2r.dataset.episode_writer import write_episode
from y2r.dataset.sample_artifacts import sample_artifacts

FIXTURE = ROOM_ORBIT_GT


def room_orbit_episode(path: Path, video_id: str = "room_orbit") -> Path:
    gt = np.load(FIXTURE)
    T, H, W = gt["depth"].shape
    ingest, _, _, hands = sample_artifacts(T=T, W=W, H=H, N=4, video_id=video_id, fps=float(gt["fps"]))
    ingest.frames = gt["rgb"]
    camera = CameraArtifact(
        K=np.repeat(gt["K"][None], T, 0).astype(np.float32),
        world_T_cam=gt["c2w"].astype(np.float32),
        depth=gt["depth"],
        depth_valid=gt["depth"] > 0,
        metric_scale=True,
        source="ground_truth",
    )
    tracks = TracksArtifact(
        xyz_world=gt["track_xyz_world"].astype(np.float32),
        uv=gt["track_uv"].astype(np.float32),
        visible=gt["track_visible"],
        query=np.concatenate([np.zeros((64, 1)), gt["track_uv"][0]], 1).astype(np.float32),
        source="ground_truth",
    )
    write_episode(
        path,
        ingest,
        camera,
        tracks,
        hands,
        config_yaml=Config().to_yaml(),
        backends={"camera": {"backend": "ground_truth"}},
    )
    return path
