"""The typed configuration: one YAML file, validated, with ``--set section.key=value`` overrides.

Every key lives in a pydantic model below with its default and a one-line description; ``y2r init``
writes the commented YAML from these models, so the file, the docs and the validation never drift.
Unknown keys are rejected naming the key and the closest valid one; wrong types name the key and
the expected type.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from y2r.errors import ConfigError


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


# --------------------------------------------------------------------------------------- ingest
class IngestConfig(Section):
    fps: float | None = Field(10.0, gt=0, description="Target frame rate (frames are resampled to it); null keeps the source rate.")
    width: int = Field(512, ge=16, le=8192, description="Stored frame width in pixels (even).")
    height: int = Field(384, ge=16, le=8192, description="Stored frame height in pixels (even).")
    resize: Literal["crop", "fit", "stretch"] = Field(
        "crop",
        description="When the aspect ratio differs: crop the centre to the target aspect, fit (scale the "
        "long side, keep aspect, stored size adapts), or stretch (anisotropic; K stays exact).",
    )
    max_frames: int | None = Field(None, ge=2, description="Keep at most this many frames (after resampling); null = all.")
    min_frames: int = Field(2, ge=1, description="Videos with fewer decoded frames are rejected as bad input.")
    max_source_pixels: int = Field(
        7680 * 4320, ge=1, description="Reject sources larger than this many pixels per frame (absurd resolutions)."
    )
    extensions: list[str] = Field(
        [".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"],
        description="File extensions picked up when an input is a folder (case-insensitive).",
    )

    @field_validator("width", "height")
    @classmethod
    def _even(cls, v: int) -> int:
        if v % 2:
            raise ValueError("must be even (H.264 and most codecs need even sizes)")
        return v


# --------------------------------------------------------------------------------------- camera
class Intrinsics(Section):
    fx: float = Field(..., gt=0, description="Focal length x (pixels of the source video).")
    fy: float = Field(..., gt=0, description="Focal length y (pixels of the source video).")
    cx: float = Field(..., description="Principal point x (pixels of the source video).")
    cy: float = Field(..., description="Principal point y (pixels of the source video).")


class BuiltinCameraOptions(Section):
    max_features: int = Field(1000, ge=50, description="Corners tracked per frame for pose estimation.")
    keyframe_parallax_px: float = Field(40.0, gt=0, description="Median feature motion that starts a new keyframe.")
    refine: bool = Field(True, description="Bundle-adjust keyframe poses (and focal when not given).")
    depth: Literal["plane_sweep", "none"] = Field("plane_sweep", description="Dense depth method; none marks all depth invalid.")
    depth_planes: int = Field(64, ge=8, le=512, description="Depth hypotheses per plane sweep.")
    depth_scale: float = Field(0.5, gt=0, le=1, description="Resolution factor at which depth is computed (then upsampled).")
    metric_scale_m: float | None = Field(
        None, gt=0, description="If set, scale the reconstruction so the median scene depth of frame 0 is this many metres."
    )
    fallback_fov_deg: float = Field(
        60.0, gt=1, lt=179,
        description="Horizontal FOV assumed when self-calibration cannot observe the focal (static camera, pure translation, low texture).",
    )


class ViPEOptions(Section):
    pipeline: str = Field("default", description="ViPE pipeline preset (default, no_vda, static_vda, lyra, dav3, wide_angle).")
    overrides: list[str] = Field([], description="Extra Hydra overrides passed to ViPE, e.g. 'pipeline.slam.ba.dense_disp_alpha=0.01'.")
    slam_buffer: int | None = Field(None, ge=16, description="Keyframe buffer size; null = enough for the video's length.")
    timeout_s_per_frame: float = Field(2.0, gt=0, description="Request timeout per frame (plus the base timeout).")


class SyntheticBackendOptions(Section):
    load_s: float = Field(0.0, ge=0, description="Emulated model load time in seconds.")
    s_per_frame: float = Field(0.0, ge=0, description="Emulated compute time per frame.")
    base_mb: float = Field(0.0, ge=0, description="Emulated memory after load (MB).")
    mb_per_mpix_frame: float = Field(0.0, ge=0, description="Emulated memory growth per megapixel-frame (MB).")
    device: Literal["cpu", "cuda"] = Field("cpu", description="cpu simulates memory in host RAM; cuda allocates it on the GPU.")
    gpu: bool = Field(False, description="Schedule as a GPU backend even on the CPU (with execution.gpus.simulate).")
    gpu_fraction: float = Field(1.0, gt=0, le=1, description="device cuda: share of each frame's solo time spent in GPU kernels (the rest is host work), so 1/gpu_fraction workers saturate a GPU.")
    gpu_rate: float = Field(0.0, ge=0, description="device cuda: reference matmuls per second of the GPU alone (0 = measure at load); fixes the amount of GPU work per frame.")
    mem_noise: float = Field(0.0, ge=0, description="Relative spread of the memory growth per video around the linear model (deterministic per video).")
    fail: Literal["none", "crash", "oom", "hang", "stall", "error", "bad_input"] = Field(
        "none", description="Injected failure mode (stall: reports progress, then hangs).")
    fail_rate: float = Field(1.0, ge=0, le=1, description="Probability of the injected failure per attempt (when fail is set).")
    fail_times: int = Field(-1, description="Fail only the first N attempts of a video (-1 = every attempt at fail_rate).")
    fail_videos: list[str] = Field([], description="If given, only videos whose id contains one of these strings fail.")


class CameraConfig(Section):
    backend: Literal["builtin", "vipe", "vipe-results", "synthetic"] = Field("builtin", description="Which backend computes K, poses and depth.")
    intrinsics: Intrinsics | None = Field(None, description="Known intrinsics in source-video pixels; null = estimate.")
    fov_deg: float | None = Field(
        None, gt=1, lt=179, description="Horizontal field-of-view prior (degrees) when intrinsics are unknown; null = self-calibrate."
    )
    results_dir: Path | None = Field(None, description="vipe-results: a ViPE output root; a video's artifacts are found by its file stem.")
    builtin: BuiltinCameraOptions = Field(default_factory=BuiltinCameraOptions)
    vipe: ViPEOptions = Field(default_factory=ViPEOptions)
    synthetic: SyntheticBackendOptions = Field(default_factory=SyntheticBackendOptions)

    @model_validator(mode="after")
    def _results_dir_needed(self) -> CameraConfig:
        if self.backend == "vipe-results" and self.results_dir is None:
            raise ValueError("camera.backend 'vipe-results' needs camera.results_dir (a ViPE output root)")
        return self


# --------------------------------------------------------------------------------------- tracks
class BuiltinTracksOptions(Section):
    window: int = Field(21, ge=5, le=101, description="Lucas-Kanade window size in pixels (odd).")
    levels: int = Field(3, ge=0, le=8, description="Pyramid levels.")
    fb_threshold_px: float = Field(1.0, gt=0, description="Forward-backward error above which a point is marked not visible.")
    occlusion_depth_tol: float = Field(0.05, gt=0, description="Relative depth disagreement that marks a point occluded.")
    template_radius: int = Field(7, ge=2, le=25, description="Half size of the query-frame patch every frame is re-aligned to (pixels).")
    ncc_visible: float = Field(0.7, ge=-1, le=1, description="Template correlation a tracked point needs to stay visible.")
    ncc_reacquire: float = Field(0.8, ge=-1, le=1, description="Template correlation a point needs to be re-acquired after occlusion.")


class TAPIP3DOptions(Section):
    resolution_factor: int = Field(2, ge=1, le=8, description="TAPIP3D --resolution_factor (inference size = 384x512 * sqrt(f)).")
    num_iters: int = Field(6, ge=1, description="TAPIP3D refinement iterations.")
    support_grid_size: int = Field(16, ge=0, description="Support grid appended to user queries.")
    window_frames: int = Field(96, ge=9, description="Long videos are split into windows of this many frames.")
    window_overlap: int = Field(16, ge=1, description="Frames shared by consecutive windows (tracks are stitched there).")
    timeout_s_per_frame: float = Field(2.0, gt=0, description="Request timeout per frame (plus the base timeout).")


class TracksConfig(Section):
    backend: Literal["builtin", "tapip3d", "tapip3d-results", "synthetic", "none"] = Field(
        "builtin", description="Which backend computes 3D point tracks (none: no tracks group)."
    )
    grid_size: int = Field(16, ge=1, le=128, description="Query points: a grid_size x grid_size grid on the query frame.")
    query_frame: int = Field(0, ge=0, description="Frame whose grid is tracked.")
    results_dir: Path | None = Field(None, description="tapip3d-results: folder of <stem>.result.npz files.")
    builtin: BuiltinTracksOptions = Field(default_factory=BuiltinTracksOptions)
    tapip3d: TAPIP3DOptions = Field(default_factory=TAPIP3DOptions)
    synthetic: SyntheticBackendOptions = Field(default_factory=SyntheticBackendOptions)

    @model_validator(mode="after")
    def _results_dir_needed(self) -> TracksConfig:
        if self.backend == "tapip3d-results" and self.results_dir is None:
            raise ValueError("tracks.backend 'tapip3d-results' needs tracks.results_dir")
        return self


# --------------------------------------------------------------------------------------- hands
class BuiltinHandsOptions(Section):
    model_complexity: Literal[0, 1] = Field(1, description="MediaPipe Hands model complexity.")
    min_detection_confidence: float = Field(0.5, ge=0, le=1, description="MediaPipe palm-detection threshold.")
    min_tracking_confidence: float = Field(0.5, ge=0, le=1, description="MediaPipe landmark-tracking threshold.")
    max_num_hands: int = Field(2, ge=1, le=4, description="Hands searched per frame.")
    search: Literal["thorough", "standard", "fast"] = Field(
        "standard", description="Search for untracked hands: standard = a budget per frame, the extra passes in "
        "rotation; fast = full-frame palm pass only; thorough = all passes every frame (4-13x slower).")


class WiLoROptions(Section):
    detector_confidence: float = Field(0.3, ge=0, le=1, description="Hand detector confidence threshold.")
    batch_size: int = Field(16, ge=1, description="Hand crops per forward pass.")
    rescale_factor: float = Field(2.0, gt=0, description="Box padding before cropping (WiLoR demo: 2.0).")
    save_vertices: bool = Field(False, description="Keep MANO vertices in the hands artifact.")
    timeout_s_per_frame: float = Field(1.0, gt=0, description="Request timeout per frame (plus the base timeout).")


class HandTemporalOptions(Section):
    max_gap_frames: int = Field(5, ge=0, description="Fill detection gaps up to this many frames by interpolation.")
    max_speed_mps: float = Field(2.0, gt=0, description="Wrist speeds above this (m/s) are rejected as outliers.")
    smoothing: float = Field(0.5, ge=0, le=1, description="Temporal smoothing strength (0 = none).")


class HandsConfig(Section):
    backend: Literal["builtin", "wilor", "synthetic", "none"] = Field("builtin", description="Which backend estimates 3D hands.")
    builtin: BuiltinHandsOptions = Field(default_factory=BuiltinHandsOptions)
    wilor: WiLoROptions = Field(default_factory=WiLoROptions)
    temporal: HandTemporalOptions = Field(default_factory=HandTemporalOptions)
    synthetic: SyntheticBackendOptions = Field(default_factory=SyntheticBackendOptions)


# --------------------------------------------------------------------------------------- episode
class EpisodeConfig(Section):
    compression: Literal["gzip", "lzf", "none"] = Field("gzip", description="HDF5 compression filter for large arrays.")
    compression_level: int = Field(1, ge=0, le=9, description="gzip level (1: the episode stage writes rgb 1.2-1.5x faster than at 4, files 2-3% larger).")
    store_rgb: bool = Field(True, description="Store /rgb frames in the episode.")
    store_depth: bool = Field(True, description="Store /depth in the episode.")
    keep_intermediate: bool = Field(True, description="Keep per-stage artifacts under OUT/work after the episode is written.")


# --------------------------------------------------------------------------------------- tools
class ToolEnv(Section):
    python: Path | None = Field(None, description="Interpreter of the tool's own environment (conda or venv).")
    root: Path | None = Field(None, description="The tool's checkout / install folder (working directory of its worker).")
    checkpoints: dict[str, Path] = Field({}, description="Named checkpoint files the tool needs.")
    env: dict[str, str] = Field({}, description="Extra environment variables for the tool's worker.")
    startup_timeout_s: float = Field(600.0, gt=0, description="Time allowed for the worker to load its model.")
    heartbeat_s: float = Field(5.0, gt=0, description="Worker heartbeat period; 6 missed beats mean a hang.")


class ToolsConfig(Section):
    vipe: ToolEnv = Field(default_factory=ToolEnv)
    tapip3d: ToolEnv = Field(default_factory=ToolEnv)
    wilor: ToolEnv = Field(default_factory=ToolEnv)
    mediapipe: ToolEnv = Field(
        default_factory=ToolEnv,
        description="Built-in hands run MediaPipe in its own environment; null python = the one `y2r setup` made.",
    )


# --------------------------------------------------------------------------------------- execution
class RetryPolicy(Section):
    max_attempts: dict[str, int] = Field(
        {"error": 3, "oom": 4, "crash": 3, "hang": 2, "bad_input": 1, "user_error": 1},
        description="Attempts per failure kind before a task is marked failed.",
    )
    backoff_s: float = Field(1.0, ge=0, description="First retry delay; doubles per attempt.")
    backoff_max_s: float = Field(60.0, ge=0, description="Largest retry delay.")


class GPUConfig(Section):
    devices: list[int] | Literal["all"] | None = Field("all", description="GPU indices to use, 'all', or null for none.")
    max_workers_per_gpu: int = Field(8, ge=1, description="Cap on workers sharing one GPU.")
    margin_mb: float = Field(2048.0, ge=0, description="Safety margin kept free on each GPU.")
    memory_models: dict[str, dict[str, float]] = Field(
        {}, description="Seeds for the memory model per 'stage/backend': {base_mb, mb_per_mpix_frame}."
    )
    sample_interval_s: float = Field(0.5, gt=0, description="NVML sampling period for worker memory.")
    simulate: list[float] | None = Field(
        None, description="Simulated GPUs (capacities in MB) for machines without one: GPU lanes run on the CPU and a "
        "worker's memory is the host-RSS growth of its process tree above its pre-load baseline.")


class ExecutionConfig(Section):
    executor: Literal["local", "ray"] = Field("local", description="local (this machine) or ray (a Ray cluster).")
    workers: int | None = Field(None, ge=1, description="CPU worker processes; null = number of cores.")
    ray_address: str | None = Field(None, description="Ray cluster address (auto, HOST:PORT); null starts a local instance.")
    ray_gpu_memory_mb: float | None = Field(
        None, gt=0,
        description="GPU memory (MB) assumed for a Ray GPU whose memory NVML cannot read (logical GPUs, e.g. tests); null: such a GPU is an error.",
    )
    task_timeout_s: float = Field(600.0, gt=0, description="Base per-task timeout (plus per-frame allowances).")
    task_timeout_s_per_frame: float = Field(2.0, ge=0, description="Added to the task timeout per frame of the video.")
    no_progress_s: float = Field(900.0, gt=0, description="Kill a task whose worker reported progress once and then none for this long.")
    backlog_per_stage: int = Field(8, ge=1, description="Videos allowed in flight beyond the worker slots (bounds RAM and disk).")
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    gpus: GPUConfig = Field(default_factory=GPUConfig)


class Config(Section):
    """The whole y2r configuration."""

    ingest: IngestConfig = Field(default_factory=IngestConfig)
    camera: CameraConfig = Field(default_factory=CameraConfig)
    tracks: TracksConfig = Field(default_factory=TracksConfig)
    hands: HandsConfig = Field(default_factory=HandsConfig)
    episode: EpisodeConfig = Field(default_factory=EpisodeConfig)
    tools: ToolsConfig = Field(default_factory=ToolsConfig)
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)

    def section_hash(self, name: str) -> str:
        """Stable hash of one section (used to decide which stages must re-run)."""
        data = getattr(self, name).model_dump(mode="json")
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


# ------------------------------------------------------------------------------------- loading
def _paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every valid dotted key under a model (for 'did you mean')."""
    out = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        out.append(key)
        sub = _submodel(field.annotation)
        if sub is not None:
            out.extend(_paths(sub, key + "."))
    return out


