"""One run as a Ray task: packed with its inputs, executed in a worker, reported back."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

import torch

from nst_cli.config.models import Config
from nst_cli.config.resolve import input_files, map_input_paths
from nst_cli.core.optimize import Callback, StepEvent
from nst_cli.errors import ConfigError, NSTError
from nst_cli.io.files import write_bytes
from nst_cli.io.rundir import LOCK_NAME, RunDir
from nst_cli.run.cache import ModelCache
from nst_cli.run.context import RunContext
from nst_cli.run.stylize import stylize_with
from nst_cli.sweep.plan import PlannedRun

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "--executor ray needs Ray, an optional extra: pip install -e '.[ray]' in a checkout "
    "(or pip install 'ray>=2.9')"
)
#: Files of a run folder a resumed run continues from (frames stay on the driver's disk).
RESUME_FILES = ("config.yaml", "losses.csv", "checkpoint.pt")
#: Failures a second try may get past; a task's own errors (a bad image) are not retried.
RETRIED = (torch.OutOfMemoryError, MemoryError)


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
    logger = logging.getLogger("nst_cli")
    logger.addHandler(captured)
    status, error = "failed", None
    try:
        context = RunContext(
            [progress] if progress else [], should_stop, task.resume, task.overwrite,
            task.allow_large, cache or ModelCache(), recorded=task.config,
        )  # fmt: skip
        result = stylize_with(relocate(task.config, local, run_root), context)
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
    messages = [_users_paths(m, local, run_root, task.config.output_dir) for m in captured.messages]
    return RunReport(task.index, status, files, error, messages)


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


def ray_task(task: RunTask, board: Any, names: list[str], *blobs: bytes) -> RunReport:
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
    remove_dead_workers_scratch(scratch.parent)
    relay = _Relay(board, task.index, ray)
    return execute_task(task, relay, _WORKER_CACHE, scratch, should_stop=relay.should_stop)


def remove_dead_workers_scratch(folder: Path) -> list[Path]:
    """Remove the scratch folders (`nst-worker-PID`) of workers that were killed: only this
    user's, only where no process PID is alive. Returns what was removed."""
    removed = []
    for path in folder.glob("nst-worker-*"):
        pid = path.name.removeprefix("nst-worker-")
        if not pid.isdigit() or path.is_symlink() or not path.is_dir():
            continue
        try:
            if path.stat().st_uid != os.getuid():
                continue
            os.kill(int(pid), 0)  # alive (or another user's): keep it
            continue
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        except (OSError, AttributeError):  # PermissionError: another user's process; no getuid
            continue
    return removed


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


#: Seconds between progress messages a task sends to the driver.
PROGRESS_INTERVAL = 0.3
