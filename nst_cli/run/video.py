"""`stylize_video()`: the plain Python API behind `nst video`.

A clip is stylised frame by frame, each tied to the ones before it as Ruder, Dosovitskiy and
Brox describe ("Artistic style transfer for videos", 2016):
- the first frame is an ordinary run (the config's coarse-to-fine schedule, from `init`);
- every later frame starts from the previous stylised frame moved by the optical flow onto
  this frame (pixels the flow cannot vouch for: from the photo frame), and its loss adds a
  temporal term that holds it to that warped frame where the flow is trusted
  (losses.temporal); being close to done already, it gets `video.steps`, one scale.

Frames are read and written one at a time. Each finished frame is a PNG in the run folder
before the next starts, and the next starts from that PNG's pixels: an interrupted clip
resumes at the first missing frame and gives the same frames as a run never interrupted.
The clip is assembled from the frames at the end (and again by a resume of a finished run).
"""

from __future__ import annotations

import csv
import io
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nst_cli.config.models import Config
from nst_cli.config.resolve import resolve_config, resume_config
from nst_cli.core import color
from nst_cli.core.flow import (
    consistency_mask,
    dis_flow,
    outside_frame,
    sample,
    temporal_error,
    warp,
)
from nst_cli.core.losses.temporal import TemporalTarget, TemporalTerm, long_term_masks
from nst_cli.core.optimize import Callback, OptimizeResult
from nst_cli.core.pixels import fit_long_side, resize_to, to_tensor
from nst_cli.errors import NSTError
from nst_cli.io.files import save_png, write_text
from nst_cli.io.images import load_image
from nst_cli.io.video import Clip, read_frames, write_clip
from nst_cli.io.videodir import VIDEO_COLUMNS, VideoDir
from nst_cli.run.cache import ModelCache
from nst_cli.run.context import RunContext
from nst_cli.run.inputs import Inputs, initial_image, load_masks, stage_images
from nst_cli.run.memory import check_memory
from nst_cli.run.provenance import png_metadata, timestamp, write_run_config
from nst_cli.run.recording import output_pil
from nst_cli.run.resume import StartingPoint
from nst_cli.run.scales import run_scales
from nst_cli.run.session import settled
from nst_cli.run.state import Prepared
from nst_cli.run.video_checks import (
    check_clip,
    check_disk,
    check_same_clip,
    check_video_folder,
    clip_output,
)

log = logging.getLogger(__name__)

#: The earlier frames each frame is held to: t−1, or with `video.long_term` t−1, t−2, t−4.
SHORT_TERM = (1,)
LONG_TERM = (1, 2, 4)
#: A pixel new to the clip (entering the frame, uncovered) is held to its earlier self only
#: gradually, fully once it has been stylised this many frames (see _Video._settled).
SETTLE_FRAMES = 3


@dataclass(frozen=True)
class FrameDone:
    """One finished frame, as `on_frame` callbacks see it."""

    index: int
    count: int
    steps: int
    seconds: float
    temporal_error: float | None
    path: Path


@dataclass
class VideoResult:
    """Where the clip and its run folder are and how the run went."""

    run_dir: Path
    clip: Path | None
    status: str
    frames: int
    count: int
    frames_run: int
    seconds: float
    fps: float
    first_steps: int
    later_steps: int
    #: Mean temporal_error over the frames after the first (8-bit levels), None for one frame.
    temporal_error: float | None
    device: str


def later_steps(config: Config) -> int:
    """Steps for each frame after the first: `video.steps`, or a fifth of the first's."""
    if config.video.steps != "auto":
        return int(config.video.steps)
    return max(1, round(config.total_steps / 5))


