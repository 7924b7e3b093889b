"""The one console y2r prints to, and the run's progress display (a bar per stage).

Library code never prints; the driver reports to a ``RunDisplay`` and the CLI decides whether it is
a live display (a terminal) or plain log lines (CI, pipes, ``--quiet``).
"""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

# soft_wrap: one-line messages stay one line in logs and pipes (no hard wrapping at 80 columns).
console = Console(stderr=True, highlight=False, soft_wrap=True)


class RunDisplay:
    """Interface the driver reports to. The base class shows nothing (tests, --quiet)."""

    def start(self, totals: dict[str, int], already_done: dict[str, int]) -> None: ...
    def task_started(self, video_id: str, stage: str, worker: str) -> None: ...
    def task_progress(self, video_id: str, stage: str, done: int, total: int) -> None: ...
    def task_finished(self, video_id: str, stage: str, state: str, message: str | None = None) -> None: ...
    def note(self, message: str) -> None: ...
    def stop(self) -> None: ...


class RichRunDisplay(RunDisplay):
    """A progress bar per stage (videos done / total), plus the frames of videos in progress."""

    def __init__(self, stages: tuple[str, ...], live: bool | None = None):
        self.stages = stages
        self.live = console.is_terminal if live is None else live
        self.progress = Progress(
            TextColumn("[bold]{task.fields[stage]:<8}"), BarColumn(bar_width=30), MofNCompleteColumn(),
            TextColumn("{task.fields[extra]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=console, disable=not self.live, transient=False,
        )
        self.ids: dict[str, int] = {}
        self.frames: dict[tuple[str, str], tuple[int, int]] = {}
        self.failed: dict[str, int] = {}
        self._last_line = 0.0

    def start(self, totals: dict[str, int], already_done: dict[str, int]) -> None:
        for s in self.stages:
            if s in totals:
                self.ids[s] = self.progress.add_task(s, total=totals[s], completed=already_done.get(s, 0), stage=s, extra="")
                self.failed[s] = 0
        self.progress.start()

    def _extra(self, stage: str) -> str:
        parts = []
        running = [(d, t) for (v, s), (d, t) in self.frames.items() if s == stage]
        if running:
            d = sum(x[0] for x in running)
            t = sum(x[1] for x in running)
            parts.append(f"[cyan]{len(running)} running[/] ({d}/{t} frames)")
        if self.failed.get(stage):
            parts.append(f"[red]{self.failed[stage]} failed[/]")
        return "  ".join(parts)

    def task_started(self, video_id: str, stage: str, worker: str) -> None:
        self.frames[(video_id, stage)] = (0, 0)
        self._refresh(stage)

    def task_progress(self, video_id: str, stage: str, done: int, total: int) -> None:
        self.frames[(video_id, stage)] = (done, total)
        self._refresh(stage)

    def task_finished(self, video_id: str, stage: str, state: str, message: str | None = None) -> None:
        self.frames.pop((video_id, stage), None)
        if stage in self.ids:
            if state in ("done", "failed", "skipped"):
                self.progress.advance(self.ids[stage])
            if state in ("failed", "skipped"):
                self.failed[stage] += 1
            self._refresh(stage)
        if state == "failed" and message:
            self.note(f"[red]failed[/] {stage}: {message}")
        elif state == "retry" and message:
            self.note(f"[yellow]retrying[/] {stage}: {message}")
        if not self.live and state in ("done", "failed") and time.monotonic() - self._last_line > 5:
            self._last_line = time.monotonic()
            done = {s: int(self.progress.tasks[i].completed) for s, i in self.ids.items()}
            console.print("progress: " + ", ".join(f"{s} {done[s]}/{int(self.progress.tasks[i].total)}"
                                                   for s, i in self.ids.items()))

    def _refresh(self, stage: str) -> None:
        if stage in self.ids:
            self.progress.update(self.ids[stage], extra=self._extra(stage))

    def note(self, message: str) -> None:
        self.progress.console.print(message) if self.live else console.print(message)

    def stop(self) -> None:
        self.progress.stop()


def is_interactive() -> bool:
    return sys.stderr.isatty()
