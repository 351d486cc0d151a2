"""Running a planned sweep: here (one run after another, or several optimised together on a GPU) or on Ray."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from nst_cli.config.models import Config
from nst_cli.core.devices import resolve_device
from nst_cli.core.optimize import Callback
from nst_cli.errors import ConfigError, NSTError, OutputError
from nst_cli.io.rundir import folder_lock
from nst_cli.run.cache import ModelCache
from nst_cli.run.context import never
from nst_cli.run.inputs import load_inputs
from nst_cli.run.memory import BASE_BYTES, estimate_run_bytes, memory_limit
from nst_cli.run.state import StylizeResult
from nst_cli.run.stylize import batch_key, stylize, stylize_batch
from nst_cli.sweep.plan import PlannedRun, SweepOutcome, check_sweep_folder, fail, write_manifest
from nst_cli.sweep.report import summary_row, write_reports

log = logging.getLogger(__name__)


#: The lock a running sweep holds in its folder (its runs hold their own, one level down).
SWEEP_LOCK = ".nst-sweep.lock"

#: Where the runs of a sweep or folder run execute: here (one by one or batched), or as Ray tasks.
EXECUTORS = ("local", "ray")


@dataclass
class SweepHooks:
    """What an executor reports to, whatever runs the runs."""

    #: The callbacks (StepEvent -> None) of run i.
    callbacks_for: Callable[[int, PlannedRun], Sequence[Callback]] = lambda i, run: ()
    #: Polled between steps and runs: True stops everything, all saved.
    should_stop: Callable[[], bool] = never
    #: Called once per run when it ends (or was already done): its result, if it ran here.
    on_run_done: Callable[[int, PlannedRun, StylizeResult | None], None] = lambda i, r, res: None
    allow_large: bool = False
    #: The networks and style targets the runs here share (None: a new cache for the sweep);
    #: a long-lived process (the studio) passes its own, so its runs share them too.
    cache: ModelCache | None = None


class Executor(Protocol):
    """Runs a sweep's planned runs. `run` calls `started()` once it is able to run them (Ray:
    once connected, so a cluster that cannot be reached leaves no sweep.yaml behind), then
    runs every run not already done, setting each run's state and reporting through `hooks`."""

    def run(
        self, runs: Sequence[PlannedRun], hooks: SweepHooks, started: Callable[[], None]
    ) -> None: ...


@dataclass
class LocalExecutor:
    """The runs in this process, sharing the network and style targets: one after another,
    or up to `batch` at a time where they can share a batch (None: see plan_batches)."""

    batch: int | None = None

    def run(
        self, runs: Sequence[PlannedRun], hooks: SweepHooks, started: Callable[[], None]
    ) -> None:
        started()
        _run_here(runs, hooks, self.batch)


def make_executor(
    name: str, *, address: str | None = None, task_cpus: int = 1, batch: int | None = None
) -> Executor:
    """The executor a sweep asked for by name, its options checked (one line each)."""
    if name not in EXECUTORS:
        raise ConfigError(f"--executor {name}: use {' or '.join(EXECUTORS)}")
    if batch is not None and batch < 1:
        raise ConfigError(f"--batch {batch}: give 1 (one run at a time) or more")
    if name == "local":
        return LocalExecutor(batch)
    if batch not in (None, 1):
        raise ConfigError("--batch: Ray runs each run as its own task; use --executor local")
    from nst_cli.sweep.ray_executor import RayExecutor  # Ray: an optional extra

    return RayExecutor(address, task_cpus)


def run_sweep(
    root: Path,
    runs: Sequence[PlannedRun],
    hooks: SweepHooks | None = None,
    *,
    executor: str = "local",
    address: str | None = None,
    task_cpus: int = 1,
    batch: int | None = None,
    overwrite: bool = False,
    score: bool = False,
) -> SweepOutcome:
    """Run every planned run not already done, then write grid.png, summary.csv and index.html.

    A run that fails is reported (run.state "failed", run.error) and the others go on.

    Args:
        root: the sweep's folder (sweep.yaml and the reports go there).
        runs: the plan, from plan_sweep, plan_grid or plan_folder.
        hooks: what the runs report to and are stopped by (progress callbacks of each run,
            should_stop, on_run_done), and whether images over the limits are accepted.
        executor: "local" (this process) or "ray" (one Ray task per run, see
            nst_cli.sweep.ray_executor).
        address: the Ray cluster to join (None: a local instance).
        task_cpus: threads of each Ray task.
        batch: locally, how many runs that can share a batch are optimised together (None:
            see plan_batches).
        overwrite: the plan may replace another sweep recorded in `root` (as planned).
        score: add each finished run's `nst score` measures to the reports.

    Returns:
        The sweep's outcome: its runs with their states and the summary rows.
    """
    chosen = make_executor(executor, address=address, task_cpus=task_cpus, batch=batch)
    outcome = SweepOutcome(root, list(runs))
    hooks = hooks or SweepHooks()
    created = not root.exists()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{root}: cannot create the sweep folder ({exc.strerror})") from None
    try:
        # The folder is this sweep's while it runs: a second nst into it stops at once, and a
        # different sweep recorded there after this one was planned is noticed under the lock.
        with folder_lock(root, SWEEP_LOCK):
            check_sweep_folder(root, runs, overwrite)
            chosen.run(runs, hooks, started=lambda: write_manifest(root, runs))
            outcome.rows = [summary_row(run, score) for run in runs]
            write_reports(outcome, runs)
    except BaseException:
        if created:  # a sweep that never started (a cluster out of reach) leaves no folder
            with contextlib.suppress(OSError):
                root.rmdir()
        raise
    return outcome


