"""Server side of y2r's worker protocol. Standalone: Python stdlib only.

This file runs *inside a tool's own environment* (ViPE's, TAPIP3D's, WiLoR's, MediaPipe's Python),
next to the per-tool shim that imports it, and also inside y2r's own worker processes. It must not
import y2r or anything outside the standard library.

Protocol (JSON, one object per line, on a dedicated pipe pair whose fds are given on the command
line -- never stdout, because tools print there):

    request   {"id": 7, "op": "hello"|"load"|"run"|"stop", "params": {...}, "log": "/path/or/null"}
    progress  {"id": 7, "type": "progress", "done": 3, "total": 10}
    result    {"id": 7, "type": "result", "ok": true, "result": {...}, "elapsed_s": 1.2, "peak_rss_mb": 900}
    error     {"id": 7, "type": "result", "ok": false,
               "error": {"kind": "oom"|"bad_input"|"error"|"user_error", "message": "...", "traceback": "..."}}
    heartbeat {"type": "heartbeat", "t": 1700000000.0, "busy": true}

The process dies when its request pipe closes (its owner died), when its parent process changes
(owner SIGKILLed), or on "stop". It takes its own process group with it, so no tool subprocess or
CUDA context outlives it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import sys
import threading
import time
import traceback

PROTOCOL_VERSION = 1


class BadInput(Exception):
    """Raise from a handler when the *input* is unusable (the video, not the tool, is at fault)."""

    kind = "bad_input"


class UserError(Exception):
    """Raise from a handler when the tool is mis-configured (missing checkpoint, wrong option)."""

    kind = "user_error"


class Handler:
    """Subclass per tool. ``load`` runs once; ``run`` once per request."""

    name = "tool"

    def hello(self) -> dict:
        return {}

    def load(self, params: dict) -> dict:
        return {}

    def run(self, params: dict, ctx: RequestContext) -> dict:
        raise NotImplementedError

    def close(self) -> None:
        pass


class RequestContext:
    def __init__(self, server: _Server, req_id: int, log_path: str | None):
        self._server = server
        self.id = req_id
        self.log_path = log_path

    def progress(self, done: int, total: int) -> None:
        self._server.send({"id": self.id, "type": "progress", "done": int(done), "total": int(total)})


def classify(exc: BaseException) -> str:
    """Map an exception to a failure kind without importing torch."""
    kind = getattr(exc, "kind", None)
    if kind in ("bad_input", "user_error", "oom", "crash", "hang", "error"):
        return str(getattr(kind, "value", kind))
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, MemoryError) or "OutOfMemoryError" in type(exc).__name__ or "out of memory" in text.lower():
        return "oom"
    # A full GPU also surfaces as a library failing to allocate its workspace (seen on an H200 when
    # cuBLAS created its handle next to other processes' memory).
    if any(m in text for m in ("CUBLAS_STATUS_ALLOC_FAILED", "CUDNN_STATUS_ALLOC_FAILED", "cudaErrorMemoryAllocation")):
        return "oom"
    return "error"


def peak_rss_mb() -> float:
    # ru_maxrss is KiB on Linux; include finished children (tool subprocesses).
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024.0


class _Server:
    def __init__(self, handler: Handler, in_fd: int, out_fd: int, heartbeat_s: float):
        self.handler = handler
        self.rin = os.fdopen(in_fd, "r", buffering=1, encoding="utf-8")
        self.wout = os.fdopen(out_fd, "w", buffering=1, encoding="utf-8")
        self.lock = threading.Lock()
        self.heartbeat_s = heartbeat_s
        self.busy = False
        self.parent = os.getppid()
        self.stopping = False
        # Keep copies of the worker's own stdout/stderr (its worker log) to restore after a request.
        self.base_out = os.dup(1)
        self.base_err = os.dup(2)

    def send(self, msg: dict) -> None:
        line = json.dumps(msg, default=_default) + "\n"
        with self.lock:
            try:
                self.wout.write(line)
                self.wout.flush()
            except (BrokenPipeError, ValueError, OSError):
                # Owner gone: nobody can use our results any more.
                _die()

    def _heartbeat(self) -> None:
        while not self.stopping:
            time.sleep(self.heartbeat_s)
            if os.getppid() != self.parent:
                _die()
            self.send({"type": "heartbeat", "t": time.time(), "busy": self.busy})

    def _redirect(self, log_path: str | None) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        if log_path:
            fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.close(fd)

    def _restore(self) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(self.base_out, 1)
        os.dup2(self.base_err, 2)

    def loop(self) -> None:
        threading.Thread(target=self._heartbeat, daemon=True, name="y2r-heartbeat").start()
        for line in self.rin:
            line = line.strip()
            if not line:
                continue
            try:
                req = json.loads(line)
            except ValueError:
                self.send({"type": "result", "id": None, "ok": False,
                           "error": {"kind": "error", "message": f"malformed request: {line[:200]}"}})
                continue
            rid, op, params = req.get("id"), req.get("op"), req.get("params") or {}
            if op == "stop":
                self.send({"id": rid, "type": "result", "ok": True, "result": {}})
                break
            self.busy = True
            t0 = time.time()
            self._redirect(req.get("log"))
            try:
                if op == "hello":
                    result = {"protocol": PROTOCOL_VERSION, "pid": os.getpid(), "python": sys.version.split()[0],
                              "executable": sys.executable, "cwd": os.getcwd(), **self.handler.hello()}
                elif op == "load":
                    result = self.handler.load(params)
                elif op == "run":
                    result = self.handler.run(params, RequestContext(self, rid, req.get("log")))
                else:
                    raise UserError(f"unknown op {op!r}")
                msg = {"id": rid, "type": "result", "ok": True, "result": result or {}}
            except BaseException as exc:  # noqa: BLE001 - every failure must reach the owner, typed
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                traceback.print_exc()
                # y2r's own errors carry a user-facing one-line message; others get their type name.
                text = exc.one_line() if callable(getattr(exc, "one_line", None)) else f"{type(exc).__name__}: {exc}"
                msg = {"id": rid, "type": "result", "ok": False,
                       "error": {"kind": classify(exc), "message": text,
                                 "traceback": traceback.format_exc()[-8000:]}}
            finally:
                self._restore()
                self.busy = False
            msg["elapsed_s"] = time.time() - t0
            msg["peak_rss_mb"] = peak_rss_mb()
            self.send(msg)
        self.stopping = True
        try:
            self.handler.close()
        finally:
            pass


def _default(o):
    try:
        import numpy as np  # noqa: PLC0415 - optional in tool envs

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:
        pass
    return str(o)


def _die() -> None:
    """Take the whole process group down (tool subprocesses, CUDA contexts) and exit."""
    try:
        os.killpg(os.getpgrp(), signal.SIGKILL)
    finally:
        os._exit(70)


def serve(handler: Handler, argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=f"y2r worker shim for {handler.name}")
    ap.add_argument("--in-fd", type=int, required=True)
    ap.add_argument("--out-fd", type=int, required=True)
    ap.add_argument("--heartbeat", type=float, default=5.0)
    args, _ = ap.parse_known_args(argv)
    # SIGTERM from the owner: exit promptly, taking children along.
    signal.signal(signal.SIGTERM, lambda *_: _die())
    server = _Server(handler, args.in_fd, args.out_fd, args.heartbeat)
    server.loop()
    sys.stdout.flush()
    os._exit(0)
