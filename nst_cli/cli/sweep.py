"""`nst sweep`: a grid of runs, or a folder of photos, side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nst_cli.cli.base import app, errors_to_exit, loading_torch, out_console, setup_logging
from nst_cli.cli.flags import NO_FLAGS, FlagValues, config_flags
from nst_cli.cli.options import (
    AddressOpt,
    AllowLargeOpt,
    BatchOpt,
    ConfigOpt,
    DebugOpt,
    ExecutorOpt,
    LogEveryOpt,
    QuietOpt,
    SetOpt,
    StyleBlendOpt,
    TaskCpusOpt,
    style_value,
)
from nst_cli.cli.running import run_grid
from nst_cli.config.flags import SWEEP


@app.command(
    epilog="[bold]Examples[/]\n\n"
    "  nst sweep -c configs/car_fluid.yaml --style-weights 0.5,2,8\n\n"
    "  nst sweep -c configs/car_fluid.yaml --param optimizer.name=lbfgs,adam --param seed=0,1\n\n"
    "  nst sweep -c configs/car_fluid.yaml --style-weights 1,4 --executor ray"
)
@config_flags(SWEEP)
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
    flags: FlagValues = NO_FLAGS,
    style_blend: StyleBlendOpt = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Sweep folder.")] = None,
    set_: SetOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the planned runs and exit.")
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Replace another sweep recorded in the sweep folder."),
    ] = False,
    score: Annotated[
        bool,
        typer.Option(
            "--score",
            help="Measure each finished run as `nst score` does (texture, palette, structure, "
            "faces) in summary.csv and index.html, to rank the runs.",
        ),
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
    from nst_cli.sweep.grid import parse_param, sweep_grid

    setup_logging(quiet)
    with errors_to_exit(debug):
        params = [parse_param(item) for item in param or ()]
        if style_weights is not None:
            params.insert(0, parse_param(f"weights.style={style_weights}"))
        overrides = flags.overrides(style=style_value(flags.get("style"), style_blend))
        root, grid = sweep_grid(config, params, set_ or (), overrides, output)  # before torch
        with loading_torch(quiet):
            from nst_cli.sweep.plan import plan_grid

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
        run_grid(
            root, runs, quiet, allow_large, log_every, executor, address, task_cpus, batch,
            overwrite=overwrite, score=score,
        )  # fmt: skip