def _run_here(runs: Sequence[PlannedRun], hooks: SweepHooks, batch: int | None = None) -> None:
    """The runs in this process, sharing the network and style targets: one after another,
    or up to `batch` at a time where they can share a batch (see plan_batches)."""
    callbacks_for, should_stop = hooks.callbacks_for, hooks.should_stop
    allow_large, cache = hooks.allow_large, hooks.cache or ModelCache()
    for group in plan_batches(runs, batch, allow_large):
        if should_stop():
            break
        chosen = [runs[i] for i in group]
        try:
            callbacks = [callbacks_for(i, run) for i, run in zip(group, chosen, strict=True)]
            outcomes = _run_group(chosen, callbacks, should_stop, allow_large, cache)
        except torch.OutOfMemoryError:  # only a batch gets here: a lone run's is its failure
            log.warning("a batch of %d runs ran out of memory; running them one by one", len(group))
            cache = ModelCache()
            outcomes = [
                _run_group([run], [callbacks_for(i, run)], should_stop, allow_large, cache)[0]
                for i, run in zip(group, chosen, strict=True)
            ]
        for i, run, outcome in zip(group, chosen, outcomes, strict=True):
            result = None
            if isinstance(outcome, Exception):
                fail(run, str(outcome))
            elif outcome is not None:
                result = outcome
                run.state = "done" if outcome.status == "completed" else "resume"
            hooks.on_run_done(i, run, result)


def _run_group(
    group: Sequence[PlannedRun],
    callbacks: Sequence[Sequence[Callback]],
    should_stop: Callable[[], bool],
    allow_large: bool,
    cache: ModelCache,
) -> list[StylizeResult | Exception | None]:
    """Each run's result, the error that failed it, or None for a run with nothing to do."""
    if len(group) > 1:
        outcomes: list[StylizeResult | Exception | None] = []
        outcomes += stylize_batch(
            [run.config for run in group], callbacks=callbacks, should_stop=should_stop,
            overwrite=True, allow_large=allow_large, cache=cache,
        )  # fmt: skip
        return outcomes
    (run,) = group
    if run.state in ("done", "failed"):
        return [None]
    try:
        result = stylize(
            run.config, callbacks=callbacks[0], should_stop=should_stop,
            resume=run.state == "resume", overwrite=run.state in ("new", "replace"),
            allow_large=allow_large, cache=cache,
        )  # fmt: skip
    except (NSTError, torch.OutOfMemoryError) as exc:
        return [exc]
    return [result]


#: Runs a sweep optimises together by default on a GPU, where one batch keeps it busier than
#: one image does. On a CPU, a batch's pass costs as much as its images' passes one after
#: another (measured: docs/performance.md), so there runs go one by one.
GPU_BATCH = 4


def plan_batches(
    runs: Sequence[PlannedRun], batch: int | None = None, allow_large: bool = False
) -> list[list[int]]:
    """The runs (as indices) grouped into batches, in the order their first run comes:
    new runs with the same batch key, up to `batch` of them (None: GPU_BATCH on a GPU, 1
    elsewhere) and as many as fit in memory together; every other run on its own."""
    if batch is None:
        batch = GPU_BATCH if runs and _on_gpu(runs[0].config) else 1
    groups: list[list[int]] = []
    open_groups: dict[str, tuple[list[int], int]] = {}  # key -> (group, bytes planned)
    for i, run in enumerate(runs):
        needed = _batchable_bytes(run, allow_large) if batch > 1 else None
        if needed is None:
            groups.append([i])
            continue
        key = batch_key(run.config)
        group, planned = open_groups.get(key, ([], BASE_BYTES))
        available = memory_limit(run.config.device, run.config.max_memory)[0]
        if not group or len(group) >= batch or (planned + needed > available and not allow_large):
            group, planned = [], BASE_BYTES
            groups.append(group)
        group.append(i)
        open_groups[key] = (group, planned + needed)
    return groups


def _on_gpu(config: Config) -> bool:
    try:
        return resolve_device(config.device).type == "cuda"
    except NSTError:
        return False


def _batchable_bytes(run: PlannedRun, allow_large: bool) -> int | None:
    """What a new run adds to a batch's memory (its pixels' share); None for a run that goes
    alone: one to skip or resume, or whose images fail to load (its own run says why)."""
    if run.state not in ("new", "replace"):
        return None
    try:
        inputs = load_inputs(run.config, allow_large)
    except NSTError:
        return None
    return estimate_run_bytes(run.config, inputs) - BASE_BYTES
