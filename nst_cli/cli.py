"""The `nst` command: thin Typer commands over the Python API.

Each command parses options, calls the library once, and turns domain errors into one
styled line and an exit code (2 = usage/config, 1 = runtime failure, 130 = interrupted).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from . import __version__
from .config import DEVICE_NAMES, INIT_MODES, PRESETS, Config
from .errors import ConfigError, NSTError
from .layers import LAYER_NAMES, downsampling_factor

if TYPE_CHECKING:  # types only: the commands import torch-heavy modules when they run
    from .pipeline import StylizeResult
    from .sweep import PlannedRun, SweepOutcome

PRESET_NAMES = tuple(PRESETS)

app = typer.Typer(
    name="nst",
    help="Gatys-style neural style transfer: a photo's structure, a painting's texture.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode="rich",
)
err_console = Console(stderr=True, soft_wrap=True)
out_console = Console()
EXIT_INTERRUPTED = 130


class _ConsoleHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        style = {logging.WARNING: "yellow", logging.ERROR: "red"}.get(record.levelno, "dim")
        label = record.levelname.lower()
        err_console.print(
            f"[{style}]{label}:[/] {escape(record.getMessage())}", highlight=False, markup=True
        )


def _setup_logging(quiet: bool) -> None:
    logger = logging.getLogger("nst")
    logger.handlers[:] = [_ConsoleHandler()]
    logger.setLevel(logging.WARNING if quiet else logging.INFO)


def _loading_torch(quiet: bool) -> contextlib.AbstractContextManager[Any]:
    """A spinner while torch loads, in a terminal: seconds on a small CPU in which the
    command would otherwise show nothing."""
    if quiet or not err_console.is_terminal or "torch" in sys.modules:
        return contextlib.nullcontext()
    return err_console.status("starting: loading torch…", spinner="dots")


@contextmanager
def _errors_to_exit(debug: bool) -> Iterator[None]:
    """The command boundary: NSTError -> one line + exit code; no traceback unless --debug."""
    try:
        yield
    except NSTError as exc:
        if debug:
            raise
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        if debug:
            raise
        err_console.print("[bold yellow]aborted[/] (files saved so far are kept)")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except typer.Exit:
        raise
    except Exception as exc:  # a bug: say so in one line, show the traceback with --debug
        if debug:
            raise
        err_console.print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {escape(str(exc))} "
            "(run again with --debug for the traceback and report it)",
            highlight=False,
        )
        raise typer.Exit(1) from None


def _version(value: bool) -> None:
    if value:
        out_console.print(f"nst {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Gatys-style neural style transfer."""


INPUTS, WEIGHTS, OPTIMISATION, OUTPUT, RUN = (
    "Inputs", "Weights", "Optimisation", "Output", "Run control",
)  # fmt: skip
_DEFAULTS = Config().model_dump(mode="json")


def _default(key: str) -> str:
    """' [default: X]' from the config model, for options whose own default means 'unset'."""
    value: Any = _DEFAULTS
    for part in key.split("."):
        value = value[part]
    if value is None:
        value = "the optimiser's own" if key == "optimizer.lr" else "none"
    return f" [dim]\\[default: {value}][/]"


def _complete(choices: tuple[str, ...]) -> Callable[[str], list[str]]:
    return lambda incomplete: [c for c in choices if c.startswith(incomplete)]


def _complete_set(incomplete: str) -> list[str]:
    """--set completion: config keys, and layer names after layers.content= / layers.style=."""
    if incomplete.startswith(("layers.content=", "layers.style=")):
        head, _, tail = incomplete.partition("=")
        return [f"{head}={n}" for n in LAYER_NAMES if n.startswith(tail.lstrip("{"))]
    return [f"{k}=" for k in _config_keys(_DEFAULTS) if k.startswith(incomplete)]


