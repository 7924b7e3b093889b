"""Synthetic twins of the tool backends, for tests and scheduler benchmarks.

Each emulates a model's profile -- load time, memory (base after load, plus growth with frames x
pixels, optionally with a per-video error around that line), compute time per frame -- and its
failure modes (crash, CUDA OOM, hang, stall, error, bad input):

Per-video memory grows in steps while the frames are processed, so an OOM wastes work done before it.

- ``device: cpu``: memory is really allocated (and touched) in host RAM, so it is measurable; on a
  simulated GPU (``execution.gpus.simulate``) every allocation is also booked on that device's
  shared account and fails with ``OutOfMemory`` when it would not fit (``simulated_gpus.py``).
  Compute is a sleep.
- ``device: cuda``: real allocations on the worker's GPU with torch, and real compute: per frame, a
  fixed number of bf16 4096x4096 matmuls (``s_per_frame * gpu_fraction`` seconds of them on an idle
  GPU) followed by ``s_per_frame * (1 - gpu_fraction)`` seconds of host work. The GPU work is an
  amount, not a duration, so workers sharing a GPU really slow each other down once their kernels
  fill it: about ``1 / gpu_fraction`` workers saturate a GPU, as with real models whose kernels
  leave the GPU idle between frames (decoding, pre-processing, Python).

Outputs are valid canonical artifacts, so a synthetic run produces episodes that pass ``y2r validate``.

Example: ViPE-like on an H200, time scaled down 10x::

    camera: {backend: synthetic, synthetic: {device: cuda, load_s: 2, base_mb: 13000,
             mb_per_mpix_frame: 50, s_per_frame: 0.018, gpu_fraction: 0.3}}
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
from y2r.execution.simulated_gpus import SimulatedDevice
from y2r.geometry import focal_from_fov, intrinsics_matrix
from y2r.stages.base import Backend, Job, MemoryProfile, Resources

MATMUL_N = 4096  # side of the bf16 matmul that is the unit of emulated GPU work
GROWTH_STEPS = 4  # per-video memory growth is allocated in this many steps over the frames


def _unit(*parts: str) -> float:
    """A deterministic number in [0, 1) from strings (per-video noise and failure draws)."""
    return int(hashlib.sha256(":".join(parts).encode()).hexdigest()[:8], 16) / 0x100000000


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
        self.torch = None
        self.device = SimulatedDevice.from_env() if self.opts.device == "cpu" else None
        if self.opts.device == "cuda":
            import torch  # noqa: PLC0415 - only the GPU twin needs torch

            self.torch = torch
            if not torch.cuda.is_available():
                raise ToolError("synthetic backend configured with device: cuda but no CUDA device is visible")
            torch.cuda.init()
        t0 = time.monotonic()
        self._base = self._allocate(self.opts.base_mb)
        self._rate = self._calibrate() if self.torch is not None else 0.0
        # The emulated load takes load_s in total, whatever the allocation and calibration took.
        time.sleep(max(0.0, self.opts.load_s - (time.monotonic() - t0)))

    # ------------------------------------------------------------------ emulation
    def _allocate(self, mb: float):
        """Really hold ``mb`` of device memory (GPU, or host RAM booked on a simulated GPU)."""
        if mb <= 0:
            return None
        n = int(mb * 2**20)
        if self.torch is not None:
            try:
                return self.torch.empty(n, dtype=self.torch.uint8, device="cuda").fill_(1)
            except self.torch.cuda.OutOfMemoryError as e:
                raise OutOfMemory(f"CUDA out of memory allocating {mb:.0f} MB (synthetic)") from e
        handle = self.device.allocate(mb) if self.device is not None else None
        buf = np.ones(n, dtype=np.uint8)  # touched, so it is resident and measurable
        return (buf, handle)

    def _release(self, block) -> None:
        if block is None:
            return
        if self.torch is None and block[1] is not None and self.device is not None:
            self.device.free(block[1])

    def _calibrate(self) -> float:
        """Matmuls per second of this GPU alone (given, or timed once at load)."""
        torch = self.torch
        self._mat = torch.randn(MATMUL_N, MATMUL_N, device="cuda", dtype=torch.bfloat16)
        # Warm up at load, as real models do: cuBLAS creates its handle and workspace now, so that
        # memory is part of the worker's base (and an OOM doing it is a failed load, not a failed task).
        self._mat @ self._mat
        torch.cuda.synchronize()
        if self.opts.gpu_rate > 0:
            return self.opts.gpu_rate
        for _ in range(5):
            self._mat @ self._mat
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        n = 40
        for _ in range(n):
            self._mat @ self._mat
        torch.cuda.synchronize()
        return n / max(1e-6, time.perf_counter() - t0)

    def _should_fail(self, job: Job) -> bool:
        o = self.opts
        if o.fail == "none":
            return False
        if o.fail_videos and not any(s in job.video_id for s in o.fail_videos):
            return False
        if o.fail_times >= 0:
            return job.attempt <= o.fail_times
        return _unit(job.video_id, job.stage, str(job.attempt)) < o.fail_rate

    def growth_mb(self, video_id: str, frames: int, pixels: int) -> float:
        """This video's memory growth: the linear model times a deterministic per-video error."""
        o = self.opts
        err = 1.0 + o.mem_noise * (2.0 * _unit(video_id, self.stage, "mem") - 1.0)
        return max(0.0, o.mb_per_mpix_frame * frames * pixels / 1e6 * err)

    def _emulate(self, job: Job, frames: int, pixels: int) -> None:
        o = self.opts
        fail = self._should_fail(job)
        if fail:
            if o.fail == "crash":
                os.kill(os.getpid(), signal.SIGKILL)
            if o.fail == "hang":
                while True:
                    time.sleep(3600)
            if o.fail == "oom":
                raise OutOfMemory(f"CUDA out of memory. Tried to allocate {self.growth_mb(job.video_id, frames, pixels):.0f} MiB (synthetic)")
            if o.fail == "bad_input":
                raise InputError(job.source_path, "synthetic bad input")
            if o.fail == "error":
                raise ToolError(f"synthetic failure in {self.stage} (attempt {job.attempt})")
        # Memory grows while the video is processed (caches of frames, features, point clouds): a
        # quarter of the growth at the start and after each further quarter of the frames, so an
        # OOM costs the compute spent before it, as with the real tools.
        total = self.growth_mb(job.video_id, frames, pixels)
        marks = {frames * k // GROWTH_STEPS for k in range(GROWTH_STEPS)}
        blocks = []
        try:
            step = max(1, frames // 20)
            for f in range(frames):
                if f in marks:
                    blocks.append(self._allocate(total / GROWTH_STEPS))
                if fail and o.fail == "stall" and f >= frames // 2:
                    while True:  # alive (heartbeats go on) but no more progress: the watchdog's case
                        time.sleep(3600)
                self._frame()
                if (f + 1) % step == 0 or f + 1 == frames:
                    job.progress(f + 1, frames)
        finally:
            for b in blocks:
                self._release(b)
            del blocks
            if self.torch is not None:
                self.torch.cuda.synchronize()
                self.torch.cuda.empty_cache()

    def _frame(self) -> None:
        o = self.opts
        if self.torch is None:
            time.sleep(o.s_per_frame)
            return
        gpu_s = o.s_per_frame * o.gpu_fraction
        # A fixed amount of GPU work per frame (carry the fraction to the next frame).
        self._owed = getattr(self, "_owed", 0.0) + gpu_s * self._rate
        n = int(self._owed)
        self._owed -= n
        for _ in range(n):
            self._mat @ self._mat
        self.torch.cuda.synchronize()
        host_s = o.s_per_frame - gpu_s
        if host_s > 0:
            time.sleep(host_s)

    def describe(self) -> dict:
        return {"backend": self.name, "version": self.version, "emulates": self.opts.model_dump()}

    def close(self) -> None:
        self._release(self._base)
        self._base = None


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
