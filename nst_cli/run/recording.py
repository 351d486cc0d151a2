"""What a run records as it goes: the newest good image, frames, the loss log, checkpoints.

Each is a small callback called with a StepEvent; the optimisation loop knows none of them.
Files are written through nst_cli.io, so each write is atomic."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nst_cli.config.choices import CheckpointMode
from nst_cli.core.losses.values import first_non_finite
from nst_cli.core.optimize import StepEvent
from nst_cli.core.pixels import resize_to, to_float_array, to_pil
from nst_cli.io.checkpoints import CheckpointWriter
from nst_cli.io.files import save_image, save_image_16bit, save_png
from nst_cli.io.losslog import write_loss_rows
from nst_cli.io.plot import loss_plot
from nst_cli.io.rundir import RunDir


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
        saved = event.saved.detach()
        finite = getattr(event.losses, "finite", None)
        if self.image is None or finite is None:
            self.image = saved.clone()
        elif self.image.shape != saved.shape:  # a new scale: one read, once per scale
            if bool(finite):
                self.image = saved.clone()
        else:
            self.image = torch.where(finite, saved, self.image)
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
    recolor: Callable[[Image.Image], Image.Image] | None = None,
) -> Image.Image:
    """The image as the user sees it: 8-bit RGB at the run's final (width, height), so frames
    of every scale of a coarse-to-fine run line up in one animation, through `recolor` (e.g.
    the content's colours put back) when given."""
    pil = to_pil(image)
    pil = pil if size is None else resize_to(pil, size)
    return recolor(pil) if recolor is not None else pil


@dataclass(frozen=True)
class OutputImage:
    """The `-o` image: where it goes, its size and bits per channel, and (16 bits) the
    colour transform in float that `recolor` is in 8 bits."""

    path: Path
    bits: int
    size: tuple[int, int]
    shown_float: Callable[[np.ndarray], np.ndarray] | None = None

    def write(self, image: torch.Tensor, final: Image.Image, text: Mapping[str, str]) -> None:
        """Save it: `final` (8 bits), or the float image itself in 16 bits."""
        if self.bits != 16:
            save_image(final, self.path, text)
            return
        pixels = to_float_array(image, self.size)
        if self.shown_float is not None:
            pixels = self.shown_float(pixels)
        save_image_16bit(pixels, self.path, text)


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
        recolor: Callable[[Image.Image], Image.Image] | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.save_every = save_every
        self.png_text = dict(png_text)
        self.output_size = output_size
        self.recolor = recolor
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nst-frames")
        self._pending: list[Future[None]] = []

    def __call__(self, event: StepEvent) -> None:
        if event.step % self.save_every == 0:
            text = {**self.png_text, "nst:step": str(event.step)}
            if event.stage is not None:
                text["nst:scale"] = str(event.stage.size)
            # A copy: the live tensor keeps changing while the frame is written.
            pixels = event.saved.detach().to("cpu", torch.float32, copy=True)
            for done in [f for f in self._pending if f.done()]:
                self._pending.remove(done)
                done.result()  # a failed write (disk full) stops the run now, as before
            while len(self._pending) >= self.MAX_PENDING:
                self._pending.pop(0).result()
            self._pending.append(
                self._writer.submit(self._write, pixels, self.run_dir.frame(event.step), text)
            )

    def _write(self, pixels: torch.Tensor, path: Path, text: dict[str, str]) -> None:
        save_png(output_pil(pixels, self.output_size, self.recolor), path, text)

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
