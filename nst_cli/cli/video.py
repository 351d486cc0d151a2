"""`nst video`: a clip stylised frame by frame without flicker; options, then one call into
the library (`nst_cli.run.video.stylize_video`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from nst_cli.cli.base import (
    app,
    err_console,
    errors_to_exit,
    loading_torch,
    setup_logging,
)
from nst_cli.cli.flags import NO_FLAGS, FlagValues, config_flags
from nst_cli.cli.options import (
    AllowLargeOpt,
    ConfigOpt,
    DebugOpt,
    LogEveryOpt,
    OverwriteOpt,
    PrintConfigOpt,
    QuietOpt,
    SetOpt,
    StyleBlendOpt,
    style_value,
)
from nst_cli.cli.running import exit_if_interrupted, print_rows, run_with_progress
from nst_cli.config.choices import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from nst_cli.config.flags import OUTPUT, RUN, VIDEO_COMMAND
from nst_cli.errors import ConfigError

if TYPE_CHECKING:  # types only: the command imports torch-heavy modules when it runs
    from nst_cli.run.video import VideoResult


@app.command(
    epilog="[bold]Examples[/]\n\n"
    "  nst video samples/pan.mp4 samples/fluid.png -o outputs/pan_fluid.mp4\n\n"
    "  nst video frames/ --style painting.jpg --resolution 384 -o clip.webm\n\n"
    "  nst video clip.mov painting.jpg --max-frames 24 --preset fast   # a quick look\n\n"
    "  nst video --resume outputs/pan_fluid"
)
@config_flags(VIDEO_COMMAND)
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
    flags: FlagValues = NO_FLAGS,
    style_blend: StyleBlendOpt = None,
    set_: SetOpt = None,
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
        clip, style = _positional(inputs, flags.get("style"))
        overrides = flags.overrides(content=clip, style=style_value(style, style_blend))
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
            result = run_with_progress(
                lambda reporting, should_stop: stylize_video(
                    resolved,
                    callbacks=[*reporting.callbacks, *live],
                    on_frame=reporting.on_frame,
                    on_start=reporting.on_start,
                    should_stop=should_stop,
                    resume=resume is not None,
                    overwrite=overwrite,
                    allow_large=allow_large,
                ),
                quiet,
                log_every,
                frames=True,
            )
        finally:
            for server in live:
                server.stop()
        if not quiet:
            print_rows(summary_rows(result))
        exit_if_interrupted(
            result.status,
            f"after {result.frames} of {result.count} frames",
            f"nst video --resume {result.run_dir}",
        )


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


def summary_rows(result: VideoResult) -> list[tuple[str, str]]:
    """How the clip went, in the rows every command's summary has."""
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
    return rows
