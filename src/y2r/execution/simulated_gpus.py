"""Simulated GPUs, so GPU lanes (placement, packing, OOM recovery) run on a machine without one.

``execution.gpus.simulate: [capacity_mb, ...]`` makes the local executor treat each entry as a GPU.
Its workers run on the CPU (``CUDA_VISIBLE_DEVICES`` is empty) and:

- **Measurement**: a worker's "GPU memory" is the growth of its process tree's resident host memory
  (RSS) above the baseline taken after the worker process started and before its backend loaded.
  The synthetic backends allocate (and touch) real host memory for their model and per-video
  growth when ``device: cpu``, so what the scheduler learns is measured, not declared. Imports done
  at load count as part of the worker's base, as a CUDA context does on a real GPU.
- **Capacity**: the device's memory is a small shared account (a JSON file per simulated GPU,
  updated under ``flock``) in which every allocation of a synthetic backend is booked; an
  allocation that would exceed the capacity raises the same ``OutOfMemory`` as a CUDA allocation,
  so over-packing fails exactly like on a real GPU. Bookings of processes that died are dropped, as
  the driver frees a dead process's memory.

Worker processes find their device through two environment variables set by the local transport.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
from pathlib import Path

from y2r.errors import OutOfMemory

ENV_FILE = "Y2R_SIMULATED_GPU_FILE"
ENV_CAPACITY = "Y2R_SIMULATED_GPU_MB"
ENV_INDEX = "Y2R_SIMULATED_GPU_INDEX"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SimulatedDevice:
    """One simulated GPU's memory account, shared by every process that uses it."""

    _handles = itertools.count(1)

    def __init__(self, path: str | os.PathLike, capacity_mb: float, index: int = 0):
        self.path = Path(path)
        self.capacity_mb = float(capacity_mb)
        self.index = index

    @classmethod
    def from_env(cls) -> SimulatedDevice | None:
        path = os.environ.get(ENV_FILE)
        if not path:
            return None
        return cls(path, float(os.environ.get(ENV_CAPACITY, "0")), int(os.environ.get(ENV_INDEX, "0")))

    def env(self) -> dict[str, str]:
        return {ENV_FILE: str(self.path), ENV_CAPACITY: f"{self.capacity_mb:.1f}", ENV_INDEX: str(self.index)}

    def _update(self, change) -> object:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                f.seek(0)
                text = f.read()
                book: dict[str, dict[str, float]] = json.loads(text) if text.strip() else {}
                book = {pid: a for pid, a in book.items() if _alive(int(pid))}
                result = change(book)
                f.seek(0)
                f.truncate()
                f.write(json.dumps(book))
                f.flush()
                return result
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def used_mb(self) -> float:
        return float(self._update(lambda book: sum(sum(a.values()) for a in book.values())))

    def allocate(self, mb: float) -> str:
        """Book ``mb`` for this process; raise ``OutOfMemory`` if the device cannot hold it."""
        handle = f"{os.getpid()}-{next(self._handles)}"

        def change(book):
            used = sum(sum(a.values()) for a in book.values())
            if used + mb > self.capacity_mb:
                raise OutOfMemory(f"CUDA out of memory (simulated GPU {self.index}): tried to allocate {mb:.0f} MB "
                                  f"with {used:.0f} of {self.capacity_mb:.0f} MB in use")
            book.setdefault(str(os.getpid()), {})[handle] = float(mb)
            return handle

        return str(self._update(change))

    def free(self, handle: str) -> None:
        def change(book):
            mine = book.get(str(os.getpid()), {})
            mine.pop(handle, None)
            if not mine:
                book.pop(str(os.getpid()), None)

        self._update(change)