def _config_keys(tree: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in tree.items():
        if isinstance(value, dict) and key not in ("layers",):
            keys += _config_keys(value, f"{prefix}{key}.")
        else:
            keys.append(f"{prefix}{key}")
    return keys


ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="YAML config (or a PNG written by nst, to re-run its settings).",
        rich_help_panel=INPUTS,
    ),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Override any key: --set weights.style=5 (repeatable).",
        metavar="KEY.PATH=VALUE",
        autocompletion=_complete_set,
        rich_help_panel=INPUTS,
    ),
]
ContentOpt = Annotated[
    Path | None,
    typer.Option(
        help="Content image (the photo); a folder or a quoted glob ('photos/*.jpg') stylises "
        "each image in it.",
        rich_help_panel=INPUTS,
    ),
]
StyleOpt = Annotated[
    list[Path] | None,
    typer.Option(
        help="Style image (the painting); repeat it to blend several.", rich_help_panel=INPUTS
    ),
]
StyleBlendOpt = Annotated[
    str | None,
    typer.Option(
        "--style-blend",
        help="Weights of the --style images, e.g. 0.7,0.3 (default: equal).",
        metavar="W1,W2,...",
        rich_help_panel=INPUTS,
    ),
]


def _style_value(styles: list[Path] | None, blend: str | None) -> Any:
    """--style (repeatable) and --style-blend as the config's `style` value."""
    if not styles:
        if blend is not None:
            raise ConfigError("--style-blend needs the --style images it weights")
        return None
    if blend is None:
        return str(styles[0]) if len(styles) == 1 else [str(p) for p in styles]
    try:
        weights = [float(w) for w in blend.split(",")]
    except ValueError:
        raise ConfigError(f"--style-blend {blend!r}: expected numbers like 0.7,0.3") from None
    if len(weights) != len(styles):
        raise ConfigError(
            f"--style-blend: {len(weights)} weights for {len(styles)} --style images; give "
            "one weight per style"
        )
    return [{"path": str(p), "weight": w} for p, w in zip(styles, weights, strict=True)]


ResolutionOpt = Annotated[
    int | None,
    typer.Option(
        help="Long side of the output, px." + _default("resolution"), rich_help_panel=OUTPUT
    ),
]
StepsOpt = Annotated[
    int | None,
    typer.Option(
        help="Optimisation steps in all (shared among the scales)." + _default("steps"),
        rich_help_panel=OPTIMISATION,
    ),
]
PresetOpt = Annotated[
    str | None,
    typer.Option(
        help="fast, balanced or quality: scales, steps and optimiser together; explicit keys "
        "win." + _default("preset"),
        metavar="PRESET",
        autocompletion=_complete(PRESET_NAMES),
        rich_help_panel=OPTIMISATION,
    ),
]
DeviceOpt = Annotated[
    str | None,
    typer.Option(
        help="auto, cpu, cuda, cuda:N or mps." + _default("device"),
        autocompletion=_complete(DEVICE_NAMES),
        rich_help_panel=RUN,
    ),
]
AllowLargeOpt = Annotated[
    bool,
    typer.Option(
        "--allow-large", help="Accept images over the 100-megapixel limit.", rich_help_panel=RUN
    ),
]
DebugOpt = Annotated[
    bool,
    typer.Option("--debug", help="Show full tracebacks (for bug reports).", rich_help_panel=RUN),
]
QuietOpt = Annotated[
    bool,
    typer.Option("--quiet", "-q", help="No progress bar or summary.", rich_help_panel=RUN),
]
ExecutorOpt = Annotated[
    str,
    typer.Option(
        "--executor",
        help="Where the runs of a sweep or batch execute: local (here, one after another or as a --batch) or "
        "ray (one Ray task each; needs the \\[ray] extra).",
        autocompletion=_complete(("local", "ray")),
        rich_help_panel=RUN,
    ),
]
AddressOpt = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="With --executor ray: auto (the cluster `ray start` made on this machine) or "
        "HOST:PORT. [dim]\\[default: a local Ray instance for this command][/]",
        rich_help_panel=RUN,
    ),
]
TaskCpusOpt = Annotated[
    int,
    typer.Option(
        "--task-cpus",
        help="With --executor ray: CPUs (threads) each CPU run's task asks for; Ray runs as "
        "many at a time as fit.",
        min=1,
        rich_help_panel=RUN,
    ),
]
BatchOpt = Annotated[
    int | None,
    typer.Option(
        "--batch",
        help="Optimise up to N runs together, one network pass for all, where they share "
        "content, size, steps and model (they may differ in weights, layers, style, optimiser). "
        "Default: 4 on a GPU, 1 (one at a time) on a CPU, where it does not pay.",
        min=1,
        rich_help_panel=RUN,
    ),
]
LogEveryOpt = Annotated[
    int | None,
    typer.Option(
        "--log-every",
        help="Print a plain progress line every N steps instead of the bar (the default, every "
        "10 steps, when stderr is not a terminal: nohup, CI, > run.log).",
        min=1,
        rich_help_panel=RUN,
    ),
]


