"""Fake ultralytics.YOLO (tests only): "detects" pure-red (right, class 1) and pure-blue (left, class 0)
blobs in BGR images, one box per colour, as ultralytics Results.boxes (xyxy, conf, cls)."""

from types import SimpleNamespace

import fake_truth
import numpy as np
import torch


class YOLO:
    def __init__(self, path):
        fake_truth.log_load("wilor", "YOLO")

    def to(self, device):
        return self

    def __call__(self, images, conf=0.25, verbose=True):
        results = []
        for img in images:
            b, g, r = (np.asarray(img)[..., c].astype(int) for c in range(3))
            boxes, scores, classes = [], [], []
            for cls, mask, score in ((1, (r > 200) & (g < 50) & (b < 50), 0.9), (0, (b > 200) & (g < 50) & (r < 50), 0.8)):
                if mask.any() and score >= conf:
                    ys, xs = np.nonzero(mask)
                    boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
                    scores.append(score)
                    classes.append(cls)
            t = lambda a, s: torch.from_numpy(np.asarray(a, np.float32).reshape(s))
            results.append(SimpleNamespace(boxes=SimpleNamespace(xyxy=t(boxes, (-1, 4)), conf=t(scores, (-1,)),
                                                                 cls=t(classes, (-1,)))))
        return results
