"""ViPE (nv-tlabs/vipe v1.1.0): its output layout, readers/writers, and conversion to y2r's camera artifact.

Layout of one ViPE output root (``pipeline.output.path``), for a sequence ``<name>`` (writer:
``vipe/utils/io.py``; frame ``i`` is the position in the *processed* stream)::

    pose/<name>.npz                data (N,4,4) float32 camera-to-world (OpenCV axes), inds (N,) int64
    intrinsics/<name>.npz          data (N,4) float32 [fx, fy, cx, cy] (mei: 5, + xi), inds (N,) int64
    intrinsics/<name>_camera.txt   "i: PINHOLE" per frame
    depth/<name>.zip               deflate zip of {i:05d}.exr, one HALF channel "Z", ZIP compression, metres
    mask/<name>.zip                zip of {i:05d}.png, uint8 instance ids (0 = background)
    mask/<name>.txt                "id: phrase" lines
    rgb/<name>.mp4                 H.264 of the processed frames (fps = input fps / frame_skip)
    vipe/<name>_info.pkl           pickle {"ba_residual": float}; how ViPE itself finds sequences

Conventions: poses are ``world_T_cam`` with the world at frame 0 (what y2r stores, so no
inversion); K is in pixels of the ViPE input resolution; depth is z-depth in metres, stored as
float16 (2^-11 relative precision), at most 1000 m (ViPE clamps inverse depth at 1e-3).

EXR files are read and written with the OpenEXR >= 3.3 ``OpenEXR.File`` API; the bytes on disk are
the same as ViPE's (it uses the pre-3.3 API of the same library).
"""

from __future__ import annotations

import io
import pickle
import zipfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from y2r.artifacts import CameraArtifact, VideoMeta
from y2r.errors import InputError

# ViPE's AdaptiveDepthProcessor clamps inverse depth at 1e-3, so 1000 m means "no depth here"
# (sky, or an alignment that failed); float16 stores 1000 exactly.
VIPE_MAX_DEPTH_M = 1000.0
PINHOLE = "PINHOLE"


# ------------------------------------------------------------------------------------ paths
@dataclass(frozen=True)
class ViPEPaths:
    """The files of one sequence in a ViPE output root (mirrors ViPE's ``ArtifactPath``)."""

    root: Path
    name: str

    @property
    def pose(self) -> Path:
        return self.root / "pose" / f"{self.name}.npz"

    @property
    def intrinsics(self) -> Path:
        return self.root / "intrinsics" / f"{self.name}.npz"

    @property
    def camera_type(self) -> Path:
        return self.root / "intrinsics" / f"{self.name}_camera.txt"

    @property
    def depth(self) -> Path:
        return self.root / "depth" / f"{self.name}.zip"

    @property
    def mask(self) -> Path:
        return self.root / "mask" / f"{self.name}.zip"

    @property
    def mask_phrases(self) -> Path:
        return self.root / "mask" / f"{self.name}.txt"

    @property
    def rgb(self) -> Path:
        return self.root / "rgb" / f"{self.name}.mp4"

    @property
    def info(self) -> Path:
        return self.root / "vipe" / f"{self.name}_info.pkl"


def discover(root: Path) -> list[str]:
    """Sequence names in a ViPE output root, found the way ViPE does (``vipe/*_info.pkl``)."""
    d = Path(root) / "vipe"
    if not d.is_dir():
        return []
    return sorted(p.name[: -len("_info.pkl")] for p in d.glob("*_info.pkl"))


