"""ViPE worker shim: runs inside ViPE's own environment (nv-tlabs/vipe, v1.1.0 API).

Standalone: the standard library, numpy, and ViPE's own dependencies (torch, hydra/omegaconf);
``y2r_shim`` is imported from this folder. Never imports y2r.

What one request does (what ``vipe infer`` does, minus its limits):
- configuration: ``vipe.config.parse_typed_config("default", hydra_args=[pipeline=<preset>,
  pipeline.output.path=<out>, pipeline.output.save_artifacts=true, pipeline.output.save_viz=false,
  pipeline.slam.visualize=false (it would spawn a rerun viewer), pipeline.slam.buffer=<n>, ...])``;
- input: the whole video (no ``streams.frame_end`` 1000-frame cap: the stream is built directly),
  ``RawMp4Stream(path, name=...)`` for a video or ``FrameDirStream`` for an image folder;
- the pipeline's ``run(stream)`` writes ViPE's own artifact layout under ``pipeline.output.path``.

Known intrinsics. The upstream CLI cannot take them (#37, #56, #105). The supported config path is
``pipeline.init.intrinsics=gt``: its interpolation ``slam.optimize_intrinsics: ${neq:${..init.intrinsics},"gt"}``
turns bundle adjustment of the focal off, and every frame must then carry its intrinsics. But
``DefaultAnnotationPipeline._add_init_processors`` always inserts ``GeoCalibIntrinsicsProcessor``;
this shim's pipeline subclass substitutes, for that one call, a processor that assigns the given
``[fx, fy, cx, cy]`` instead (everything else, e.g. the TrackAnything masks, stays upstream's).
SLAM resizes frames itself (``VideoFrame.resize`` scales the intrinsics) and reports them back at
input resolution (``recover_intrinsics``). A field-of-view prior is the same path with
``pipeline.slam.optimize_intrinsics=true`` (the focal is refined from the prior).

Model reuse across requests (what ViPE allows, from its code at v1.1.0). ``DefaultAnnotationPipeline``
builds every processor inside ``run()``, so stock ViPE reloads all weights per video (``run.py`` even
rebuilds the pipeline per video). This worker memoises, by constructor arguments, the constructors
whose objects hold only weights and keep no per-video state:
- ``vipe.slam.system.DroidNet`` (DROID-SLAM network; features and GRU state live in the GraphBuffer,
  which SLAMSystem rebuilds per run),
- ``make_depth_model`` in ``vipe.slam.system`` and ``vipe.pipeline.processors`` (UniDepth / Metric3D /
  MoGe / DA3 metric models; one memo, so SLAM's keyframe model and the depth alignment share one
  UniDepth instead of loading two),
- ``GeoCalib``, ``PriorDAModel`` and ``VideoDepthAnythingDepthModel`` in ``vipe.pipeline.processors``
  (their ``calibrate`` / ``estimate`` are pure functions of their inputs).
Not reused: ``TrackAnythingPipeline`` (SAM + GroundingDINO + DeAOT): it holds per-video tracking
memory (frame counter, reference masks, AOT memory bank), so it is rebuilt for each video from the
local torch-hub cache; ``MultiviewDepthProcessor`` (``mvd_dav3``) loads DA3-GIANT inside its
constructor, also per video; ``SLAMSystem`` and its ``GraphBuffer`` (per-video state by design).
"""

from __future__ import annotations

import copy
import gc
import importlib.util
import os
import time
from pathlib import Path

import y2r_shim
from y2r_shim import BadInput, UserError

SUPPORTED_INSTANCE = "vipe.pipeline.default.DefaultAnnotationPipeline"
# Buffer sizing (#38: "index 1024 is out of bounds"): SLAM needs one GraphBuffer slot per keyframe
# plus ``slam.infill_chunk_size`` slots for the frames InnerFiller adds in pass 2. Keyframes <= frames,
# so frames + chunk can never overflow. A slot costs about 3.6 MB of GPU memory at SLAM's fixed
# ~384x512 resolution (fp16 image + three 128-channel 1/8 feature maps), so short clips also use
# less than the preset's fixed 1024 slots; very long videos can cap it with camera.vipe.slam_buffer.


