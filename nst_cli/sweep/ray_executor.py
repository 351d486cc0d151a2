"""The runs of a sweep as Ray tasks (`--executor ray`), on one machine or a cluster.

Workers need not see the driver's disk: each task carries the bytes of every input file its
config names, writes its run folder in a scratch directory, and sends the folder back; the
driver writes it where a local run would have. Ray is an optional extra (`pip install
".[ray]"`) and is imported only here, only when asked for."""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from nst_cli.config.models import Config
from nst_cli.core.optimize import StepEvent
from nst_cli.errors import ConfigError, NSTError
from nst_cli.io.rundir import RunDir
from nst_cli.run.resume import check_run_folder
from nst_cli.sweep.plan import PlannedRun, fail
from nst_cli.sweep.ray_tasks import (
    INSTALL_HINT,
    PROGRESS_INTERVAL,
    RETRIED,
    pack_task,
    ray_task,
    unpack_report,
)

log = logging.getLogger(__name__)
#: Seconds a Ctrl-C waits for cancelled tasks to send back what they saved.
CANCEL_GRACE_S = 60.0


def import_ray() -> Any:
    """Ray, or one line on how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return ray


def connect(ray: Any, address: str | None) -> bool:
    """Join the cluster at `address` (auto: the one `ray start` made on this machine), or
    start a local instance for this command; True when this call started the connection."""
    if ray.is_initialized():  # an embedding program (or a test) connected already
        return False
    if address not in (None, "auto", "local") and not address.startswith("ray://"):
        _check_listening(address)
    try:
        context = ray.init(
            address=address or "local", include_dashboard=False, log_to_driver=False,
            logging_level=logging.ERROR,
        )  # fmt: skip
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"--address {address}" if address else "a local Ray instance"
        raise ConfigError(
            f"{where}: could not connect ({str(exc).splitlines()[0][:160]}); start a cluster "
            "with `ray start --head`, or drop --address to start a local one"
        ) from None
    if address:  # joined a cluster that was already running: say which, whoever started it
        joined = getattr(context, "address_info", {}) or {}
        log.warning(
            "joined the Ray cluster at %s (session %s, %d CPUs); a private one: drop --address, "
            "or `ray start --head --port PORT` and --address 127.0.0.1:PORT",
            joined.get("gcs_address") or joined.get("address") or address,
            (joined.get("session_dir") or "?").rstrip("/").rsplit("/", 1)[-1],
            int(ray.cluster_resources().get("CPU", 0)),
        )
    return True


def _check_listening(address: str) -> None:
    """HOST:PORT answers, or one line now (Ray itself would retry for minutes)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--address {address}: expected auto or HOST:PORT (e.g. 10.0.0.5:6379)")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise ConfigError(
            f"--address {address}: no Ray head answers there ({exc.strerror or exc}); start "
            f"one with `ray start --head --port {port}` on {host}, or check the address"
        ) from None


def _resources(ray: Any, config: Config, task_cpus: int) -> dict[str, float]:
    """One GPU (and one CPU) per task when the run is on cuda (or on auto and the cluster
    has GPUs), else `task_cpus` CPUs, one thread each."""
    gpus = ray.cluster_resources().get("GPU", 0)
    if config.device.startswith("cuda") and not gpus:
        # Ray would wait forever for a GPU that is not there.
        raise ConfigError(
            f"device: {config.device}, but the Ray cluster has no GPU; use device: auto or "
            "cpu, or add a GPU machine to the cluster"
        )
    wants_gpu = config.device.startswith("cuda") or (config.device == "auto" and gpus > 0)
    if wants_gpu:
        return {"num_cpus": 1, "num_gpus": 1}
    if task_cpus > ray.cluster_resources().get("CPU", 0):
        raise ConfigError(
            f"--task-cpus {task_cpus} is more CPUs than the Ray cluster has "
            f"({ray.cluster_resources().get('CPU', 0):g}); lower it"
        )
    return {"num_cpus": task_cpus, "num_gpus": 0}


def _failure(exc: BaseException) -> str:
    """A failed task in one line: its own error, or what happened to the worker."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, RETRIED):
        return f"out of memory, twice ({type(cause).__name__}); lower resolution or memory: low"
    if cause is not None:
        return f"{type(cause).__name__}: {str(cause).splitlines()[0][:200]}"
    text = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    return f"the Ray worker running it failed twice ({type(exc).__name__}: {text})"


@contextlib.contextmanager
def ray_session(address: str | None) -> Iterator[Any]:
    """Ray, connected (see connect) for the block, and disconnected after it if the block's
    own connection was started here. Entered before anything is written, so a wrong
    --address costs nothing."""
    ray = import_ray()
    started = connect(ray, address)
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


@dataclass
class RayExecutor:
    """Each run as one Ray task on the cluster at `address` (None: a local instance), with
    `task_cpus` threads; the sweep's executor for `--executor ray`."""

    address: str | None = None
    task_cpus: int = 1

    def run(self, runs: Sequence[PlannedRun], hooks: Any, started: Callable[[], None]) -> None:
        with ray_session(self.address) as ray:
            started()
            run_on_ray(
                ray, runs, callbacks_for=hooks.callbacks_for, should_stop=hooks.should_stop,
                on_run_done=hooks.on_run_done, allow_large=hooks.allow_large,
                task_cpus=self.task_cpus,
            )  # fmt: skip


