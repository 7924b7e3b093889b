"""TAPIP3D worker shim: runs inside TAPIP3D's own environment, with its checkout as working directory.

Standalone: the standard library, numpy and TAPIP3D's own dependencies; ``y2r_shim`` comes from
this folder. Never imports y2r.

TAPIP3D (zbw001/TAPIP3D @ 9359ae2) is not a package: its code imports the top-level names
``utils``, ``models``, ``datasets``, ``annotation``, ``third_party`` from the checkout root (and
``datasets`` shadows Hugging Face's). So the root goes first on ``sys.path`` here, in a process of
its own, where those names cannot collide with y2r's or another tool's.

Per worker: ``utils.inference_utils.load_model(checkpoint)`` once, moved to the device, with
``inference_res = int(model.image_size * sqrt(resolution_factor))`` (as ``inference.py``).
Per request: an input ``.npz`` that y2r built (``video`` uint8 (T,H,W,3), ``depths`` (T,H,W) metres,
``intrinsics`` (T,3,3) at the depth resolution, ``extrinsics`` (T,4,4) world->camera,
``query_point`` (N,4) ``[t, x, y, z]`` world) goes through TAPIP3D's own ``inference.prepare_inputs``
(resize, K rescale, depth edge filter) and ``utils.inference_utils.inference`` under bf16 autocast;
the result is saved with ``inference.py``'s keys.

Short clips: TAPIP3D slides windows of ``seq_len`` (16) frames with stride 8 over ``range(seq_len,
T+1, 8)``, so with T <= 8 no window runs and every query comes back unmoved and invisible. A clip
shorter than ``MIN_FRAMES`` is padded here by repeating its last frame (a camera that stopped),
and the padded frames are cut from the result; the result says how many were added.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import y2r_shim
from y2r_shim import BadInput, UserError

MIN_FRAMES = 9
REQUIRED_KEYS = ("video", "depths", "intrinsics", "extrinsics", "query_point")


def _numpy(x) -> np.ndarray:
    """Tensor (any device) or array -> numpy."""
    if hasattr(x, "detach"):
        x = x.detach()
    if hasattr(x, "cpu"):
        x = x.cpu()
    if hasattr(x, "float") and str(getattr(x, "dtype", "")) == "torch.bfloat16":
        x = x.float()
    return np.asarray(x.numpy() if hasattr(x, "numpy") else x)


def _pad_input(src: Path, dst: Path, minimum: int) -> int:
    """Write ``src`` padded to ``minimum`` frames (last frame repeated); return the frames added."""
    with np.load(src) as z:
        data = {k: z[k] for k in z.files}
    T = len(data["video"])
    add = minimum - T
    for k in ("video", "depths", "intrinsics", "extrinsics"):
        data[k] = np.concatenate([data[k], np.repeat(data[k][-1:], add, axis=0)], axis=0)
    np.savez(dst, **data)
    return add


class TAPIP3DHandler(y2r_shim.Handler):
    name = "tapip3d"

    def __init__(self) -> None:
        self.model = None
        self.device = "cuda"
        self.inference_res: tuple[int, int] = (0, 0)

    def hello(self) -> dict:
        return {"tool": "tapip3d", "y2r_importable": importlib.util.find_spec("y2r") is not None}

    def load(self, params: dict) -> dict:
        t0 = time.perf_counter()
        root = Path(params.get("root") or os.getcwd()).resolve()
        if not (root / "utils").is_dir() or not (root / "models").is_dir():
            raise UserError(f"{root} is not a TAPIP3D checkout (no utils/ and models/ folders); set tools.tapip3d.root")
        sys.path.insert(0, str(root))
        import torch  # noqa: PLC0415

        self.device = str(params.get("device") or "cuda")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise UserError("CUDA is not available in TAPIP3D's environment (its pointops2 extension is CUDA-only); "
                            "check the driver, CUDA_VISIBLE_DEVICES and that torch is a CUDA build")
        ckpt = Path(params["checkpoint"])
        if not ckpt.is_file():
            raise UserError(f"TAPIP3D checkpoint not found: {ckpt}")
        from utils.inference_utils import load_model  # noqa: PLC0415 - TAPIP3D's top-level package

        model = load_model(str(ckpt))
        model.to(self.device)
        factor = float(params.get("resolution_factor", 2))
        self.inference_res = (int(model.image_size[0] * math.sqrt(factor)), int(model.image_size[1] * math.sqrt(factor)))
        model.set_image_size(self.inference_res)
        self.model = model
        return {"torch": torch.__version__, "device": self.device, "inference_res": list(self.inference_res),
                "model_image_size": [int(v) for v in model.image_size], "root": str(root),
                "load_s": round(time.perf_counter() - t0, 3)}

    def run(self, params: dict, ctx: y2r_shim.RequestContext) -> dict:
        import torch  # noqa: PLC0415
        from inference import prepare_inputs  # noqa: PLC0415 - TAPIP3D's inference.py (checkout root)
        from utils.inference_utils import inference  # noqa: PLC0415

        t0 = time.perf_counter()
        src, out = Path(params["input"]), Path(params["output"])
        out.parent.mkdir(parents=True, exist_ok=True)
        with np.load(src) as z:
            missing = [k for k in REQUIRED_KEYS if k not in z.files]
            if missing:
                raise BadInput(f"{src}: missing {missing} (y2r passes depth, intrinsics, extrinsics and queries)")
            T = len(z["video"])
            depths = z["depths"]
            if not np.all(np.isfinite(depths)):
                raise BadInput(f"{src}: depths contain NaN/inf (TAPIP3D asserts finite depth)")
            if not (depths > 0).any():
                raise BadInput(f"{src}: no valid (positive) depth in any frame")
            n_queries = len(z["query_point"])
        if T < 2:
            raise BadInput(f"TAPIP3D needs at least 2 frames, got {T}")
        if n_queries == 0:
            raise BadInput("no query points")
        padded = 0
        path = src
        if T < MIN_FRAMES:
            path = out.with_name(out.name.replace(".result.npz", "") + ".padded.npz")
            padded = _pad_input(src, path, MIN_FRAMES)
        ctx.progress(0, T)
        try:
            video, depths, intrinsics, extrinsics, query_point, support = prepare_inputs(
                input_path=str(path), inference_res=self.inference_res,
                support_grid_size=int(params.get("support_grid_size", 16)),
                num_threads=int(params.get("num_threads", 8)), device=self.device)
            autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if self.device.startswith("cuda")
                        else contextlib.nullcontext())
            with autocast:
                coords, visibs = inference(model=self.model, video=video, depths=depths, intrinsics=intrinsics,
                                           extrinsics=extrinsics, query_point=query_point,
                                           num_iters=int(params.get("num_iters", 6)), grid_size=support,
                                           vis_threshold=float(params.get("vis_threshold", 0.9)))
            peak = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else 0.0
            arrays = {"coords": _numpy(coords).astype(np.float32), "visibs": _numpy(visibs).astype(bool),
                      "query_points": _numpy(query_point).astype(np.float32),
                      "intrinsics": _numpy(intrinsics).astype(np.float32),
                      "extrinsics": _numpy(extrinsics).astype(np.float32)}
            if params.get("save_video_and_depths", False):
                # The full inference.py layout (what visualize.py reads): inference-resolution video
                # and filtered depths, about 5 MB per frame at the default resolution.
                arrays["video"] = _numpy(video).astype(np.float32)
                arrays["depths"] = _numpy(depths).astype(np.float32)
        finally:
            if padded:
                path.unlink(missing_ok=True)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        if padded:
            # inference() squeezes the point axis when N == 1: time is axis 0 either way.
            for k in ("coords", "visibs", "intrinsics", "extrinsics", "video", "depths"):
                if k in arrays:
                    arrays[k] = arrays[k][:T]
        tmp = out.with_name(out.name + ".part.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, out)
        ctx.progress(T, T)
        return {"output": str(out), "num_frames": T, "num_queries": int(n_queries), "padded_frames": padded,
                "inference_res": list(self.inference_res), "cuda_peak_allocated_mb": round(peak, 1),
                "run_s": round(time.perf_counter() - t0, 3)}


if __name__ == "__main__":
    y2r_shim.serve(TAPIP3DHandler())