def frame_config(config: Config) -> Config:
    """The settings of every frame after the first: one scale at full size, `later_steps`,
    started from the warped previous frame (so no `init`), the light pyramid preconditioner
    (they add detail to a picture that is nearly there, as a coarse-to-fine run's last scale)."""
    steps = later_steps(config)
    update = {"scales": [config.resolution], "steps": steps, "save_every": steps + 1}
    optimizer = config.optimizer
    if optimizer.precondition == "auto" and not config.masks:
        optimizer = optimizer.model_copy(update={"precondition": "light-pyramid"})
    return config.model_copy(update={**update, "optimizer": optimizer})


def stylize_video(
    config: Config | str | Path,
    *,
    callbacks: Sequence[Callback] = (),
    on_frame: Sequence[Callable[[FrameDone], None]] = (),
    on_start: Callable[[Clip, int, int], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    resume: bool = False,
    overwrite: bool = False,
    allow_large: bool = False,
    cache: ModelCache | None = None,
) -> VideoResult:
    """Stylise a clip (a video file or a folder of frames: `config.content`) with the
    config's style, frame by frame with temporal consistency, into a run folder and a clip.

    Args:
        config: a Config, a config file, or with `resume=True` a video run folder.
        callbacks: called with each frame's StepEvents (the current frame's progress).
        on_frame: called after each frame is saved.
        on_start: called once the clip is checked: (clip, frames to stylise, frames done).
        should_stop: polled after every step; True stops after that step, keeping every
            finished frame (the unfinished one is redone by `resume`).
        resume: continue the run folder's clip at its first missing frame; on a finished
            run, assemble the clip again from its frames.
        overwrite: replace a previous run in the folder (nst's files only).
        allow_large: accept frames over the size, memory and disk limits.
        cache: a ModelCache shared between clips.

    Raises:
        NSTError: a bad input or setting, a refused folder, a failed frame, in one line.
    """
    if not isinstance(config, Config):
        path = Path(config)
        is_run_dir = resume and path.is_dir()
        config = resume_config(path, kind="video") if is_run_dir else resolve_config(path)
    context = RunContext(
        callbacks, should_stop, resume, overwrite, allow_large, cache or ModelCache()
    )
    run_dir = VideoDir(config.output_dir)
    clip, count = check_clip(config, allow_large)
    check_video_folder(run_dir, config, resume, overwrite)
    if resume:
        check_same_clip(run_dir, config, clip, count)
    with run_dir.lock():
        check_video_folder(run_dir, config, resume, overwrite)  # again, under the lock
        run_dir.remove_orphaned_temps()
        if not resume:
            run_dir.clear()
        done = min(run_dir.frames_done(), count) if resume else 0
        if not allow_large:
            check_disk(run_dir, config, clip, count - done)
        if on_start is not None:
            on_start(clip, count, done)
        return _Video(config, run_dir, clip, (count, done), context).run(on_frame)


class _Video:
    """One clip's run: its frames in order, each saved before the next starts."""

    def __init__(
        self,
        config: Config,
        run_dir: VideoDir,
        clip: Clip,
        frames: tuple[int, int],
        context: RunContext,
    ) -> None:
        """`frames`: how many to stylise in all, and how many are done (a resumed run)."""
        self.config, self.run_dir, self.clip, self.context = config, run_dir, clip, context
        (self.count, self.done), self.cache = frames, context.cache
        self.allow_large = context.allow_large
        self.later = frame_config(config)
        self.device, self.precision, _ = self.cache.network(config)
        self.size = fit_long_side(clip.size, config.resolution)
        self.styles = tuple(
            load_image(s.path, "style", self.allow_large) for s in config.style_images
        )
        self.masks = load_masks(config, clip.size, self.allow_large)
        self.text = png_metadata(config)
        self.offsets = LONG_TERM if config.video.long_term else SHORT_TERM
        self.started = timestamp()
        self.rows: list[dict[str, float]] = []
        #: Frames each pixel of the last frame has been stylised for (see _settled).
        self.age: np.ndarray | None = None
        self._last_flow: tuple[int, np.ndarray, np.ndarray] | None = None

    # -- bookkeeping -------------------------------------------------------------------

    def _record(self, status: str, frames: int, **extra: object) -> None:
        write_run_config(
            self.run_dir, self.config, kind="video", status=status, started=self.started,
            frames_done=frames, frames=self.count, fps=self.clip.fps, size=list(self.size),
            clip=str(clip_output(self.config).expanduser().resolve()), device=str(self.device),
            precision=self.precision, **extra,
        )  # fmt: skip

    def _write_log(self) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=VIDEO_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: row.get(k, "") for k in VIDEO_COLUMNS})
        write_text(self.run_dir.log, buffer.getvalue())

    def _read_log(self) -> None:
        """The rows of the frames already done (a resumed run goes on with them)."""
        if not self.run_dir.log.is_file():
            return
        with self.run_dir.log.open(encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                try:
                    if int(row["frame"]) < self.done:
                        self.rows.append({k: float(v) for k, v in row.items() if v != ""})
                except (KeyError, ValueError):
                    continue

    # -- frames ------------------------------------------------------------------------

    def _frames(self) -> Iterator[tuple[int, Image.Image]]:
        """The clip's frames at the output size, in order, up to `count`."""
        for index, frame in enumerate(read_frames(self.clip, self.allow_large)):
            if index >= self.count:
                return
            yield index, resize_to(frame, self.size) if frame.size != self.size else frame

    def _stylised(self, index: int) -> torch.Tensor:
        """Frame `index` as optimised (before any colour is put back), from its PNG."""
        path = self.run_dir.raw_frame(index)
        if not path.is_file():
            path = self.run_dir.frame(index)
        return to_tensor(load_image(path, "stylised frame", self.allow_large).convert("RGB"))

    def run(self, on_frame: Sequence[Callable[[FrameDone], None]]) -> VideoResult:
        """Every frame not done yet, each saved before the next starts; then the clip."""
        callbacks, should_stop = self.context.callbacks, self.context.should_stop
        self._read_log()
        started = time.perf_counter()
        frames_run = 0
        self.status = "failed"  # until the frames say otherwise (as a still run's Session)
        self._record("running", self.done)
        with settled([self]):  # Ctrl-C or a crash: config.yaml says so, the frames stay
            recent: deque[tuple[int, np.ndarray]] = deque(maxlen=max(self.offsets) + 1)
            stylised: dict[int, torch.Tensor] = {}
            for index, frame in self._frames():
                array = np.asarray(frame)
                if index < self.done:  # done before: its photo is needed, for the flow
                    self._age_after(index, array, recent)
                    recent.append((index, array))
                    continue
                for j in self.offsets:
                    if index - j >= 0 and index - j not in stylised:
                        stylised[index - j] = self._stylised(index - j)
                row, interrupted = self._stylize_frame(
                    index, frame, array, recent, stylised, callbacks, should_stop
                )
                if interrupted:
                    break
                frames_run += 1
                self._age_after(index, array, recent)
                recent.append((index, array))
                stylised = {k: v for k, v in stylised.items() if index + 1 - k <= max(self.offsets)}
                self._frame_done(index, row, on_frame)
            finished = self.run_dir.frames_done() >= self.count
            if finished:
                self._assemble()
            self.status = "completed" if finished else "interrupted"
        self.close()
        status = self.status
        errors = [r["temporal_error"] for r in self.rows if "temporal_error" in r]
        return VideoResult(
            run_dir=self.run_dir.root,
            clip=clip_output(self.config) if status == "completed" else None,
            status=status,
            frames=self.run_dir.frames_done(),
            count=self.count,
            frames_run=frames_run,
            seconds=time.perf_counter() - started,
            fps=self.clip.fps,
            first_steps=self.config.total_steps,
            later_steps=self.later.total_steps,
            temporal_error=float(np.mean(errors)) if errors else None,
            device=str(self.device),
        )

    def _frame_done(
        self, index: int, row: dict[str, float], on_frame: Sequence[Callable[[FrameDone], None]]
    ) -> None:
        """A frame saved: its row in video.csv, config.yaml's count, the callbacks told."""
        self.rows.append(row)
        self._write_log()
        self._record("running", index + 1)
        done = FrameDone(
            index, self.count, int(row["steps"]), row["seconds"], row.get("temporal_error"),
            self.run_dir.frame(index),
        )  # fmt: skip
        for callback in on_frame:
            callback(done)

    def close(self) -> None:
        """The clip's end, however it came: config.yaml's status and frame count."""
        self._record(self.status, self.run_dir.frames_done(), finished=timestamp())

    def _settled(self, back: np.ndarray) -> np.ndarray:
        """How far each pixel of this frame is held to the previous one: fully where the
        previous frame's pixel had been stylised for SETTLE_FRAMES frames, less where it was
        new (it entered the frame, or came out from behind something), so new content is
        painted over a few frames before the temporal term holds it. (Held at once, a ball
        rolling into view kept its first, half-stylised look: new pixels get only a later
        frame's few steps.)"""
        if self.age is None:
            return np.ones(back.shape[:2], np.float32)
        return np.clip(sample(self.age, back) / SETTLE_FRAMES, 0.0, 1.0).astype(np.float32)

    def _age_after(
        self, index: int, array: np.ndarray, recent: deque[tuple[int, np.ndarray]]
    ) -> None:
        """Frames each pixel has been stylised for, once frame `index` is done (recomputed
        from the photos' flow on resume: milliseconds a frame)."""
        if index == 0 or not recent:
            self.age = np.full(array.shape[:2], float(SETTLE_FRAMES), np.float32)
            return
        back, mask = self._flow_back(index, array, recent[-1][1])
        carried = sample(self.age, back) if self.age is not None else 0.0
        self.age = (np.minimum(carried + 1.0, SETTLE_FRAMES) * mask).astype(np.float32)

    def _flow_back(
        self, index: int, array: np.ndarray, previous: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Flow from frame `index` back to the one before, and its trust mask (computed once a
        frame: the frame's loss and the pixels' ages both use it)."""
        if self._last_flow is not None and self._last_flow[0] == index:
            return self._last_flow[1], self._last_flow[2]
        back = dis_flow(array, previous, self.config.video.flow)
        mask = consistency_mask(back, dis_flow(previous, array, self.config.video.flow))
        self._last_flow = (index, back, mask)
        return back, mask

    def _stylize_frame(
        self,
        index: int,
        frame: Image.Image,
        array: np.ndarray,
        recent: deque[tuple[int, np.ndarray]],
        stylised: dict[int, torch.Tensor],
        callbacks: Sequence[Callback],
        should_stop: Callable[[], bool],
    ) -> tuple[dict[str, float], bool]:
        """Stylise frame `index` and save it; (its log row, whether it was interrupted)."""
        frame_started = time.perf_counter()
        config = self.config if index == 0 else self.later
        inputs = Inputs(frame, self.styles, self.masks)
        if index == 0 and not self.allow_large:
            check_memory(config, inputs)
        content, styles = stage_images(config, inputs, config.resolution)
        if index == 0:
            start = initial_image(config, content, styles[0], self.allow_large)
            temporal, first_mask = None, None
        else:
            start, temporal, first_mask = self._tied(index, array, content, dict(recent), stylised)
        _, _, extractor = self.cache.network(
            config
        )  # the still runs' network, device and precision
        prepared = Prepared(
            config, config, self.device, self.precision, self.run_dir, inputs, extractor,
            self.cache, StartingPoint(start), frame_started, temporal,
        )  # fmt: skip
        (result,) = run_scales([prepared], [list(callbacks)], should_stop)
        if result.error is not None:
            raise _frame_error(index, result.error)
        if result.interrupted:
            return {}, True
        return self._save(index, frame, result, (temporal, first_mask), frame_started), False

    def _tied(
        self,
        index: int,
        array: np.ndarray,
        content: torch.Tensor,
        photos: dict[int, np.ndarray],
        stylised: dict[int, torch.Tensor],
    ) -> tuple[torch.Tensor, TemporalTerm, torch.Tensor]:
        """A later frame's start and temporal term: the earlier stylised frames warped onto
        this one by the flow, each trusted where the flow is consistent."""
        targets, backs = [], {}
        for j in self.offsets:
            if index - j < 0 or index - j not in photos:
                continue
            earlier = photos[index - j]
            if j == 1:
                back, trusted = self._flow_back(index, array, earlier)
            else:
                back = dis_flow(array, earlier, self.later.video.flow)
                trusted = consistency_mask(back, dis_flow(earlier, array, self.later.video.flow))
            backs[j] = back
            mask = torch.from_numpy(trusted)[None, None]
            targets.append(TemporalTarget(warp(stylised[index - j], back), mask))
        # The start: the previous frame warped onto this one, occluded pixels included
        # (filled with the photo there, they kept the outline of where a moving object
        # had been, which the few steps did not repaint); the photo only where the flow
        # leads out of the previous frame (what a pan brings in at the edge).
        inside = torch.from_numpy(1 - outside_frame(backs[1]).astype(np.float32))
        start = inside * targets[0].warped + (1 - inside) * content
        masks = long_term_masks([t.mask for t in targets])
        masks[0] = masks[0] * torch.from_numpy(self._settled(backs[1]))[None, None]
        temporal = TemporalTerm(
            [
                TemporalTarget(t.warped, m).to(self.device)
                for t, m in zip(targets, masks, strict=True)
            ]
        )
        return start, temporal, targets[0].mask

    def _save(
        self,
        index: int,
        frame: Image.Image,
        result: OptimizeResult,
        tie: tuple[TemporalTerm | None, torch.Tensor | None],
        started: float,
    ) -> dict[str, float]:
        """The stylised frame as the user sees it (and, with `color: luminance`, as the run
        made it); its row of video.csv. `tie`: the frame's temporal term and the mask of
        the pixels the previous frame's flow trusts (None for the first frame)."""
        text = {**self.text, "nst:frame": str(index)}
        config = self.config if index == 0 else self.later
        raw = output_pil(result.image, None)  # as a still run saves its images (recording)
        if config.color == "luminance":
            self.run_dir.create_raw()
            save_png(raw, self.run_dir.raw_frame(index), text)
        recolor = color.recolor(frame) if config.color == "luminance" else None
        save_png(output_pil(result.image, None, recolor), self.run_dir.frame(index), text)
        row: dict[str, float] = {
            "frame": index,
            "steps": result.step,
            "seconds": round(time.perf_counter() - started, 3),
            **{k: result.losses[k] for k in ("total", "content", "style") if k in result.losses},
        }
        temporal, first_mask = tie
        if temporal is not None and first_mask is not None:
            row["temporal"] = result.losses.get("temporal", float("nan"))
            # Measured on what the file holds (and the next frame starts from).
            warped = temporal.targets[0].warped.cpu()
            error = temporal_error(to_tensor(raw), warped, first_mask)
            row["temporal_error"] = round(error, 4)
        return row

    def _assemble(self) -> None:
        """The clip from the saved frames, with the input's audio (a video file's) copied in."""
        output = clip_output(self.config)

        def frames() -> Iterator[Image.Image]:
            for index in range(self.count):
                yield load_image(self.run_dir.frame(index), "stylised frame", self.allow_large)

        audio = self.clip.path if self.clip.has_audio and not self.clip.is_folder else None
        write_clip(frames(), output, self.clip.fps, audio, self.count)


def _frame_error(index: int, error: NSTError) -> NSTError:
    kind = type(error)
    try:
        return kind(f"frame {index}: {error}")
    except TypeError:  # pragma: no cover - every NSTError takes a message
        return error