def run_on_ray(
    ray: Any,
    runs: Sequence[PlannedRun],
    *,
    callbacks_for: Callable[[int, PlannedRun], Sequence[Any]],
    should_stop: Callable[[], bool],
    on_run_done: Callable[[int, PlannedRun, Any], None],
    allow_large: bool,
    task_cpus: int = 1,
) -> None:
    """Every run not done yet as one Ray task (retried once if its worker dies or runs out
    of memory); finished folders are written as they arrive, progress shows here."""
    board = ray.remote(num_cpus=0)(ProgressBoard).remote()
    remote = ray.remote(ray_task)
    todo = []
    for i, run in enumerate(runs):
        if run.state in ("done", "failed"):
            on_run_done(i, run, None)
        else:
            todo.append(i)
    shared: dict[str, Any] = {}  # one object per input file, however many tasks read it
    pending: dict[Any, int] = {}
    # A bounded number of tasks in flight keeps a big batch's bytes out of the object store.
    window = max(2, 2 * int(ray.cluster_resources().get("CPU", 1)) // task_cpus)
    callbacks: dict[int, Sequence[Any]] = {}
    while todo or pending:
        while todo and len(pending) < window and not should_stop():
            i = todo.pop(0)
            ref = _submit(ray, remote, runs[i], i, board, shared, allow_large, task_cpus)
            if ref is not None:
                pending[ref] = i
            else:
                on_run_done(i, runs[i], None)
        if should_stop():
            _stop(ray, board, pending, callbacks, runs, on_run_done)
            break
        if not pending:
            continue
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=PROGRESS_INTERVAL)
        _show_progress(ray, board, runs, callbacks, callbacks_for)
        for ref in ready:
            i = pending.pop(ref)
            _finish(ray, ref, runs[i])
            on_run_done(i, runs[i], None)


def _submit(
    ray: Any,
    remote: Any,
    run: PlannedRun,
    index: int,
    board: Any,
    shared: dict[str, Any],
    allow_large: bool,
    task_cpus: int,
) -> Any:
    """Send one run as a task; a run whose folder or files are not usable fails here."""
    try:
        check_run_folder(RunDir(run.config.output_dir), run.state == "resume", True)
        resources = _resources(ray, run.config, task_cpus)
        task = pack_task(index, run, allow_large)
    except NSTError as exc:
        fail(run, str(exc))
        return None
    names = list(task.files)
    for name in names:
        if name not in shared:
            shared[name] = ray.put(task.files[name])
    task.files = {}
    options = {**resources, "max_retries": 1, "retry_exceptions": list(RETRIED)}
    # Top-level object arguments: Ray fetches them before the task starts.
    return remote.options(**options).remote(task, board, names, *(shared[n] for n in names))


def _stop(
    ray: Any,
    board: Any,
    pending: dict[Any, int],
    started: Collection[int],
    runs: Sequence[PlannedRun],
    on_run_done: Callable[[int, PlannedRun, Any], None],
) -> None:
    """Ctrl-C: the running tasks are told to stop (each ends at its next step, writes its
    checkpoint and sends its folder back, so the next command resumes it); the others are
    cancelled (one that started without a word yet gets a KeyboardInterrupt and still sends
    back what it saved). What comes back within CANCEL_GRACE_S is kept."""
    ray.get(board.stop.remote())
    for ref, index in pending.items():
        if index not in started:
            ray.cancel(ref, force=False)
    deadline = time.monotonic() + CANCEL_GRACE_S
    while pending and time.monotonic() < deadline:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=PROGRESS_INTERVAL)
        for ref in ready:
            i = pending.pop(ref)
            _finish(ray, ref, runs[i])
            on_run_done(i, runs[i], None)
    for ref in pending:  # still busy after the grace period: stop it outright
        ray.cancel(ref, force=True)


def _finish(ray: Any, ref: Any, run: PlannedRun) -> None:
    """A task's report into the run folder, or its failure into the run's state."""
    try:
        report = ray.get(ref)
    except ray.exceptions.TaskCancelledError:
        return  # cancelled before it started: nothing ran, nothing to keep
    except Exception as exc:  # RayTaskError, WorkerCrashedError, …: reported, the rest go on
        fail(run, _failure(exc))
        return
    for message in report.warnings:
        log.warning("run %s: %s", run.name, message)
    try:
        unpack_report(report, run)
    except NSTError as exc:
        fail(run, str(exc))
        return
    if report.status == "failed":
        fail(run, report.error or "failed")
    else:
        run.state = "done" if report.status == "completed" else "resume"


class ProgressBoard:
    """The Ray actor tasks post their step events to, and the driver takes them from; it
    also carries the driver's Ctrl-C to the tasks."""

    def __init__(self) -> None:
        self.events: list[tuple[int, StepEvent]] = []
        self.stop_requested = False

    def stop(self) -> None:
        self.stop_requested = True

    def stopping(self) -> bool:
        return self.stop_requested

    def post(self, index: int, event: StepEvent) -> None:
        self.events.append((index, event))

    def take(self) -> list[tuple[int, StepEvent]]:
        events, self.events = self.events, []
        return events


def _show_progress(
    ray: Any,
    board: Any,
    runs: Sequence[PlannedRun],
    callbacks: dict[int, Sequence[Any]],
    callbacks_for: Callable[[int, PlannedRun], Sequence[Any]],
) -> None:
    """The step events tasks sent since the last look, to each run's callbacks (its bar)."""
    for index, event in ray.get(board.take.remote()):
        if index not in callbacks:  # its first event: the run has started somewhere
            callbacks[index] = callbacks_for(index, runs[index])
        for callback in callbacks[index]:
            callback(event)
