"""The session around a run: config.yaml's status, the final image, and what is saved on the way out."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from PIL import Image

from nst_cli.core import color
from nst_cli.core.optimize import Callback, OptimizeResult
from nst_cli.core.pixels import (
    fit_long_side,
)
from nst_cli.errors import NSTError
from nst_cli.io.files import save_png
from nst_cli.io.rundir import RunDir
from nst_cli.run.provenance import png_metadata, timestamp, write_run_config
from nst_cli.run.recording import (
    Checkpointer,
    FrameSaver,
    LatestImage,
    LossLog,
    OutputImage,
    output_pil,
)
from nst_cli.run.state import Prepared, StylizeResult

log = logging.getLogger(__name__)


@dataclass
class _Recorder:
    """The callbacks that keep the run folder up to date, and the newest good image."""

    latest: LatestImage
    frames: FrameSaver
    loss_log: LossLog
    checkpointer: Checkpointer

    def callbacks(self) -> list[Callback]:
        return [self.latest, self.frames, self.loss_log, self.checkpointer]


class Session:
    """One run's folder while the run goes on: config.yaml says "running", the recorder's
    callbacks keep frames, loss log, checkpoint and newest image current; `finish` and
    `close` settle it however the run ended."""

    def __init__(self, prepared: Prepared) -> None:
        self.prepared = prepared
        config, run_dir, start = prepared.config, prepared.run_dir, prepared.start
        self.started_at = timestamp()
        write_run_config(
            run_dir, prepared.recorded, status="running", started=self.started_at,
            device=str(prepared.device), precision=prepared.precision, steps_done=start.step,
        )  # fmt: skip
        self.text = png_metadata(prepared.recorded)
        self.output_size = fit_long_side(prepared.inputs.content.size, config.resolution)
        # What every saved image goes through: the content's colours put back (luminance).
        self.recolor = (
            color.recolor(prepared.inputs.content) if config.color == "luminance" else None
        )
        self.output = (
            None
            if config.output_image is None
            else OutputImage(
                config.output_image,
                config.output_bits,
                self.output_size,
                color.recolor_float(prepared.inputs.content) if self.recolor else None,
            )  # fmt: skip
        )
        self.recorder = _Recorder(
            latest=LatestImage(),
            frames=FrameSaver(
                run_dir, config.frame_every, self.text, self.output_size, self.recolor
            ),
            loss_log=LossLog(
                run_dir.losses,
                config.frame_every,
                start.rows,
                run_dir.loss_plot,
                {"Software": self.text["Software"], "nst:version": self.text["nst:version"]},
            ),
            checkpointer=Checkpointer(run_dir, config.frame_every, config.checkpoint),
        )
        self.setup_seconds = time.perf_counter() - prepared.setup_started
        self.status = "failed"
        self.final_saved = False

    def finish(self, result: OptimizeResult) -> NSTError | None:
        """The run's end: every frame on disk, then final.png (and the `-o` image); the
        error that stopped the run, or that stops these writes, is returned."""
        if result.error is not None:
            return result.error
        ended = "interrupted" if result.interrupted else "completed"
        try:
            self.recorder.frames.flush()  # every frame on disk (or its write error) first
            final = output_pil(result.image, self.output_size, self.recolor)
            final_text = {**self.text, "nst:step": str(result.step)}
            save_png(final, self.prepared.run_dir.final, final_text)
            if self.output is not None:
                self.output.write(result.image, final, final_text)
        except NSTError as exc:
            return exc  # the status stays "failed": config.yaml must not claim the run ended well
        self.status = ended
        self.final_saved = True
        return None

    def close(self) -> NSTError | None:
        """Bookkeeping on the way out: the newest good image as final.png when the run did not
        save one, frames still being written, the loss log, config.yaml's final status. One
        part failing (a full disk refusing losses.png) does not skip the others, nor hide
        the error that ended the run; its error is returned when the run itself succeeded."""
        prepared, latest = self.prepared, self.recorder.latest
        run_dir, start = prepared.run_dir, prepared.start

        def save_latest() -> None:
            if not self.final_saved:
                _save_on_the_way_out(
                    run_dir, latest, self.text, self.status, self.output_size,
                    self.output, self.recolor,
                )  # fmt: skip

        errors = _each_logged(
            save_latest,
            self.recorder.frames.close,  # frames still being written (after an error, say)
            self.recorder.loss_log.flush,
            lambda: write_run_config(
                run_dir, prepared.recorded, status=self.status, started=self.started_at,
                finished=timestamp(), device=str(prepared.device), precision=prepared.precision,
                steps_done=max(latest.step, start.step),
                losses={k: latest.losses[k] for k in ("total", "content", "style", "tv") if k in latest.losses},
            ),
        )  # fmt: skip
        return errors[0] if errors and self.status == "completed" else None

    def outcome(self, result: OptimizeResult) -> StylizeResult:
        config, run_dir = self.prepared.config, self.prepared.run_dir
        return StylizeResult(
            run_dir=run_dir.root,
            final_image=config.output_image or run_dir.final,
            losses=result.losses,
            steps=result.step,
            steps_run=result.steps_run,
            seconds=result.seconds,
            setup_seconds=self.setup_seconds,
            warmup_seconds=result.warmup_seconds,
            scale_setup_seconds=result.scale_setup_seconds,
            status=self.status,
            device=str(self.prepared.device),
            precision=self.prepared.precision,
            # Every frame in the folder, earlier sessions of a resumed run included.
            frames=sorted(int(p.stem.split("_")[-1]) for p in run_dir.frames.glob("step_*.png")),
        )


class Settles(Protocol):
    """What a run keeps while it goes (a still run's Session, a clip's run): how it ended so
    far, and the bookkeeping that writes that down."""

    status: str

    def close(self) -> object: ...


@contextmanager
def settled(sessions: Iterable[Settles]) -> Iterator[None]:
    """While the runs go on: on Ctrl-C or a crash, every session (those in `sessions` by
    then) is closed, its newest image saved and its status written, before it propagates;
    a still run and a clip's run end the same way."""
    try:
        yield
    except BaseException as exc:
        for session in list(sessions):
            if isinstance(exc, KeyboardInterrupt):
                session.status = "interrupted"
            session.close()
        raise


def _each_logged(*steps: Callable[[], object]) -> list[NSTError]:
    """Run every step; an NSTError in one is said and the next still runs. Returns them."""
    errors = []
    for step in steps:
        try:
            step()
        except NSTError as exc:
            log.error("%s", exc)
            errors.append(exc)
    return errors


def _save_on_the_way_out(
    run_dir: RunDir,
    latest: LatestImage,
    text: dict[str, str],
    status: str,
    output_size: tuple[int, int],
    output: OutputImage | None = None,
    recolor: Callable[[Image.Image], Image.Image] | None = None,
) -> None:
    """On failure or interrupt, the newest good image still becomes final.png (and the
    `-o` image)."""
    if latest.image is None:
        return
    try:
        image = output_pil(latest.image, output_size, recolor)
        final_text = {**text, "nst:step": str(latest.step), "nst:status": status}
        save_png(image, run_dir.final, final_text)
        if output is not None:
            output.write(latest.image, image, final_text)
    except NSTError as exc:  # the original error matters more; say this one and go on
        log.error("%s", exc)
