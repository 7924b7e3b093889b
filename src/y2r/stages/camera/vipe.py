"""Camera backends built on ViPE: run it in its own environment (``vipe``) or import its output
folders (``vipe-results``).

``vipe``: the ingest frames are written as a lossless H.264 file (``libx264rgb``, crf 0, decoded
bit-exactly by ViPE's OpenCV reader) named after the video id, and ViPE's worker
(``tools/shims/vipe_shim.py``) runs the configured preset on it with artifacts on, no viewer, no
frame cap, a SLAM buffer sized for the video and, when ``camera.intrinsics`` is set, those
intrinsics fixed. Its output is read back and converted (``tools/vipe.py``).

``vipe-results``: a ViPE output root made elsewhere (``camera.results_dir``); a video's sequence is
found by its file stem, as ViPE names sequences. ViPE may have run on the source video at another
size or frame rate: K and depth are mapped into y2r's stored frames, and each stored frame takes
the ViPE frame of its source frame (or the error says why it cannot).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from y2r.artifacts import CameraArtifact, IngestArtifact, VideoMeta
from y2r.errors import ConfigError, InputError, ToolError
from y2r.geometry import focal_from_fov, intrinsics_matrix
from y2r.stages.base import Backend, Job, MemoryProfile, Resources, WorkerContext
from y2r.tools.launch import ToolSession, launch_spec, request_timeout, worker_log_path
from y2r.tools.vipe import (
    ViPEPaths,
    discover,
    load_result,
    match_frames,
    to_camera_artifact,
    write_lossless_video,
)

UNSUPPORTED_PRESETS = {"panorama": "360-degree input", "wide_angle": "the MEI camera model (not pinhole)"}


class ViPECamera(Backend):
    """K, world_T_cam and metric depth from ViPE, run by a persistent worker in ViPE's environment."""

    stage = "camera"
    name = "vipe"
    version = "1"
    # GPU: ~13 GB after load (default preset: DROID-SLAM + UniDepth-L + PriorDA + VDA-S + SAM +
    # GroundingDINO + DeAOT); per frame ~3.6 MB of SLAM buffer (fixed ~384x512) plus 4 B/pixel of
    # video-depth output, ~20 MB per megapixel-frame at 512x384. Host: frames cached as float32 RGB,
    # 12 B/pixel per cached stream, two streams in the default pipeline plus VDA's frame list.
    # Seeds only: the scheduler's memory model learns the real numbers from measured peaks.
    resources = Resources(cpus=2.0, gpu=True, gpu_memory=MemoryProfile(base_mb=13000.0, mb_per_mpix_frame=20.0),
                          host_memory=MemoryProfile(base_mb=6000.0, mb_per_mpix_frame=40.0), tool="vipe")

    def __init__(self, config, ctx: WorkerContext):
        super().__init__(config, ctx)
        opts = config.camera.vipe
        if opts.pipeline in UNSUPPORTED_PRESETS:
            raise ConfigError(f"camera.vipe.pipeline: '{opts.pipeline}' needs {UNSUPPORTED_PRESETS[opts.pipeline]}, which "
                              "y2r's pinhole camera artifact cannot hold; use default, no_vda, static_vda, lyra or dav3")
        self.opts = opts
        spec = launch_spec("vipe", config.tools.vipe, "vipe_shim.py", root_required=False)
        self.session = ToolSession(spec, worker_log_path(ctx, "vipe"),
                                   {"pipeline": opts.pipeline, "overrides": list(opts.overrides), "warm": True})
        # Start and load now: the models load once per worker, and the load is measured at start.
        self.session.ensure()

    def describe(self) -> dict:
        return {"backend": self.name, "version": self.version, "tool": "vipe",
                "vipe_version": self.session.loaded.get("vipe_version"), "preset": self.opts.pipeline,
                "overrides": list(self.opts.overrides)}

    def _intrinsics(self, meta: VideoMeta) -> tuple[list[float] | None, bool, str]:
        """[fx, fy, cx, cy] in stored pixels for ViPE, whether BA may refine it, and how it was chosen."""
        cam = self.config.camera
        if cam.intrinsics is not None:
            i = cam.intrinsics
            K = meta.source_to_stored_K(intrinsics_matrix(i.fx, i.fy, i.cx, i.cy))
            return [K[0, 0], K[1, 1], K[0, 2], K[1, 2]], False, "given"
        if cam.fov_deg is not None:
            f = focal_from_fov(meta.source_width, cam.fov_deg)
            K = meta.source_to_stored_K(intrinsics_matrix(f, f, (meta.source_width - 1) / 2, (meta.source_height - 1) / 2))
            return [K[0, 0], K[1, 1], K[0, 2], K[1, 2]], True, "fov_prior+bundle_adjustment"
        return None, True, "geocalib+bundle_adjustment"

    def process(self, job: Job) -> CameraArtifact:
        ingest: IngestArtifact = job.load("ingest")
        meta = job.meta or ingest.meta
        T = len(ingest.frames)
        scratch = Path(job.out_dir) / ".vipe"
        try:
            (scratch / "input").mkdir(parents=True, exist_ok=True)
            video = write_lossless_video(scratch / "input" / f"{job.video_id}.mp4", np.asarray(ingest.frames), meta.fps)
            intrinsics, optimize, how = self._intrinsics(meta)
            params = {"input": {"kind": "video", "path": str(video)}, "name": job.video_id,
                      "output_root": str(scratch / "out"), "num_frames": T, "slam_buffer": self.opts.slam_buffer,
                      "intrinsics": intrinsics, "optimize_intrinsics": optimize}
            run = self.session.run(params, timeout_s=request_timeout(self.config, T, self.opts.timeout_s_per_frame),
                                   log_path=job.log_path, progress=job.progress)
            paths = ViPEPaths(Path(run["output_root"]), job.video_id)
            result = load_result(paths.root, paths.name)
            if result.num_frames != T or (result.size is not None and result.size != (meta.height, meta.width)):
                raise ToolError(f"vipe: wrote {result.num_frames} frames of {result.size} for {T} frames of "
                                f"{(meta.height, meta.width)}")
            art = to_camera_artifact(result, meta, np.arange(T), paths.pose, vipe_saw="stored", source="vipe")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        art.quality["intrinsics"] = how
        art.quality["vipe"] = {k: run.get(k) for k in ("slam_buffer", "cuda_peak_allocated_mb", "cuda_peak_reserved_mb",
                                                       "run_s", "models_loaded")}
        return art

    def close(self) -> None:
        self.session.close()