class ModelCache:
    """Memoises stateless model constructors by their arguments, for the life of the worker."""

    def __init__(self) -> None:
        self.models: dict[tuple, object] = {}
        self.loaded: list[dict] = []

    def wrap(self, label: str, factory):
        if getattr(factory, "_y2r_memo", False):
            return factory

        def make(*args, **kwargs):
            key = (label, args, tuple(sorted(kwargs.items())))
            if key not in self.models:
                t0 = time.perf_counter()
                self.models[key] = factory(*args, **kwargs)
                self.loaded.append({"model": label, "args": repr(args + tuple(sorted(kwargs.items()))),
                                    "load_s": round(time.perf_counter() - t0, 3)})
            return self.models[key]

        make._y2r_memo = True  # type: ignore[attr-defined]
        make.__wrapped__ = factory  # type: ignore[attr-defined]
        return make

    def names(self) -> list[str]:
        return sorted(f"{k[0]}{k[1] if k[1] else ''}{dict(k[2]) if k[2] else ''}" for k in self.models)


def _install_model_cache(cache: ModelCache) -> None:
    from vipe.pipeline import processors
    from vipe.slam import system

    depth = cache.wrap("make_depth_model", processors.make_depth_model)
    processors.make_depth_model = depth
    system.make_depth_model = depth
    system.DroidNet = cache.wrap("DroidNet", system.DroidNet)
    for name in ("GeoCalib", "PriorDAModel", "VideoDepthAnythingDepthModel"):
        setattr(processors, name, cache.wrap(name, getattr(processors, name)))


def _known_intrinsics_processor(params: list[float], camera_type):
    import torch  # noqa: PLC0415
    from vipe.streams.base import FrameAttribute, StreamProcessor  # noqa: PLC0415

    class KnownIntrinsics(StreamProcessor):
        """Assigns given [fx, fy, cx, cy] (input pixels) to every frame, in place of GeoCalib."""

        def update_attributes(self, previous_attributes):
            return previous_attributes | {FrameAttribute.INTRINSICS}

        def __call__(self, frame_idx, frame):
            frame.intrinsics = torch.as_tensor(list(params)).float()
            frame.camera_type = camera_type
            return frame

    return KnownIntrinsics()


def _pipeline_class():
    from vipe.pipeline import default

    class Y2RPipeline(default.DefaultAnnotationPipeline):
        known_intrinsics: list[float] | None = None

        def _add_init_processors(self, video_stream):
            if self.known_intrinsics is None:
                return super()._add_init_processors(video_stream)
            known = self.known_intrinsics
            original = default.GeoCalibIntrinsicsProcessor
            default.GeoCalibIntrinsicsProcessor = (
                lambda stream, camera_type=None, **_: _known_intrinsics_processor(known, camera_type))
            try:
                return super()._add_init_processors(video_stream)
            finally:
                default.GeoCalibIntrinsicsProcessor = original

    return Y2RPipeline


class ProgressHook:
    """Turns ViPE's progress bars (``vipe.utils.logging.pbar``) into protocol progress messages.

    ViPE's long phases (reading, SLAM passes 1 and 2, depth update, depth alignment, writing) each
    iterate through ``pbar``; every iteration counts one step, so a stalled phase shows as no
    progress (which y2r's scheduler watches) while a slow one keeps reporting.
    """

    MODULES = ("vipe.slam.system", "vipe.slam.components.buffer", "vipe.pipeline.processors", "vipe.streams.base")

    def __init__(self) -> None:
        self.ctx = None
        self.done = 0
        self.total = 1
        self.last = 0.0

    def install(self) -> None:
        import importlib  # noqa: PLC0415

        for name in self.MODULES:
            module = importlib.import_module(name)
            if hasattr(module, "pbar") and not getattr(module.pbar, "_y2r_progress", False):
                module.pbar = self._wrap(module.pbar)

    def _wrap(self, original):
        def pbar(iterable, **kwargs):
            for item in original(iterable, **kwargs):
                yield item
                self.step()

        pbar._y2r_progress = True  # type: ignore[attr-defined]
        return pbar

    def start(self, ctx, expected_steps: int) -> None:
        self.ctx, self.done, self.total, self.last = ctx, 0, max(int(expected_steps), 1), 0.0

    def step(self) -> None:
        self.done += 1
        now = time.monotonic()
        if self.ctx is not None and now - self.last > 1.0:
            self.last = now
            self.total = max(self.total, self.done + 1)
            self.ctx.progress(self.done, self.total)