def _flag_overrides(**flags: Any) -> dict[str, Any]:
    """Map CLI flags to dotted config keys; None means 'not given'."""
    keys = {
        "content": "content",
        "style": "style",
        "output": "output",
        "resolution": "resolution",
        "steps": "steps",
        "lr": "optimizer.lr",
        "style_weight": "weights.style",
        "content_weight": "weights.content",
        "device": "device",
        "seed": "seed",
        "preset": "preset",
        "tv_weight": "weights.tv",
        "init": "init",
        "style_scale": "style_scale",
        "optimizer": "optimizer.name",
        "save_every": "save_every",
        "pooling": "model.pooling",
    }
    return {
        keys[name]: (str(v) if isinstance(v, Path) else v)
        for name, v in flags.items()
        if v is not None
    }


@app.command(
    epilog="[bold]Examples[/]\n\n"
    "  nst stylize --config configs/car_fluid.yaml\n\n"
    "  nst stylize --content photo.jpg --style painting.jpg -o result.png\n\n"
    "  nst stylize -c configs/car_fluid.yaml --preset fast --style-weight 5 -o outputs/bolder\n\n"
    "  nst stylize --resume outputs/car_fluid --steps 400"
)
def stylize(
    config: ConfigOpt = None,
    content: ContentOpt = None,
    style: StyleOpt = None,
    style_blend: StyleBlendOpt = None,
    set_: SetOpt = None,
    style_weight: Annotated[
        float | None,
        typer.Option(
            help="β, the style loss weight." + _default("weights.style"), rich_help_panel=WEIGHTS
        ),
    ] = None,
    content_weight: Annotated[
        float | None,
        typer.Option(
            help="α, the content loss weight." + _default("weights.content"),
            rich_help_panel=WEIGHTS,
        ),
    ] = None,
    tv_weight: Annotated[
        float | None,
        typer.Option(
            help="Total-variation weight (smoothness)." + _default("weights.tv"),
            rich_help_panel=WEIGHTS,
        ),
    ] = None,
    style_scale: Annotated[
        float | None,
        typer.Option(
            help="Style image size relative to the output (bigger = larger brush strokes)."
            + _default("style_scale"),
            rich_help_panel=WEIGHTS,
        ),
    ] = None,
    preset: PresetOpt = None,
    steps: StepsOpt = None,
    optimizer: Annotated[
        str | None,
        typer.Option(
            help="lbfgs or adam (each with its own default lr)." + _default("optimizer.name"),
            autocompletion=_complete(("lbfgs", "adam")),
            rich_help_panel=OPTIMISATION,
        ),
    ] = None,
    lr: Annotated[
        float | None,
        typer.Option(
            help="Learning rate." + _default("optimizer.lr"), rich_help_panel=OPTIMISATION
        ),
    ] = None,
    init: Annotated[
        str | None,
        typer.Option(
            help="Start image: content, noise, style or an image path." + _default("init"),
            autocompletion=_complete(INIT_MODES),
            rich_help_panel=OPTIMISATION,
        ),
    ] = None,
    pooling: Annotated[
        str | None,
        typer.Option(
            help="max or avg pooling in VGG19." + _default("model.pooling"),
            autocompletion=_complete(("max", "avg")),
            rich_help_panel=OPTIMISATION,
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(help="Random seed." + _default("seed"), rich_help_panel=OPTIMISATION),
    ] = None,
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
    save_every: Annotated[
        int | None,
        typer.Option(
            help="A frame (and checkpoint) every N steps." + _default("save_every"),
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Replace a previous run in the output folder.",
            rich_help_panel=OUTPUT,
        ),
    ] = False,
    resume: Annotated[
        Path | None,
        typer.Option(
            "--resume", help="Continue an interrupted or finished run folder.", rich_help_panel=RUN
        ),
    ] = None,
    device: DeviceOpt = None,
    print_config: Annotated[
        bool,
        typer.Option(
            "--print-config",
            help="Print the resolved config as YAML and exit.",
            rich_help_panel=RUN,
        ),
    ] = False,
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
    from .config import dump_yaml, resolve_config, resume_config

    _setup_logging(quiet)
    with _errors_to_exit(debug):
        overrides = _flag_overrides(
            content=content,
            style=_style_value(style, style_blend),
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
            optimizer=optimizer,
            save_every=save_every,
            pooling=pooling,
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
        with _loading_torch(quiet):  # torch: only once there is work to do
            from .sweep import content_files, plan_batch

        if resume is None and content_files(resolved.content) is not None:
            if preview:
                raise ConfigError("--preview shows one run; it cannot follow a batch of images")
            root, runs = plan_batch(
                config, set_ or (), overrides, output, overwrite=overwrite, allow_large=allow_large
            )
            done = sum(run.state == "done" for run in runs)
            if not quiet:
                out_console.print(
                    f"batch: {len(runs)} images into {escape(str(root))}"
                    + (f" ({done} done, skipped)" if done else ""),
                    soft_wrap=True,
                    highlight=False,
                )
            _run_grid(root, runs, quiet, allow_large, log_every, executor, address, task_cpus)
            return
        if executor != "local":
            raise ConfigError(
                f"--executor {executor} runs a sweep or a batch (--content a folder or "
                "'photos/*.jpg'); one image runs here"
            )
        from .pipeline import stylize as run_stylize

        live: list[Any] = []
        if preview:
            from .outputs import RunDir
            from .preview import Preview

            live.append(Preview(RunDir(resolved.output_dir)).start())
            err_console.print(f"[bold]preview[/] {live[0].url}", highlight=False)
        try:
            result = _run_with_progress(
                lambda callbacks, should_stop: run_stylize(
                    resolved,
                    callbacks=[*callbacks, *live],
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
            _print_summary(result)
        if result.status == "interrupted":
            err_console.print(
                f"[yellow]interrupted[/] at step {result.steps}; continue with: "
                f"nst stylize --resume {escape(str(result.run_dir))}"
            )
            raise typer.Exit(EXIT_INTERRUPTED)


def _announce_stop() -> None:
    err_console.print("[yellow]stopping after this step[/] (Ctrl-C again to abort now)")


def _log_lines_every(log_every: int | None) -> int | None:
    """Plain lines when asked, or when stderr is not a terminal (a rich bar there would only
    appear when the run ends)."""
    if log_every is not None:
        return log_every
    return None if err_console.is_terminal else 10


def _write_line(line: str) -> None:
    err_console.print(escape(line), soft_wrap=True, highlight=False)
    err_console.file.flush()


def _run_with_progress(run: Callable[..., Any], quiet: bool, log_every: int | None) -> Any:
    from .callbacks import LogLines, ProgressBar, make_progress
    from .interrupts import GracefulInterrupt

    with GracefulInterrupt(on_first=_announce_stop) as stop:
        if quiet:
            return run([], stop)
        every = _log_lines_every(log_every)
        if every is not None:
            return run([LogLines(_write_line, every)], stop)
        progress = make_progress(err_console)
        try:
            return run([ProgressBar(progress)], stop)
        finally:
            progress.stop()


def _print_summary(result: StylizeResult) -> None:
    """One screen: how it went, final losses, where the files are (paths never wrapped)."""
    rows = [
        ("status", result.status),
        ("steps", f"{result.steps} ({result.steps_run} this run)"),
        (
            "time",
            f"{result.seconds:.1f} s optimising + {result.setup_seconds:.1f} s setup"
            + (
                f" + {result.warmup_seconds:.1f} s compile warm-up" if result.warmup_seconds else ""
            ),
        ),
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
    for key, value in rows:
        out_console.print(f"[bold]{key:<13}[/]{escape(value)}", soft_wrap=True, highlight=False)


@app.command()
def sweep(
    config: ConfigOpt = None,
    style_weights: Annotated[
        str | None, typer.Option("--style-weights", help="Comma-separated β values: 0.1,1,10.")
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            help="key.path=v1,v2,... (repeatable; several make a grid).",
            metavar="KEY.PATH=V1,V2",
        ),
    ] = None,
    content: ContentOpt = None,
    style: StyleOpt = None,
    style_blend: StyleBlendOpt = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Sweep folder.")] = None,
    preset: PresetOpt = None,
    resolution: ResolutionOpt = None,
    steps: StepsOpt = None,
    device: DeviceOpt = None,
    set_: SetOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the planned runs and exit.")
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Replace another sweep recorded in the sweep folder."),
    ] = False,
    log_every: LogEveryOpt = None,
    executor: ExecutorOpt = "local",
    address: AddressOpt = None,
    task_cpus: TaskCpusOpt = 1,
    batch: BatchOpt = None,
    allow_large: AllowLargeOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Run one config over several values (style weights or any key); grid.png + summary.csv + index.html."""
    from .grid import parse_param, sweep_grid

    _setup_logging(quiet)
    with _errors_to_exit(debug):
        params = [parse_param(item) for item in param or ()]
        if style_weights is not None:
            params.insert(0, parse_param(f"weights.style={style_weights}"))
        overrides = _flag_overrides(
            content=content,
            style=_style_value(style, style_blend),
            preset=preset,
            resolution=resolution,
            steps=steps,
            device=device,
        )
        root, grid = sweep_grid(config, params, set_ or (), overrides, output)  # before torch
        with _loading_torch(quiet):
            from .sweep import plan_grid

        runs = plan_grid(root, grid, overwrite=overwrite, allow_large=allow_large)
        if dry_run or not quiet:
            for i, run in enumerate(runs, 1):
                note = {
                    "done": "done, will skip",
                    "resume": "will resume",
                    "new": "will run",
                    "replace": "will replace the run there (other settings)",
                }[run.state]
                out_console.print(f"{i:>3}. {run.name:<40} {note}", soft_wrap=True, highlight=False)
        if dry_run:
            return
        _run_grid(root, runs, quiet, allow_large, log_every, executor, address, task_cpus, batch)


def _run_grid(
    root: Path,
    runs: list[PlannedRun],
    quiet: bool,
    allow_large: bool,
    log_every: int | None,
    executor: str,
    address: str | None,
    task_cpus: int = 1,
    batch: int | None = None,
) -> None:
    """Run a sweep's or batch's runs, show the table, say what failed; exit 1 on failures,
    130 when interrupted (the same command continues)."""
    outcome = _sweep_with_progress(
        root, runs, quiet, log_every, allow_large=allow_large, executor=executor,
        address=address, task_cpus=task_cpus, batch=batch,
    )  # fmt: skip
    if not quiet:
        _print_sweep_table(outcome)
    failed = [run for run in runs if run.state == "failed"]
    for run in failed:
        err_console.print(
            f"[bold red]failed:[/] {escape(run.name)}: {escape(run.error or '')}", highlight=False
        )
    if any(run.state not in ("done", "failed") for run in runs):
        err_console.print(
            f"[yellow]interrupted[/]; run the same command again to continue ({escape(str(root))})"
        )
        raise typer.Exit(EXIT_INTERRUPTED)
    if failed:
        err_console.print(
            f"[bold red]error:[/] {len(failed)} of {len(runs)} runs failed; the others are in "
            f"{escape(str(root))}; fix the cause and run the same command again",
            highlight=False,
        )
        raise typer.Exit(1)


def _sweep_with_progress(
    root: Path, runs: list[PlannedRun], quiet: bool, log_every: int | None, **options: Any
) -> SweepOutcome:
    from .callbacks import LogLines, ProgressBar, make_progress
    from .interrupts import GracefulInterrupt
    from .sweep import run_sweep

    with GracefulInterrupt(on_first=_announce_stop) as stop:
        if quiet:
            return run_sweep(root, runs, should_stop=stop, **options)
        every = _log_lines_every(log_every)
        if every is not None:

            def lines_for(i: int, run: PlannedRun) -> list[Any]:
                return [LogLines(_write_line, every, f"run {i + 1}/{len(runs)} {run.name}")]

            return run_sweep(root, runs, callbacks_for=lines_for, should_stop=stop, **options)
        progress = make_progress(err_console)
        try:
            overall = progress.add_task(
                "all runs", total=len(runs), completed=0, losses="", counts="runs"
            )
            bars: dict[int, ProgressBar] = {}

            def callbacks_for(i: int, run: PlannedRun) -> list[Any]:
                bars[i] = ProgressBar(progress, f"run {i + 1}/{len(runs)}")
                return [bars[i]]

            def on_run_done(i: int, run: PlannedRun, result: StylizeResult | None) -> None:
                progress.update(overall, advance=1)
                if i in bars and bars[i].task_id is not None:
                    progress.remove_task(bars[i].task_id)

            return run_sweep(
                root, runs, callbacks_for=callbacks_for, should_stop=stop,
                on_run_done=on_run_done, **options,
            )  # fmt: skip
        finally:
            progress.stop()


def _print_sweep_table(outcome: SweepOutcome) -> None:
    from rich.table import Table

    table = Table(title=f"{len(outcome.rows)} runs")
    # The swept values identify a run; the folder name and image path are in summary.csv.
    # Each failure has its own line below the table, so `error` is not a column here.
    hidden = {"run", "image", "error"}
    if all(not r.get("tv") for r in outcome.rows):
        hidden.add("tv")
    columns = [c for c in outcome.rows[0] if c not in hidden] if outcome.rows else []
    for column in columns:
        # Numbers never break across lines; a long swept value (a path) may.
        numeric = all(isinstance(r.get(column), int | float | None) for r in outcome.rows)
        table.add_column(column, overflow="ellipsis" if numeric else "fold", no_wrap=numeric)
    for row in outcome.rows:
        table.add_row(
            *(
                ""
                if row[c] is None
                else (f"{row[c]:.4g}" if isinstance(row[c], float) else str(row[c]))
                for c in columns
            )
        )
    out_console.print(table)
    for label, path in (
        ("grid", outcome.grid),
        ("summary", outcome.summary),
        ("index", outcome.index),
    ):
        out_console.print(f"[bold]{label:<9}[/]{path}", soft_wrap=True, highlight=False)


@app.command()
def gif(
    source: Annotated[
        Path, typer.Argument(help="A run folder (uses its frames/) or a folder of frames.")
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Default RUN_DIR/optimization.gif; .mp4/.webm write video."
        ),
    ] = None,
    fps: Annotated[float, typer.Option(help="Frames per second.")] = 10.0,
    duration: Annotated[
        float | None,
        typer.Option(help="Length of the whole animation in seconds (overrides --fps)."),
    ] = None,
    hold_last: Annotated[
        float, typer.Option("--hold-last", help="Seconds the last image stays on screen.")
    ] = 1.0,
    size: Annotated[int | None, typer.Option(help="Long side in px (aspect kept).")] = None,
    loop: Annotated[int, typer.Option(help="GIF loop count, 0 = forever.")] = 0,
    label: Annotated[
        bool, typer.Option("--label/--no-label", help="Write the step number in a corner.")
    ] = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Turn a run's saved frames into an animation of the optimisation."""
    from .gif import make_animation

    _setup_logging(quiet)
    with _errors_to_exit(debug):
        result = make_animation(
            source,
            output,
            fps=fps,
            duration=duration,
            hold_last=hold_last,
            size=size,
            loop=loop,
            label=label,
        )
        if not quiet:
            out_console.print(
                f"wrote {result.output} ({result.frames} frames from {result.source_frames} images, "
                f"{result.size[0]}×{result.size[1]}, {result.bytes / 1024:.0f} KiB)",
                soft_wrap=True,
                highlight=False,
            )


@app.command()
def schema() -> None:
    """Print the config's JSON Schema (for editors: the YAML language server completes and
    checks config files with it, e.g. `# yaml-language-server: $schema=nst.schema.json`)."""
    import json

    typer.echo(json.dumps(Config.model_json_schema(), indent=2))


@app.command()
def layers() -> None:
    """List the VGG19 layer names a config may use (layers.content, layers.style)."""
    content, style = _DEFAULTS["layers"]["content"], _DEFAULTS["layers"]["style"]
    out_console.print("[bold]layer     stride  default use[/]", highlight=False)
    for name in LAYER_NAMES:
        use = ", ".join(
            f"{role} (weight {table[name]:g})"
            for role, table in (("content", content), ("style", style))
            if name in table
        )
        out_console.print(
            f"{name:<10}{downsampling_factor([name]):>6}  {use}".rstrip(), highlight=False
        )


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