def _submodel(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, getattr(__import__("types"), "UnionType", Union)):
        for a in get_args(annotation):
            if isinstance(a, type) and issubclass(a, BaseModel):
                return a
    return None


def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(annotation))
    if origin is not None and get_args(annotation):
        parts = [_type_name(a) for a in get_args(annotation)]
        if origin in (Union, getattr(__import__("types"), "UnionType", Union)):
            return " or ".join(p.replace("NoneType", "null") for p in parts)
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(parts)}]"
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return "a mapping"
        return {"float": "a number", "int": "an integer", "str": "a string", "bool": "true/false",
                "NoneType": "null", "Path": "a path"}.get(annotation.__name__, annotation.__name__)
    return str(annotation)


def _field_at(loc: tuple) -> Any:
    model: Any = Config
    ann = None
    for part in loc:
        if isinstance(part, int) or model is None:
            return ann
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return ann
        ann = field.annotation
        model = _submodel(ann)
    return ann


def _format_validation(err: ValidationError, source: str) -> str:
    problems = []
    all_keys = _paths(Config)
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith(("function-", "literal["))))
        # pydantic appends the union member tried (e.g. 'Intrinsics'); keep only real keys.
        loc = tuple(p for p in loc if not (isinstance(p, str) and p[:1].isupper()))
        key = ".".join(str(p) for p in loc)
        if e["type"] == "extra_forbidden":
            parent = ".".join(str(p) for p in loc[:-1])
            siblings = [k for k in all_keys if k.rsplit(".", 1)[0] == parent] if parent else [
                k for k in all_keys if "." not in k]
            names = [s.rsplit(".", 1)[-1] for s in siblings]
            close = difflib.get_close_matches(str(loc[-1]), names, n=1, cutoff=0.5)
            hint = f"; did you mean '{(parent + '.') if parent else ''}{close[0]}'?" if close else (
                f"; valid keys here: {', '.join(names)}" if names else "")
            problems.append(f"unknown key '{key}'{hint}")
        elif e["type"] in ("missing",):
            problems.append(f"'{key}' is required")
        elif e["type"].endswith(("_type", "_parsing")) or e["type"] in ("literal_error", "model_type", "dict_type", "list_type"):
            ann = _field_at(loc)
            expected = _type_name(ann) if ann is not None else e["msg"]
            got = e.get("input")
            problems.append(f"'{key}' must be {expected} (got {got!r})")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            problems.append(f"'{key}': {msg}" if key else msg)
    return f"{source}: " + "; ".join(problems)


