"""What the studio's buttons do, in plain Python (the page in `page.py` only wires them):
stylise, compare over a key, continue a run, make its animation. Each run goes through the
library API (`stylize`, `run_sweep`), writes an ordinary run folder, and reports as it goes
through `Update`s, so the page shows the same progress line the CLI prints."""

from __future__ import annotations

import logging
import shlex
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nst_cli.config.choices import IMAGE_SUFFIXES
from nst_cli.config.resolve import resolve_config, resume_config
from nst_cli.errors import ConfigError, NSTError
from nst_cli.io.animation import make_animation
from nst_cli.io.rundir import RunDir
from nst_cli.run.cache import ModelCache
from nst_cli.run.score import score_result
from nst_cli.run.state import StylizeResult
from nst_cli.run.stylize import stylize
from nst_cli.run.video import FrameDone, VideoResult, stylize_video
from nst_cli.studio.jobs import Job, Jobs
from nst_cli.studio.runs import RunEntry, list_runs, newest_image, offered_files, read_entry
from nst_cli.studio.settings import (
    FORMATS,
    Request,
    changed_sets,
    check_inside,
    video_command_line,
)
from nst_cli.studio.uploads import Uploads
from nst_cli.sweep.execute import SweepHooks, run_sweep
from nst_cli.sweep.grid import parse_param, safe_name
from nst_cli.sweep.plan import plan_sweep

log = logging.getLogger(__name__)


@dataclass
class Finished:
    """A run's end as the page shows it."""

    folder: Path
    image: Path | None
    status: str
    files: list[Path]
    settings: str
    #: `nst score`'s rows (measure, value, meaning), when the run was scored.
    score: list[tuple[str, str, str]] | None = None
    score_note: str = ""
    command: str = ""
    #: A video run's stylised clip.
    clip: Path | None = None


