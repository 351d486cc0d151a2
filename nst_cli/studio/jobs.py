"""The studio's jobs: a run (a stylisation, a sweep, a resume) in a thread of its own, so the
page can show its progress and stop it. Stop is the CLI's first Ctrl-C: the run ends after
the current step with everything saved, and `nst stylize --resume` continues it."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from nst_cli.errors import NSTError
from nst_cli.run.progress import LogLines

#: How often a job's page is brought up to date while it runs, in seconds.
POLL_SECONDS = 0.5


@dataclass
class Job:
    """One run in its thread: its progress line, the notes it logged, its result or error."""

    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    line: str = "starting…"
    #: What the job is at above the step (a clip's frame), said before the step's line.
    heading: str = ""
    notes: list[str] = field(default_factory=list)
    result: Any = None
    error: str | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)

    def progress(self, every: int = 1) -> LogLines:
        """A step callback that keeps `line` at the newest step (step, scale, losses, it/s,
        ETA: the CLI's progress line)."""
        return LogLines(self._set_line, every, description="run")

    def _set_line(self, line: str) -> None:
        self.line = line.removeprefix("run ")

    @property
    def status(self) -> str:
        """The heading and the newest step's line, for the page."""
        return f"{self.heading} · {self.line}" if self.heading else self.line

    @property
    def should_stop(self) -> Callable[[], bool]:
        return self.stop.is_set

    def wait(self) -> Iterator[None]:
        """Yields every POLL_SECONDS while the job runs (the caller shows its progress)."""
        while not self.done.wait(POLL_SECONDS):
            yield


class _Notes(logging.Handler):
    """nst's warnings and notes logged by one job's thread, one line each, for its page."""

    def __init__(self, job: Job, thread: int) -> None:
        super().__init__(logging.INFO)
        self.job, self.thread = job, thread

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.job.notes.append(f"{record.levelname.lower()}: {record.getMessage()}")


class Jobs:
    """The jobs of one studio, by id: start one, stop one (from another request)."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def start(self, work: Callable[[Job], Any]) -> Job:
        """Run `work(job)` in a new thread; its return value becomes `job.result`, an
        NSTError's one line `job.error` (any other error too, with its type)."""
        job = Job()
        with self._lock:
            self._jobs = {k: j for k, j in self._jobs.items() if not j.done.is_set()}
            self._jobs[job.id] = job
        thread = threading.Thread(target=self._run, args=(job, work), daemon=True)
        thread.start()
        return job

    def _run(self, job: Job, work: Callable[[Job], Any]) -> None:
        handler = _Notes(job, threading.get_ident())
        logger = logging.getLogger("nst_cli")
        logger.addHandler(handler)
        try:
            job.result = work(job)
        except NSTError as exc:
            job.error = str(exc)
        except Exception as exc:  # the page says it in one line; the studio goes on
            logging.getLogger(__name__).exception("studio job failed")
            job.error = f"{type(exc).__name__}: {exc}"
        finally:
            logger.removeHandler(handler)
            job.done.set()

    def stop(self, job_id: str | None) -> bool:
        """Ask the job to stop after its current step; False if no such job runs."""
        with self._lock:
            job = self._jobs.get(job_id or "")
        if job is None or job.done.is_set():
            return False
        job.stop.set()
        return True

    def stop_all(self) -> None:
        """Ask every running job to stop after its current step."""
        with self._lock:
            for job in self._jobs.values():
                job.stop.set()

    def wait_all(self, seconds: float) -> bool:
        """Wait up to `seconds` for every job to end (their work saved); True if they did."""
        deadline = time.monotonic() + seconds
        with self._lock:
            running = list(self._jobs.values())
        return all(job.done.wait(max(0.0, deadline - time.monotonic())) for job in running)
