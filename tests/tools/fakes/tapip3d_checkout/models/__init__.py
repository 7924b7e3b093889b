"""Fake TAPIP3D models package: from_pretrained reads a JSON 'checkpoint' with the training size."""

import json

import fake_truth


class FakeTracker:
    bidirectional = False

    def __init__(self, image_size):
        self.image_size = tuple(image_size)

    def to(self, device):
        return self

    def eval(self):
        return self

    def set_eval_mode(self, mode):
        pass

    def set_image_size(self, size):
        self.image_size = tuple(size)


def from_pretrained(checkpoint_path):
    with open(checkpoint_path) as f:
        cfg = json.load(f)
    fake_truth.log_load("tapip3d", "from_pretrained")
    return FakeTracker(cfg["image_size"]), cfg