# ------------------------------------------------------------------------------------ readers
def _indexed_npz(path: Path, what: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            data, inds = np.asarray(z["data"]), np.asarray(z["inds"], np.int64)
    except (OSError, KeyError, ValueError) as e:
        raise InputError(path, f"not a readable ViPE {what} file ({e})") from e
    if len(data) != len(inds):
        raise InputError(path, f"ViPE {what}: {len(data)} entries but {len(inds)} indices")
    return inds, data


def read_poses(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(inds (N,), world_T_cam (N,4,4) float64)`` from ``pose/<name>.npz``."""
    inds, data = _indexed_npz(path, "pose")
    if data.ndim != 3 or data.shape[1:] != (4, 4):
        raise InputError(path, f"ViPE pose data must be (N,4,4), got {data.shape}")
    data = data.astype(np.float64)
    if not np.allclose(data[:, 3], [0, 0, 0, 1], atol=1e-6):
        raise InputError(path, "ViPE pose matrices do not end with the row [0, 0, 0, 1]")
    return inds, data


def read_camera_types(path: Path) -> dict[int, str]:
    """``intrinsics/<name>_camera.txt``: frame -> camera model name (``PINHOLE``, ``MEI``, ...)."""
    out: dict[int, str] = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            idx, _, kind = line.partition(":")
            out[int(idx)] = kind.strip()
    return out


def read_intrinsics(path: Path, camera_txt: Path | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(inds, params (N,>=4) float64 [fx, fy, cx, cy, ...], camera type per entry)``."""
    inds, data = _indexed_npz(path, "intrinsics")
    if data.ndim != 2 or data.shape[1] < 4:
        raise InputError(path, f"ViPE intrinsics must be (N,4+), got {data.shape}")
    types = read_camera_types(camera_txt) if camera_txt is not None and Path(camera_txt).exists() else {}
    kinds = [types.get(int(i), PINHOLE if data.shape[1] == 4 else "UNKNOWN") for i in inds]
    return inds, data.astype(np.float64), kinds


def _member_index(name: str) -> int:
    return int(Path(name).stem)


def decode_exr_z(data: bytes) -> np.ndarray:
    """The ``Z`` channel of one EXR file (bytes) as float32 (H,W)."""
    import OpenEXR  # noqa: PLC0415 - only needed when depth is read

    f = OpenEXR.File(io.BytesIO(data), separate_channels=True)
    channels = f.parts[0].channels
    if "Z" not in channels:
        raise ValueError(f"no 'Z' channel (channels: {sorted(channels)})")
    return np.asarray(channels["Z"].pixels, dtype=np.float32)


def encode_exr_z(depth: np.ndarray) -> bytes:
    """One depth map as an EXR file: a single HALF channel ``Z``, ZIP compression (ViPE's format)."""
    import OpenEXR  # noqa: PLC0415

    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    buf = io.BytesIO()
    OpenEXR.File(header, {"Z": np.ascontiguousarray(depth, dtype=np.float16)}).write(buf)
    return buf.getvalue()


def read_depth_zip(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(inds (N,), depth (N,H,W) float32 metres)``; an unreadable frame comes back all-NaN, as in ViPE."""
    inds: list[int] = []
    frames: list[np.ndarray | None] = []
    shape: tuple[int, int] | None = None
    try:
        with zipfile.ZipFile(path) as z:
            for name in sorted(n for n in z.namelist() if n.endswith(".exr")):
                inds.append(_member_index(name))
                try:
                    d = decode_exr_z(z.read(name))
                    shape = shape or d.shape
                    frames.append(d)
                except (OSError, ValueError, RuntimeError):
                    frames.append(None)
    except (OSError, zipfile.BadZipFile) as e:
        raise InputError(path, f"not a readable ViPE depth zip ({e})") from e
    if shape is None:
        raise InputError(path, "ViPE depth zip holds no readable EXR frame")
    out = np.full((len(frames), *shape), np.nan, np.float32)
    for i, d in enumerate(frames):
        if d is not None:
            if d.shape != shape:
                raise InputError(path, f"depth frame {inds[i]} is {d.shape}, frame {inds[0]} is {shape}")
            out[i] = d
    return np.asarray(inds, np.int64), out


def read_mask_zip(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(inds (N,), instance ids (N,H,W) uint8)`` from ``mask/<name>.zip``."""
    inds, frames = [], []
    try:
        with zipfile.ZipFile(path) as z:
            for name in sorted(n for n in z.namelist() if n.endswith(".png")):
                img = cv2.imdecode(np.frombuffer(z.read(name), np.uint8), cv2.IMREAD_UNCHANGED)
                if img is None or img.ndim != 2:
                    raise InputError(path, f"mask {name} is not a single-channel PNG")
                inds.append(_member_index(name))
                frames.append(img.astype(np.uint8))
    except (OSError, zipfile.BadZipFile) as e:
        raise InputError(path, f"not a readable ViPE mask zip ({e})") from e
    if not frames:
        raise InputError(path, "ViPE mask zip holds no PNG")
    return np.asarray(inds, np.int64), np.stack(frames)


def read_phrases(path: Path) -> dict[int, str]:
    """``mask/<name>.txt``: instance id -> text prompt that found it."""
    out: dict[int, str] = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            idx, _, phrase = line.partition(":")
            out[int(idx)] = phrase.strip()
    return out


class _InfoUnpickler(pickle.Unpickler):
    """ViPE's info file is a pickle of plain floats; refuse anything that would import code."""

    def find_class(self, module: str, name: str):  # noqa: D401
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a ViPE info file")


def read_info(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            info = _InfoUnpickler(f).load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as e:
        raise InputError(path, f"not a ViPE info file ({e})") from e
    if not isinstance(info, dict):
        raise InputError(path, "ViPE info file does not hold a dict")
    return info


def probe_rgb(path: Path) -> tuple[int, int, float] | None:
    """(width, height, fps) of ViPE's ``rgb/<name>.mp4``, or None when it is absent/unreadable."""
    if not Path(path).exists():
        return None
    import av  # noqa: PLC0415

    try:
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            rate = s.average_rate or s.guessed_rate
            return int(s.codec_context.width), int(s.codec_context.height), float(rate) if rate else 0.0
    except (av.error.FFmpegError, IndexError, OSError):
        return None


# ------------------------------------------------------------------------------------ writers
def write_poses(path: Path, world_T_cam: np.ndarray, inds: np.ndarray | None = None) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    T = len(world_T_cam)
    np.savez(path, data=np.asarray(world_T_cam, np.float32),
             inds=np.arange(T, dtype=np.int64) if inds is None else np.asarray(inds, np.int64))


def write_intrinsics(path: Path, camera_txt: Path, params: np.ndarray, camera_type: str = PINHOLE) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    params = np.asarray(params, np.float32)
    np.savez(path, data=params, inds=np.arange(len(params), dtype=np.int64))
    Path(camera_txt).write_text("".join(f"{i}: {camera_type}\n" for i in range(len(params))))


def write_depth_zip(path: Path, depth: np.ndarray) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for i, d in enumerate(depth):
            z.writestr(f"{i:05d}.exr", encode_exr_z(d))


def write_mask_zip(path: Path, masks: np.ndarray, phrases: dict[int, str], phrases_path: Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for i, m in enumerate(masks):
            ok, buf = cv2.imencode(".png", np.asarray(m, np.uint8))
            if not ok:
                raise ValueError(f"cannot encode mask {i}")
            z.writestr(f"{i:05d}.png", buf.tobytes())
    Path(phrases_path).write_text("".join(f"{k}: {v}\n" for k, v in phrases.items()))


def write_info(path: Path, ba_residual: float = 0.0) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump({"ba_residual": float(ba_residual)}, f)


# ------------------------------------------------------------------------------------ one sequence
@dataclass
class ViPEResult:
    """Everything ViPE wrote for one sequence, indexed by ViPE frame (0..N-1)."""

    name: str
    world_T_cam: np.ndarray  # (N,4,4) float64
    intrinsics: np.ndarray  # (N,4+) float64 [fx, fy, cx, cy, ...] in ViPE-input pixels
    camera_types: list[str]
    size: tuple[int, int] | None  # (H, W) of ViPE's input; None if nothing in the output says
    depth: np.ndarray | None = None  # (N,H,W) float32 metres (NaN where a frame was unreadable)
    masks: np.ndarray | None = None  # (N,H,W) uint8
    phrases: dict[int, str] | None = None
    fps: float | None = None  # of rgb/<name>.mp4 when present
    info: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return len(self.world_T_cam)


def _check_inds(path: Path, inds: np.ndarray, n: int, what: str) -> None:
    if len(inds) != n or not np.array_equal(inds, np.arange(n)):
        raise InputError(path, f"ViPE {what} indices are not 0..{n - 1} (got {len(inds)} entries); "
                               "the output is incomplete or was written by another tool")


def load_result(root: Path, name: str) -> ViPEResult:
    """Read and check one sequence of a ViPE output root."""
    p = ViPEPaths(Path(root), name)
    for need, what in ((p.pose, "pose"), (p.intrinsics, "intrinsics")):
        if not need.exists():
            raise InputError(need, f"ViPE {what} file missing (ViPE writes it only with "
                                   "pipeline.output.save_artifacts=true)")
    inds, poses = read_poses(p.pose)
    n = len(poses)
    _check_inds(p.pose, inds, n, "pose")
    iinds, params, kinds = read_intrinsics(p.intrinsics, p.camera_type)
    _check_inds(p.intrinsics, iinds, n, "intrinsics")
    size = None
    depth = masks = None
    if p.depth.exists():
        dinds, depth = read_depth_zip(p.depth)
        _check_inds(p.depth, dinds, n, "depth")
        size = depth.shape[1:]
    if p.mask.exists():
        minds, masks = read_mask_zip(p.mask)
        _check_inds(p.mask, minds, n, "mask")
        if size is not None and masks.shape[1:] != size:
            raise InputError(p.mask, f"masks are {masks.shape[1:]}, depth is {size}")
        size = size or masks.shape[1:]
    rgb = probe_rgb(p.rgb)
    if size is None and rgb is not None:
        size = (rgb[1], rgb[0])
    phrases = read_phrases(p.mask_phrases) if p.mask_phrases.exists() else None
    info = read_info(p.info) if p.info.exists() else {}
    return ViPEResult(name=name, world_T_cam=poses, intrinsics=params, camera_types=kinds,
                      size=(int(size[0]), int(size[1])) if size is not None else None, depth=depth, masks=masks,
                      phrases=phrases, fps=rgb[2] if rgb is not None and rgb[2] > 0 else None, info=info)


# ------------------------------------------------------------------------------------ conversions
def intrinsics_matrix(params: np.ndarray) -> np.ndarray:
    """[fx, fy, cx, cy] (...,4+) -> K (...,3,3)."""
    params = np.asarray(params, np.float64)
    K = np.zeros(params.shape[:-1] + (3, 3))
    K[..., 0, 0], K[..., 1, 1] = params[..., 0], params[..., 1]
    K[..., 0, 2], K[..., 1, 2] = params[..., 2], params[..., 3]
    K[..., 2, 2] = 1.0
    return K


def rescale_K(K: np.ndarray, from_hw: tuple[int, int], to_hw: tuple[int, int]) -> np.ndarray:
    """K of an image resized (whole frame, no crop) from ``from_hw`` to ``to_hw``.

    Integer pixel coordinates are pixel centres, so ``u' = (u + 0.5) * s - 0.5``.
    """
    sy, sx = to_hw[0] / from_hw[0], to_hw[1] / from_hw[1]
    K = np.array(K, np.float64)
    K[..., 0, 0] *= sx
    K[..., 0, 1] *= sx
    K[..., 1, 1] *= sy
    K[..., 0, 2] = (K[..., 0, 2] + 0.5) * sx - 0.5
    K[..., 1, 2] = (K[..., 1, 2] + 0.5) * sy - 0.5
    return K


def pixel_map_to_stored(vipe_hw: tuple[int, int], meta: VideoMeta, *, vipe_saw: str) -> tuple[np.ndarray, np.ndarray]:
    """Per axis ``(a, b)`` with ``stored = a * vipe + b`` (x first), in pixel-centre coordinates.

    ``vipe_saw`` is ``"stored"`` when ViPE was run on y2r's own frames (y2r's ViPE backend) and
    ``"source"`` when it ran on the source video (imported results), possibly at another size.
    """
    Hv, Wv = vipe_hw
    if vipe_saw == "stored":
        ref_w, ref_h = meta.width, meta.height
        x0, y0, cw, ch = 0.0, 0.0, float(meta.width), float(meta.height)
        sx, sy = 1.0, 1.0
    else:
        ref_w, ref_h = meta.source_width, meta.source_height
        x0, y0, cw, ch = meta.crop if meta.crop[2] > 0 else (0.0, 0.0, float(ref_w), float(ref_h))
        sx, sy = meta.width / cw, meta.height / ch
    # ViPE pixels -> reference pixels (whole-frame resize), then reference -> stored (crop + scale).
    rx, ry = ref_w / Wv, ref_h / Hv
    a = np.array([rx * sx, ry * sy])
    b = np.array([(0.5 * rx - 0.5 - x0 + 0.5) * sx - 0.5, (0.5 * ry - 0.5 - y0 + 0.5) * sy - 0.5])
    return a, b


def K_to_stored(K: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Apply the affine pixel map ``stored = a * vipe + b`` to K (...,3,3)."""
    K = np.array(K, np.float64)
    K[..., 0, :] = K[..., 0, :] * a[0] + K[..., 2, :] * b[0]
    K[..., 1, :] = K[..., 1, :] * a[1] + K[..., 2, :] * b[1]
    return K


def resample_to_stored(images: np.ndarray, a: np.ndarray, b: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resampling of (N,H,W) images through the pixel map (0 outside).

    Nearest, not bilinear: interpolating depth across an object boundary invents points floating
    between foreground and background, and instance ids cannot be interpolated at all.
    """
    if np.allclose(a, 1) and np.allclose(b, 0) and images.shape[1:] == tuple(out_hw):
        return images
    H, W = out_hw
    # WARP_INVERSE_MAP: M maps destination (stored) pixels to source (ViPE) pixels.
    M = np.array([[1 / a[0], 0, -b[0] / a[0]], [0, 1 / a[1], -b[1] / a[1]]], np.float64)
    flags = cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
    out = np.empty((len(images), H, W), images.dtype)
    for i, img in enumerate(images):
        out[i] = cv2.warpAffine(img, M, (W, H), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out


def match_frames(result: ViPEResult, meta: VideoMeta, frame_index: np.ndarray, path: Path) -> np.ndarray:
    """For each stored frame, the ViPE frame that shows it (imported results).

    ViPE numbers frames by position in its processed stream: raw frame ``frame_start + i*frame_skip``.
    - ViPE ran on y2r's own (resampled) frames: same count, and its video's fps is y2r's fps.
    - Otherwise ViPE ran on the source video: stored frame t is source frame ``frame_index[t]``, and
      the fps of ViPE's rgb video tells the frame skip (source fps / ViPE fps).
    A stored frame with no ViPE frame is an error: poses are not interpolated silently.
    """
    n, T = result.num_frames, len(frame_index)
    src = np.asarray(frame_index, np.int64)

    def close(a: float, b: float) -> bool:
        return abs(a - b) <= 0.01 * max(abs(a), abs(b))

    resampled = not close(meta.fps, meta.source_fps)
    if result.fps and n == T and resampled and close(result.fps, meta.fps):
        return np.arange(T)
    skip = 1
    if result.fps and meta.source_fps > 0:
        ratio = meta.source_fps / result.fps
        skip = max(1, int(round(ratio)))
        if abs(ratio - skip) > 0.02 * skip:
            raise InputError(path, f"ViPE output is at {result.fps:.3f} fps, the source at {meta.source_fps:.3f} fps "
                                   f"and y2r's frames at {meta.fps:.3f} fps: cannot tell which frames ViPE processed")
    if np.any(src % skip):
        raise InputError(path, f"ViPE processed one source frame in {skip} but y2r keeps source frames "
                               f"{src[src % skip != 0][:5].tolist()}...; set ingest.fps so that they coincide")
    idx = src // skip
    if idx.max() >= n:
        raise InputError(path, f"ViPE output has {n} frames but this video needs ViPE frame {int(idx.max())} "
                               f"(source frame {int(src.max())}); ViPE's run.py stops at 1000 frames unless "
                               "streams.frame_end=-1 -- re-run ViPE on the whole video")
    return idx


def to_camera_artifact(result: ViPEResult, meta: VideoMeta, frame_map: np.ndarray, path: Path, *,
                       vipe_saw: str, source: str) -> CameraArtifact:
    """ViPE frames ``frame_map`` -> y2r's camera artifact at the stored resolution."""
    bad = sorted({k for k in result.camera_types if k != PINHOLE})
    if bad:
        raise InputError(path, f"ViPE camera model {', '.join(bad)} is not pinhole; y2r stores pinhole K "
                               "(use a pinhole ViPE preset, not wide_angle or panorama)")
    H, W = meta.height, meta.width
    vipe_hw = result.size
    quality: dict = {"vipe_frames": result.num_frames}
    if vipe_hw is None:
        # Only poses and intrinsics were written (depth and masks off, rgb deleted): ViPE's cx, cy sit
        # at about W/2, H/2 of its input, which tells the input size.
        ref = (meta.height, meta.width) if vipe_saw == "stored" else (meta.source_height, meta.source_width)
        vipe_hw = ref
        quality["vipe_size_assumed"] = True
    a, b = pixel_map_to_stored(vipe_hw, meta, vipe_saw=vipe_saw)
    K = K_to_stored(intrinsics_matrix(result.intrinsics[frame_map, :4]), a, b)
    world_T_cam = result.world_T_cam[frame_map]
    if result.depth is not None:
        d = resample_to_stored(result.depth[frame_map], a, b, (H, W))
        valid = np.isfinite(d) & (d > 0) & (d < VIPE_MAX_DEPTH_M)
        depth = np.where(valid, d, 0).astype(np.float32)
    else:
        depth = np.zeros((len(frame_map), H, W), np.float32)
        valid = np.zeros((len(frame_map), H, W), bool)
        quality["depth"] = "none (ViPE ran with post.depth_align_model=null)"
    masks = resample_to_stored(result.masks[frame_map], a, b, (H, W)) if result.masks is not None else None
    if "ba_residual" in result.info:
        quality["ba_residual"] = float(result.info["ba_residual"])
    quality["depth_valid_fraction"] = float(valid.mean()) if valid.size else 0.0
    return CameraArtifact(K=K.astype(np.float32), world_T_cam=world_T_cam.astype(np.float32), depth=depth,
                          depth_valid=valid, metric_scale=True, source=source, quality=quality,
                          instance_masks=masks, instance_phrases=result.phrases)


def write_lossless_video(path: Path, frames: np.ndarray, fps: float) -> Path:
    """The frames as an H.264 file ViPE's reader (OpenCV) decodes bit-exactly.

    ``libx264rgb`` at crf 0 codes RGB losslessly; plain libx264 goes through YUV 4:2:0 and would
    hand ViPE slightly different pixels than y2r stores.
    """
    import av  # noqa: PLC0415

    T, H, W, _ = frames.shape
    with av.open(str(path), mode="w") as c:
        s = c.add_stream("libx264rgb", rate=Fraction(fps).limit_denominator(1001))
        s.width, s.height, s.pix_fmt = W, H, "rgb24"
        s.options = {"crf": "0", "preset": "veryfast"}
        for img in frames:
            for pkt in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img, np.uint8), format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return Path(path)
