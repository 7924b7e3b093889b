"""The Ray executor's transport: the same persistent y2r workers, placed on a Ray cluster.

Who does what:

- **y2r's driver** (the process running ``y2r run``) keeps everything stateful: the ledger, the
  scheduler with its memory model and retry budgets, and the commit of every artifact. Ray only
  places processes and carries requests.
- **One Ray actor per y2r worker.** The actor owns exactly one ``WorkerProcess`` running
  ``python -m y2r.execution.worker_host`` on the actor's node: the same fresh interpreter (never a
  fork), own process group, JSON-lines protocol, heartbeats and request timeouts as the local
  executor, so a tool's own environment is started by the worker host exactly as locally and tool
  isolation does not change. The actor never imports a model or touches CUDA itself: it is a thin,
  threaded relay (``max_concurrency`` > 1 is safe because it holds no CUDA context), and when it
  dies its worker's whole process group goes with it (the worker host exits when its parent
  changes, and the actor kills the group first whenever it can).
- **GPUs.** At start the transport reserves one placement-group bundle ``{"GPU": 1}`` per GPU y2r
  may use and measures each one from inside its bundle (NVML free memory on that node). The
  scheduler's GPU index *is* the bundle index, so the memory-aware placement decided by the
  scheduler is exactly where Ray puts the actor. A GPU worker asks for a fractional ``num_gpus``:
  its lane's predicted peak memory over the GPU's measured capacity, rounded *up* to a grid fine
  enough that the rounding of all workers a GPU may hold fits in the scheduler's safety margin
  (:func:`gpu_fraction`, :func:`fraction_grid`). Ray sets the actor's ``CUDA_VISIBLE_DEVICES``;
  its worker process inherits it untouched.
- **Failures** keep their local meaning: a request timeout or missed heartbeats is a hang
  (detected inside the actor by ``WorkerProcess``, or by the driver when the actor itself stops
  answering); the worker process dying is a crash; the actor or its node dying is a crash; Ray's
  memory monitor killing the actor is an OOM. Actors are created with ``max_restarts=0`` and
  called with ``max_task_retries=0``: Ray never retries anything, so every attempt is counted
  exactly once, by y2r's scheduler.
- **Files.** Workers write into OUT (temporary folders the driver renames into place) and into
  OUT/logs, so OUT must be on a filesystem every node mounts at the same path; each worker checks
  this when it starts and fails with a clear message if not.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from y2r.config import Config
from y2r.errors import FailureKind, UsageError, WorkerCrashed, WorkerHung, Y2RError
from y2r.execution.driver import Post, TaskProgress, TaskResult, WorkerReady, WorkerStartFailed, WorkerStopped
from y2r.execution.scheduler import Assign, GpuSpec, StartWorker
from y2r.tools.worker import MISSED_HEARTBEATS, LaunchSpec, WorkerProcess

INSTALL_HINT = "pip install 'y2r[ray]'"
NAMESPACE = "y2r"
# Ray stores resource quantities as fixed point with 4 decimals: every share must be a multiple.
RAY_RESOLUTION = 1e-4
_GRID_STEPS = (0.05, 0.02, 0.01, 0.005, 0.002, 0.001, 0.0005, 0.0002, 0.0001)


def require_ray():
    """The ``ray`` module, or a one-line typed error saying how to install it."""
    try:
        import ray  # noqa: PLC0415 - optional extra
    except ImportError as e:
        missing = getattr(e, "name", None)
        why = "is not installed" if missing == "ray" else f"cannot be imported ({e})"
        raise UsageError(f"the Ray executor needs Ray, which {why}: {INSTALL_HINT}") from None
    return ray


# ----------------------------------------------------------------------------- GPU shares
def fraction_grid(capacity_mb: float, margin_mb: float, max_workers: int) -> float:
    """The coarsest grid step ``q`` whose round-up error, over every worker a GPU may hold, fits in the margin.

    Rounding each of up to ``max_workers`` shares up by less than ``q`` adds less than
    ``max_workers * q`` of the GPU; keeping that within ``margin_mb`` means a set of workers the
    scheduler accepts (sum of predicted peaks + margin <= capacity) always has shares summing to
    <= 1, so Ray can place it.
    """
    for q in _GRID_STEPS:
        if max_workers * q * capacity_mb <= margin_mb:
            return q
    return RAY_RESOLUTION


def gpu_fraction(peak_mb: float, capacity_mb: float, grid: float) -> float:
    """A worker's Ray GPU share: its predicted peak over the GPU's capacity, rounded *up* to ``grid``.

    Rounding up is what makes the shares a memory guarantee in Ray's own terms: shares summing to
    at most 1 imply predicted peaks summing to at most the capacity.
    """
    if capacity_mb <= 0:
        raise ValueError(f"GPU capacity must be positive, got {capacity_mb} MB")
    steps = math.ceil(max(0.0, peak_mb) / capacity_mb / grid - 1e-9)
    return round(min(1.0, max(1, steps) * grid), 4)


def capped_share(want: float, reserved: list[float], grid: float, max_workers: int) -> float:
    """The share a new worker gets next to ``reserved`` (our other workers' shares on that GPU).

    Normally ``want``. Capped when the GPU's remaining share, less one grid step kept for every
    further worker y2r may still start there (``max_workers`` in all), cannot hold it: then the
    largest grid multiple that fits, and never less than one step. This keeps every worker the
    scheduler admits placeable by Ray -- the scheduler counts idle workers at their resident memory
    (time-sharing the GPU between y2r's own workers), while a Ray reservation is fixed for the
    actor's life.
    """
    free = 1.0 - sum(reserved)
    room = free - grid * max(0, max_workers - len(reserved) - 1)
    if want <= room + 1e-9:
        return want
    return round(max(grid, math.floor(room / grid + 1e-9) * grid), 4)


# ----------------------------------------------------------------------------- the actor
def _worker_argv() -> list[str]:
    return [sys.executable, "-u", "-m", "y2r.execution.worker_host"]


def _nvml_gpu(gpu_id: str):
    """The NVML device for one of Ray's GPU ids (an index, or a GPU-/MIG- UUID), or None."""
    from y2r.execution import gpus  # noqa: PLC0415

    try:
        devices = gpus.inventory("all")
    except Exception:  # noqa: BLE001 - no driver / NVML: the caller decides what that means
        return None
    for d in devices:
        if gpu_id == str(d.index) or gpu_id == d.uuid:
            return d
    return None


class WorkerActor:
    """Runs inside a Ray actor: owns one y2r worker process on this node and relays requests to it.

    Failures are returned as plain dicts, never raised: y2r's typed errors do not all survive
    pickling, and an exception escaping here would be indistinguishable from a broken actor.
    """

    def __init__(self, worker_id: str, log_path: str, env: dict[str, str], startup_timeout_s: float,
                 heartbeat_s: float, gpu_lane: bool, shared_check: tuple[str, str], input_dirs: tuple[str, ...] = ()):
        self.worker_id = worker_id
        self.log_path = Path(log_path)
        self.env = dict(env)
        self.startup_timeout_s = startup_timeout_s
        self.heartbeat_s = heartbeat_s
        self.gpu_lane = gpu_lane
        self.shared_check = shared_check
        self.input_dirs = tuple(input_dirs)
        self.worker: WorkerProcess | None = None
        self.nvml_index: int | None = None
        self._lock = threading.Lock()
        self._seq = 0
        self._progress: tuple[str, int, int] | None = None  # (task key, done, total)

    def ping(self) -> bool:
        return True

    def start(self, load_params: dict) -> dict:
        import ray  # noqa: PLC0415

        t0 = time.monotonic()
        host = socket.gethostname()
        info: dict = {"host": host, "node_ip": ray.util.get_node_ip_address(), "actor_pid": os.getpid(),
                      "assigned": dict(ray.get_runtime_context().get_assigned_resources())}
        path, token = self.shared_check
        try:
            visible = Path(path).read_text() == token
        except OSError:
            visible = False
        if not visible:
            return {**info, "ok": False, "kind": FailureKind.USER_ERROR.value,
                    "message": f"{Path(path).parent.parent} is not visible from Ray node {host}: the output folder "
                               "must be on a filesystem every node mounts at the same path (docs/cluster.md)"}
        missing = [d for d in self.input_dirs if not os.path.isdir(d)]
        if missing:
            more = f" (and {len(missing) - 1} more input folders)" if len(missing) > 1 else ""
            return {**info, "ok": False, "kind": FailureKind.USER_ERROR.value,
                    "message": f"input folder {missing[0]}{more} is not visible from Ray node {host}: input videos "
                               "must be on a filesystem every node mounts at the same path (docs/cluster.md)"}
        env = dict(self.env)
        params = dict(load_params)
        if self.gpu_lane:
            ids = [str(i) for i in ray.get_gpu_ids()]
            info["gpu_ids"] = ids
            if os.environ.get("RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES", "0") not in ("", "0"):
                # The cluster told Ray not to set it; the worker must still see only its own GPU.
                env["CUDA_VISIBLE_DEVICES"] = ",".join(ids)
            # Otherwise the worker inherits this actor's CUDA_VISIBLE_DEVICES, which Ray set.
            dev = _nvml_gpu(ids[0]) if ids else None
            self.nvml_index = dev.index if dev is not None else None
            if self.nvml_index is not None:
                params["gpu"] = self.nvml_index  # the node-local index, for the worker's logs
        else:
            # Ray assigned no GPU, yet a num_gpus=0 actor still inherits the raylet's variable:
            # a CPU worker must not see (and grab memory on) the node's GPUs.
            env["CUDA_VISIBLE_DEVICES"] = ""
        info["cuda_visible_devices"] = env.get("CUDA_VISIBLE_DEVICES", os.environ.get("CUDA_VISIBLE_DEVICES"))
        spec = LaunchSpec(name=self.worker_id, argv=_worker_argv(), env=env, startup_timeout_s=self.startup_timeout_s,
                          heartbeat_s=self.heartbeat_s, label="")
        self.worker = WorkerProcess(spec, self.log_path)
        try:
            self.worker.start()
            info["loaded"] = self.worker.call("load", params, timeout_s=self.startup_timeout_s)
        except Y2RError as e:
            self.worker.kill()
            return {**info, "ok": False, "kind": e.kind.value, "message": e.one_line(),
                    "detail": getattr(e, "log_tail", None) or e.detail}
        except Exception as e:  # noqa: BLE001 - every start failure must reach the driver, typed
            self.worker.kill()
            return {**info, "ok": False, "kind": FailureKind.ERROR.value, "message": f"{type(e).__name__}: {e}"}
        return {**info, "ok": True, "load_s": time.monotonic() - t0, "worker_pid": self.worker.pid,
                "gpu_mb": self._gpu_mb()}

    def run(self, params: dict, timeout_s: float) -> dict:
        w = self.worker
        if w is None or not w.alive():
            return {"ok": False, "kind": FailureKind.CRASH.value, "message": "worker is not running", "worker_alive": False}
        key = params["out_dir"]  # unique per attempt: a poll never passes one task's progress off as another's

        def progress(done: int, total: int) -> None:
            with self._lock:
                self._seq += 1
                self._progress = (key, done, total)

        try:
            result = w.call("run", params, timeout_s=timeout_s, log_path=Path(params["log_path"]), on_progress=progress)
        except Y2RError as e:
            alive = w.alive() and not isinstance(e, (WorkerCrashed, WorkerHung))
            return {"ok": False, "kind": e.kind.value, "message": e.one_line(),
                    "detail": e.detail or getattr(e, "log_tail", None), "worker_alive": alive}
        except Exception as e:  # noqa: BLE001
            return {"ok": False, "kind": FailureKind.ERROR.value, "message": f"{type(e).__name__}: {e}",
                    "worker_alive": w.alive()}
        meta = getattr(w, "last_result_meta", {}) or {}
        return {"ok": True, "result": result, "peak_rss_mb": meta.get("peak_rss_mb")}

    def poll(self) -> dict:
        """Liveness, the latest progress, and the worker's GPU memory now."""
        with self._lock:
            out = {"seq": self._seq, "progress": self._progress}
        out["gpu_mb"] = self._gpu_mb()
        return out

    def _gpu_mb(self) -> float | None:
        """GPU memory of the worker's whole process tree on its device (NVML, this node)."""
        w = self.worker
        if self.nvml_index is None or w is None or w.pid is None:
            return None
        from y2r.execution import gpus  # noqa: PLC0415

        try:
            return gpus.tree_gpu_memory_mb(w.pid, self.nvml_index)
        except Exception:  # noqa: BLE001 - sampling is best effort, as locally
            return None

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()

    def kill_worker(self) -> None:
        if self.worker is not None:
            self.worker.kill(grace_s=2.0)


def _probe_gpu() -> dict:
    """Runs in a GPU bundle: which node and device it is, and the device's memory (NVML)."""
    import ray  # noqa: PLC0415

    ids = [str(i) for i in ray.get_gpu_ids()]
    dev = _nvml_gpu(ids[0]) if ids else None
    return {"host": socket.gethostname(), "node_ip": ray.util.get_node_ip_address(), "gpu_ids": ids,
            "name": dev.name if dev else None, "total_mb": dev.total_mb if dev else None,
            "free_mb": dev.free_mb if dev else None}


# ----------------------------------------------------------------------------- the transport
def _ray_failure(e: Exception) -> tuple[str, str]:
    """Failure kind and one-line message for an error Ray raised instead of our actor's answer."""
    from ray import exceptions as rex  # noqa: PLC0415

    text = " ".join(str(e).split())
    if isinstance(e, rex.OutOfMemoryError) or "running low on memory" in text:
        return FailureKind.OOM.value, "Ray's memory monitor killed the worker (the node ran low on host memory)"
    if isinstance(e, (rex.RayActorError, rex.WorkerCrashedError, rex.NodeDiedError)):
        return FailureKind.CRASH.value, f"Ray actor died: {text[:300]}"
    return FailureKind.ERROR.value, f"{type(e).__name__}: {text[:300]}"


MAX_INPUT_DIRS_CHECKED = 32


def sample_input_dirs(dirs: Sequence[str | Path]) -> tuple[str, ...]:
    """Up to ``MAX_INPUT_DIRS_CHECKED`` of the inputs' folders, spread over the sorted list.

    Each actor checks them before starting its worker: on a node that lacks the mount, every video
    would otherwise fail its ingest as a bad input (never retried), one by one, with "file not
    found" -- instead of one message saying which node cannot see what.
    """
    uniq = sorted({os.path.abspath(d) for d in dirs})  # as given: a symlinked mount is what nodes share
    if len(uniq) <= MAX_INPUT_DIRS_CHECKED:
        return tuple(uniq)
    step = len(uniq) / MAX_INPUT_DIRS_CHECKED
    return tuple(uniq[int(i * step)] for i in range(MAX_INPUT_DIRS_CHECKED))


class RayTransport:
    """Transport (see ``execution/driver.py``) whose workers are Ray actors."""

    def __init__(self, config: Config, log_dir: Path, *, heartbeat_s: float = 5.0, startup_timeout_s: float = 900.0,
                 poll_s: float = 0.25, placement_timeout_s: float = 120.0, input_dirs: Sequence[str | Path] = ()):
        self.ray = require_ray()
        self.input_dirs = sample_input_dirs(input_dirs)
        self.config = config
        self.log_dir = Path(log_dir)
        self.poll_s = poll_s
        self.placement_timeout_s = placement_timeout_s
        # The same worker heartbeat and start budget as LocalTransport's defaults.
        self.heartbeat_s = heartbeat_s
        self.startup_timeout_s = startup_timeout_s
        # The actor answers polls within milliseconds; this long without an answer means it is wedged
        # or unreachable -- the same allowance as a worker's missed heartbeats.
        self.unresponsive_s = self.heartbeat_s * MISSED_HEARTBEATS
        self.token = uuid.uuid4().hex[:8]
        self.scheduler = None
        self.pg = None
        self.gpus: dict[int, GpuSpec] = {}
        self.gpu_nodes: dict[int, dict] = {}
        self.actors: dict[str, object] = {}
        self.gpu_of: dict[str, int | None] = {}
        self.placements: dict[str, dict] = {}
        self._reserved: dict[int, dict[str, float]] = defaultdict(dict)
        self._gpu_mb: dict[str, float] = {}
        self._stopping: dict[str, object] = {}
        self._placed: set[str] = set()  # actors Ray has created (a pending one cannot answer a call)
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._owns_ray = False
        self._connect()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        (self.log_dir / "workers").mkdir(exist_ok=True)
        self._check_path = self.log_dir / "workers" / f".shared-check-{self.token}"
        self._check_path.write_text(self.token)
        self._actor_cls = self.ray.remote(WorkerActor)
        self._probe = self.ray.remote(_probe_gpu)

    # ------------------------------------------------------------------ cluster
    def _connect(self) -> None:
        ray = self.ray
        if ray.is_initialized():
            return  # embedded use (tests, notebooks): the caller owns the connection
        addr = self.config.execution.ray_address
        quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
        try:
            if addr is None:
                # A fresh single-node instance on this machine, never a cluster found by accident.
                ray.init(address="local", include_dashboard=False, **quiet)
            else:
                ray.init(address=addr, **quiet)
        except ConnectionError as e:
            if addr == "auto":
                raise UsageError("execution.ray_address=auto but no running Ray cluster was found: start one with "
                                 "`ray start --head` (see docs/cluster.md), or leave ray_address unset for a local "
                                 "instance") from None
            raise UsageError(f"cannot connect to the Ray cluster at {addr}: {' '.join(str(e).split())}") from None
        except (ValueError, RuntimeError) as e:
            raise UsageError(f"cannot start Ray (address {addr or 'local'}): {' '.join(str(e).split())}") from None
        self._owns_ray = True

    def default_cpu_workers(self, gpus: int = 0) -> int:
        """CPU-lane workers for the cluster: its CPUs, less one per GPU for the GPU workers' host side.

        GPU actors reserve no Ray CPU (a bundle holds just the GPU, so any node's CPUs stay usable
        for CPU stages), which is why their share of the CPUs is set aside here instead.
        """
        cpus = int(self.ray.cluster_resources().get("CPU", 1))
        return max(1, cpus - gpus)

    def gpu_specs(self) -> list[GpuSpec]:
        """Reserve the cluster's GPUs (one placement-group bundle each) and measure them from inside."""
        from ray.util.placement_group import placement_group, remove_placement_group  # noqa: PLC0415

        ray = self.ray
        if getattr(self.config.execution.gpus, "simulate", None):
            raise UsageError("execution.gpus.simulate is for the local executor; on Ray declare logical GPUs "
                             "(`ray start --num-gpus N`) and set execution.ray_gpu_memory_mb")
        devices = self.config.execution.gpus.devices
        total = int(ray.cluster_resources().get("GPU", 0))
        # Indices are node-local and mean nothing cluster-wide: with Ray a list only says how many.
        n = 0 if devices is None else total if devices == "all" else min(total, len(devices))
        if n == 0:
            return []
        pg = placement_group([{"GPU": 1}] * n, strategy="PACK", name=f"y2r-{self.token}")
        ready, _ = ray.wait([pg.ready()], timeout=self.placement_timeout_s)
        if not ready:
            remove_placement_group(pg)
            raise UsageError(f"Ray could not reserve {n} GPUs within {self.placement_timeout_s:.0f} s (are they used by "
                             "another job?); set execution.gpus.devices to use fewer")
        self.pg = pg
        probes = [self._probe.options(num_cpus=0, num_gpus=RAY_RESOLUTION, max_retries=0,
                                      scheduling_strategy=self._bundle(i)).remote() for i in range(n)]
        infos = ray.get(probes, timeout=self.placement_timeout_s)
        fallback = self.config.execution.ray_gpu_memory_mb
        specs = []
        for i, info in enumerate(infos):
            cap = info["free_mb"] if info["free_mb"] is not None else fallback
            if cap is None:
                raise UsageError(f"Ray GPU {info['gpu_ids']} on {info['host']}: NVML cannot read its memory (no NVIDIA "
                                 "driver there?); set execution.ray_gpu_memory_mb to schedule it anyway")
            ids = ",".join(info["gpu_ids"])
            specs.append(GpuSpec(i, f"{info['name'] or 'GPU'} @ {info['host']}:{ids}", float(cap)))
            self.gpu_nodes[i] = info
        self.gpus = {s.index: s for s in specs}
        return specs

    def bind(self, scheduler) -> None:
        """Give the transport the scheduler whose memory model sizes GPU shares."""
        self.scheduler = scheduler

    def _bundle(self, index: int):
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy  # noqa: PLC0415

        return PlacementGroupSchedulingStrategy(self.pg, placement_group_bundle_index=index)

    # ------------------------------------------------------------------ GPU shares
    def lane_peak_mb(self, lane_name: str) -> float:
        """The lane's predicted peak: its largest task still to run (or its resident memory if larger)."""
        s = self.scheduler
        if s is None:
            return 0.0
        lane = s.lanes[lane_name]
        peak = s.memory.base(lane.stage, lane.backend)
        for v in s.videos.values():
            t = v.tasks.get(lane.stage)
            if t is not None and t.lane == lane_name and t.state in ("waiting", "ready", "running"):
                peak = max(peak, s.memory.predict(t.stage, t.backend, v.frames, v.pixels))
        return peak

    def gpu_share(self, worker_id: str, lane_name: str, gpu: int) -> dict:
        """The ``num_gpus`` a new worker asks for on GPU (bundle) ``gpu``, and why."""
        spec = self.gpus[gpu]
        ex = self.config.execution.gpus
        grid = fraction_grid(spec.capacity_mb, ex.margin_mb, ex.max_workers_per_gpu)
        peak = self.lane_peak_mb(lane_name)
        want = gpu_fraction(peak, spec.capacity_mb, grid)
        with self._lock:
            others = self._reserved[gpu]
            share = capped_share(want, list(others.values()), grid, ex.max_workers_per_gpu)
            others[worker_id] = share
        # A cap only happens when the scheduler admitted this worker next to workers of ours that are
        # idle at their resident memory. The scheduler stays the memory authority (it checks every
        # task's predicted peak against the GPU before assigning it), and the bundle reserves the
        # whole GPU for this run, so no other Ray workload can use the difference.
        return {"num_gpus": share, "predicted_peak_mb": round(peak, 1), "capacity_mb": spec.capacity_mb,
                "grid": grid, "wanted": want, "capped": share < want}

    def _release(self, worker_id: str) -> None:
        with self._lock:
            g = self.gpu_of.get(worker_id)
            if g is not None:
                self._reserved[g].pop(worker_id, None)
            self._gpu_mb.pop(worker_id, None)

    # ------------------------------------------------------------------ Transport
    def start_worker(self, action: StartWorker, load_params: dict, post: Post) -> None:
        ray = self.ray
        wid = action.worker_id
        gpu_lane = action.gpu is not None
        opts: dict = {"max_restarts": 0, "max_task_retries": 0, "max_concurrency": 4, "namespace": NAMESPACE,
                      "name": f"y2r-{self.token}-{wid}"}
        placement = {"lane": action.lane, "bundle": action.gpu}
        if gpu_lane:
            share = self.gpu_share(wid, action.lane, action.gpu)
            placement.update(share)
            opts.update(num_cpus=0, num_gpus=share["num_gpus"], scheduling_strategy=self._bundle(action.gpu))
        else:
            opts.update(num_cpus=1, num_gpus=0)
        env = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        log_path = self.log_dir / "workers" / f"{wid}.log"
        actor = self._actor_cls.options(**opts).remote(wid, str(log_path), env, self.startup_timeout_s, self.heartbeat_s,
                                                       gpu_lane, (str(self._check_path), self.token), self.input_dirs)
        with self._lock:
            self.actors[wid] = actor
            self.gpu_of[wid] = action.gpu
            self.placements[wid] = placement

        def go() -> None:
            try:
                # 1) Placement: Ray queues the actor until its resources are free; that wait is not
                #    part of the start budget (a worker may legitimately wait for a CPU or a GPU share).
                ping = actor.ping.remote()
                while not self._closed:
                    ready, _ = ray.wait([ping], timeout=1.0)
                    if ready:
                        ray.get(ping)
                        self._placed.add(wid)
                        break
                if self._closed:
                    self._kill_actor(wid)
                    return
                # 2) Start the worker process and load its backends, within the startup timeout.
                ref = actor.start.remote(load_params)
                ready, _ = ray.wait([ref], timeout=self.startup_timeout_s + 30.0)
                if not ready:
                    self._kill_actor(wid)
                    post(WorkerStartFailed(wid, FailureKind.HANG.value,
                                           f"worker did not start within {self.startup_timeout_s:.0f} s"))
                    return
                info = ray.get(ref)
            except Exception as e:  # noqa: BLE001 - actor creation failed or it died while starting
                self._kill_actor(wid)
                if not self._closed:
                    kind, message = _ray_failure(e)
                    post(WorkerStartFailed(wid, kind, message))
                return
            placement.update({k: info.get(k) for k in ("host", "node_ip", "gpu_ids", "cuda_visible_devices",
                                                       "assigned", "worker_pid")})
            if not info.get("ok"):
                self._kill_actor(wid)
                post(WorkerStartFailed(wid, info["kind"], info["message"], info.get("detail")))
                return
            if self._closed:
                self._kill_actor(wid)
                return
            if info.get("gpu_mb") is not None:
                self._gpu_mb[wid] = info["gpu_mb"]
            post(WorkerReady(wid, info["load_s"], info.get("worker_pid")))

        self._spawn(go, f"start-{wid}")

    def run_task(self, action: Assign, params: dict, post: Post) -> None:
        ray = self.ray
        wid = action.worker_id
        actor = self.actors[wid]
        ref = actor.run.remote(params, action.timeout_s)

        def fail(kind: str, message: str, detail: str | None = None) -> None:
            # The worker is gone (or useless): free its actor and GPU share before the driver
            # (which forgets a dead worker) schedules a replacement.
            self._kill_actor(wid)
            post(TaskResult(wid, action.video_id, action.stage, False, kind=kind, message=message, detail=detail,
                            worker_alive=False))

        def go() -> None:
            # The actor enforces the request timeout itself; this later deadline only catches an actor
            # that cannot report it.
            deadline = time.monotonic() + action.timeout_s + self.unresponsive_s
            last_answer = time.monotonic()
            seen = 0
            poll = None
            while True:
                ready, _ = ray.wait([ref], timeout=self.poll_s)
                if ready or self._closed:
                    break
                now = time.monotonic()
                if poll is None:
                    poll = actor.poll.remote()
                elif ray.wait([poll], timeout=0)[0]:
                    try:
                        p = ray.get(poll)
                    except Exception:  # noqa: BLE001 - the actor died: the run reference says how
                        p = None
                    poll = None
                    if p is not None:
                        last_answer = now
                        prog = p["progress"]
                        if p["seq"] > seen and prog and prog[0] == params["out_dir"]:
                            seen = p["seq"]
                            post(TaskProgress(wid, action.video_id, action.stage, prog[1], prog[2]))
                        if p["gpu_mb"] is not None:
                            self._gpu_mb[wid] = p["gpu_mb"]
                if now - last_answer > self.unresponsive_s:
                    fail(FailureKind.HANG.value, f"Ray actor stopped answering (nothing for {self.unresponsive_s:.0f} s)")
                    return
                if now > deadline:
                    fail(FailureKind.HANG.value, f"no result after {action.timeout_s:.0f} s (request timeout)")
                    return
            if self._closed:
                return
            try:
                out = ray.get(ref)
            except Exception as e:  # noqa: BLE001 - actor/node death, Ray OOM kill, anything Ray raises
                kind, message = _ray_failure(e)
                fail(kind, message)
                return
            if out["ok"]:
                if wid in self._gpu_mb:
                    # What the now idle worker holds (the task's peak was sampled while it ran): the
                    # scheduler counts every worker at least at its last measurement.
                    self._sample(actor, wid)
                post(TaskResult(wid, action.video_id, action.stage, True, result=out["result"],
                                peak_rss_mb=out.get("peak_rss_mb")))
            elif not out.get("worker_alive", False):
                fail(out["kind"], out["message"], out.get("detail"))
            else:
                post(TaskResult(wid, action.video_id, action.stage, False, kind=out["kind"], message=out["message"],
                                detail=out.get("detail"), worker_alive=True))

        self._spawn(go, f"run-{wid}")

    def stop_worker(self, worker_id: str, post: Post) -> None:
        with self._lock:
            actor = self.actors.pop(worker_id, None)
            if actor is not None:
                self._stopping[worker_id] = actor

        def go() -> None:
            if actor is not None:
                try:
                    self.ray.get(actor.stop.remote(), timeout=10.0)
                except Exception:  # noqa: BLE001 - it goes either way; the kill below is the guarantee
                    pass
                self._kill_handle(actor)
            self._release(worker_id)
            with self._lock:
                self._stopping.pop(worker_id, None)
            post(WorkerStopped(worker_id))

        self._spawn(go, f"stop-{worker_id}")

    def kill_worker(self, worker_id: str) -> None:
        """Kill the worker process (the driver's watchdog); its running task then reports, as locally."""
        actor = self.actors.get(worker_id)
        if actor is None:
            return

        def go() -> None:
            try:
                self.ray.get(actor.kill_worker.remote(), timeout=10.0)
            except Exception:  # noqa: BLE001 - the actor itself is stuck: take it down with its worker
                self._kill_actor(worker_id)

        self._spawn(go, f"kill-{worker_id}")

    def gpu_memory_mb(self, worker_id: str) -> float | None:
        # Sampled on the worker's own node by its actor (NVML is node-local): after loading, at every
        # poll while a task runs, and once more when it finishes.
        return self._gpu_mb.get(worker_id)

    def _sample(self, actor, worker_id: str) -> None:
        try:
            mb = self.ray.get(actor.poll.remote(), timeout=5.0)["gpu_mb"]
        except Exception:  # noqa: BLE001 - best effort; the run's result matters more
            return
        if mb is not None:
            self._gpu_mb[worker_id] = mb

    def wait_closed(self) -> None:
        """Nothing to wait for: ``shutdown`` always waits (the actors hold the worker processes)."""

    def shutdown(self, wait: bool = True) -> None:  # noqa: ARG002 - always waits, see wait_closed
        self._closed = True
        with self._lock:
            actors = list(self.actors.items()) + list(self._stopping.items())
            self.actors.clear()
        ray = self.ray
        # Ask every actor to kill its worker's process group (fast, and leaves no orphan even where
        # the node keeps running), then kill the actors themselves.
        refs = []
        for wid, a in actors:
            if wid not in self._placed:
                continue  # still waiting for resources: it has no worker process to kill
            try:
                refs.append(a.kill_worker.remote())
            except Exception:  # noqa: BLE001
                pass
        if refs:
            try:
                ray.wait(refs, num_returns=len(refs), timeout=10.0)
            except Exception:  # noqa: BLE001
                pass
        for wid, a in actors:
            self._kill_handle(a)
            self._release(wid)
        for t in list(self._threads):
            t.join(timeout=5.0)
        if self.pg is not None:
            from ray.util.placement_group import remove_placement_group  # noqa: PLC0415

            try:
                remove_placement_group(self.pg)
            except Exception:  # noqa: BLE001
                pass
            self.pg = None
        self._check_path.unlink(missing_ok=True)
        if self._owns_ray:
            ray.shutdown()
            self._owns_ray = False

    # ------------------------------------------------------------------ helpers
    def _spawn(self, fn, name: str) -> None:
        t = threading.Thread(target=fn, daemon=True, name=f"ray-{name}")
        self._threads = [x for x in self._threads if x.is_alive()]
        self._threads.append(t)
        t.start()

    def _kill_handle(self, actor) -> None:
        try:
            self.ray.kill(actor, no_restart=True)
        except Exception:  # noqa: BLE001 - already dead
            pass

    def _kill_actor(self, worker_id: str) -> None:
        with self._lock:
            actor = self.actors.pop(worker_id, None)
        if actor is not None:
            self._kill_handle(actor)
        self._release(worker_id)
