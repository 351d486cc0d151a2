"""`nst video`: a clip stylised frame by frame without flicker; options, then one call into
the library (`nst_cli.run.video.stylize_video`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from nst_cli.cli.base import (
    EXIT_INTERRUPTED,
    app,
    err_console,
    errors_to_exit,
    loading_torch,
    out_console,
    setup_logging,
)
from nst_cli.cli.options import (
    OUTPUT,
    RUN,
    WEIGHTS,
    AllowLargeOpt,
    ColorMode,
    ConfigOpt,
    ContentWeightOpt,
    DebugOpt,
    DeviceOpt,
    LogEveryOpt,
    OverwriteOpt,
    PresetOpt,
    PrintConfigOpt,
    QuietOpt,
    ResolutionOpt,
    SeedOpt,
    SetOpt,
    StepsOpt,
    StyleBlendOpt,
    StyleOpt,
    StyleWeightOpt,
    default_help,
    flag_overrides,
    style_value,
)
from nst_cli.config.choices import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from nst_cli.errors import ConfigError

if TYPE_CHECKING:  # types only: the command imports torch-heavy modules when it runs
    from nst_cli.io.video import Clip
    from nst_cli.run.video import FrameDone, VideoResult

VIDEO = "Video"


@app.command(
    epilog="[bold]Examples[/]\n\n"
    "  nst video samples/pan.mp4 samples/fluid.png -o outputs/pan_fluid.mp4\n\n"
    "  nst video frames/ --style painting.jpg --resolution 384 -o clip.webm\n\n"
    "  nst video clip.mov painting.jpg --max-frames 24 --preset fast   # a quick look\n\n"
    "  nst video --resume outputs/pan_fluid"
)
def video(
    inputs: Annotated[
        list[Path] | None,
        typer.Argument(
            help="The clip (a video file ffmpeg reads, or a folder of frames), then one or "
            "more paintings: the same as the clip and --style.",
            metavar="[CLIP [STYLE]...]",
            show_default=False,
        ),
    ] = None,
    config: ConfigOpt = None,
    style: StyleOpt = None,
    style_blend: StyleBlendOpt = None,
    set_: SetOpt = None,
    style_weight: StyleWeightOpt = None,
    content_weight: ContentWeightOpt = None,
    color: Annotated[
        ColorMode | None,
        typer.Option(
            help="style: the painting's palette; luminance: keep the clip's colours; "
            "histogram: the painting's texture in the clip's palette." + default_help("color"),
            rich_help_panel=WEIGHTS,
        ),
    ] = None,
    temporal_weight: Annotated[
        float | None,
        typer.Option(
            help="How strongly each frame keeps the previous one where the motion is known "
            "(0: off)." + default_help("video.temporal_weight"),
            rich_help_panel=VIDEO,
        ),
    ] = None,
    frame_steps: Annotated[
        int | None,
        typer.Option(
            help="Steps for each frame after the first." + default_help("video.steps"),
            rich_help_panel=VIDEO,
        ),
    ] = None,
    long_term: Annotated[
        bool | None,
        typer.Option(
            "--long-term/--short-term",
            help="Also hold each frame to frames t-2 and t-4 (steadier behind moving objects)."
            + default_help("video.long_term"),
            rich_help_panel=VIDEO,
            show_default=False,
        ),
    ] = None,
    max_frames: Annotated[
        int | None,
        typer.Option(help="Stylise only the first N frames.", rich_help_panel=VIDEO),
    ] = None,
    fps: Annotated[
        float | None,
        typer.Option(
            help="Frame rate for a folder of frames [dim]\\[default: 25][/]; a video keeps its own.",
            rich_help_panel=VIDEO,
        ),
    ] = None,
    preset: PresetOpt = None,
    steps: StepsOpt = None,
    seed: SeedOpt = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="The clip (.mp4, .webm, .gif): the run folder goes beside it (clip/); or a "
            "run folder, the clip then video.mp4 in it. [dim]\\[default: outputs/<clip>_<style>][/]",
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    resolution: ResolutionOpt = None,
    overwrite: OverwriteOpt = False,
    resume: Annotated[
        Path | None,
        typer.Option(
            "--resume",
            help="Continue an interrupted clip at its first missing frame (a finished one: "
            "assemble the clip again).",
            rich_help_panel=RUN,
        ),
    ] = None,
    device: DeviceOpt = None,
    print_config: PrintConfigOpt = False,
    log_every: LogEveryOpt = None,
    preview: Annotated[
        bool,
        typer.Option(
            "--preview",
            help="Serve a live page on 127.0.0.1 (the address is printed): the frame being "
            "stylised, its step and losses, the frames done.",
            rich_help_panel=RUN,
        ),
    ] = False,
    allow_large: AllowLargeOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Stylise a video (or a folder of frames) without flicker: each frame starts from the
    previous one moved by the optical flow, and holds to it where the motion is known."""
    from nst_cli.config.loading import dump_yaml
    from nst_cli.config.resolve import resolve_config

    setup_logging(quiet)
    with errors_to_exit(debug):
        clip, style = _positional(inputs, style)
        overrides = flag_overrides(
            content=clip,
            style=style_value(style, style_blend),
            preset=preset,
            resolution=resolution,
            steps=steps,
            style_weight=style_weight,
            content_weight=content_weight,
            device=device,
            seed=seed,
            color=color.value if color else None,
            temporal_weight=temporal_weight,
            frame_steps=frame_steps,
            long_term=long_term,
            max_frames=max_frames,
            fps=fps,
        )
        overrides.update(_output_overrides(output))
        if resume is not None:
            resolved = _resume_config(resume, config, set_ or (), overrides)
        else:
            resolved = resolve_config(config, set_ or (), overrides)
        if print_config:
            typer.echo(dump_yaml(resolved.to_yaml_dict()), nl=False)
            return
        with loading_torch(quiet):
            from nst_cli.run.video import stylize_video
        live: list[Any] = []
        if preview:
            from nst_cli.cli.preview import Preview
            from nst_cli.io.videodir import VIDEO_FRAME, VideoDir

            live.append(Preview(VideoDir(resolved.output_dir), frame_pattern=VIDEO_FRAME).start())
            err_console.print(f"[bold]preview[/] {live[0].url}", highlight=False)
        try:
            result = _run(
                stylize_video, resolved, resume is not None, overwrite, allow_large, quiet,
                log_every, live,
            )  # fmt: skip
        finally:
            for server in live:
                server.stop()
        if not quiet:
            _print_summary(result)
        if result.status == "interrupted":
            err_console.print(
                f"[yellow]interrupted[/] after {result.frames} of {result.count} frames; "
                f"continue with: nst video --resume {escape(str(result.run_dir))}"
            )
            raise typer.Exit(EXIT_INTERRUPTED)


