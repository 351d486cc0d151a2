"""Everything that reacts to a step: progress bar, frames, loss log, checkpoints.

Each callback is a small object called with a StepEvent; the optimisation loop knows none of
them. Files are written through nst_cli.outputs, so each write is atomic.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from PIL import Image
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

from .checkpoints import CheckpointMode, CheckpointWriter
from .config import Stage
from .images import resize_to, to_pil
from .losses import first_non_finite
from .optimize import StepEvent
from .outputs import RunDir, save_png, write_loss_rows
from .plot import loss_plot


class LatestImage:
    """Keeps a copy of the newest good image, so an error or Ctrl-C can still save it.

    "Good" is decided on the device (the loop reads losses back only every few steps): the
    copy is replaced only where the step's losses are finite, and which step that was is
    worked out when someone asks."""

    def __init__(self) -> None:
        self.image: torch.Tensor | None = None
        #: Steps since the last one known to be finite (that one first).
        self._recent: list[tuple[int, Mapping[str, float]]] = []

    def __call__(self, event: StepEvent) -> None:
        # A copy: event.image is the live tensor the optimiser keeps changing.
        shown = event.shown.detach()
        finite = getattr(event.losses, "finite", None)
        if self.image is None or finite is None:
            self.image = shown.clone()
        elif self.image.shape != shown.shape:  # a new scale: one read, once per scale
            if bool(finite):
                self.image = shown.clone()
        else:
            self.image = torch.where(finite, shown, self.image)
        if getattr(event.losses, "read", True) and all(
            math.isfinite(v) for v in event.losses.values()
        ):
            self._recent = []  # known good: nothing before it matters any more
        self._recent.append((event.step, event.losses))

    def _last_good(self) -> tuple[int, Mapping[str, float]]:
        bad = first_non_finite([losses for _, losses in self._recent])
        good = self._recent if bad is None else self._recent[:bad]
        return good[-1] if good else (-1, {})

    @property
    def step(self) -> int:
        """The step of the kept image (-1 before the first)."""
        return self._last_good()[0]

    @property
    def losses(self) -> dict[str, float]:
        """The kept image's losses."""
        return dict(self._last_good()[1])


def output_pil(
    image: torch.Tensor,
    size: tuple[int, int] | None,
    shown: Callable[[Image.Image], Image.Image] | None = None,
) -> Image.Image:
    """The image as the user sees it: 8-bit RGB at the run's final (width, height), so frames
    of every scale of a coarse-to-fine run line up in one animation, through `shown` (e.g.
    the content's colours put back) when given."""
    pil = to_pil(image)
    pil = pil if size is None else resize_to(pil, size)
    return shown(pil) if shown is not None else pil


