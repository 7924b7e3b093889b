"""Typed errors.

Library code raises these; only the CLI boundary turns them into one-line messages and exit codes.
Each error that concerns one video carries a ``kind`` the scheduler uses to choose a retry policy
(see ``execution/failures.py``).
"""

from __future__ import annotations

from enum import Enum


class FailureKind(str, Enum):
    """Why a task failed; each kind is retried its own way."""

    USER_ERROR = "user_error"  # wrong config / missing tool: retrying cannot help
    BAD_INPUT = "bad_input"  # this video cannot be processed (corrupt, too short, ...)
    OOM = "oom"  # out of (GPU or host) memory: retry with more room
    CRASH = "crash"  # the worker process died
    HANG = "hang"  # no reply / no heartbeat within the timeout
    ERROR = "error"  # an exception in backend code: retried with backoff


class Y2RError(Exception):
    """Base of every error y2r raises on purpose."""

    kind: FailureKind = FailureKind.ERROR
    exit_code: int = 1

    def __init__(self, message: str, *, detail: str | None = None):
        super().__init__(message)
        self.message = message
        # Longer diagnostic text (traceback, log tail) shown with --verbose and stored in logs.
        self.detail = detail

    def one_line(self) -> str:
        return " ".join(self.message.split())


class ConfigError(Y2RError):
    """The configuration file or a --set override is invalid."""

    kind = FailureKind.USER_ERROR
    exit_code = 2


class UsageError(Y2RError):
    """The command line asks for something impossible (missing output, no inputs, ...)."""

    kind = FailureKind.USER_ERROR
    exit_code = 2


class InputError(Y2RError):
    """One input video cannot be processed. The message names the file and the problem."""

    kind = FailureKind.BAD_INPUT

    def __init__(self, path: object, problem: str, *, detail: str | None = None):
        super().__init__(f"{path}: {problem}", detail=detail)
        self.path = str(path)
        self.problem = problem


class ToolError(Y2RError):
    """An external tool (ViPE, TAPIP3D, WiLoR, MediaPipe) failed while processing a request."""

    kind = FailureKind.ERROR

    def __init__(self, message: str, *, log_tail: str = "", detail: str | None = None):
        super().__init__(message, detail=detail or log_tail or None)
        self.log_tail = log_tail


class ToolUnavailable(Y2RError):
    """A configured tool environment is missing or broken (``y2r doctor`` says how to fix it)."""

    kind = FailureKind.USER_ERROR
    exit_code = 3


class OutOfMemory(ToolError):
    """CUDA or host out-of-memory inside a worker."""

    kind = FailureKind.OOM


class WorkerCrashed(ToolError):
    """The worker process died (segfault, SIGKILL, interpreter abort)."""

    kind = FailureKind.CRASH


class WorkerHung(ToolError):
    """The worker stopped answering (no heartbeat) or a request exceeded its timeout."""

    kind = FailureKind.HANG


class ToolBadInput(ToolError):
    """A tool rejected this video (too short, unreadable, no usable frames)."""

    kind = FailureKind.BAD_INPUT


class ToolUserError(ToolError):
    """A tool is mis-configured (missing checkpoint, unknown option): retrying cannot help."""

    kind = FailureKind.USER_ERROR


class SchemaError(Y2RError):
    """An episode file does not follow the schema (used by ``y2r validate``)."""

    kind = FailureKind.USER_ERROR


def error_from_kind(kind: str, message: str, *, log_tail: str = "", detail: str | None = None) -> Y2RError:
    """Rebuild a typed error from a kind string sent back by a worker."""
    k = FailureKind(kind) if kind in FailureKind._value2member_map_ else FailureKind.ERROR
    if k is FailureKind.BAD_INPUT:
        return ToolBadInput(message, log_tail=log_tail, detail=detail)
    if k is FailureKind.OOM:
        return OutOfMemory(message, log_tail=log_tail, detail=detail)
    if k is FailureKind.CRASH:
        return WorkerCrashed(message, log_tail=log_tail, detail=detail)
    if k is FailureKind.HANG:
        return WorkerHung(message, log_tail=log_tail, detail=detail)
    if k is FailureKind.USER_ERROR:
        return ToolUserError(message, log_tail=log_tail, detail=detail)
    return ToolError(message, log_tail=log_tail, detail=detail)
