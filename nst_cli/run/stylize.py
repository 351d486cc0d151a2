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
from nst_cli.core.devices import (
    configure_precision,
    resolve_device,
    resolve_precision,
)
from nst_cli.core.optimize import Callback, OptimizeResult
from nst_cli.core.tiles import TileProgress
from nst_cli.errors import NSTError
from nst_cli.io.rundir import RunDir
from nst_cli.run.inputs import load_inputs
from nst_cli.run.models import ModelCache
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
from nst_cli.run.session import Session
from nst_cli.run.state import Prepared, StylizeResult

log = logging.getLogger(__name__)


def stylize(
    config: Config | str | Path,
    *,
    callbacks: Sequence[Callback] = (),
    should_stop: Callable[[], bool] = lambda: False,
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
    return stylize_relocated(
        config, config, callbacks=callbacks, should_stop=should_stop, resume=resume,
        overwrite=overwrite, allow_large=allow_large, cache=cache,
    )  # fmt: skip


def stylize_relocated(
    config: Config,
    recorded: Config,
    *,
    callbacks: Sequence[Callback] = (),
    should_stop: Callable[[], bool] = lambda: False,
    resume: bool = False,
    overwrite: bool = False,
    allow_large: bool = False,
    cache: ModelCache | None = None,
) -> StylizeResult:
    """`stylize` for a run whose inputs and folder were moved (a Ray worker's scratch copy):
    it reads and writes where `config` says, and records `recorded` (the user's own paths) in
    config.yaml and the PNGs, so the folder it sends back is the one a local run writes."""
    if not (resume or overwrite):
        if replaces_finished_run(config):
            overwrite = True  # the same command again: replace the finished run it made
        else:
            refuse_replacing(RunDir(config.output_dir), config, "image")
    prepared = _prepare(config, resume, overwrite, allow_large, cache or ModelCache(), recorded)
    run_dir = prepared.run_dir
    with run_dir.lock():
        # Checked again under the lock: another process may have written a run here meanwhile.
        check_run_folder(run_dir, resume, overwrite)
        for path in run_dir.remove_orphaned_temps():
            log.info("removed %s, left by an nst process that was killed", path)
        if overwrite and not resume:
            run_dir.clear()  # only now, once the new run's inputs have all been checked
        return _execute(prepared, callbacks, should_stop)


def stylize_batch(
    configs: Sequence[Config],
    *,
    callbacks: Sequence[Sequence[Callback]] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
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
    outcomes: list[StylizeResult | NSTError | None] = [None] * len(configs)
    ready: list[tuple[int, Prepared]] = []
    for index, config in enumerate(configs):
        try:
            ready.append((index, _prepare(config, False, overwrite, allow_large, cache, config)))
        except NSTError as exc:
            outcomes[index] = exc
    with contextlib.ExitStack() as locks:
        running: list[tuple[int, Prepared]] = []
        for index, prepared in ready:
            try:
                locks.enter_context(prepared.run_dir.lock())
                check_run_folder(prepared.run_dir, False, overwrite)
                if overwrite:
                    prepared.run_dir.clear()
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
            extra = callbacks or [()] * len(configs)
            results = _execute_all(batch, [extra[i] for i, _ in running], should_stop)
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


def _prepare(
    config: Config,
    resume: bool,
    overwrite: bool,
    allow_large: bool,
    cache: ModelCache,
    recorded: Config,
) -> Prepared:
    """Check the folder and the settings, load the images, the network and the start image."""
    setup_started = time.perf_counter()
    torch.manual_seed(config.seed)
    device = resolve_device(config.device)
    precision = resolve_precision(device, config.precision)
    configure_precision(device, precision)
    run_dir = RunDir(config.output_dir)
    check_output_image(config, resume, overwrite)
    check_run_folder(run_dir, resume, overwrite)
    if resume:
        check_resume_changes(run_dir, recorded)
    _warn_unusual_settings(config)
    inputs = load_inputs(config, allow_large)
    layers = config.network_layers
    extractor = cache.extractor(config, layers, device, precision)
    if config.model.weights == "random":
        log.warning("model.weights=random: the network is untrained; results show no real style")
    start = starting_point(config, run_dir, inputs, resume, allow_large)
    return Prepared(
        config, recorded, device, precision, run_dir, inputs, extractor, cache, start,
        setup_started,
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


def _execute(
    prepared: Prepared, callbacks: Sequence[Callback], should_stop: Callable[[], bool]
) -> StylizeResult:
    """Run every scale, keeping the run folder current; whatever happens, save what we have."""
    (outcome,) = _execute_all([prepared], [callbacks], should_stop)
    if isinstance(outcome, NSTError):
        raise outcome
    return outcome


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
    try:
        for index, one in enumerate(prepared):
            try:
                sessions[index] = Session(one)
            except NSTError as exc:  # its folder cannot be written: that run fails, alone
                outcomes[index] = exc
        for index, callback_list in enumerate(callbacks):
            prepared[index].tile_progress = tile_reporter(callback_list)
        if sessions:
            results = run_scales(
                [prepared[i] for i in sessions],
                [[*s.recorder.callbacks(), *callbacks[i]] for i, s in sessions.items()],
                should_stop,
            )
            errors = [s.finish(r) for s, r in zip(sessions.values(), results, strict=True)]
    except BaseException as exc:
        for session in sessions.values():
            if isinstance(exc, KeyboardInterrupt):
                session.status = "interrupted"
            session.close()
        raise
    for (index, session), result, error in zip(sessions.items(), results, errors, strict=True):
        closing = session.close()
        error = error or closing
        outcomes[index] = error if error is not None else session.outcome(result)
    return [outcome for outcome in outcomes if outcome is not None]