class FrameSaver:
    """Writes frames/step_NNNNNN.png at step 0 and every `save_every` steps, at the final size.

    The pixels are copied off the device at once; resizing, PNG encoding and writing happen
    on a background thread, so the optimisation goes on meanwhile (a 512 px PNG takes about
    as long as dozens of GPU steps). `flush()` waits for them and raises the first error; the
    run calls it before it ends, whatever ends it."""

    #: Frames being written at most; a step that would add one more waits for the oldest.
    MAX_PENDING = 2

    def __init__(
        self,
        run_dir: RunDir,
        save_every: int,
        png_text: Mapping[str, str],
        output_size: tuple[int, int] | None = None,
        shown: Callable[[Image.Image], Image.Image] | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.save_every = save_every
        self.png_text = dict(png_text)
        self.output_size = output_size
        self.shown = shown
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nst-frames")
        self._pending: list[Future[None]] = []

    def __call__(self, event: StepEvent) -> None:
        if event.step % self.save_every == 0:
            text = {**self.png_text, "nst:step": str(event.step)}
            if event.stage is not None:
                text["nst:scale"] = str(event.stage.size)
            # A copy: the live tensor keeps changing while the frame is written.
            pixels = event.shown.detach().to("cpu", torch.float32, copy=True)
            for done in [f for f in self._pending if f.done()]:
                self._pending.remove(done)
                done.result()  # a failed write (disk full) stops the run now, as before
            while len(self._pending) >= self.MAX_PENDING:
                self._pending.pop(0).result()
            self._pending.append(
                self._writer.submit(self._write, pixels, self.run_dir.frame(event.step), text)
            )

    def _write(self, pixels: torch.Tensor, path: Path, text: dict[str, str]) -> None:
        save_png(output_pil(pixels, self.output_size, self.shown), path, text)

    def flush(self) -> None:
        """Wait for every frame in flight; the first write error is raised (after all end)."""
        pending, self._pending = self._pending, []
        errors = [f.exception() for f in pending]
        first = next((e for e in errors if e is not None), None)
        if first is not None:
            raise first

    def close(self) -> None:
        """flush(), then end the writer thread."""
        try:
            self.flush()
        finally:
            self._writer.shutdown(wait=True)


class LossLog:
    """Collects one row per step; rewrites losses.csv atomically every `flush_every` steps
    and at the end (the file is small, and a rewrite never leaves a torn line), and with it
    the chart of the curves (losses.png) when `plot` is given."""

    def __init__(
        self,
        path: Path,
        flush_every: int,
        rows: list[dict[str, float]] | None = None,
        plot: Path | None = None,
        png_text: Mapping[str, str] | None = None,
    ) -> None:
        self.path = path
        self.flush_every = flush_every
        self.rows: list[dict[str, float]] = list(rows or [])
        self.plot = plot
        self.png_text = dict(png_text or {})
        self._dirty = False
        #: Rows whose losses are still on the device: (step, scale, elapsed, losses).
        self._pending: list[tuple[int, int, float, Mapping[str, float]]] = []

    def __call__(self, event: StepEvent) -> None:
        if self._pending and self._pending[-1][0] >= event.step:
            self._pending = [r for r in self._pending if r[0] < event.step]
        if self.rows and self.rows[-1]["step"] >= event.step:
            # A resumed run repeats the step it resumed from: keep one row per step.
            self.rows = [r for r in self.rows if r["step"] < event.step]
        scale = event.stage.size if event.stage else max(event.image.shape[-2:])
        self._pending.append((event.step, scale, event.elapsed, event.losses))
        self._dirty = True
        if event.is_final or event.step % self.flush_every == 0:
            self.flush()

    def _settle(self) -> None:
        """The pending rows as numbers, read back in one transfer; the row of the first
        step whose losses are not finite, and every row after it, are dropped (the run stops
        there with an error)."""
        pending, self._pending = self._pending, []
        bad = first_non_finite([losses for *_, losses in pending])
        for step, scale, elapsed, losses in pending[:bad]:
            self.rows.append({"step": step, "scale": scale, "elapsed_s": elapsed, **losses})

    def flush(self) -> None:
        self._settle()
        if self._dirty:
            write_loss_rows(self.path, self.rows)
            if self.plot is not None:
                save_png(loss_plot(self.rows), self.plot, self.png_text)
            self._dirty = False


class Checkpointer:
    """Keeps checkpoint.pt (for --resume) current: at frame steps, within a time budget, and
    always at the end (see nst_cli.checkpoints)."""

    def __init__(self, run_dir: RunDir, save_every: int, mode: CheckpointMode = "compact") -> None:
        self.writer = CheckpointWriter(run_dir.checkpoint, save_every, mode)

    def __call__(self, event: StepEvent) -> None:
        if self.writer.due(event.step, event.is_final):
            self.writer.write(
                image=event.image,
                step=event.step,
                stage=event.stage.index if event.stage else 0,
                elapsed=event.elapsed,
                optimizer_state=event.optimizer_state() if event.optimizer_state else None,
                average=event.average,
            )


def scale_label(stage: Stage | None) -> str:
    """'362px (2/3)' for a scale of a coarse-to-fine run; '' for a one-scale run."""
    if stage is None or stage.count < 2:
        return ""
    return f"{stage.size}px ({stage.index + 1}/{stage.count})"


class _Rate:
    """Steps per second since the first step seen (the summary's figure, not a window), and
    the seconds left: the work left (Stage.work_until: steps weighted by their scale's
    pixels) at the speed the work so far went."""

    def __init__(self) -> None:
        self._first: tuple[int, float] | None = None
        self.eta: float | None = None

    def __call__(self, event: StepEvent) -> float | None:
        if self._first is None:
            self._first = (event.step, event.elapsed)
        first_step, first_elapsed = self._first
        done, seconds = event.step - first_step, event.elapsed - first_elapsed
        if done <= 0 or seconds <= 0:
            self.eta = None
            return None
        # Steps weighted by their scale's pixels (alike where the event names no scale).
        work = event.stage.work_until if event.stage is not None else float
        done_work = max(work(event.step) - work(first_step), 1e-9)
        self.eta = (work(event.total_steps) - work(event.step)) * seconds / done_work
        return done / seconds


class LogLines:
    """Plain progress lines for logs (stderr not a terminal: nohup, CI, cluster jobs): one
    every `every` steps and at the end, with step, scale, losses, it/s and ETA. Speeds are
    averages since this session's first step, the same figure as the final summary's."""

    def __init__(self, write: Callable[[str], None], every: int, description: str = "stylize"):
        self.write = write
        self.every = max(1, every)
        self.description = description
        self._rate = _Rate()

    def __call__(self, event: StepEvent) -> None:
        rate = self._rate(event)
        if event.step % self.every and not event.is_final:
            return
        parts = [f"{self.description} step {event.step}/{event.total_steps}"]
        if event.stage is not None and event.stage.count > 1:
            parts[0] += (
                f" ({event.stage.size}px, scale {event.stage.index + 1}/{event.stage.count})"
            )
        parts.append(format_losses(event.losses))
        if rate is not None and self._rate.eta is not None:
            eta = self._rate.eta
            parts.append(f"{rate:.2f} it/s")
            parts.append(f"ETA {int(eta) // 60}:{int(eta) % 60:02d}")
        self.write(" · ".join(parts))


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
    """The run's own ETA (`_Rate.eta`, weighted by each scale's cost) where it gives one;
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


def format_losses(losses: Mapping[str, float]) -> str:
    """'total 1.2e+04 · content 3.1 · style 0.52' for the headline terms present."""
    parts = []
    for name in ("total", "content", "style", "tv"):
        if name in losses and (name != "tv" or losses[name]):
            parts.append(f"{name} {losses[name]:.4g}")
    return " · ".join(parts)


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
        self._rate = _Rate()
        self._losses_shown = -math.inf

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
        self.progress.update(
            self.task_id,
            description=f"{self.description} {label}" if label else self.description,
            completed=event.step,
            total=event.total_steps,
            rate=self._rate(event),
            eta=self._rate.eta,
            **fields,
        )
