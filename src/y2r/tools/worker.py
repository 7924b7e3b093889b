"""Client side of the worker protocol: start, talk to, and kill one persistent worker process.

A ``WorkerProcess`` owns exactly one child: a shim (``tools/shims/*.py``) run with some Python
interpreter -- a tool's own environment, or y2r's for built-in backends. The child is started as a
fresh interpreter (never forked from us, so CUDA works in it), in its own session / process group,
with its stdout and stderr going to a log file. Requests and replies travel as JSON lines on a
dedicated pipe pair. The defined ways for it to die: ``stop()`` (polite, then SIGTERM, then SIGKILL
to the whole group), its request pipe closing, or its parent changing (both detected in the shim).
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import queue
import signal
import subprocess
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from y2r.errors import (
    ToolError,
    ToolUnavailable,
    WorkerCrashed,
    WorkerHung,
    Y2RError,
    error_from_kind,
)

SHIM_DIR = Path(__file__).parent / "shims"
MISSED_HEARTBEATS = 6

_LIVE: weakref.WeakSet[WorkerProcess] = weakref.WeakSet()


@dataclass
class LaunchSpec:
    """How to start one worker: an argv list (never a shell string) and its environment."""

    name: str
    argv: list[str]
    cwd: Path | None = None
    env: dict[str, str] = field(default_factory=dict)  # added to (or, with None values, removed from) os.environ
    startup_timeout_s: float = 600.0
    heartbeat_s: float = 5.0
    label: str | None = None  # prefix of error messages (default: name; "" for none)

    @property
    def prefix(self) -> str:
        lab = self.name if self.label is None else self.label
        return f"{lab}: " if lab else ""


def shim_argv(python: str | os.PathLike, shim: str) -> list[str]:
    """argv that runs ``tools/shims/<shim>`` with a given interpreter (``-u``: unbuffered logs)."""
    return [str(python), "-u", str(SHIM_DIR / shim)]


def tail(path: Path | None, lines: int = 30, max_bytes: int = 64_000) -> str:
    if path is None:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


class WorkerProcess:
    """One persistent worker process speaking the JSON-lines protocol."""

    _ids = itertools.count(1)

    def __init__(self, spec: LaunchSpec, log_path: Path):
        self.spec = spec
        self.log_path = Path(log_path)
        self.proc: subprocess.Popen | None = None
        self._w = None
        self._q: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self.hello: dict = {}
        self.last_seen = 0.0
        self.busy = False
        self._closed = False  # set by kill(): a start racing with a shutdown must not leave a process
        self._life = threading.Lock()

    # ------------------------------------------------------------------ lifecycle
    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> dict:
        if self.alive():
            return self.hello
        with self._life:
            self._closed = False  # a (re)start; a kill() from here until Popen aborts it
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        env = dict(os.environ)
        for k, v in self.spec.env.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = str(v)
        argv = [*self.spec.argv, "--in-fd", str(req_r), "--out-fd", str(rep_w), "--heartbeat", str(self.spec.heartbeat_s)]
        log = open(self.log_path, "ab")
        try:
            with self._life:
                if self._closed:
                    raise ToolUnavailable(f"{self.spec.name}: worker was shut down before it started")
                self.proc = subprocess.Popen(  # noqa: S603 - argv list, no shell
                    argv, cwd=self.spec.cwd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    pass_fds=(req_r, rep_w), start_new_session=True, close_fds=True,
                )
        except (OSError, ToolUnavailable) as e:
            for fd in (req_r, req_w, rep_r, rep_w):
                os.close(fd)
            if isinstance(e, ToolUnavailable):
                raise
            raise ToolUnavailable(f"{self.spec.name}: cannot start worker ({argv[0]}): {e.strerror}") from e
        finally:
            log.close()
        os.close(req_r)
        os.close(rep_w)
        self._w = os.fdopen(req_w, "w", buffering=1, encoding="utf-8")
        self._q = queue.Queue()
        threading.Thread(target=self._reader, args=(os.fdopen(rep_r, "r", encoding="utf-8"), self._q),
                         daemon=True, name=f"y2r-reader-{self.spec.name}").start()
        self.last_seen = time.monotonic()
        _LIVE.add(self)
        self.hello = self.call("hello", {}, timeout_s=self.spec.startup_timeout_s)
        return self.hello

    def _reader(self, f, q: queue.Queue) -> None:
        for line in f:
            try:
                q.put(json.loads(line))
            except ValueError:
                continue
        q.put(None)  # EOF: the process is gone (or closed its pipe)

    def stop(self, grace_s: float = 5.0) -> None:
        """Ask politely, then SIGTERM the group, then SIGKILL it. Always leaves nothing behind."""
        if self.proc is None:
            return
        if self.alive() and not self.busy:
            try:
                self._send({"id": next(self._ids), "op": "stop"})
                self.proc.wait(timeout=grace_s)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                pass
        self.kill(grace_s=min(grace_s, 3.0))

    def kill(self, grace_s: float = 3.0) -> None:
        with self._life:
            self._closed = True
        if self.proc is None:
            return
        pgid = self.proc.pid  # start_new_session: the child's pid is its process-group id
        # Descendants that moved to their own sessions (e.g. a tool's nested shim) are found via psutil.
        try:
            descendants = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            descendants = []
        for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pgid, sig)
            except (ProcessLookupError, PermissionError):
                pass
            for d in descendants:
                try:
                    d.send_signal(sig)
                except psutil.Error:
                    pass
            try:
                self.proc.wait(timeout=wait)
                if sig == signal.SIGTERM:
                    # The group leader is gone; make sure stragglers in the group are too.
                    try:
                        os.killpg(pgid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
                break
            except subprocess.TimeoutExpired:
                continue
        psutil.wait_procs(descendants, timeout=2)
        for d in descendants:
            try:
                d.kill()
            except psutil.Error:
                pass
        try:
            if self._w:
                self._w.close()
        except OSError:
            pass
        _LIVE.discard(self)

    # ------------------------------------------------------------------ requests
    def _send(self, msg: dict) -> None:
        assert self._w is not None
        self._w.write(json.dumps(msg) + "\n")
        self._w.flush()

    def call(self, op: str, params: dict, *, timeout_s: float, log_path: Path | None = None,
             on_progress: Callable[[int, int], None] | None = None) -> dict:
        """Send one request and wait for its result; raise a typed error on failure.

        Hangs are detected two ways: no message at all for ``MISSED_HEARTBEATS`` heartbeat periods
        (the process is wedged), or the request outlives ``timeout_s``.
        """
        with self._lock:
            if not self.alive():
                raise WorkerCrashed(f"{self.spec.name}: worker is not running", log_tail=tail(self.log_path))
            rid = next(self._ids)
            self.busy = True
            try:
                try:
                    self._send({"id": rid, "op": op, "params": params, "log": str(log_path) if log_path else None})
                except (BrokenPipeError, OSError, ValueError):
                    raise self._crashed(log_path) from None
                return self._wait(rid, timeout_s, log_path, on_progress)
            finally:
                self.busy = False

    def _wait(self, rid: int, timeout_s: float, log_path: Path | None, on_progress) -> dict:
        deadline = time.monotonic() + timeout_s
        hb_limit = self.spec.heartbeat_s * MISSED_HEARTBEATS
        self.last_seen = time.monotonic()
        while True:
            now = time.monotonic()
            if now > deadline:
                self.kill()
                raise WorkerHung(f"{self.spec.name}: no result after {timeout_s:.0f} s (request timeout)",
                                 log_tail=self._tails(log_path))
            wait = min(deadline - now, max(0.05, hb_limit - (now - self.last_seen)))
            try:
                msg = self._q.get(timeout=wait)
            except queue.Empty:
                if time.monotonic() - self.last_seen >= hb_limit:
                    self.kill()
                    raise WorkerHung(f"{self.spec.name}: worker stopped answering (no heartbeat for {hb_limit:.0f} s)",
                                     log_tail=self._tails(log_path)) from None
                continue
            if msg is None:
                raise self._crashed(log_path)
            self.last_seen = time.monotonic()
            kind = msg.get("type")
            if kind == "heartbeat":
                continue
            if kind == "progress" and msg.get("id") == rid:
                if on_progress:
                    on_progress(msg.get("done", 0), msg.get("total", 0))
                continue
            if kind == "result" and msg.get("id") == rid:
                self.last_result_meta = {"elapsed_s": msg.get("elapsed_s"), "peak_rss_mb": msg.get("peak_rss_mb")}
                if msg.get("ok"):
                    return msg.get("result") or {}
                err = msg.get("error") or {}
                raise error_from_kind(err.get("kind", "error"), f"{self.spec.prefix}{err.get('message', 'failed')}",
                                      log_tail=self._tails(log_path), detail=err.get("traceback"))

    def _crashed(self, log_path: Path | None) -> Y2RError:
        code = None
        if self.proc is not None:
            try:
                code = self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()
                code = self.proc.poll()
        how = f"killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
        self.kill()
        return WorkerCrashed(f"{self.spec.name}: worker died ({how})", log_tail=self._tails(log_path))

    def _tails(self, log_path: Path | None) -> str:
        parts = []
        if log_path is not None and Path(log_path).exists():
            parts.append(tail(log_path))
        parts.append(tail(self.log_path))
        return "\n".join(p for p in parts if p)


def kill_all_workers() -> None:
    """Kill every live worker of this process (atexit, signal handlers)."""
    for w in list(_LIVE):
        try:
            w.kill(grace_s=1.0)
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass


atexit.register(kill_all_workers)

__all__ = ["LaunchSpec", "WorkerProcess", "shim_argv", "tail", "kill_all_workers", "ToolError", "SHIM_DIR"]
