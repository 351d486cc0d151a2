"""The runs of a sweep or batch as Ray tasks (`--executor ray`), on one machine or a cluster.

Workers need not see the driver's disk: each task carries the bytes of every input file its
config names, writes its run folder in a scratch directory, and sends the folder back; the
driver writes it where a local run would have. A task makes the same one call a local run
makes (`stylize`), given the config relocated to the scratch copies and told to record the
user's own (so config.yaml and the PNGs' provenance match a local run's).

Ray is an optional extra and is imported only here, only when asked for.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

import torch

from .config import Config, input_files, map_input_paths
from .errors import ConfigError, NSTError
from .optimize import Callback, StepEvent
from .outputs import LOCK_NAME, RunDir, write_bytes
from .pipeline import ModelCache, check_run_folder, stylize
from .sweep import PlannedRun, fail

log = logging.getLogger("nst")

INSTALL_HINT = (
    "--executor ray needs Ray, an optional extra: pip install -e '.[ray]' in a checkout "
    "(or pip install 'ray>=2.9')"
)
#: Files of a run folder a resumed run continues from (frames stay on the driver's disk).
RESUME_FILES = ("config.yaml", "losses.csv", "checkpoint.pt")
#: Failures a second try may get past; a task's own errors (a bad image) are not retried.
RETRIED = (torch.OutOfMemoryError, MemoryError)
#: Seconds between progress messages a task sends to the driver.
PROGRESS_INTERVAL = 0.3
#: Seconds a Ctrl-C waits for cancelled tasks to send back what they saved.
CANCEL_GRACE_S = 60.0


@dataclass
class RunTask:
    """One run, with everything it reads: the user's config and the input files' bytes."""

    index: int
    config: Config
    #: Each input file's bytes, keyed by the path as the config names it.
    files: dict[str, bytes]
    #: A resumed run's checkpoint, loss log and config.yaml, by name in the run folder.
    previous: dict[str, bytes] = field(default_factory=dict)
    resume: bool = False
    overwrite: bool = False
    allow_large: bool = False


@dataclass
class RunReport:
    """What a task sends back: how it ended, and every file of its run folder."""

    index: int
    status: str  # completed | interrupted | failed
    files: dict[str, bytes]
    error: str | None = None
    #: Warnings the run logged on the worker, to be shown on the driver.
    warnings: list[str] = field(default_factory=list)


def relocate(config: Config, paths: Mapping[str, str], output: Path) -> Config:
    """The same run reading its input files at `paths` (by the config's own names), writing
    its folder at `output`, on the GPU Ray gave it."""
    data = config.to_yaml_dict()
    map_input_paths(data, lambda value: paths.get(value, value))
    data["output"] = str(output)
    if str(data.get("device", "")).startswith("cuda:"):
        data["device"] = "cuda"  # Ray shows a task only the GPU it was given, as cuda:0
    return Config.model_validate(data)


def pack_task(index: int, run: PlannedRun, allow_large: bool) -> RunTask:
    """Read a planned run's input files (and a resumed run's state) into a task."""
    files = {}
    for path in input_files(run.config):
        try:
            files[str(path)] = path.expanduser().read_bytes()
        except FileNotFoundError:
            continue  # the run itself says which file is missing, as it would locally
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read it to send to Ray ({exc.strerror})") from None
    run_dir = RunDir(run.config.output_dir)
    previous = {}
    if run.state == "resume":
        previous = {
            name: (run_dir.root / name).read_bytes()
            for name in RESUME_FILES
            if (run_dir.root / name).is_file()
        }
    return RunTask(
        index, run.config, files, previous,
        resume=run.state == "resume", overwrite=run.state in ("new", "replace"),
        allow_large=allow_large,
    )  # fmt: skip


def execute_task(
    task: RunTask,
    progress: Callback | None = None,
    cache: ModelCache | None = None,
    scratch: Path | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> RunReport:
    """Run a task where it landed: inputs written to a scratch folder, one `stylize` call,
    the run folder read back. The run's own errors come back as a failed report (with the
    user's paths in the message), together with whatever it had written."""
    base = Path(scratch or tempfile.mkdtemp(prefix="nst-task-"))
    inputs, run_root = base / "inputs", base / "run"
    shutil.rmtree(base, ignore_errors=True)
    # Named by content, so the same style image has the same path in every task and the
    # worker's cached style targets are found again.
    local = {}
    for name, data in task.files.items():
        target = inputs / hashlib.sha256(data).hexdigest()[:16] / Path(name).name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        local[name] = str(target)
    run_root.mkdir(parents=True)
    for name, data in task.previous.items():
        (run_root / name).write_bytes(data)
    captured = _Captured()
    logger = logging.getLogger("nst")
    logger.addHandler(captured)
    status, error = "failed", None
    try:
        result = stylize(
            relocate(task.config, local, run_root), recorded=task.config,
            callbacks=[progress] if progress else [], should_stop=should_stop, resume=task.resume,
            overwrite=task.overwrite, allow_large=task.allow_large, cache=cache,
        )  # fmt: skip
        status = result.status
    except NSTError as exc:
        error = _users_paths(str(exc), local, run_root, task.config.output_dir)
    except KeyboardInterrupt:  # cancelled by the driver (Ctrl-C there): keep what it saved
        status = "interrupted"  # stylize wrote the newest image and a checkpoint on its way out
    except BaseException:  # the worker's own trouble (out of memory): Ray retries or reports
        shutil.rmtree(base, ignore_errors=True)
        raise
    finally:
        logger.removeHandler(captured)
    files = {
        path.relative_to(run_root).as_posix(): path.read_bytes()
        for path in sorted(run_root.rglob("*"))
        if path.is_file() and path.name != LOCK_NAME and not path.name.endswith(".tmp")
    }
    shutil.rmtree(base, ignore_errors=True)
    shown = [_users_paths(m, local, run_root, task.config.output_dir) for m in captured.messages]
    return RunReport(task.index, status, files, error, shown)


