"""Running library work under a progress display and a graceful Ctrl-C."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape

from nst_cli.cli.base import EXIT_INTERRUPTED, out_console

if TYPE_CHECKING:  # types only: the commands import torch-heavy modules when they run
    from nst_cli.run.state import StylizeResult
    from nst_cli.sweep.plan import PlannedRun, SweepOutcome
from nst_cli.cli.base import err_console


def announce_stop() -> None:
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


@dataclass
class Reporting:
    """What a run reports to while it goes: its step callbacks, and (a clip's run) what is
    told when the clip starts and as each frame is done."""

    callbacks: list[Any] = field(default_factory=list)
    on_frame: list[Callable[[Any], None]] = field(default_factory=list)
    on_start: Callable[[Any, int, int], None] | None = None


def run_with_progress(
    run: Callable[[Reporting, Callable[[], bool]], Any],
    quiet: bool,
    log_every: int | None,
    frames: bool = False,
) -> Any:
    """Every command's runner: `run(reporting, should_stop)` under a progress display (a
    rich bar; plain lines when piped or asked; with `frames`, a bar over a clip's frames and
    one over the current frame's steps) and a graceful Ctrl-C (the first stops after the
    step, everything saved)."""
    from nst_cli.cli.bars import FrameBars, FrameLines, ProgressBar, make_progress
    from nst_cli.cli.interrupts import GracefulInterrupt
    from nst_cli.run.progress import LogLines

    with GracefulInterrupt(on_first=announce_stop) as stop:
        if quiet:
            return run(Reporting(), stop)
        every = _log_lines_every(log_every)
        if every is not None:
            if frames:
                lines = FrameLines(_write_line, every)
                return run(Reporting([lines.step], [lines.frame], lines.start), stop)
            return run(Reporting([LogLines(_write_line, every)]), stop)
        progress = make_progress(err_console)
        try:
            if frames:
                bars = FrameBars(progress)
                return run(Reporting([bars.step], [bars.frame], bars.start), stop)
            return run(Reporting([ProgressBar(progress)]), stop)
        finally:
            progress.stop()


def print_rows(rows: list[tuple[str, str]]) -> None:
    """Every command's summary: one row a line, the name bold, paths never wrapped."""
    for key, value in rows:
        out_console.print(f"[bold]{key:<13}[/]{escape(value)}", soft_wrap=True, highlight=False)


def exit_if_interrupted(status: str, how_far: str, resume: str) -> None:
    """An interrupted run says how far it got and the command that continues it, exit 130."""
    if status == "interrupted":
        err_console.print(f"[yellow]interrupted[/] {how_far}; continue with: {escape(resume)}")
        raise typer.Exit(EXIT_INTERRUPTED)


def _sweep_with_progress(
    root: Path,
    runs: list[PlannedRun],
    quiet: bool,
    log_every: int | None,
    allow_large: bool,
    **options: Any,
) -> SweepOutcome:
    from nst_cli.cli.bars import ProgressBar, make_progress
    from nst_cli.cli.interrupts import GracefulInterrupt
    from nst_cli.run.progress import LogLines
    from nst_cli.sweep.execute import SweepHooks, run_sweep

    with GracefulInterrupt(on_first=announce_stop) as stop:
        if quiet:
            return run_sweep(
                root, runs, SweepHooks(should_stop=stop, allow_large=allow_large), **options
            )
        every = _log_lines_every(log_every)
        if every is not None:

            def lines_for(i: int, run: PlannedRun) -> list[Any]:
                return [LogLines(_write_line, every, f"run {i + 1}/{len(runs)} {run.name}")]

            hooks = SweepHooks(lines_for, stop, allow_large=allow_large)
            return run_sweep(root, runs, hooks, **options)
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

            hooks = SweepHooks(callbacks_for, stop, on_run_done, allow_large)
            return run_sweep(root, runs, hooks, **options)
        finally:
            progress.stop()


def run_grid(
    root: Path,
    runs: list[PlannedRun],
    quiet: bool,
    allow_large: bool,
    log_every: int | None,
    executor: str,
    address: str | None,
    task_cpus: int = 1,
    batch: int | None = None,
    overwrite: bool = False,
    score: bool = False,
) -> None:
    """Run a sweep's or folder run's runs, show the table, say what failed; exit 1 on
    failures, 130 when interrupted (the same command continues)."""
    outcome = _sweep_with_progress(
        root, runs, quiet, log_every, allow_large=allow_large, executor=executor,
        address=address, task_cpus=task_cpus, batch=batch, overwrite=overwrite, score=score,
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