@dataclass
class Update:
    """Where a job stands: its progress line and notes, the newest image, and at the end
    its result (or the one line that stopped it)."""

    job: str
    line: str
    notes: list[str] = field(default_factory=list)
    image: Path | None = None
    finished: Finished | None = None
    error: str | None = None
    #: A compare's runs so far: (image, caption, run folder) and the summary rows.
    gallery: list[tuple[Path, str, Path]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Studio:
    """One studio: its output folder, samples, uploads, jobs and the network they share."""

    output: Path
    samples: Path | None = None
    jobs: Jobs = field(default_factory=Jobs)
    cache: ModelCache = field(default_factory=ModelCache)

    def __post_init__(self) -> None:
        self.output = Path(self.output).resolve()
        self.uploads = Uploads(self.output, self.samples)

    @property
    def readable(self) -> list[Path]:
        """The folders a run may read: the output folder first (uploads live there)."""
        return [self.output] + ([Path(self.samples).resolve()] if self.samples else [])

    # -- requests ---------------------------------------------------------------------------

    def request(
        self,
        content: str | Path | None,
        style: str | Path | None,
        main: Mapping[str, Any],
        output_format: str = "PNG",
        name: str = "",
        advanced: Mapping[str, Any] | None = None,
    ) -> Request:
        """The run the form asks for: inputs checked and kept, a new folder under the output
        folder (named after the images unless `name` is given), advanced keys changed."""
        if output_format not in FORMATS:
            raise ConfigError(f"format {output_format!r}: use {' or '.join(FORMATS)}")
        photo = self.uploads.adopt(content, "content")
        painting = self.uploads.adopt(style, "style")
        label = name.strip() or f"{Path(str(content)).stem}_{Path(str(style)).stem}"
        folder = self._new_folder(label)
        suffix = FORMATS[output_format]
        output = folder.with_name(folder.name + suffix) if suffix else folder
        sets = changed_sets(advanced or {})
        return Request(photo, painting, output, dict(main), sets)

    def _new_folder(self, label: str) -> Path:
        """A folder under the output folder that nothing holds yet: `label`, `label-2`, …"""
        name = safe_name(label)
        taken = {p.stem for p in self.output.iterdir()} if self.output.is_dir() else set()
        candidate, number = name, 2
        while candidate in taken:
            candidate, number = f"{name}-{number}", number + 1
        return self.output / candidate

    # -- runs --------------------------------------------------------------------------------

    def stylize(self, request: Request) -> Iterator[Update]:
        """Run the request; an Update every half second, the last one with its result."""
        config = request.config(self.readable)
        command = request.command_line()

        def work(job: Job) -> StylizeResult:
            return stylize(
                config, callbacks=[job.progress()], should_stop=job.should_stop, cache=self.cache
            )

        yield from self._follow(self.jobs.start(work), config.output_dir, command)

    def resume(self, folder: str | Path, steps: int | None = None) -> Iterator[Update]:
        """Continue the run in `folder` (a run under the output folder), to `steps` in all
        when given: `nst stylize --resume FOLDER [--steps N]`; a clip's run continues at its
        first missing frame (`nst video --resume FOLDER`)."""
        entry = self.entry(folder)
        if entry.kind == "video":
            if steps:
                raise ConfigError("a clip continues with its own settings; leave steps at 0")

            def clip(job: Job) -> VideoResult:
                return stylize_video(
                    entry.folder, callbacks=[job.progress()], should_stop=job.should_stop,
                    resume=True, cache=self.cache,
                )  # fmt: skip

            command = entry.resume_command
            yield from self._follow(self.jobs.start(clip), entry.folder, command)
            return
        overrides = {"steps": int(steps)} if steps else {}
        config = resume_config(entry.folder, (), overrides)
        words = ["nst", "stylize", "--resume", str(entry.folder)]
        command = shlex.join(words + (["--steps", str(steps)] if steps else []))

        def work(job: Job) -> StylizeResult:
            return stylize(
                config, callbacks=[job.progress()], should_stop=job.should_stop, resume=True,
                cache=self.cache,
            )  # fmt: skip

        yield from self._follow(self.jobs.start(work), entry.folder, command)

    def enlarge(self, folder: str | Path, resolution: int) -> Iterator[Update]:
        """A new run that continues `folder`'s result at `resolution`: its settings, its
        final image as the start (`nst stylize -c FOLDER/config.yaml --init FOLDER/final.png
        --resolution N -o NEW`)."""
        entry = self.entry(folder)
        final = RunDir(entry.folder).final
        if not final.is_file():
            raise ConfigError(f"{entry.name}: has no final.png yet; let it finish or resume it")
        new = self._new_folder(f"{entry.folder.name}_{resolution}px")
        overrides = {"init": str(final), "resolution": int(resolution), "output": str(new)}
        config = resolve_config(entry.folder / "config.yaml", (), overrides)
        check_inside(config, self.readable)
        command = shlex.join(
            ["nst", "stylize", "-c", str(entry.folder / "config.yaml"), "--init", str(final),
             "--resolution", str(resolution), "-o", str(new)]
        )  # fmt: skip

        def work(job: Job) -> StylizeResult:
            return stylize(
                config, callbacks=[job.progress()], should_stop=job.should_stop, cache=self.cache
            )

        yield from self._follow(self.jobs.start(work), new, command)

    def video(
        self, clip: str | Path | None, painting: str | Path | None, main: Mapping[str, Any],
        name: str = "",
    ) -> Iterator[Update]:  # fmt: skip
        """Stylise a clip frame by frame, without flicker (`nst video`); Updates name the
        frame and its step, the last one has the stylised clip."""
        source = self.uploads.adopt_clip(clip)
        style = self.uploads.adopt(painting, "style")
        folder = self._new_folder(
            name.strip() or f"{Path(str(clip)).stem}_{Path(str(painting)).stem}"
        )
        overrides = {"content": str(source), "style": str(style), **main, "output": str(folder)}
        config = resolve_config(None, (), overrides)
        check_inside(config, self.readable)
        command = video_command_line(source, style, main, folder)

        def work(job: Job) -> VideoResult:
            def frame(done: FrameDone) -> None:
                job.heading = f"frame {done.index + 1}/{done.count} done"

            return stylize_video(
                config, callbacks=[job.progress()], on_frame=[frame], should_stop=job.should_stop,
                cache=self.cache,
            )  # fmt: skip

        yield from self._follow(self.jobs.start(work), folder, command)

    def compare(self, request: Request, key: str, values: str) -> Iterator[Update]:
        """The request's run once per value of `key` (a sweep: `nst sweep`), side by side,
        each scored; Updates as they go, the last with every run's row."""
        param = parse_param(f"{key}={values}")
        root = request.output.with_suffix("")
        # The swept key comes from the values alone, not from the form as well.
        main = {k: v for k, v in request.main.items() if k != param.key}
        sets = [item for item in request.sets if item.split("=", 1)[0].strip() != param.key]
        request = Request(request.content, request.style, request.output, main, sets)
        overrides = {**request.overrides, "output": None}
        root, runs = plan_sweep(None, [param], request.sets, overrides, root)
        for run in runs:
            check_inside(run.config, self.readable)
        command = request.sweep_command_line(key, values, root)

        def work(job: Job) -> Any:
            hooks = SweepHooks(lambda i, run: [job.progress()], job.should_stop, cache=self.cache)
            return run_sweep(root, runs, hooks, score=True)

        job = self.jobs.start(work)
        try:
            for _ in job.wait():
                yield Update(job.id, job.line, list(job.notes), gallery=_sweep_gallery(runs))
        finally:
            job.stop.set()  # the page went away: the sweep stops after its step, all saved
        outcome = job.result
        rows = outcome.rows if outcome is not None else []
        finished = Finished(root, None, "completed", [], "", command=command)
        yield Update(
            job.id, job.line if job.error is None else f"error: {job.error}", list(job.notes),
            gallery=_sweep_gallery(runs, rows), rows=rows, finished=finished, error=job.error,
        )  # fmt: skip

    def _follow(self, job: Job, folder: Path, command: str) -> Iterator[Update]:
        """Updates of a one-run job until it ends, then its result."""
        try:
            yield Update(job.id, job.status)
            for _ in job.wait():
                yield Update(job.id, job.status, list(job.notes), newest_image(folder))
        finally:
            job.stop.set()  # the page went away: the run stops after its step, all saved
        if job.error is not None:
            yield Update(
                job.id, f"error: {job.error}", list(job.notes), newest_image(folder),
                finished=self.finished(folder, command), error=job.error,
            )  # fmt: skip
            return
        finished = self.finished(folder, command, scored=True)
        finished.clip = getattr(job.result, "clip", None)
        yield Update(job.id, job.status, list(job.notes), newest_image(folder), finished=finished)

    # -- what a run left -------------------------------------------------------------------

    def entry(self, folder: str | Path) -> RunEntry:
        """The run in `folder`, which must lie under the output folder (no links out)."""
        path = Path(folder)
        path = (path if path.is_absolute() else self.output / path).resolve()
        if not path.is_relative_to(self.output):
            raise ConfigError(f"{folder}: not a run under {self.output}")
        entry = read_entry(path, self.output)
        if entry is None:
            raise ConfigError(f"{folder}: no nst run there (config.yaml missing or not nst's)")
        return entry

    def runs(self) -> list[RunEntry]:
        return list_runs(self.output)

    def finished(self, folder: Path, command: str = "", scored: bool = False) -> Finished:
        """A run folder's result: image, files, settings, score (when asked and possible)."""
        entry = read_entry(Path(folder), self.output)
        settings = run_config_dict_text(entry.settings) if entry else ""
        status = entry.status if entry else "unknown"
        image = newest_image(Path(folder))
        files = offered_files(Path(folder)) + (self._output_image(entry) if entry else [])
        found = Finished(Path(folder), image, status, files, settings, command=command)
        if scored and image is not None and image.name == "final.png":
            try:
                found.score = score_result(image).rows()
            except NSTError as exc:
                found.score_note = str(exc)
        return found

    def _output_image(self, entry: RunEntry) -> list[Path]:
        """The run's `-o NAME.tif` image beside its folder (Download as 16-bit TIFF)."""
        named = entry.settings.get("output")
        if not named or Path(str(named)).suffix.lower() not in IMAGE_SUFFIXES:
            return []
        path = Path(str(named))
        inside = path.resolve().is_relative_to(self.output)
        return [path] if inside and path.is_file() and not path.is_symlink() else []

    def animate(self, folder: str | Path, kind: str = "gif") -> Path:
        """The run's optimisation as optimization.gif or .mp4 in its folder (`nst gif`)."""
        entry = self.entry(folder)
        if kind not in ("gif", "mp4"):
            raise ConfigError(f"animation {kind!r}: use gif or mp4")
        output = entry.folder / f"optimization.{kind}"
        return make_animation(entry.folder, output, label=True).output


def run_config_dict_text(settings: Mapping[str, Any]) -> str:
    """A run's settings as the YAML its config.yaml holds."""
    return yaml.safe_dump(dict(settings), sort_keys=False, allow_unicode=True)


def _sweep_gallery(
    runs: Sequence[Any], rows: Sequence[Mapping[str, Any]] = ()
) -> list[tuple[Path, str, Path]]:
    """Each run's newest image with its swept values (and, at the end, its score)."""
    by_name = {row["run"]: row for row in rows}
    items = []
    for run in runs:
        image = newest_image(run.config.output_dir)
        if image is None:
            continue
        caption = ", ".join(f"{k}={v}" for k, v in run.labels.items())
        row = by_name.get(run.name, {})
        if row.get("style_swd") not in (None, ""):
            caption += f" · style {float(row['style_swd']):.3f}"
        items.append((image, caption, run.config.output_dir))
    return items
