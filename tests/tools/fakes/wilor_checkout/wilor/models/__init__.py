import os
from types import SimpleNamespace

import fake_truth
import numpy as np
import torch

MIRROR = np.diag([-1.0, 1.0, 1.0])


def template_vertices() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(778, 3)) * 0.03


class FakeWiLoR:
    def __init__(self, cfg):
        self.cfg = cfg
        with np.load(os.environ["FAKE_WILOR_TRUTH"]) as z:
            self.truth = {k: z[k] for k in z.files}

    def to(self, device):
        return self

    def eval(self):
        return self

    def __call__(self, batch):
        fake_truth.maybe_fail("wilor")
        tr = self.truth
        K = tr["K"]
        f_real = K[0, 0]
        out = {k: [] for k in ("pred_cam", "go", "hp", "betas", "kp3d", "verts")}
        for b in range(len(batch["right"])):
            frame, right = int(batch["fake_frame"][b]), bool(batch["right"][b] > 0.5)
            rows = np.flatnonzero((tr["frame"] == frame) & (tr["is_right"] == right))
            i = int(rows[0])
            J = tr["joints_cam"][i] - tr["origin"][i]
            W, H = np.asarray(batch["img_size"][b], np.float64)
            f_w = self.cfg.EXTRA.FOCAL_LENGTH / self.cfg.MODEL.IMAGE_SIZE * max(W, H)
            p0 = K @ tr["joints_cam"][i][0]
            p0 = p0[:2] / p0[2]
            zw0 = tr["joints_cam"][i][0, 2] * f_w / f_real
            t_w = np.array([(p0[0] - W / 2) * zw0 / f_w - J[0, 0], (p0[1] - H / 2) * zw0 / f_w - J[0, 1], zw0 - J[0, 2]])
            bsize = float(batch["box_size"][b])
            cx, cy = np.asarray(batch["box_center"][b], np.float64)
            s = 2 * f_w / (bsize * t_w[2])
            tx_c = t_w[0] - 2 * (cx - W / 2) / (bsize * s)
            ty_c = t_w[1] - 2 * (cy - H / 2) / (bsize * s)
            m = MIRROR if not right else np.eye(3)
            out["pred_cam"].append([s, tx_c if right else -tx_c, ty_c])
            out["go"].append(m @ tr["R"][i] @ m)
            out["hp"].append(np.einsum("ij,kjl,lm->kim", m, tr["hand_pose"][i], m))
            out["betas"].append(tr["betas"][i])
            out["kp3d"].append(J @ m.T)
            out["verts"].append((tr["R"][i] @ template_vertices().T).T @ m.T)
        B = len(out["pred_cam"])
        pc = np.asarray(out["pred_cam"], np.float64).reshape(B, 3)
        t = lambda a: torch.from_numpy(np.asarray(a, np.float32))
        return {
            "pred_cam": t(pc),
            "pred_mano_params": {"global_orient": t(np.asarray(out["go"]).reshape(B, 1, 3, 3)),
                                 "hand_pose": t(np.asarray(out["hp"]).reshape(B, 15, 3, 3)),
                                 "betas": t(np.asarray(out["betas"]).reshape(B, 10))},
            "pred_cam_t": t(np.stack([pc[:, 1], pc[:, 2], 2 * 5000.0 / (256 * pc[:, 0])], axis=-1)),
            "focal_length": t(np.full((B, 2), 5000.0)),
            "pred_keypoints_3d": t(np.asarray(out["kp3d"]).reshape(B, 21, 3)),
            "pred_vertices": t(np.asarray(out["verts"]).reshape(B, 778, 3)),
            "pred_keypoints_2d": t(np.zeros((B, 21, 2))),
        }


def load_wilor(checkpoint_path, cfg_path):
    # Like upstream: MANO is loaded from ./mano_data/, relative to the working directory.
    if not os.path.isfile("./mano_data/MANO_RIGHT.pkl"):
        raise FileNotFoundError("./mano_data/MANO_RIGHT.pkl")
    fake_truth.log_load("wilor", "load_wilor")
    cfg = SimpleNamespace(EXTRA=SimpleNamespace(FOCAL_LENGTH=5000), MODEL=SimpleNamespace(IMAGE_SIZE=256))
    return FakeWiLoR(cfg), cfg
