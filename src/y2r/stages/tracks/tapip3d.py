"""Track backends built on TAPIP3D: run it in its own environment (``tapip3d``) or import its result
files (``tapip3d-results``).

``tapip3d`` gives TAPIP3D what y2r's camera stage computed -- frames, metric depth (invalid -> 0),
K at the depth resolution, ``cam_T_world`` extrinsics -- and world-coordinate queries: the query
grid (``tracks.grid_size``) on ``tracks.query_frame``, lifted with that frame's depth, K and pose.
TAPIP3D keeps every frame's features and point cloud on the GPU, so long videos are cut into
windows of ``tracks.tapip3d.window_frames`` sharing ``window_overlap`` frames:

- From the query frame, one chain of windows runs forward to the end and one runs backward (on the
  time-reversed frames) to frame 0; each window's queries sit on its first frame, so TAPIP3D makes a
  single pass (a query at t > 0 would trigger its second, backward pass over the whole window).
- Window k+1 starts inside window k; each point is re-queried there at the position window k gave
  it on that frame. A point that window k never saw in the frames it shares with window k+1 is
  lost: it keeps window k's values up to window k's last frame and is NaN / invisible after.
- In the shared frames the two windows' positions are blended with a linear ramp (window k's
  weight falls from 1 to 0), visibility switches from window k to k+1 half way.

Results come back in y2r's world (the world of the extrinsics); ``uv`` is the projection with the
camera stage's K and pose. ``tapip3d-results`` reads ``<stem>.result.npz`` made elsewhere and maps
it the same way, through the extrinsics stored in the file.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from y2r.artifacts import CameraArtifact, IngestArtifact, TracksArtifact
from y2r.errors import ConfigError, InputError, ToolError
from y2r.geometry import invert_se3, project, transform_points
from y2r.stages.base import Backend, Job, MemoryProfile, Resources, WorkerContext
from y2r.stages.tracks.lifting import lift_frame
from y2r.stages.tracks.queries import grid_queries
from y2r.tools.launch import (
    ToolSession,
    checkpoint_path,
    launch_spec,
    request_timeout,
    tool_root,
    worker_log_path,
)
from y2r.tools.tapip3d import read_result, write_input

# Where the extrinsics in a result file and the camera stage's poses agree this well, they describe
# the same world and the coordinates are taken as they are (no float32 round trip).
SAME_WORLD_TOL = 1e-5


# --------------------------------------------------------------------------------- windows
def plan_windows(length: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """Windows ``[start, end)`` covering ``0..length-1`` in order; consecutive windows share >= overlap frames.

    The last window is moved back to end on the last frame (full length, larger overlap) rather
    than left short: TAPIP3D needs at least 9 frames to track at all.
    """
    if window <= overlap:
        raise ValueError(f"window ({window}) must be longer than its overlap ({overlap})")
    if length <= window:
        return [(0, length)]
    starts = [0]
    while starts[-1] + window < length:
        nxt = starts[-1] + window - overlap
        if nxt + window > length:
            nxt = length - window
        starts.append(nxt)
    return [(s, s + window) for s in starts]


@dataclass
class ChainResult:
    """Tracks along one chain of frames (local time 0 = the query frame)."""

    coords: np.ndarray  # (L,N,3) float64, NaN where unknown
    visible: np.ndarray  # (L,N) bool
    windows: list[tuple[int, int]] = field(default_factory=list)
    lost: int = 0  # points dropped at a window boundary
    padded_frames: int = 0


def stitch_chain(length: int, start_xyz: np.ndarray, active: np.ndarray, window: int, overlap: int,
                 track_window) -> ChainResult:
    """Track points along ``length`` frames window by window.

    ``track_window(start, end, queries (n,3)) -> (coords (end-start, n, 3), visible (end-start, n), info)``
    tracks queries given at local frame ``start``. ``start_xyz`` (N,3) are the queries at frame 0,
    ``active`` (N,) which of them can be tracked at all.
    """
    N = len(start_xyz)
    C = np.full((length, N, 3), np.nan)
    V = np.zeros((length, N), bool)
    carry = np.asarray(active, bool) & np.isfinite(start_xyz).all(1)
    pos = np.asarray(start_xyz, np.float64).copy()
    out = ChainResult(C, V)
    prev_end = 0
    windows = plan_windows(length, window, overlap)
    for k, (s, e) in enumerate(windows):
        ids = np.flatnonzero(carry)
        if len(ids) == 0:
            break
        coords, vis, info = track_window(s, e, pos[ids])
        out.padded_frames += int(info.get("padded_frames", 0))
        out.windows.append((s, e))
        coords = np.asarray(coords, np.float64)
        vis = np.asarray(vis, bool)
        shared = max(prev_end - s, 0)
        if shared:
            # Linear ramp over the shared frames: weight of the new window (1..shared)/(shared+1).
            alpha = (np.arange(shared) + 1.0) / (shared + 1.0)
            old_c, old_v = C[s:s + shared, ids], V[s:s + shared, ids]
            C[s:s + shared, ids] = (1 - alpha[:, None, None]) * old_c + alpha[:, None, None] * coords[:shared]
            V[s:s + shared, ids] = np.where(alpha[:, None] < 0.5, old_v, vis[:shared])
        C[s + shared:e, ids] = coords[shared:]
        V[s + shared:e, ids] = vis[shared:]
        prev_end = e
        if k + 1 < len(windows):
            s_next = windows[k + 1][0]
            seen = np.zeros(N, bool)
            seen[ids] = vis[s_next - s:].any(0)
            out.lost += int((carry & ~seen).sum())
            carry &= seen
            pos = C[s_next].copy()  # window k's (blended) position on the next window's first frame
    return out


# --------------------------------------------------------------------------------- conversion
def project_tracks(K: np.ndarray, cam_T_world: np.ndarray, xyz_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame pixels (T,N,2) and camera depth (T,N) of world points (T,N,3)."""
    X_cam = transform_points(np.asarray(cam_T_world, np.float64), np.asarray(xyz_world, np.float64))
    return project(K, X_cam), X_cam[..., 2]


