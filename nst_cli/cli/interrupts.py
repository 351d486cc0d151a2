"""Ctrl-C / SIGTERM / SIGHUP handling: the first asks the run to stop after the current step (so the
image, frames and loss log are saved); the second aborts at once."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType, TracebackType


class GracefulInterrupt:
    """Context manager; call the instance to ask 'should we stop?'."""

    def __init__(self, on_first: Callable[[], None] | None = None) -> None:
        self.requested = False
        self.signal_name = ""
        self._on_first = on_first
        self._previous: dict[int, object] = {}

    def __call__(self) -> bool:
        return self.requested

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.signal_name = signal.Signals(signum).name
        if self._on_first:
            self._on_first()

    def __enter__(self) -> GracefulInterrupt:
        if threading.current_thread() is threading.main_thread():
            # SIGHUP (a closed terminal, a dropped ssh session) stops as SIGTERM does.
            for sig in (signal.SIGINT, signal.SIGTERM, *_hangup()):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()


def _hangup() -> tuple[signal.Signals, ...]:
    """SIGHUP where the platform has it (not on Windows)."""
    return (signal.SIGHUP,) if hasattr(signal, "SIGHUP") else ()
