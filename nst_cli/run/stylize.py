"""`stylize()`: the plain Python API behind `nst stylize`.

prepare (config -> inputs -> network -> starting point) -> run each scale -> finish (final
image, config.yaml's status). Whatever happens (finished, Ctrl-C, NaN, disk full), the newest
good image, the frames and the loss log already written are kept, and config.yaml says how
the run ended."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import torch

from nst_cli.config.choices import DEFAULT_LR, SENSIBLE_LR
from nst_cli.config.models import Config
from nst_cli.config.resolve import (
    resolve_config,
    resume_config,
)
from nst_cli.core.optimize import Callback, OptimizeResult
from nst_cli.core.tiles import TileProgress
from nst_cli.errors import NSTError
from nst_cli.io.rundir import RunDir
from nst_cli.run.cache import ModelCache
from nst_cli.run.context import RunContext, never
from nst_cli.run.inputs import load_inputs
from nst_cli.run.progress import LogLines
from nst_cli.run.provenance import run_config_dict
from nst_cli.run.resume import (
    check_output_image,
    check_resume_changes,
    check_run_folder,
    refuse_replacing,
    replaces_finished_run,
    starting_point,
)
from nst_cli.run.scales import run_scales
from nst_cli.run.session import Session, settled
from nst_cli.run.state import Prepared, StylizeResult

log = logging.getLogger(__name__)


def stylize(
    config: Config | str | Path,
    *,
    callbacks: Sequence[Callback] = (),
    should_stop: Callable[[], bool] = never,
    resume: bool = False,
    overwrite: bool = False,
    allow_large: bool = False,
    cache: ModelCache | None = None,
    progress: bool = False,
) -> StylizeResult:
    """Run one stylisation and write its run folder (`nst stylize`).

    Whatever happens (finished, Ctrl-C through `should_stop`, NaN, disk full), the newest good
    image, the frames and the loss log already written are kept, and config.yaml says how the
    run ended.

    Args:
        config: a Config, or a config file's path; with `resume=True` also a run folder, which
            continues that run with its own settings (`nst stylize --resume DIR`).
        callbacks: called with a StepEvent after every step (progress, previews).
        should_stop: polled after every step; True ends the run there, everything saved.
        resume: continue the run in the output folder from its checkpoint.
        overwrite: replace the run (nst's own files only) in the output folder.
        allow_large: accept images over the size and memory limits.
        cache: a ModelCache shared between runs, so the network and style targets load once.
        progress: print a progress line (step, scale, losses, it/s, ETA) to stderr every 10
            steps and at the end. Warnings and notes go to the `nst_cli` logger either way.

    Returns:
        Where the run folder and final image are, its status, losses and timing.

    Raises:
        NSTError: a bad input, a refused folder or a failed run, in one line.
    """
    if not isinstance(config, Config):
        is_run_dir = resume and Path(config).is_dir()
        config = resume_config(Path(config)) if is_run_dir else resolve_config(config)
    if progress:
        callbacks = [*callbacks, LogLines(lambda line: print(line, file=sys.stderr), every=10)]
    context = RunContext(
        callbacks, should_stop, resume, overwrite, allow_large, cache or ModelCache()
    )
    return stylize_with(config, context)


def stylize_with(config: Config, context: RunContext) -> StylizeResult:
    """One stylisation, as a table of contents: settle what may happen to the folder,
    prepare (inputs, network, start), then, holding the folder, run each scale and finish.
    Whatever happens (finished, Ctrl-C, NaN, disk full), the newest good image, the frames
    and the loss log already written are kept, and config.yaml says how the run ended."""
    context = _settle_intent(config, context)
    prepared = prepare(config, context)
    with prepared.run_dir.lock():
        _claim_folder(prepared.run_dir, context)
        session = Session(prepared)  # config.yaml says "running"; the recorder keeps it current
        with settled([session]):  # Ctrl-C or a crash: the newest image saved, the status said
            (result,) = run_scales(
                [prepared], [[*session.recorder.callbacks(), *context.callbacks]],
                context.should_stop,
            )  # fmt: skip
            error = session.finish(result)
    closing = session.close()  # always: the newest image, the log, config.yaml's status
    failure = error or closing
    if failure is not None:
        raise failure
    return session.outcome(result)


def _settle_intent(config: Config, context: RunContext) -> RunContext:
    """A new run into a folder that holds one: the same command run again replaces the
    finished run it made; anything else is refused in one line (run.resume)."""
    if context.resume or context.overwrite:
        return context
    if replaces_finished_run(config):
        return context.replacing()
    refuse_replacing(RunDir(config.output_dir), config, "image")
    return context


def _claim_folder(run_dir: RunDir, context: RunContext) -> None:
    """Under the folder's lock: checked again (another process may have written a run there
    meanwhile), temp files of a killed nst removed, and a replaced run cleared, only now
    that the new run's inputs have all been checked."""
    check_run_folder(run_dir, context.resume, context.overwrite)
    for path in run_dir.remove_orphaned_temps():
        log.info("removed %s, left by an nst process that was killed", path)
    if context.overwrite and not context.resume:
        run_dir.clear()


