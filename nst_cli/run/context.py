"""What a run needs beyond its config, in one object: what to do with the folder (a new
run, continue one, replace one), whether images over the limits are accepted, who hears of
each step and may stop it, the cache it shares with other runs, and what config.yaml records."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from nst_cli.config.models import Config
from nst_cli.core.optimize import Callback
from nst_cli.run.cache import ModelCache


def never() -> bool:
    """The stop signal of a run nothing stops (it ends at its last step)."""
    return False


@dataclass(frozen=True)
class RunContext:
    """One run's context (the config says what to make; this, how this run goes).

    Attributes:
        callbacks: called with a StepEvent after every step (progress, previews).
        should_stop: polled after every step; True ends the run there, everything saved.
        resume: continue the run in the output folder from its checkpoint.
        overwrite: replace the run (nst's own files only) in the output folder.
        allow_large: accept images over the size and memory limits.
        cache: shared between runs, so the network and style targets load once.
        recorded: what config.yaml and the PNGs record, when not the config itself (a Ray
            worker runs a relocated copy and records the user's own paths).
    """

    callbacks: Sequence[Callback] = ()
    should_stop: Callable[[], bool] = never
    resume: bool = False
    overwrite: bool = False
    allow_large: bool = False
    cache: ModelCache = field(default_factory=ModelCache)
    recorded: Config | None = None

    def records(self, config: Config) -> Config:
        """What this run records: `recorded`, or the config itself."""
        return self.recorded if self.recorded is not None else config

    def replacing(self) -> RunContext:
        """This context, replacing what the folder holds (the same command run again)."""
        return replace(self, overwrite=True)

    def with_callbacks(self, *more: Callback) -> RunContext:
        return replace(self, callbacks=[*self.callbacks, *more])
