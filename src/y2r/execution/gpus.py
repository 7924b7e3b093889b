"""GPU inventory and per-process GPU memory, from NVML (nvidia-ml-py).

NVML sees physical devices regardless of ``CUDA_VISIBLE_DEVICES``, so y2r indexes GPUs by their
NVML index and hands each worker exactly one via ``CUDA_VISIBLE_DEVICES`` before it starts.
Per-process memory comes from ``nvmlDeviceGetComputeRunningProcesses``; a worker's usage is the
sum over its whole process tree (a tool shim and whatever it spawns), since CUDA contexts live in
whichever process created them.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import psutil

try:  # nvidia-ml-py is a dependency, but the NVIDIA driver (libnvidia-ml) may be absent.
    import pynvml
except ImportError:  # pragma: no cover
    pynvml = None


@dataclass(frozen=True)
class GpuDevice:
    index: int
    name: str
    uuid: str
    total_mb: float
    used_mb: float
    free_mb: float


class NvmlUnavailable(RuntimeError):
    pass


_lock = threading.Lock()
_initialised = False


def _init() -> None:
    global _initialised
    with _lock:
        if _initialised:
            return
        if pynvml is None:
            raise NvmlUnavailable("nvidia-ml-py is not installed")
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as e:
            raise NvmlUnavailable(f"NVML unavailable: {e}") from e
        _initialised = True


def _s(x) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def inventory(devices: list[int] | str | None = "all") -> list[GpuDevice]:
    """The GPUs y2r may use (``execution.gpus.devices``); empty when there is no NVIDIA driver."""
    if devices is None:
        return []
    try:
        _init()
    except NvmlUnavailable:
        return []
    out = []
    for i in range(pynvml.nvmlDeviceGetCount()):
        if devices != "all" and i not in devices:
            continue
        h = pynvml.nvmlDeviceGetHandleByIndex(i)
        mem = pynvml.nvmlDeviceGetMemoryInfo(h)
        out.append(GpuDevice(index=i, name=_s(pynvml.nvmlDeviceGetName(h)), uuid=_s(pynvml.nvmlDeviceGetUUID(h)),
                             total_mb=mem.total / 2**20, used_mb=mem.used / 2**20, free_mb=mem.free / 2**20))
    return allowed_by_environment(out, os.environ.get("CUDA_VISIBLE_DEVICES"))


def allowed_by_environment(devs: list[GpuDevice], visible: str | None) -> list[GpuDevice]:
    """The devices that y2r's own ``CUDA_VISIBLE_DEVICES`` allows (e.g. what SLURM granted the job).

    NVML lists every GPU of the node whatever the job was given, so without this a SLURM shard on a
    node without device cgroups would place workers on other jobs' GPUs. Entries are GPU UUIDs
    (``GPU-...``, also as prefixes) or indices, read in NVML's (PCI bus) order, which is CUDA's
    with ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` (SLURM's convention).
    """
    if visible is None:
        return devs
    tokens = [t.strip() for t in visible.split(",") if t.strip()]
    keep = []
    for d in devs:
        for tok in tokens:
            if (tok.startswith("GPU-") and d.uuid.startswith(tok)) or (tok.isdigit() and int(tok) == d.index):
                keep.append(d)
                break
    return keep


def simulated_inventory(capacities_mb: list[float]) -> list[GpuDevice]:
    """Simulated GPUs (``execution.gpus.simulate``): see ``execution/simulated_gpus.py``."""
    return [GpuDevice(index=i, name="simulated", uuid=f"SIM-{i}", total_mb=float(c), used_mb=0.0, free_mb=float(c))
            for i, c in enumerate(capacities_mb)]


def tree_rss_mb(pid: int) -> float:
    """Resident host memory of a process and all its descendants (MB)."""
    total = 0.0
    try:
        procs = [psutil.Process(pid)]
        procs += procs[0].children(recursive=True)
    except psutil.Error:
        return 0.0
    for p in procs:
        try:
            total += p.memory_info().rss / 2**20
        except psutil.Error:
            continue
    return total


def device_used_mb(index: int) -> float | None:
    """Memory in use on a device, all processes included (NVML); None without NVML."""
    try:
        _init()
        return pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(index)).used / 2**20
    except (NvmlUnavailable, pynvml.NVMLError):
        return None


def process_tree(pid: int) -> set[int]:
    try:
        p = psutil.Process(pid)
        return {pid, *(c.pid for c in p.children(recursive=True))}
    except psutil.Error:
        return set()


def gpu_memory_by_pid(index: int) -> dict[int, float]:
    """MB of GPU memory each process holds on one device."""
    _init()
    h = pynvml.nvmlDeviceGetHandleByIndex(index)
    out: dict[int, float] = {}
    for fn in (pynvml.nvmlDeviceGetComputeRunningProcesses, pynvml.nvmlDeviceGetGraphicsRunningProcesses):
        try:
            procs = fn(h)
        except pynvml.NVMLError:
            continue
        for p in procs:
            used = getattr(p, "usedGpuMemory", None)
            if used is not None:
                out[p.pid] = out.get(p.pid, 0.0) + used / 2**20
    return out


def tree_gpu_memory_mb(pid: int, index: int) -> float:
    """GPU memory held on device ``index`` by a worker and all its descendants."""
    pids = process_tree(pid)
    by_pid = gpu_memory_by_pid(index)
    return sum(mb for p, mb in by_pid.items() if p in pids)