def _fps_processor(fps: float):
    from vipe.streams.base import StreamProcessor  # noqa: PLC0415

    class Fps(StreamProcessor):
        """FrameDirStream assumes 30 fps; the mask keyframe gap and GeoCalib's sampling use fps."""

        def update_fps(self, previous_fps):
            return fps

        def __call__(self, frame_idx, frame):
            return frame

    return Fps()


class ViPEHandler(y2r_shim.Handler):
    name = "vipe"

    def __init__(self) -> None:
        self.cache = ModelCache()
        self.progress = ProgressHook()
        self.save_rgb = None
        self.base_overrides: list[str] = []
        self.preset = "default"

    def hello(self) -> dict:
        return {"tool": "vipe", "y2r_importable": importlib.util.find_spec("y2r") is not None}

    # ------------------------------------------------------------------ config
    def _config(self, overrides: list[str]):
        from vipe.config import parse_typed_config  # noqa: PLC0415

        try:
            args = parse_typed_config("default", hydra_args=overrides)
        except Exception as e:  # noqa: BLE001 - hydra/omegaconf/pydantic each raise their own type
            raise UserError(f"ViPE rejected the configuration {overrides}: {type(e).__name__}: {e}") from e
        pipe = args.pipeline
        if getattr(pipe, "instance", None) != SUPPORTED_INSTANCE:
            raise UserError(f"ViPE preset '{self.preset}' uses {getattr(pipe, 'instance', '?')}; y2r supports the "
                            f"pinhole presets of {SUPPORTED_INSTANCE} (default, no_vda, static_vda, lyra, dav3)")
        return pipe

    def load(self, params: dict) -> dict:
        t0 = time.perf_counter()
        import torch  # noqa: PLC0415

        if not torch.cuda.is_available():
            raise UserError("CUDA is not available in ViPE's environment (ViPE hard-codes cuda); check the driver, "
                            "CUDA_VISIBLE_DEVICES and that this environment's torch is a CUDA build")
        import vipe  # noqa: PLC0415
        import vipe.utils.logging as vipe_logging  # noqa: PLC0415

        # tqdm bars would flood the per-video logs; y2r gets progress through the protocol instead.
        vipe_logging.disable_progress_bar = True
        vipe_logging.configure_logging()
        self.preset = str(params.get("pipeline") or "default")
        self.base_overrides = [f"pipeline={self.preset}", *[str(o) for o in params.get("overrides", [])]]
        _install_model_cache(self.cache)
        self.progress.install()
        from vipe.utils import io as vipe_io  # noqa: PLC0415

        self.save_rgb = vipe_io.save_rgb_artifacts
        pipe = self._config([*self.base_overrides, "pipeline.output.path=y2r-output"])
        cfg = pipe.to_dictconfig()
        # Load now what every request of this preset needs, so the load is paid (and its memory
        # measured) at worker start: the DROID-SLAM net and SLAM's keyframe metric-depth model.
        if params.get("warm", True):
            from vipe.slam import system

            system.DroidNet()
            if cfg["slam"]["keyframe_depth"] is not None:
                system.make_depth_model(cfg["slam"]["keyframe_depth"])
        return {"vipe_version": getattr(vipe, "__version__", "unknown"), "torch": torch.__version__,
                "cuda_device": torch.cuda.get_device_name(0) if hasattr(torch.cuda, "get_device_name") else "",
                "preset": self.preset, "models": self.cache.names(), "load_s": round(time.perf_counter() - t0, 3)}

    # ------------------------------------------------------------------ one video
    def _stream(self, inp: dict, name: str):
        from vipe.streams.base import ProcessedVideoStream  # noqa: PLC0415

        kind, path = inp.get("kind"), Path(inp["path"])
        if not path.exists():
            raise BadInput(f"ViPE input {path} does not exist")
        if kind == "video":
            from vipe.streams.raw_mp4_stream import RawMp4Stream  # noqa: PLC0415

            return RawMp4Stream(path, name=name)
        if kind == "image_dir":
            from vipe.streams.frame_dir_stream import FrameDirStream  # noqa: PLC0415

            stream = FrameDirStream(path, name=name)
            return ProcessedVideoStream(stream, [_fps_processor(float(inp["fps"]))]) if inp.get("fps") else stream
        raise UserError(f"unknown ViPE input kind {kind!r} (video or image_dir)")

    def run(self, params: dict, ctx: y2r_shim.RequestContext) -> dict:
        import torch  # noqa: PLC0415
        from vipe.utils import io as vipe_io  # noqa: PLC0415

        t0 = time.perf_counter()
        name = str(params["name"])
        out = Path(params["output_root"])
        out.mkdir(parents=True, exist_ok=True)
        stream = self._stream(params["input"], name)
        n = len(stream)
        expected = params.get("num_frames")
        if expected is not None and n != int(expected):
            raise BadInput(f"ViPE's reader sees {n} frames in {params['input']['path']}, expected {expected}")
        if n < 2:
            raise BadInput(f"ViPE needs at least 2 frames, the input has {n}")
        # The output path is set on the composed config, not through Hydra's override grammar, which
        # would choke on paths with '=', ',' or quotes.
        overrides = [*self.base_overrides, "pipeline.output.path=y2r-output", "pipeline.output.save_artifacts=true",
                     "pipeline.output.save_viz=false", "pipeline.slam.visualize=false"]
        intrinsics = params.get("intrinsics")
        if intrinsics is not None:
            overrides.append("pipeline.init.intrinsics=gt")
            if params.get("optimize_intrinsics"):
                overrides.append("pipeline.slam.optimize_intrinsics=true")
        cfg = copy.deepcopy(self._config(overrides).to_dictconfig())
        buffer = int(params.get("slam_buffer") or (n + int(cfg["slam"]["infill_chunk_size"])))
        cfg["slam"]["buffer"] = buffer
        cfg["output"]["path"] = str(out)
        # What make_pipeline() does, with y2r's subclass in place of the configured class.
        pipeline = _pipeline_class()(**{k: cfg[k] for k in ("init", "slam", "post", "output")})
        if intrinsics is not None:
            pipeline.known_intrinsics = [float(v) for v in intrinsics]
        # y2r keeps its own frames: unless asked, skip ViPE's lossy H.264 re-encode of every frame.
        vipe_io.save_rgb_artifacts = self.save_rgb if params.get("save_rgb", False) else (lambda *a, **k: None)
        n_models = len(self.cache.loaded)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        # Expected steps: SLAM passes 1 and 2, depth alignment and the artifact writer, n frames each.
        self.progress.start(ctx, 4 * n)
        try:
            pipeline.run(stream)
        except IndexError as e:
            if "out of bounds" in str(e):
                raise RuntimeError(f"{e} (likely the SLAM keyframe buffer of {buffer} slots, ViPE #38; raise "
                                   "camera.vipe.slam_buffer)") from e
            raise
        finally:
            self.progress.ctx = None
        peak = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else 0.0
        reserved = torch.cuda.max_memory_reserved() / 2**20 if torch.cuda.is_available() else 0.0
        info = vipe_io.ArtifactPath(out, name).meta_info_path
        if not info.exists():
            raise RuntimeError(f"ViPE finished without writing {info}")
        # Release activations and the per-video caches; cached models stay on the GPU for the next video.
        del pipeline, stream
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        done = max(self.progress.done, self.progress.total)
        ctx.progress(done, done)
        return {"name": name, "output_root": str(out), "num_frames": n, "slam_buffer": buffer,
                "models_loaded": self.cache.loaded[n_models:], "models_cached": self.cache.names(),
                "cuda_peak_allocated_mb": round(peak, 1), "cuda_peak_reserved_mb": round(reserved, 1),
                "run_s": round(time.perf_counter() - t0, 3)}


if __name__ == "__main__":
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    y2r_shim.serve(ViPEHandler())
