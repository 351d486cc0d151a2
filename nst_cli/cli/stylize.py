"""`nst stylize`: options, then one call into the library."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from nst_cli.cli.flags import NO_FLAGS, FlagValues, config_flags
from nst_cli.cli.options import style_value
from nst_cli.config.flags import RUN, STYLIZE
from nst_cli.errors import ConfigError

if TYPE_CHECKING:  # types only: the commands import torch-heavy modules when they run
    from nst_cli.run.state import StylizeResult
from nst_cli.cli.base import (
    app,
    command_started,
    err_console,
    errors_to_exit,
    loading_torch,
    out_console,
    setup_logging,
)
from nst_cli.cli.options import (
    AddressOpt,
    AllowLargeOpt,
    ConfigOpt,
    DebugOpt,
    ExecutorOpt,
    LogEveryOpt,
    OverwriteOpt,
    PrintConfigOpt,
    QuietOpt,
    SetOpt,
    StyleBlendOpt,
    TaskCpusOpt,
)
from nst_cli.cli.running import exit_if_interrupted, print_rows, run_grid, run_with_progress


@app.command(
    epilog="[bold]Examples[/]\n\n"
    "  nst stylize --config configs/car_fluid.yaml\n\n"
    "  nst stylize photo.jpg painting.jpg -o result.png\n\n"
    "  nst stylize photo.jpg painting.jpg --color luminance   # keep the photo's colours\n\n"
    "  nst stylize -c configs/car_fluid.yaml --preset fast --style-weight 5 -o outputs/bolder\n\n"
    "  nst stylize --resume outputs/car_fluid --steps 400"
)
@config_flags(STYLIZE)
def stylize(
    images: Annotated[
        list[Path] | None,
        typer.Argument(
            help="The photo, then one or more paintings: the same as --content and --style.",
            metavar="[CONTENT [STYLE]...]",
            show_default=False,
        ),
    ] = None,
    config: ConfigOpt = None,
    flags: FlagValues = NO_FLAGS,
    style_blend: StyleBlendOpt = None,
    set_: SetOpt = None,
    overwrite: OverwriteOpt = False,
    resume: Annotated[
        Path | None,
        typer.Option(
            "--resume", help="Continue an interrupted or finished run folder.", rich_help_panel=RUN
        ),
    ] = None,
    print_config: PrintConfigOpt = False,
    log_every: LogEveryOpt = None,
    preview: Annotated[
        bool,
        typer.Option(
            "--preview",
            help="Serve a live page of the run on 127.0.0.1 (the address is printed): image, "
            "step, loss curves, frames. Read-only; it ends with the run.",
            rich_help_panel=RUN,
        ),
    ] = False,
    executor: ExecutorOpt = "local",
    address: AddressOpt = None,
    task_cpus: TaskCpusOpt = 1,
    allow_large: AllowLargeOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Stylise one image (or a folder of them): content photo + style painting -> run folder
    with frames and final.png."""
    from nst_cli.config.loading import dump_yaml
    from nst_cli.config.resolve import resolve_config, resume_config

    started = command_started()  # the summary's wall time: everything this command does
    setup_logging(quiet)
    with errors_to_exit(debug):
        content, style = _positional_images(images, flags.get("content"), flags.get("style"))
        overrides = flags.overrides(content=content, style=style_value(style, style_blend))
        if resume is not None:
            if config is not None:
                raise ConfigError(
                    "--resume reads RUN_DIR/config.yaml; drop --config (use --steps to run longer)"
                )
            resolved = resume_config(resume, set_ or (), overrides)
        else:
            resolved = resolve_config(config, set_ or (), overrides)
        if print_config:
            typer.echo(dump_yaml(resolved.to_yaml_dict()), nl=False)
            return
        with loading_torch(quiet):  # torch: only once there is work to do
            from nst_cli.sweep.plan import content_files, plan_folder

        if resume is None and content_files(resolved.content) is not None:
            if preview:
                raise ConfigError("--preview shows one run; it cannot follow a folder run")
            root, runs = plan_folder(
                config, set_ or (), overrides, flags.get("output"), overwrite=overwrite,
                allow_large=allow_large,
            )  # fmt: skip
            done = sum(run.state == "done" for run in runs)
            if not quiet:
                out_console.print(
                    f"folder run: {len(runs)} images into {escape(str(root))}"
                    + (f" ({done} done, skipped)" if done else ""),
                    soft_wrap=True,
                    highlight=False,
                )
            run_grid(
                root, runs, quiet, allow_large, log_every, executor, address, task_cpus,
                overwrite=overwrite,
            )  # fmt: skip
            return
        if executor != "local":
            raise ConfigError(
                f"--executor {executor} runs a sweep or a folder run (--content a folder or "
                "'photos/*.jpg'); one image runs here"
            )
        from nst_cli.run.stylize import stylize as run_stylize

        live: list[Any] = []
        if preview:
            from nst_cli.cli.preview import Preview
            from nst_cli.io.rundir import RunDir

            live.append(Preview(RunDir(resolved.output_dir)).start())
            err_console.print(f"[bold]preview[/] {live[0].url}", highlight=False)
        try:
            result = run_with_progress(
                lambda reporting, should_stop: run_stylize(
                    resolved,
                    callbacks=[*reporting.callbacks, *live],
                    should_stop=should_stop,
                    resume=resume is not None,
                    overwrite=overwrite,
                    allow_large=allow_large,
                ),
                quiet,
                log_every,
            )
        finally:
            for server in live:
                server.stop()
        if not quiet:
            print_rows(summary_rows(result, time.perf_counter() - started))
        exit_if_interrupted(
            result.status, f"at step {result.steps}", f"nst stylize --resume {result.run_dir}"
        )