def stylize_batch(
    configs: Sequence[Config],
    *,
    callbacks: Sequence[Sequence[Callback]] | None = None,
    should_stop: Callable[[], bool] = never,
    overwrite: bool = False,
    allow_large: bool = False,
    cache: ModelCache | None = None,
) -> list[StylizeResult | NSTError]:
    """Several new runs optimised together, each written to its own run folder as `stylize`
    writes it: one forward and backward pass of the network per step serves them all, and
    each run keeps its own optimiser, so it follows the path it would alone (to within
    floating-point rounding). The configs must share `batch_key`: they may differ in loss
    weights, layers, style images, optimiser settings, init and seed. Returns each run's
    result or the error that stopped it; a run that fails does not stop the others."""
    keys = {batch_key(config) for config in configs}
    if len(keys) > 1:
        raise ValueError(
            "stylize_batch: the configs differ in " + ", ".join(_batch_differences(configs))
        )
    cache = cache or ModelCache()
    each = callbacks or [()] * len(configs)
    contexts = [RunContext(each[i], should_stop, False, overwrite, allow_large, cache)
                for i in range(len(configs))]  # fmt: skip
    outcomes: list[StylizeResult | NSTError | None] = [None] * len(configs)
    ready: list[tuple[int, Prepared]] = []
    for index, (config, context) in enumerate(zip(configs, contexts, strict=True)):
        try:
            ready.append((index, prepare(config, context)))
        except NSTError as exc:
            outcomes[index] = exc
    with contextlib.ExitStack() as locks:
        running: list[tuple[int, Prepared]] = []
        for index, prepared in ready:
            try:
                locks.enter_context(prepared.run_dir.lock())
                _claim_folder(prepared.run_dir, contexts[index])
            except NSTError as exc:
                outcomes[index] = exc
            else:
                running.append((index, prepared))
        if running:
            # One network for all, deep enough for every run's layers.
            layers = list(dict.fromkeys(n for _, p in running for n in p.config.network_layers))
            first = running[0][1]
            extractor = cache.extractor(first.config, layers, first.device, first.precision)
            batch = [replace(p, extractor=extractor) for _, p in running]
            results = _execute_all(batch, [contexts[i].callbacks for i, _ in running], should_stop)
            for (index, _), outcome in zip(running, results, strict=True):
                outcomes[index] = outcome
    return [o for o in outcomes if o is not None]


#: What runs of one batch must share: the image being optimised (content, sizes, schedule),
#: the network and how it runs, and the loop's check interval. Anything else may differ.
BATCH_SHARED_KEYS = (
    "content", "resolution", "scales", "steps", "save_every", "device", "precision", "compile",
    "memory", "model",
)  # fmt: skip


def batch_key(config: Config) -> str:
    """Runs with the same key can be optimised together (stylize_batch)."""
    data = run_config_dict(config)
    shared = {key: data.get(key) for key in BATCH_SHARED_KEYS}
    if config.model.weights == "random":
        shared["seed"] = config.seed  # the seed draws the network's weights
    return json.dumps(shared, sort_keys=True, default=str)


