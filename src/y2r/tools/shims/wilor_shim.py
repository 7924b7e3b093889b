"""WiLoR worker shim: runs inside WiLoR's own environment, with its checkout as working directory.

Standalone: the standard library, numpy and WiLoR's own dependencies (torch, ultralytics, ...);
``y2r_shim`` comes from this folder. Never imports y2r.

Per worker (rolpotamias/WiLoR @ 819369a, as ``demo.py``): ``wilor.models.load_wilor(checkpoint_path,
cfg_path)`` and ``ultralytics.YOLO(detector)`` once. ``load_wilor`` rewrites the MANO paths to
``./mano_data/`` -- relative to the working directory, which is why the worker runs in the checkout.
Importing ``wilor.models`` imports pyrender (``PYOPENGL_PLATFORM=egl`` unless set) and ``load_wilor``
builds an offscreen renderer, so a headless machine needs EGL (or ``PYOPENGL_PLATFORM=osmesa``).

Per request: ``frames.npy`` (T,H,W,3) uint8 RGB. Frames go to the detector in batches (BGR, as the
demo's ``cv2.imread`` gives it); every detected hand of every frame is cropped by WiLoR's
``ViTDetDataset`` and reconstructed in batches of ``batch_size`` crops across frames.

Output (``.npz``, one row per detected hand, in WiLoR's own conventions -- y2r converts them):
    frame (M,) int32, box (M,4) xyxy px, score (M,), is_right (M,) bool (detector class 1)
    box_center (M,2), box_size (M,) px         the square crop ViTDetDataset used
    global_orient (M,3,3), hand_pose (M,15,3,3), betas (M,10)   MANO, rotation matrices,
                                               RIGHT-hand space (a left hand is predicted mirrored)
    keypoints_3d (M,21,3)                      OpenPose order, metres, right-hand space, no translation
    pred_cam (M,3), pred_cam_t (M,3)           crop camera [s, tx, ty] and its translation (raw)
    cam_t_full (M,3)                           demo.py's full-image translation (left tx un-mirrored)
    focal_length ()                            the focal it assumes: FOCAL_LENGTH/IMAGE_SIZE*max(W,H)
    keypoints_2d (M,21,2)                      full-image pixels: the joints (x un-mirrored for left
                                               hands, as demo.py does) + cam_t_full, projected with
                                               that focal and principal point (W/2, H/2)
    image_size (2,)                            [W, H]
    vertices (M,778,3)                         optional, right-hand space, no translation
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path

import numpy as np
import y2r_shim
from y2r_shim import BadInput, UserError

ROW_KEYS = ("frame", "box", "score", "is_right", "box_center", "box_size", "global_orient", "hand_pose", "betas",
            "keypoints_3d", "pred_cam", "pred_cam_t", "cam_t_full", "keypoints_2d")


def _numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach()
    if hasattr(x, "cpu"):
        x = x.cpu()
    return np.asarray(x.numpy() if hasattr(x, "numpy") else x)


class WiLoRHandler(y2r_shim.Handler):
    name = "wilor"

    def __init__(self) -> None:
        self.model = None
        self.cfg = None
        self.detector = None
        self.device = None

    def hello(self) -> dict:
        return {"tool": "wilor", "y2r_importable": importlib.util.find_spec("y2r") is not None}

    def load(self, params: dict) -> dict:
        t0 = time.perf_counter()
        # demo.py runs from the checkout: its folder is on sys.path (the wilor package is not installed).
        root = Path(params.get("root") or os.getcwd()).resolve()
        if not (root / "wilor").is_dir():
            raise UserError(f"{root} is not a WiLoR checkout (no wilor/ package); set tools.wilor.root")
        sys.path.insert(0, str(root))
        paths = {k: Path(params[k]) for k in ("checkpoint", "model_config", "detector")}
        for key, p in paths.items():
            if not p.is_file():
                raise UserError(f"WiLoR {key} not found: {p}")
        if not (Path.cwd() / "mano_data" / "MANO_RIGHT.pkl").is_file():
            raise UserError(f"{Path.cwd()}/mano_data/MANO_RIGHT.pkl is missing: register at mano.is.tue.mpg.de and "
                            "put MANO_RIGHT.pkl there (WiLoR loads MANO from ./mano_data/)")
        import torch  # noqa: PLC0415
        from ultralytics import YOLO  # noqa: PLC0415
        from wilor.models import load_wilor  # noqa: PLC0415

        want = params.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
        if want.startswith("cuda") and not torch.cuda.is_available():
            raise UserError("CUDA is not available in WiLoR's environment; check the driver and CUDA_VISIBLE_DEVICES")
        self.device = torch.device(want)
        model, cfg = load_wilor(checkpoint_path=str(paths["checkpoint"]), cfg_path=str(paths["model_config"]))
        self.model = model.to(self.device)
        self.model.eval()
        self.detector = YOLO(str(paths["detector"])).to(self.device)
        self.cfg = cfg
        return {"torch": torch.__version__, "device": str(self.device), "focal_length": float(cfg.EXTRA.FOCAL_LENGTH),
                "image_size": int(cfg.MODEL.IMAGE_SIZE), "load_s": round(time.perf_counter() - t0, 3)}

    def _detect(self, frames: np.ndarray, start: int, conf: float) -> list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
        images = [np.ascontiguousarray(f[..., ::-1]) for f in frames]  # RGB -> BGR, as demo.py's cv2.imread
        results = self.detector(images, conf=conf, verbose=False)
        out = []
        for i, r in enumerate(results):
            b = r.boxes
            xyxy, score, cls = _numpy(b.xyxy).reshape(-1, 4), _numpy(b.conf).reshape(-1), _numpy(b.cls).reshape(-1)
            if len(xyxy):
                out.append((start + i, xyxy.astype(np.float32), score.astype(np.float32), cls.astype(np.float32)))
        return out

    def run(self, params: dict, ctx: y2r_shim.RequestContext) -> dict:
        import torch  # noqa: PLC0415
        from wilor.datasets.vitdet_dataset import ViTDetDataset  # noqa: PLC0415
        from wilor.utils import recursive_to  # noqa: PLC0415
        from wilor.utils.renderer import cam_crop_to_full  # noqa: PLC0415

        t0 = time.perf_counter()
        frames = np.load(params["frames"], mmap_mode="r")
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise BadInput(f"{params['frames']}: expected (T,H,W,3) uint8 frames, got {frames.shape} {frames.dtype}")
        T, H, W, _ = frames.shape
        conf = float(params.get("detector_confidence", 0.3))
        batch_size = int(params.get("batch_size", 16))
        det_batch = int(params.get("detector_batch", 16))
        rescale = float(params.get("rescale_factor", 2.0))
        save_vertices = bool(params.get("save_vertices", False))
        focal = float(self.cfg.EXTRA.FOCAL_LENGTH) / float(self.cfg.MODEL.IMAGE_SIZE) * max(W, H)
        rows: dict[str, list] = {k: [] for k in ROW_KEYS}
        vertices: list[np.ndarray] = []
        pending: list[tuple[int, dict, np.ndarray, float]] = []  # (frame, crop item, box, score)

        def reconstruct(items: list[tuple[int, dict, np.ndarray, float]]) -> None:
            batch = recursive_to(torch.utils.data.default_collate([it[1] for it in items]), self.device)
            with torch.no_grad():
                out = self.model(batch)
            right = batch["right"]
            pred_cam = out["pred_cam"].clone()
            pred_cam[:, 1] = (2 * right - 1) * pred_cam[:, 1]  # demo.py: un-mirror tx of left hands
            cam_t_full = _numpy(cam_crop_to_full(pred_cam, batch["box_center"].float(), batch["box_size"].float(),
                                                 batch["img_size"].float(), focal))
            mano = out["pred_mano_params"]
            joints = _numpy(out["pred_keypoints_3d"]).astype(np.float32)
            r = _numpy(right).astype(bool)
            sign = np.where(r, 1.0, -1.0)[:, None]
            pts = joints.copy()
            pts[..., 0] *= sign
            pts = pts + cam_t_full[:, None, :]
            kp2d = focal * pts[..., :2] / pts[..., 2:3] + np.array([W / 2.0, H / 2.0])
            rows["frame"].extend(it[0] for it in items)
            rows["box"].extend(it[2] for it in items)
            rows["score"].extend(it[3] for it in items)
            rows["is_right"].extend(r.tolist())
            rows["box_center"].append(_numpy(batch["box_center"]).reshape(-1, 2))
            rows["box_size"].append(_numpy(batch["box_size"]).reshape(-1))
            rows["global_orient"].append(_numpy(mano["global_orient"]).reshape(-1, 3, 3))
            rows["hand_pose"].append(_numpy(mano["hand_pose"]).reshape(-1, 15, 3, 3))
            rows["betas"].append(_numpy(mano["betas"]).reshape(-1, 10))
            rows["keypoints_3d"].append(joints)
            rows["pred_cam"].append(_numpy(out["pred_cam"]).reshape(-1, 3))
            rows["pred_cam_t"].append(_numpy(out["pred_cam_t"]).reshape(-1, 3))
            rows["cam_t_full"].append(cam_t_full.reshape(-1, 3))
            rows["keypoints_2d"].append(kp2d.astype(np.float32))
            if save_vertices:
                vertices.append(_numpy(out["pred_vertices"]).astype(np.float32))

        for start in range(0, T, det_batch):
            chunk = np.asarray(frames[start:start + det_batch])
            for f, boxes, scores, cls in self._detect(chunk, start, conf):
                dataset = ViTDetDataset(self.cfg, chunk[f - start][..., ::-1].copy(), boxes, cls, rescale_factor=rescale)
                for j in range(len(dataset)):
                    pending.append((f, dataset[j], boxes[j], float(scores[j])))
                while len(pending) >= batch_size:
                    reconstruct(pending[:batch_size])
                    pending = pending[batch_size:]
            ctx.progress(min(start + det_batch, T), T)
        if pending:
            reconstruct(pending)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        M = len(rows["frame"])
        arrays = {
            "frame": np.asarray(rows["frame"], np.int32).reshape(M),
            "box": np.asarray(rows["box"], np.float32).reshape(M, 4),
            "score": np.asarray(rows["score"], np.float32).reshape(M),
            "is_right": np.asarray(rows["is_right"], bool).reshape(M),
        }
        empty = {"box_center": (2,), "box_size": (), "global_orient": (3, 3), "hand_pose": (15, 3, 3), "betas": (10,),
                 "keypoints_3d": (21, 3), "pred_cam": (3,), "pred_cam_t": (3,), "cam_t_full": (3,),
                 "keypoints_2d": (21, 2)}
        for k, shape in empty.items():
            arrays[k] = (np.concatenate(rows[k]).astype(np.float32) if rows[k] else np.zeros((0, *shape), np.float32))
        if save_vertices:
            arrays["vertices"] = np.concatenate(vertices) if vertices else np.zeros((0, 778, 3), np.float32)
        arrays["focal_length"] = np.float32(focal)
        arrays["image_size"] = np.array([W, H], np.int32)
        out_path = Path(params["output"])
        out_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = out_path.with_name(out_path.name + ".part.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, out_path)
        return {"output": str(out_path), "num_frames": T, "num_hands": M, "focal_length": focal,
                "frames_with_hands": len(set(rows["frame"])), "run_s": round(time.perf_counter() - t0, 3)}


if __name__ == "__main__":
    y2r_shim.serve(WiLoRHandler())