class _Captured(logging.Handler):
    """The run's warnings on the worker, kept to be shown by the driver."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _users_paths(text: str, local: Mapping[str, str], run_root: Path, output: Path) -> str:
    """A message from the worker with the scratch paths put back to the user's."""
    for name, path in local.items():
        text = text.replace(path, name)
    return text.replace(str(run_root), str(output))


def unpack_report(report: RunReport, run: PlannedRun) -> None:
    """Write a task's run folder where a local run would have written it."""
    run_dir = RunDir(run.config.output_dir)
    with run_dir.lock():
        if run.state in ("new", "replace"):
            run_dir.clear()  # the task started afresh; its files replace the old run's
        for name, data in report.files.items():
            relative = PurePosixPath(name)
            if relative.is_absolute() or ".." in relative.parts:
                raise ConfigError(f"Ray task for {run.name} sent back a file outside its folder")
            write_bytes(run_dir.root / relative, data)


# ---- the Ray side ------------------------------------------------------------------------

#: A worker process runs one task after another: its network and style targets stay loaded.
_WORKER_CACHE: ModelCache | None = None


def _ray_task(task: RunTask, board: Any, names: list[str], *blobs: bytes) -> RunReport:
    """What a Ray worker runs: execute_task, its files' bytes arriving as task arguments.

    Nothing in here waits on Ray (no blocking ray.get): a task blocked in ray.get gives its
    CPUs back to the scheduler, which then starts another task on them, and the two fight for
    the cores (measured: 3× slower steps)."""
    import ray

    # As many threads as CPUs the task was given (a reused worker may have had another count).
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))
    global _WORKER_CACHE
    _WORKER_CACHE = _WORKER_CACHE or ModelCache()
    task.files = dict(zip(names, blobs, strict=True))
    scratch = Path(tempfile.gettempdir()) / f"nst-worker-{os.getpid()}"
    relay = _Relay(board, task.index, ray)
    return execute_task(task, relay, _WORKER_CACHE, scratch, should_stop=relay.should_stop)


class _Relay:
    """Sends a task's step events, without their pixels, to the driver a few times a second,
    and asks it as often whether to stop (Ctrl-C there): the run then ends at the next step
    with its checkpoint, as a local one does."""

    def __init__(self, board: Any, index: int, ray: Any) -> None:
        self.board, self.index, self.ray, self.sent = board, index, ray, 0.0
        self._asked: Any = None
        self._stop = False

    def __call__(self, event: StepEvent) -> None:
        now = time.monotonic()
        if now - self.sent < PROGRESS_INTERVAL and not event.is_final:
            return
        self.sent = now
        light = replace(
            event, image=torch.empty(0), average=None, optimizer_state=None,
            losses=dict(event.losses),  # numbers: the driver may have no GPU to read them on
        )  # fmt: skip
        self.board.post.remote(self.index, light)  # fire and forget: never waits
        self._poll()

    def _poll(self) -> None:
        """Ask, then look for the answer next time: only an answer already here is read."""
        if self._asked is not None:
            ready, _ = self.ray.wait([self._asked], timeout=0)
            if not ready:
                return
            self._stop = bool(self.ray.get(self._asked))
        self._asked = self.board.stopping.remote()

    def should_stop(self) -> bool:
        return self._stop


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
        ray.init(
            address=address or "local", include_dashboard=False, log_to_driver=False,
            logging_level=logging.ERROR,
        )  # fmt: skip
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"--address {address}" if address else "a local Ray instance"
        raise ConfigError(
            f"{where}: could not connect ({str(exc).splitlines()[0][:160]}); start a cluster "
            "with `ray start --head`, or drop --address to start a local one"
        ) from None
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
    remote = ray.remote(_ray_task)
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