def _batch_differences(configs: Sequence[Config]) -> list[str]:
    keys = [json.loads(batch_key(c)) for c in configs]
    return sorted({k for k in keys[0] if any(other.get(k) != keys[0][k] for other in keys)})


def prepare(config: Config, context: RunContext) -> Prepared:
    """Check the folder and the settings, load the images, the network and the start image;
    nothing is written yet."""
    setup_started = time.perf_counter()
    torch.manual_seed(config.seed)
    run_dir = RunDir(config.output_dir)
    check_output_image(config, context.resume, context.overwrite)
    check_run_folder(run_dir, context.resume, context.overwrite)
    if context.resume:
        check_resume_changes(run_dir, context.records(config))
    _warn_unusual_settings(config)
    inputs = load_inputs(config, context.allow_large)
    device, precision, extractor = context.cache.network(config)
    if config.model.weights == "random":
        log.warning("model.weights=random: the network is untrained; results show no real style")
    start = starting_point(config, run_dir, inputs, context.resume, context.allow_large)
    return Prepared(
        config, context.records(config), device, precision, run_dir, inputs, extractor,
        context.cache, start, setup_started, tile_progress=tile_reporter(context.callbacks),
    )  # fmt: skip


def _warn_unusual_settings(config: Config) -> None:
    """Settings that run but are likely not what was meant, one line each, before the run:
    too few steps for the scales, a weight on another tool's scale, an lr for the other
    optimiser."""
    note = config.schedule_note()
    if note is not None:
        (log.info if config.scales == "auto" else log.warning)("%s", note)
    for line in config.foreign_weight_notes():
        log.warning("%s", line)
    name, lr = config.optimizer.name, config.optimizer.lr
    if lr is None:
        return
    low, high = SENSIBLE_LR[name]
    if not low <= lr <= high:
        log.warning(
            "optimizer.lr=%g is outside %s's usual range %g–%g (an lr set for the other "
            "optimiser?); remove optimizer.lr to use %s's default %g",
            lr, name, low, high, name, DEFAULT_LR[name],
        )  # fmt: skip


def tile_reporter(callbacks: Sequence[Callback]) -> TileProgress | None:
    """Tells the callbacks that listen for tiles (an `on_tile` method: the progress bar, the
    plain lines) of each tile of a tiled step, which can take minutes."""
    listeners = [c.on_tile for c in callbacks if hasattr(c, "on_tile")]
    if not listeners:
        return None

    def report(number: int, count: int, stage: int) -> None:
        for listener in listeners:
            listener(number, count, stage)

    return report


def _execute_all(
    prepared: Sequence[Prepared],
    callbacks: Sequence[Sequence[Callback]],
    should_stop: Callable[[], bool],
) -> list[StylizeResult | NSTError]:
    """`_execute` for the runs of a batch, optimised together: each run's outcome, or the
    error that stopped it (the others went on). Ctrl-C or a crash settles every run's folder
    (newest image, frames, loss log, config.yaml's status) before it propagates."""
    outcomes: list[StylizeResult | NSTError | None] = [None] * len(prepared)
    sessions: dict[int, Session] = {}
    results: list[OptimizeResult] = []
    errors: list[NSTError | None] = []
    with settled(sessions.values()):
        for index, one in enumerate(prepared):
            try:
                sessions[index] = Session(one)
            except NSTError as exc:  # its folder cannot be written: that run fails, alone
                outcomes[index] = exc
        if sessions:
            results = run_scales(
                [prepared[i] for i in sessions],
                [[*s.recorder.callbacks(), *callbacks[i]] for i, s in sessions.items()],
                should_stop,
            )
            errors = [s.finish(r) for s, r in zip(sessions.values(), results, strict=True)]
    for (index, session), result, error in zip(sessions.items(), results, errors, strict=True):
        closing = session.close()
        error = error or closing
        outcomes[index] = error if error is not None else session.outcome(result)
    return [outcome for outcome in outcomes if outcome is not None]
