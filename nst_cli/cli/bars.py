"""Progress for a terminal or a log: the rich bar with per-term losses, or plain lines when piped."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any

from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from nst_cli.core.optimize import StepEvent
from nst_cli.run.progress import LogLines, StepRate, format_losses, scale_label


class _SpeedColumn(ProgressColumn):
    """Steps per second since the run's first step: the figure the summary reports too
    (rich's own speed is a moving window, which disagreed with it)."""

    def render(self, task: Task) -> Text:
        if task.fields.get("counts") == "runs":  # a sweep's overall bar: runs, not steps
            return Text("")
        speed = task.fields.get("rate")
        if speed is None and "rate" not in task.fields:
            speed = task.finished_speed or task.speed
        return Text(
            "–– it/s" if speed is None else f"{speed:.2f} it/s", style="progress.data.speed"
        )


class _EtaColumn(TimeRemainingColumn):
    """The run's own ETA (`StepRate.eta`, weighted by each scale's cost) where it gives one;
    rich's (steps left at the recent speed) for a sweep's bar of runs."""

    def render(self, task: Task) -> Text:
        if "eta" not in task.fields or task.finished:
            return super().render(task)
        eta = task.fields["eta"]
        if eta is None:
            return Text("-:--:--", style="progress.remaining")
        minutes, seconds = divmod(int(eta), 60)
        hours, minutes = divmod(minutes, 60)
        return Text(f"{hours}:{minutes:02d}:{seconds:02d}", style="progress.remaining")


class _StepProgress(Progress):
    """A progress display that prints each running task's losses on a line under its bar,
    so the bar stays readable in an 80-column terminal."""

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        for task in self.tasks:
            losses = task.fields.get("losses")
            if losses and not task.finished:
                yield Text(f"  {losses}", style="dim", overflow="fold")


def make_progress(console: Console | None = None) -> Progress:
    """The rich progress display shared by stylize and sweep."""
    return _StepProgress(
        TextColumn("[bold]{task.description}"),
        BarColumn(bar_width=24),
        MofNCompleteColumn(),
        _SpeedColumn(),
        TextColumn("ETA"),
        _EtaColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


#: Seconds between refreshes of the losses under a bar (rich redraws 10 times a second).
LOSSES_REFRESH_S = 0.1


class ProgressBar:
    """A rich bar per run: step/total, it/s, elapsed, ETA and the losses of the current step."""

    def __init__(self, progress: Progress, description: str = "stylize") -> None:
        self.progress = progress
        self.description = description
        self.task_id: Any = None
        self._rate = StepRate()
        self._losses_shown = -math.inf
        self._label = description

    def on_tile(self, number: int, count: int, stage: int) -> None:
        """A tiled step's progress: 'tile 3/12' in the pass that adds the sums (1) or the
        one that pulls the gradient (2)."""
        if self.task_id is not None:
            what = "sums" if stage == 1 else "gradient"
            self.progress.update(
                self.task_id, description=f"{self._label} · tile {number}/{count} {what}"
            )

    def __call__(self, event: StepEvent) -> None:
        if not self.progress.live.is_started:
            # Started on the first step, so errors during setup print without an empty bar.
            self.progress.start()
        if self.task_id is None:
            self.task_id = self.progress.add_task(
                self.description, total=event.total_steps, completed=event.step, losses=""
            )
        label = scale_label(event.stage)
        fields: dict[str, Any] = {}
        now = time.monotonic()
        # The losses' text is refreshed as often as the display redraws, not every step:
        # reading them back is a GPU sync.
        if event.is_final or now - self._losses_shown >= LOSSES_REFRESH_S:
            fields["losses"] = format_losses(event.losses)
            self._losses_shown = now
        self._label = f"{self.description} {label}" if label else self.description
        self.progress.update(
            self.task_id,
            description=self._label,
            completed=event.step,
            total=event.total_steps,
            rate=self._rate(event),
            eta=self._rate.eta,
            **fields,
        )


class FrameLines:
    """Plain lines: the current frame's steps every N steps, and one line per frame done."""

    def __init__(self, write: Callable[[str], None], every: int) -> None:
        self.every, self.write, self.lines_cls = every, write, LogLines
        self.count = 0
        self.current: Any = None
        self.index = 0

    def start(self, clip: Any, count: int, done: int) -> None:
        self.count, self.index = count, done
        self.write(
            f"video: {count} frames at {clip.fps:g} fps"
            + (f" ({done} done, resuming)" if done else "")
        )
        self.current = self.lines_cls(self.write, self.every, f"frame {done + 1}/{count}")

    def step(self, event: Any) -> None:
        self.current(event)

    def frame(self, done: Any) -> None:
        error = (
            f", temporal_error {done.temporal_error:.3g}" if done.temporal_error is not None else ""
        )
        self.write(
            f"frame {done.index + 1}/{done.count} done: {done.steps} steps, {done.seconds:.1f} s{error}"
        )
        self.current = self.lines_cls(
            self.write, self.every, f"frame {done.index + 2}/{done.count}"
        )


class FrameBars:
    """Two rich bars: frames done (frames/min, ETA) and the current frame's steps."""

    def __init__(self, progress: Progress) -> None:
        self.progress, self.bar_cls = progress, ProgressBar
        self.overall: Any = None
        self.current: Any = None

    def start(self, clip: Any, count: int, done: int) -> None:
        self.progress.start()
        self.overall = self.progress.add_task(
            "frames", total=count, completed=done, losses="", counts="runs"
        )
        self.current = self.bar_cls(self.progress, f"frame {done + 1}")

    def step(self, event: Any) -> None:
        self.current(event)

    def frame(self, done: Any) -> None:
        if self.current.task_id is not None:
            self.progress.remove_task(self.current.task_id)
        speed = next(t for t in self.progress.tasks if t.id == self.overall).speed
        per_minute = f"{speed * 60:.1f} frames/min" if speed else ""
        error = (
            f"temporal_error {done.temporal_error:.3g}" if done.temporal_error is not None else ""
        )
        self.progress.update(
            self.overall,
            completed=done.index + 1,
            losses=" · ".join(p for p in (per_minute, error) if p),
        )
        self.current = self.bar_cls(self.progress, f"frame {done.index + 2}")