def _set_dotted(data: dict, key: str, value: Any, source: str) -> None:
    parts = key.split(".")
    cur = data
    for p in parts[:-1]:
        nxt = cur.get(p)
        if nxt is None:
            nxt = cur[p] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"{source}: cannot set '{key}': '{p}' is not a section")
        cur = nxt
    cur[parts[-1]] = value


def parse_override(item: str) -> tuple[str, Any]:
    """Parse one ``section.key=value``; the value is read as YAML (numbers, true/false, null, lists)."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected section.key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {item!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load and validate a config file (or the defaults), then apply ``--set`` overrides."""
    data: dict = {}
    source = "defaults"
    if path is not None:
        p = Path(path)
        source = str(p)
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found")
        try:
            loaded = yaml.safe_load(p.read_text())
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark else ""
            raise ConfigError(f"{p}: not valid YAML{where}: {getattr(e, 'problem', e)}") from e
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: the top level must be a mapping of sections")
        data = loaded
    for item in overrides:
        key, value = parse_override(item)
        _set_dotted(data, key, value, f"--set {item}")
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        src = source if not overrides else f"{source} + --set"
        raise ConfigError(_format_validation(e, src)) from e


# ------------------------------------------------------------------------------- y2r init output
def commented_yaml(model: BaseModel | None = None, indent: int = 0) -> str:
    """The config as YAML with each key's description as a comment above it."""
    model = model or Config()
    lines: list[str] = []
    pad = "  " * indent
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        desc = field.description
        if desc:
            lines.append(f"{pad}# {desc}")
        if isinstance(value, BaseModel):
            lines.append(f"{pad}{name}:")
            lines.append(commented_yaml(value, indent + 1).rstrip("\n"))
        else:
            v = _jsonable(value)
            if isinstance(v, (list, dict)) and v:
                dumped = yaml.safe_dump({name: v}, sort_keys=False, default_flow_style=True, width=1000).rstrip("\n")
                dumped = dumped[1:-1] if dumped.startswith("{") else dumped
            else:
                scalar = yaml.safe_dump(v, default_flow_style=True).strip()
                scalar = scalar.removesuffix("...").strip()
                dumped = f"{name}: {scalar}"
            lines.extend(pad + ln for ln in dumped.splitlines())
        if indent == 0:
            lines.append("")
    return "\n".join(lines) + "\n"


def _jsonable(v: Any) -> Any:
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    return v


INIT_HEADER = """\
# y2r configuration. Every key is shown with its default; delete what you do not change.
# Override any key on the command line:  y2r run VIDEOS -o OUT --set camera.backend=builtin
"""
