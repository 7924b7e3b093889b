"""Synthetic twins of the tool backends, for tests and scheduler benchmarks.

Each emulates a model's profile -- load time, memory (base after load, plus growth with frames x
pixels), compute time per frame -- and its failure modes (crash, CUDA OOM, hang, error, bad input),
either on the CPU (memory really allocated in host RAM, so it is measurable) or on a real GPU with
torch (``device: cuda``: real allocations and real matmul compute). Outputs are valid canonical
artifacts, so a synthetic run produces episodes that pass ``y2r validate``.

Example: ViPE-like on an H200, time scaled down 10x::

    camera: {backend: synthetic, synthetic: {device: cuda, load_s: 2, base_mb: 13000,
             mb_per_mpix_frame: 60, s_per_frame: 0.015}}
"""

from __future__ import annotations

import hashlib
import os
import signal
import time

import numpy as np

from y2r.artifacts import CameraArtifact, HandsArtifact, HandTrack, IngestArtifact, TracksArtifact
from y2r.config import SyntheticBackendOptions
from y2r.errors import InputError, OutOfMemory, ToolError
from y2r.geometry import focal_from_fov, intrinsics_matrix
from y2r.stages.base import Backend, Job, MemoryProfile, Resources


class _Synthetic(Backend):
    version = "1"
    resources = Resources(cpus=1.0)

    @classmethod
    def resources_for(cls, config) -> Resources:
        """A GPU backend when emulating on a GPU (real or simulated); else a plain CPU backend."""
        o: SyntheticBackendOptions = getattr(config, cls.stage).synthetic
        if o.device == "cuda" or o.gpu:
            return Resources(cpus=1.0, gpu=True, gpu_memory=MemoryProfile(o.base_mb, o.mb_per_mpix_frame))
        return Resources(cpus=1.0)

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        self.opts: SyntheticBackendOptions = getattr(config, self.stage).synthetic
        self._gpu_base = None
        self.torch = None
        if self.opts.device == "cuda":
            import torch  # noqa: PLC0415 - only the GPU twin needs torch

            self.torch = torch
            if not torch.cuda.is_available():
                raise ToolError("synthetic backend configured with device: cuda but no CUDA device is visible")
        time.sleep(self.opts.load_s)
        self._gpu_base = self._allocate(self.opts.base_mb)
        self._host_base = None if self.torch else self._allocate(self.opts.base_mb)

    # ------------------------------------------------------------------ emulation
    def _allocate(self, mb: float):
        if mb <= 0:
            return None
        n = int(mb * 2**20)
        if self.torch is not None:
            try:
                return self.torch.empty(n, dtype=self.torch.uint8, device="cuda").fill_(1)
            except self.torch.cuda.OutOfMemoryError as e:
                raise OutOfMemory(f"CUDA out of memory allocating {mb:.0f} MB (synthetic)") from e
        buf = np.ones(n, dtype=np.uint8)  # touched, so it is resident and measurable
        return buf

    def _should_fail(self, job: Job) -> bool:
        o = self.opts
        if o.fail == "none":
            return False
        if o.fail_videos and not any(s in job.video_id for s in o.fail_videos):
            return False
        if o.fail_times >= 0:
            return job.attempt <= o.fail_times
        h = int(hashlib.sha256(f"{job.video_id}:{job.stage}:{job.attempt}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        return h < o.fail_rate

    def _emulate(self, job: Job, frames: int, pixels: int) -> None:
        o = self.opts
        if self._should_fail(job):
            if o.fail == "crash":
                os.kill(os.getpid(), signal.SIGKILL)
            if o.fail == "hang":
                while True:
                    time.sleep(3600)
            if o.fail == "oom":
                raise OutOfMemory(f"CUDA out of memory. Tried to allocate {o.mb_per_mpix_frame * frames * pixels / 1e6:.0f} MiB (synthetic)")
            if o.fail == "bad_input":
                raise InputError(job.source_path, "synthetic bad input")
            raise ToolError(f"synthetic failure in {self.stage} (attempt {job.attempt})")
        growth = self._allocate(o.mb_per_mpix_frame * frames * pixels / 1e6)
        t_end = time.monotonic() + o.s_per_frame * frames
        step = max(1, frames // 20)
        done = 0
        while True:
            now = time.monotonic()
            if now >= t_end:
                break
            if self.torch is not None:
                self._gpu_compute(min(0.05, t_end - now))
            else:
                time.sleep(min(0.05, t_end - now))
            new_done = min(frames, int(frames * (1 - (t_end - time.monotonic()) / max(1e-9, o.s_per_frame * frames))))
            if new_done - done >= step:
                done = new_done
                job.progress(done, frames)
        job.progress(frames, frames)
        del growth
        if self.torch is not None:
            self.torch.cuda.synchronize()
            self.torch.cuda.empty_cache()

    def _gpu_compute(self, seconds: float) -> None:
        """Keep the GPU's SMs busy for about ``seconds`` (so co-located workers contend for compute)."""
        torch = self.torch
        if not hasattr(self, "_mats"):
            self._mats = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            for _ in range(4):
                self._mats @ self._mats
            torch.cuda.synchronize()

    def describe(self) -> dict:
        return {"backend": self.name, "version": self.version, "emulates": self.opts.model_dump()}


def _frames(job: Job) -> tuple[IngestArtifact, int, int, int]:
    ing: IngestArtifact = job.load("ingest")
    T, H, W = ing.frames.shape[:3]
    return ing, T, H, W


class SyntheticCamera(_Synthetic):
    """Emulates ViPE. Output: a slow sideways pan with a fronto-parallel plane 2 m away (metric)."""

    stage = "camera"
    name = "synthetic"
    resources = Resources(cpus=1.0, gpu=False)

    def process(self, job: Job) -> CameraArtifact:
        ing, T, H, W = _frames(job)
        self._emulate(job, T, H * W)
        f = focal_from_fov(W, 60.0)
        K = np.repeat(intrinsics_matrix(f, f, W / 2, H / 2)[None], T, 0).astype(np.float32)
        pose = np.repeat(np.eye(4)[None], T, 0)
        pose[:, 0, 3] = np.linspace(0, 0.01 * (T - 1), T)
        depth = np.full((T, H, W), 2.0, np.float32)
        return CameraArtifact(K=K, world_T_cam=pose.astype(np.float32), depth=depth, depth_valid=np.ones((T, H, W), bool),
                              metric_scale=True, source="synthetic", quality={"degenerate": None})


class SyntheticTracks(_Synthetic):
    """Emulates TAPIP3D. Output: grid points on the camera stage's depth, moved with its poses."""

    stage = "tracks"
    name = "synthetic"

    def process(self, job: Job) -> TracksArtifact:
        ing, T, H, W = _frames(job)
        cam: CameraArtifact = job.load("camera")
        self._emulate(job, T, H * W)
        from y2r.geometry import invert_se3, project, transform_points, unproject  # noqa: PLC0415

        g = self.config.tracks.grid_size
        u, v = np.meshgrid(np.linspace(0.1 * W, 0.9 * W, g), np.linspace(0.1 * H, 0.9 * H, g))
        uv0 = np.stack([u.ravel(), v.ravel()], -1)
        d0 = np.asarray(cam.depth[0])[v.ravel().astype(int), u.ravel().astype(int)]
        X0 = transform_points(cam.world_T_cam[0], unproject(cam.K[0], uv0, d0))
        xyz = np.repeat(X0[None], T, 0)
        uv = project(cam.K, transform_points(invert_se3(cam.world_T_cam), xyz))
        vis = (uv[..., 0] >= 0) & (uv[..., 0] <= W - 1) & (uv[..., 1] >= 0) & (uv[..., 1] <= H - 1)
        q = np.concatenate([np.zeros((len(uv0), 1)), uv0], 1)
        return TracksArtifact(xyz_world=xyz.astype(np.float32), uv=uv.astype(np.float32), visible=vis, query=q.astype(np.float32),
                              source="synthetic")


class SyntheticHands(_Synthetic):
    """Emulates WiLoR. Output: no hands detected (valid, empty tracks)."""

    stage = "hands"
    name = "synthetic"

    def process(self, job: Job) -> HandsArtifact:
        ing, T, H, W = _frames(job)
        self._emulate(job, T, H * W)
        return HandsArtifact(left=HandTrack.empty(T), right=HandTrack.empty(T), source="synthetic")


def gpu_twin(cls: type[_Synthetic], profile: MemoryProfile) -> type[_Synthetic]:
    """The same synthetic backend declared as a GPU backend with a memory profile (benchmarks, GPU tests)."""
    return type(f"{cls.__name__}GPU", (cls,), {"resources": Resources(cpus=1.0, gpu=True, gpu_memory=profile)})