def _positional(
    inputs: list[Path] | None, style: list[Path] | None
) -> tuple[Path | None, list[Path] | None]:
    """`nst video clip.mp4 painting.jpg`: the clip, then the paintings (or --style)."""
    if not inputs:
        return None, style
    if len(inputs) > 1 and style:
        raise ConfigError("the paintings are given both as arguments and with --style; give one")
    return inputs[0], (inputs[1:] or style)


def _output_overrides(output: Path | None) -> dict[str, Any]:
    """-o clip.mp4: the clip there, the run folder beside it (clip/); -o folder: the run
    folder, the clip video.mp4 in it."""
    if output is None:
        return {}
    if output.suffix.lower() in VIDEO_SUFFIXES:
        return {"video.output": str(output), "output": str(output.with_suffix(""))}
    if output.suffix.lower() in (*IMAGE_SUFFIXES, ".mov", ".mkv", ".avi"):
        raise ConfigError(
            f"-o {output}: nst video writes {', '.join(VIDEO_SUFFIXES)} clips (or a run "
            f"folder); name it e.g. {output.with_suffix('.mp4')}"
        )
    return {"output": str(output)}


def _resume_config(resume: Path, config: Path | None, sets: Any, overrides: dict[str, Any]) -> Any:
    from nst_cli.config.resolve import resume_config

    if config is not None:
        raise ConfigError("--resume reads RUN_DIR/config.yaml; drop --config")
    return resume_config(resume, sets, overrides, kind="video")


