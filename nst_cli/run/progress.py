"""Progress as plain lines: step, scale, losses, it/s and ETA, for logs and for the Python API (`stylize(..., progress=True)`). The terminal's rich bar (nst_cli.cli.bars) builds on the same rate."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from nst_cli.core.optimize import StepEvent
from nst_cli.core.schedule import Stage


def scale_label(stage: Stage | None) -> str:
    """'362px (2/3)' for a scale of a coarse-to-fine run; '' for a one-scale run."""
    if stage is None or stage.count < 2:
        return ""
    return f"{stage.size}px ({stage.index + 1}/{stage.count})"


class StepRate:
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


#: Seconds between plain progress lines about tiles (a tiled step at print size takes minutes).
TILE_LINE_S = 10.0


class LogLines:
    """Plain progress lines for logs (stderr not a terminal: nohup, CI, cluster jobs): one
    every `every` steps and at the end, with step, scale, losses, it/s and ETA. Speeds are
    averages since this session's first step, the same figure as the final summary's."""

    def __init__(self, write: Callable[[str], None], every: int, description: str = "stylize"):
        self.write = write
        self.every = max(1, every)
        self.description = description
        self._rate = StepRate()
        self._tile_said = time.monotonic()

    def on_tile(self, number: int, count: int, stage: int) -> None:
        """A tiled step's progress, at most one line every TILE_LINE_S seconds."""
        now = time.monotonic()
        if now - self._tile_said >= TILE_LINE_S:
            self._tile_said = now
            what = "sums" if stage == 1 else "gradient"
            self.write(f"{self.description} tile {number}/{count} ({what})")

    def __call__(self, event: StepEvent) -> None:
        self._tile_said = time.monotonic()
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


def format_losses(losses: Mapping[str, float]) -> str:
    """'total 1.2e+04 · content 3.1 · style 0.52' for the headline terms present."""
    parts = []
    for name in ("total", "content", "style", "tv"):
        if name in losses and (name != "tv" or losses[name]):
            parts.append(f"{name} {losses[name]:.4g}")
    return " · ".join(parts)
