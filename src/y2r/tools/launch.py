"""Start, load and talk to one external tool's persistent worker (ViPE, TAPIP3D, WiLoR).

A tool is configured by a ``tools.<tool>`` section (``ToolEnv``): the interpreter of the tool's own
environment, its checkout (the worker's working directory), checkpoints, extra environment
variables and timeouts. ``ToolSession`` owns one worker of one tool for a y2r backend: it starts the
shim lazily, sends ``load`` once (the model loads there, once per worker), runs requests with a
per-video timeout and log, and after a crash or hang starts a fresh worker on the next request.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from y2r.errors import ToolUnavailable, WorkerCrashed, WorkerHung
from y2r.tools.worker import LaunchSpec, WorkerProcess, shim_argv

# Variables of y2r's own interpreter that must not leak into a tool's: PYTHONPATH could put y2r's
# (or another tool's) packages in front of the tool's, PYTHONHOME points at y2r's stdlib. A tool
# that needs one sets it in ``tools.<tool>.env``.
_SCRUBBED = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONSAFEPATH")


def tool_python(tool: str, env: Any) -> Path:
    """The configured interpreter of a tool, or a ToolUnavailable that says how to fix it."""
    if env.python is None:
        raise ToolUnavailable(f"tools.{tool}.python is not set: install {tool} in its own environment and set "
                              f"tools.{tool}.python to that environment's python (see docs/tools.md)")
    py = Path(env.python).expanduser()
    if not py.exists():
        raise ToolUnavailable(f"tools.{tool}.python: {py} does not exist; point it at the python of the "
                              f"environment where {tool} is installed")
    return py


def tool_root(tool: str, env: Any, required: bool) -> Path | None:
    """The tool's checkout folder (its worker's working directory), checked to exist."""
    if env.root is None:
        if required:
            raise ToolUnavailable(f"tools.{tool}.root is not set: point it at your {tool} checkout "
                                  f"(the folder the tool's own scripts are run from)")
        return None
    root = Path(env.root).expanduser().resolve()
    if not root.is_dir():
        raise ToolUnavailable(f"tools.{tool}.root: {root} is not a folder; point it at your {tool} checkout")
    return root


def checkpoint_path(tool: str, env: Any, key: str, default: str | None, root: Path | None) -> Path:
    """A named checkpoint: ``tools.<tool>.checkpoints.<key>``, else ``default`` relative to the root."""
    given = env.checkpoints.get(key)
    if given is not None:
        p = Path(given).expanduser()
        p = p if p.is_absolute() or root is None else root / p
    elif default is not None and root is not None:
        p = root / default
    else:
        raise ToolUnavailable(f"tools.{tool}.checkpoints.{key} is not set")
    if not p.exists():
        raise ToolUnavailable(f"{tool} checkpoint '{key}' not found at {p}; download it (docs/tools.md) or set "
                              f"tools.{tool}.checkpoints.{key}")
    return p.resolve()


def launch_spec(tool: str, env: Any, shim: str, *, root_required: bool) -> LaunchSpec:
    """How to start ``tools/shims/<shim>`` with the tool's interpreter, in its checkout."""
    python = tool_python(tool, env)
    root = tool_root(tool, env, root_required)
    extra: dict[str, str | None] = {k: None for k in _SCRUBBED}
    extra["PYTHONUNBUFFERED"] = "1"
    extra.update({k: str(v) for k, v in env.env.items()})
    return LaunchSpec(name=tool, argv=shim_argv(python, shim), cwd=root, env=extra,  # type: ignore[arg-type]
                      startup_timeout_s=env.startup_timeout_s, heartbeat_s=env.heartbeat_s)


class ToolSession:
    """One persistent worker of one tool, owned by a backend instance.

    ``load_params`` are sent once per started worker (the model loads there). A worker killed by a
    crash or a hang is replaced on the next request: the failed video gets its typed error, the
    next video a fresh, loaded worker.
    """

    def __init__(self, spec: LaunchSpec, log_path: Path, load_params: dict):
        self.spec = spec
        self.log_path = Path(log_path)
        self.load_params = load_params
        self.worker: WorkerProcess | None = None
        self.hello: dict = {}
        self.loaded: dict = {}
        self.starts = 0

    def ensure(self) -> dict:
        """Start and load the worker unless a live, loaded one exists; return the load result."""
        if self.worker is not None and self.worker.alive():
            return self.loaded
        if self.worker is not None:
            self.worker.kill()
        self.worker = WorkerProcess(self.spec, self.log_path)
        self.starts += 1
        try:
            self.hello = self.worker.start()
            self.loaded = self.worker.call("load", self.load_params, timeout_s=self.spec.startup_timeout_s)
        except BaseException:
            self.worker.kill()
            raise
        return self.loaded

    def run(self, params: dict, *, timeout_s: float, log_path: Path | None = None,
            progress: Callable[[int, int], None] | None = None) -> dict:
        self.ensure()
        assert self.worker is not None
        try:
            return self.worker.call("run", params, timeout_s=timeout_s, log_path=log_path, on_progress=progress)
        except (WorkerCrashed, WorkerHung):
            # The worker is gone (the client killed it); the next request starts a new one.
            self.worker.kill()
            raise

    @property
    def pid(self) -> int | None:
        return self.worker.pid if self.worker is not None else None

    def close(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None


def request_timeout(config: Any, frames: int, per_frame_s: float) -> float:
    """Base task timeout plus the tool's per-frame allowance."""
    return float(config.execution.task_timeout_s) + float(per_frame_s) * max(int(frames), 1)


def worker_log_path(ctx: Any, tool: str) -> Path:
    """Where a tool worker's own output goes (requests are also copied to the per-video logs)."""
    d = Path(getattr(ctx, "log_dir", ".") or ".")
    return d / f"{tool}-{getattr(ctx, 'worker_id', 'inline')}-{os.getpid()}.log"