class TAPIP3DTracks(Backend):
    """3D point tracks from TAPIP3D, run by a persistent worker in TAPIP3D's environment."""

    stage = "tracks"
    name = "tapip3d"
    version = "1"
    # Unmeasured seeds (the memory model learns the real values): ViT-free model of a few hundred MB
    # plus CUDA context; per frame, at the default 543x724 inference size, ~6 MB of stride-4 features
    # (128 ch, bf16) and ~5 MB of point cloud, ~55 MB per megapixel-frame of a 512x384 video. Window
    # length bounds T, so window_frames is the knob that bounds memory.
    resources = Resources(cpus=2.0, gpu=True, gpu_memory=MemoryProfile(base_mb=3000.0, mb_per_mpix_frame=56.0),
                          host_memory=MemoryProfile(base_mb=3000.0, mb_per_mpix_frame=30.0), tool="tapip3d")

    def __init__(self, config, ctx: WorkerContext):
        super().__init__(config, ctx)
        env = config.tools.tapip3d
        self.opts = config.tracks.tapip3d
        if self.opts.window_overlap >= self.opts.window_frames:
            raise ConfigError("tracks.tapip3d.window_overlap must be smaller than tracks.tapip3d.window_frames")
        root = tool_root("tapip3d", env, required=True)
        ckpt = checkpoint_path("tapip3d", env, "tapip3d", "checkpoints/tapip3d_final.pth", root)
        spec = launch_spec("tapip3d", env, "tapip3d_shim.py", root_required=True)
        self.checkpoint = ckpt
        self.session = ToolSession(spec, worker_log_path(ctx, "tapip3d"), {
            "root": str(root), "checkpoint": str(ckpt), "device": "cuda",  # TAPIP3D is CUDA-only (pointops2)
            "resolution_factor": self.opts.resolution_factor})
        self.session.ensure()

    def describe(self) -> dict:
        return {"backend": self.name, "version": self.version, "tool": "tapip3d", "checkpoint": str(self.checkpoint),
                "inference_res": self.session.loaded.get("inference_res"),
                "window_frames": self.opts.window_frames, "window_overlap": self.opts.window_overlap}

    def process(self, job: Job) -> TracksArtifact:
        ingest: IngestArtifact = job.load("ingest")
        cam: CameraArtifact = job.load("camera")
        cfg = self.config.tracks
        frames = ingest.frames
        T, H, W = frames.shape[:3]
        q = cfg.query_frame
        if q >= T:
            raise InputError(job.source_path, f"tracks.query_frame {q} is past the video's last frame ({T - 1})")
        K = np.asarray(cam.K, np.float64)
        world_T_cam = np.asarray(cam.world_T_cam, np.float64)
        cam_T_world = invert_se3(world_T_cam)
        depth = np.asarray(cam.depth, np.float32)
        valid = np.asarray(cam.depth_valid, bool)
        # The grid keeps TAPIP3D's own margin (W/64 in get_points_on_a_grid).
        queries = grid_queries((H, W), cfg.grid_size, q, margin_px=max(H, W) / 64.0, depth_valid=valid[q])
        xyz0 = lift_frame(depth[q], valid[q], K[q], world_T_cam[q], queries[:, 1:])
        active = np.isfinite(xyz0).all(1)
        if not active.any():
            raise InputError(job.source_path, f"no valid depth under any query point on frame {q}: TAPIP3D tracks "
                                              "points lifted with the camera stage's depth")
        work = Path(job.out_dir) / ".tapip3d"
        work.mkdir(parents=True, exist_ok=True)
        timeout = request_timeout(self.config, self.opts.window_frames, self.opts.timeout_s_per_frame)
        done = [0]
        total_frames = T + q

        def chain_tracker(order: np.ndarray, tag: str):
            def track_window(s: int, e: int, pts: np.ndarray):
                idx = order[s:e]
                name = f"{tag}{s:06d}"
                inp = work / f"{name}.npz"
                write_input(inp, np.asarray(frames[idx]), np.where(valid[idx], depth[idx], 0), K[idx],
                            cam_T_world[idx], np.concatenate([np.zeros((len(pts), 1)), pts], axis=1))
                out = work / f"{name}.result.npz"

                def progress(d: int, t: int) -> None:
                    job.progress(min(done[0] + d, total_frames), total_frames)

                info = self.session.run({"input": str(inp), "output": str(out), "num_iters": self.opts.num_iters,
                                         "support_grid_size": self.opts.support_grid_size},
                                        timeout_s=timeout, log_path=job.log_path, progress=progress)
                res = read_result(out)
                if res.num_frames != e - s or res.num_points != len(pts):
                    raise ToolError(f"tapip3d: result {res.coords.shape[:2]} for a window of {e - s} frames and "
                                    f"{len(pts)} queries")
                done[0] += e - s
                inp.unlink(missing_ok=True)
                out.unlink(missing_ok=True)
                return res.coords, res.visibs, info
            return track_window

        try:
            xyz = np.full((T, len(queries), 3), np.nan)
            vis = np.zeros((T, len(queries)), bool)
            fwd_order = np.arange(q, T)
            fwd = stitch_chain(len(fwd_order), xyz0, active, self.opts.window_frames, self.opts.window_overlap,
                               chain_tracker(fwd_order, "f"))
            xyz[fwd_order], vis[fwd_order] = fwd.coords, fwd.visible
            chains = {"forward": fwd}
            if q > 0:
                bwd_order = np.arange(q, -1, -1)
                bwd = stitch_chain(len(bwd_order), xyz0, active, self.opts.window_frames, self.opts.window_overlap,
                                   chain_tracker(bwd_order, "b"))
                xyz[bwd_order[1:]], vis[bwd_order[1:]] = bwd.coords[1:], bwd.visible[1:]
                chains["backward"] = bwd
        finally:
            shutil.rmtree(work, ignore_errors=True)
        xyz[q, active] = xyz0[active]  # the query itself, exactly
        uv, z = project_tracks(K, cam_T_world, xyz)
        known = np.isfinite(xyz).all(-1)
        visible = vis & known & (z > 0)
        quality = {"points": len(queries), "points_without_depth": int((~active).sum()),
                   "windows": {k: [list(w) for w in c.windows] for k, c in chains.items()},
                   "lost_at_window_boundaries": int(sum(c.lost for c in chains.values())),
                   "padded_frames": int(sum(c.padded_frames for c in chains.values())),
                   "visible_fraction": float(visible.mean()) if visible.size else 0.0}
        return TracksArtifact(xyz_world=np.where(known[..., None], xyz, np.nan).astype(np.float32),
                              uv=np.where(known[..., None], uv, np.nan).astype(np.float32), visible=visible,
                              query=queries, source="tapip3d", quality=quality)

    def close(self) -> None:
        self.session.close()