def _run(
    stylize_video: Any,
    config: Any,
    resume: bool,
    overwrite: bool,
    allow_large: bool,
    quiet: bool,
    log_every: int | None,
    live: list[Any],
) -> VideoResult:
    """The clip under a progress display (a bar over frames and one over the current frame's
    steps, or plain lines when piped) and a graceful Ctrl-C."""
    from nst_cli.cli.interrupts import GracefulInterrupt
    from nst_cli.cli.progress import ProgressBar, make_progress
    from nst_cli.cli.running import _log_lines_every, announce_stop

    options = {"resume": resume, "overwrite": overwrite, "allow_large": allow_large}
    with GracefulInterrupt(on_first=announce_stop) as stop:
        if quiet:
            return stylize_video(config, callbacks=live, should_stop=stop, **options)  # type: ignore[no-any-return]
        every = _log_lines_every(log_every)
        if every is not None:
            lines = _FrameLines(every)
            return stylize_video(  # type: ignore[no-any-return]
                config, callbacks=[lines.step, *live], on_frame=[lines.frame], on_start=lines.start,
                should_stop=stop, **options,
            )  # fmt: skip
        progress = make_progress(err_console)
        bars = _FrameBars(progress, ProgressBar)
        try:
            return stylize_video(  # type: ignore[no-any-return]
                config, callbacks=[bars.step, *live], on_frame=[bars.frame], on_start=bars.start,
                should_stop=stop, **options,
            )  # fmt: skip
        finally:
            progress.stop()


class _FrameLines:
    """Plain lines: the current frame's steps every N steps, and one line per frame done."""

    def __init__(self, every: int) -> None:
        from nst_cli.cli.running import _write_line
        from nst_cli.run.progress import LogLines

        self.every, self.write, self.lines_cls = every, _write_line, LogLines
        self.count = 0
        self.current: Any = None
        self.index = 0

    def start(self, clip: Clip, count: int, done: int) -> None:
        self.count, self.index = count, done
        self.write(
            f"video: {count} frames at {clip.fps:g} fps"
            + (f" ({done} done, resuming)" if done else "")
        )
        self.current = self.lines_cls(self.write, self.every, f"frame {done + 1}/{count}")

    def step(self, event: Any) -> None:
        self.current(event)

    def frame(self, done: FrameDone) -> None:
        error = (
            f", temporal_error {done.temporal_error:.3g}" if done.temporal_error is not None else ""
        )
        self.write(
            f"frame {done.index + 1}/{done.count} done: {done.steps} steps, {done.seconds:.1f} s{error}"
        )
        self.current = self.lines_cls(
            self.write, self.every, f"frame {done.index + 2}/{done.count}"
        )


class _FrameBars:
    """Two rich bars: frames done (frames/min, ETA) and the current frame's steps."""

    def __init__(self, progress: Any, bar_cls: Any) -> None:
        self.progress, self.bar_cls = progress, bar_cls
        self.overall: Any = None
        self.current: Any = None

    def start(self, clip: Clip, count: int, done: int) -> None:
        self.progress.start()
        self.overall = self.progress.add_task(
            "frames", total=count, completed=done, losses="", counts="runs"
        )
        self.current = self.bar_cls(self.progress, f"frame {done + 1}")

    def step(self, event: Any) -> None:
        self.current(event)

    def frame(self, done: FrameDone) -> None:
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


def _print_summary(result: VideoResult) -> None:
    error = (
        f"{result.temporal_error:.3f} (mean, 8-bit levels)"
        if result.temporal_error is not None
        else "–"
    )
    per_frame = result.seconds / result.frames_run if result.frames_run else 0.0
    rows = [
        ("status", result.status),
        (
            "frames",
            f"{result.frames}/{result.count} ({result.frames_run} this run) at {result.fps:g} fps",
        ),
        ("steps", f"{result.first_steps} for the first frame, {result.later_steps} for each after"),
        ("time", f"{result.seconds:.1f} s ({per_frame:.1f} s per frame) on {result.device}"),
        ("temporal err", error),
        ("run folder", str(result.run_dir)),
    ]
    if result.clip is not None:
        rows.append(("clip", str(result.clip)))
    for key, value in rows:
        out_console.print(f"[bold]{key:<13}[/]{escape(value)}", soft_wrap=True, highlight=False)
