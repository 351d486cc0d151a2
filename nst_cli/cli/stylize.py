"""`nst stylize`: options, then one call into the library."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from nst_cli.cli.options import ColorMode, OptimizerName, Pooling, flag_overrides, style_value
from nst_cli.config.choices import INIT_MODES
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
    OPTIMISATION,
    OUTPUT,
    RUN,
    WEIGHTS,
    AddressOpt,
    AllowLargeOpt,
    ConfigOpt,
    ContentOpt,
    ContentWeightOpt,
    DebugOpt,
    DeviceOpt,
    ExecutorOpt,
    LogEveryOpt,
    OutputDepthOpt,
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
    TaskCpusOpt,
    TileOpt,
    complete_from,
    default_help,
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
    content: ContentOpt = None,
    style: StyleOpt = None,
    style_blend: StyleBlendOpt = None,
    set_: SetOpt = None,
    style_weight: StyleWeightOpt = None,
    content_weight: ContentWeightOpt = None,
    tv_weight: Annotated[
        float | None,
        typer.Option(
            help="Total-variation weight (smoothness)." + default_help("weights.tv"),
            rich_help_panel=WEIGHTS,
        ),
    ] = None,
    style_scale: Annotated[
        float | None,
        typer.Option(
            help="Style image size relative to the output (bigger = larger brush strokes)."
            + default_help("style_scale"),
            rich_help_panel=WEIGHTS,
        ),
    ] = None,
    color: Annotated[
        ColorMode | None,
        typer.Option(
            help="style: the painting's palette; luminance: keep the photo's colours exactly; "
            "histogram: the painting's texture in the photo's palette." + default_help("color"),
            rich_help_panel=WEIGHTS,
        ),
    ] = None,
    preset: PresetOpt = None,
    steps: StepsOpt = None,
    optimizer: Annotated[
        OptimizerName | None,
        typer.Option(
            help="lbfgs or adam (each with its own default lr)." + default_help("optimizer.name"),
            rich_help_panel=OPTIMISATION,
        ),
    ] = None,
    lr: Annotated[
        float | None,
        typer.Option(
            help="Learning rate." + default_help("optimizer.lr"), rich_help_panel=OPTIMISATION
        ),
    ] = None,
    init: Annotated[
        str | None,
        typer.Option(
            help="Start image: content, noise, style or an image path." + default_help("init"),
            metavar="content|noise|style|PATH",
            autocompletion=complete_from(INIT_MODES),
            rich_help_panel=OPTIMISATION,
        ),
    ] = None,
    pooling: Annotated[
        Pooling | None,
        typer.Option(
            help="max or avg pooling in VGG19." + default_help("model.pooling"),
            rich_help_panel=OPTIMISATION,
        ),
    ] = None,
    seed: SeedOpt = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Run folder, or an image (result.png/.jpg/.tif): the final image goes there "
            "and the run folder beside it (result/). [dim]\\[default: outputs/<content>_<style>][/]",
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    resolution: ResolutionOpt = None,
    tile: TileOpt = None,
    output_depth: OutputDepthOpt = None,
    save_every: Annotated[
        int | None,
        typer.Option(
            help="A frame (and checkpoint) every N steps." + default_help("save_every"),
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    overwrite: OverwriteOpt = False,
    resume: Annotated[
        Path | None,
        typer.Option(
            "--resume", help="Continue an interrupted or finished run folder.", rich_help_panel=RUN
        ),
    ] = None,
    device: DeviceOpt = None,
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
        content, style = _positional_images(images, content, style)
        overrides = flag_overrides(
            content=content,
            style=style_value(style, style_blend),
            output=output,
            preset=preset,
            resolution=resolution,
            steps=steps,
            lr=lr,
            style_weight=style_weight,
            content_weight=content_weight,
            device=device,
            seed=seed,
            tv_weight=tv_weight,
            init=init,
            style_scale=style_scale,
            optimizer=optimizer.value if optimizer else None,
            save_every=save_every,
            pooling=pooling.value if pooling else None,
            color=color.value if color else None,
            tile=tile,
            output_depth=int(output_depth) if output_depth in ("8", "16") else output_depth,
        )
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
                config, set_ or (), overrides, output, overwrite=overwrite, allow_large=allow_large
            )
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