class TAPIP3DResultsTracks(Backend):
    """Imports ``<stem>.result.npz`` files made by TAPIP3D elsewhere (``tracks.results_dir``)."""

    stage = "tracks"
    name = "tapip3d-results"
    version = "1"
    resources = Resources(cpus=1.0)

    def __init__(self, config, ctx: WorkerContext):
        super().__init__(config, ctx)
        root = config.tracks.results_dir
        if root is None or not Path(root).expanduser().is_dir():
            raise ConfigError(f"tracks.results_dir: {root} is not a folder of TAPIP3D <stem>.result.npz files")
        self.root = Path(root).expanduser().resolve()

    def describe(self) -> dict:
        return {"backend": self.name, "version": self.version, "results_dir": str(self.root)}

    def find(self, stem: str) -> Path | None:
        """``<root>/<stem>.result.npz``, else the newest in TAPIP3D's ``<root>/<timestamp>/`` folders."""
        direct = self.root / f"{stem}.result.npz"
        if direct.is_file():
            return direct
        nested = sorted(self.root.glob(f"*/{stem}.result.npz"), key=lambda p: p.parent.name)
        return nested[-1] if nested else None

    def process(self, job: Job) -> TracksArtifact:
        ingest: IngestArtifact = job.load("ingest")
        cam: CameraArtifact = job.load("camera")
        meta = job.meta or ingest.meta
        stem = Path(meta.source_path).stem
        path = self.find(stem)
        if path is None:
            raise InputError(meta.source_path, f"no TAPIP3D result '{stem}.result.npz' in {self.root} "
                                               "(or its timestamped sub-folders)")
        res = read_result(path)
        T = len(ingest.frames)
        if res.num_frames != T:
            raise InputError(path, f"TAPIP3D result has {res.num_frames} frames, this video has {T} stored frames; "
                                   "it must be tracked on the same frames (same ingest.fps / max_frames)")
        K = np.asarray(cam.K, np.float64)
        world_T_cam = np.asarray(cam.world_T_cam, np.float64)
        quality: dict = {"path": str(path)}
        if res.extrinsics is None:
            E = invert_se3(world_T_cam)
            quality["extrinsics"] = "absent; assumed the camera stage's world"
        else:
            E = res.extrinsics
        # The file's world -> y2r's world, per frame (constant when both came from the same poses).
        delta = world_T_cam @ E
        dev = float(np.abs(delta - np.eye(4)).max())
        quality["world_offset_max"] = dev
        X_cam = transform_points(E, res.coords.astype(np.float64))
        xyz = res.coords.astype(np.float64) if dev < SAME_WORLD_TOL else transform_points(world_T_cam, X_cam)
        uv = project(K, X_cam)
        known = np.isfinite(xyz).all(-1)
        visible = res.visibs & known & (X_cam[..., 2] > 0)
        if res.query_points is not None:
            t = np.clip(np.rint(res.query_points[:, 0]).astype(int), 0, T - 1)
            Xq = np.einsum("nij,nj->ni", E[t, :3, :3], res.query_points[:, 1:]) + E[t, :3, 3]
            uq = project(K[t], Xq[:, None])[:, 0]
            query = np.concatenate([t[:, None].astype(np.float64), uq], axis=1)
        else:
            query = np.concatenate([np.zeros((res.num_points, 1)), uv[0]], axis=1)
        return TracksArtifact(xyz_world=np.where(known[..., None], xyz, np.nan).astype(np.float32),
                              uv=np.where(known[..., None], uv, np.nan).astype(np.float32), visible=visible,
                              query=query.astype(np.float32), source="tapip3d-results", quality=quality)