def _positional_images(
    images: list[Path] | None, content: Path | None, style: list[Path] | None
) -> tuple[Path | None, list[Path] | None]:
    """`nst stylize photo.jpg painting.jpg`: the first argument is the content, the rest the
    styles, as --content and --style would give them (not both ways at once)."""
    if not images:
        return content, style
    if content is not None:
        raise ConfigError(
            f"the photo is given twice ({images[0]} and --content {content}); give one of them"
        )
    if len(images) > 1 and style:
        raise ConfigError("the paintings are given both as arguments and with --style; give one")
    return images[0], (images[1:] or style)


def time_split(result: StylizeResult, wall: float) -> str:
    """'83.8 s: 75.3 optimising, 4.1 preparing scales, …': parts that add up to `wall`,
    the command's own time (loading inputs: the images and the network; the rest is starting,
    torch's import, and saving)."""
    parts = [
        ("optimising", result.seconds),
        ("compile warm-up", result.warmup_seconds),
        ("preparing scales", result.scale_setup_seconds),
        ("loading inputs", result.setup_seconds),
    ]
    parts.append(("starting and saving", max(0.0, wall - sum(s for _, s in parts))))
    said = ", ".join(f"{seconds:.1f} {what}" for what, seconds in parts if seconds >= 0.05)
    return f"{max(wall, sum(s for _, s in parts)):.1f} s: {said}"


def summary_rows(result: StylizeResult, wall: float) -> list[tuple[str, str]]:
    """One screen: how it went, final losses, where the files are (paths never wrapped)."""
    rows = [
        ("status", result.status),
        ("steps", f"{result.steps} ({result.steps_run} this run)"),
        ("time", time_split(result, wall)),
        (
            "speed",
            f"{result.iterations_per_second:.2f} it/s on {result.device}"
            + (f" ({result.precision})" if result.precision else ""),
        ),
    ]
    rows += [
        (f"{n} loss", f"{result.losses[n]:.6g}")
        for n in ("total", "content", "style", "tv")
        if n in result.losses
    ]
    rows += [
        ("frames", f"{len(result.frames)} in {result.run_dir / 'frames'}"),
        ("image", str(result.final_image)),
    ]
    return rows
