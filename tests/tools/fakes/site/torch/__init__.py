"""A stand-in for torch inside the *fake* tool environments of y2r's tests.

It implements only what y2r's shims and the fake tools call, on numpy: tensors are an ndarray
subclass with torch's method names. CUDA "availability" follows FAKE_TORCH_CUDA (default 1); no
memory is ever allocated on a GPU. Never shipped, never imported by y2r.
"""

from __future__ import annotations

import contextlib
import os
from types import SimpleNamespace

import numpy as np

__version__ = "0.0+fake"
float32 = np.float32
float16 = np.float16
bfloat16 = "bfloat16"
version = SimpleNamespace(cuda=None)


class Tensor(np.ndarray):
    def float(self):
        return self.astype(np.float32).view(Tensor)

    def cuda(self, *a, **k):
        return self

    def cpu(self):
        return self

    def to(self, *a, **k):
        return self

    def detach(self):
        return self

    def clone(self):
        return np.array(self).view(Tensor)

    def numpy(self):
        return np.asarray(self)

    def item(self):
        return np.asarray(self).item()

    def is_floating_point(self):
        return np.issubdtype(self.dtype, np.floating)


def _t(x) -> Tensor:
    return np.asarray(x).view(Tensor)


def as_tensor(data, dtype=None, device=None) -> Tensor:
    return _t(np.asarray(data, dtype=dtype))


def tensor(data, dtype=None, device=None) -> Tensor:
    return _t(np.array(data, dtype=dtype))


def from_numpy(a) -> Tensor:
    return _t(a)


def stack(xs, dim=0) -> Tensor:
    return _t(np.stack([np.asarray(x) for x in xs], axis=dim))


def device(name="cpu"):
    return str(name)


@contextlib.contextmanager
def no_grad():
    yield


inference_mode = no_grad


@contextlib.contextmanager
def autocast(device_type="cuda", dtype=None, enabled=True):
    yield


class _OOM(RuntimeError):
    pass


_OOM.__name__ = "OutOfMemoryError"


class _Cuda:
    OutOfMemoryError = _OOM

    @staticmethod
    def is_available() -> bool:
        return os.environ.get("FAKE_TORCH_CUDA", "1") == "1"

    @staticmethod
    def device_count() -> int:
        return 1 if _Cuda.is_available() else 0

    @staticmethod
    def get_device_name(i=0) -> str:
        return "Fake GPU"

    @staticmethod
    def empty_cache() -> None:
        pass

    @staticmethod
    def reset_peak_memory_stats() -> None:
        pass

    @staticmethod
    def max_memory_allocated() -> int:
        return 0

    @staticmethod
    def max_memory_reserved() -> int:
        return 0


cuda = _Cuda()

from torch import utils  # noqa: F401