class ViPEResultsCamera(Backend):
    """Imports existing ViPE output (``camera.results_dir``); no GPU, no ViPE environment."""

    stage = "camera"
    name = "vipe-results"
    version = "1"
    resources = Resources(cpus=1.0)

    def __init__(self, config, ctx: WorkerContext):
        super().__init__(config, ctx)
        root = config.camera.results_dir
        if root is None or not Path(root).expanduser().is_dir():
            raise ConfigError(f"camera.results_dir: {root} is not a folder (it must be a ViPE output root, the "
                              "folder given to vipe infer -o / pipeline.output.path)")
        self.root = Path(root).expanduser().resolve()

    def describe(self) -> dict:
        return {"backend": self.name, "version": self.version, "results_dir": str(self.root)}

    def process(self, job: Job) -> CameraArtifact:
        ingest: IngestArtifact = job.load("ingest")
        meta = job.meta or ingest.meta
        stem = Path(meta.source_path).stem
        paths = ViPEPaths(self.root, stem)
        if not paths.pose.exists():
            found = discover(self.root)
            listed = ", ".join(found[:8]) + (f" and {len(found) - 8} more" if len(found) > 8 else "") if found else "none"
            raise InputError(meta.source_path, f"no ViPE results for '{stem}' in {self.root} (ViPE names a sequence by "
                                               f"its video's file stem; sequences found: {listed})")
        result = load_result(self.root, stem)
        frame_map = match_frames(result, meta, ingest.frame_index, paths.pose)
        source_hw = (meta.source_height, meta.source_width)
        stored_hw = (meta.height, meta.width)
        vipe_saw = "stored" if result.size == stored_hw and result.num_frames == len(ingest.frames) and \
            stored_hw != source_hw else "source"
        art = to_camera_artifact(result, meta, frame_map, paths.pose, vipe_saw=vipe_saw, source="vipe-results")
        art.quality["vipe_results"] = {"path": str(paths.pose.parent.parent), "name": stem, "mapped_from": vipe_saw,
                                       "frame_map_first_last": [int(frame_map[0]), int(frame_map[-1])]}
        return art
