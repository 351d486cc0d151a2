"""The pixel-optimisation loop. It never prints or writes files: it emits a StepEvent per
state of the image and lets callbacks react (progress bar, frames, loss log, checkpoints).

Step k is "the image after k optimiser updates". Every event carries that image and the
losses *of that image*, so a frame and its row in losses.csv always describe the same pixels.
The loss and gradient of state k are computed once and reused by the optimiser's update, so
reporting costs no extra forward pass (only the very last state needs one).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from .config import Stage
from .errors import NonFiniteLossError
from .lbfgs import ProjectedLBFGS
from .losses import Losses, LossTerms, StyleTransferLoss, first_non_finite


@dataclass(frozen=True)
class StepEvent:
    """The image after `step` updates, its losses, and how the optimiser stands."""

    step: int
    total_steps: int
    #: The losses of this image: a Losses (read on demand) from the loop, any mapping in tests.
    losses: Mapping[str, float]
    image: torch.Tensor
    elapsed: float
    is_final: bool = False
    optimizer_state: Callable[[], dict[str, Any]] | None = field(default=None, repr=False)
    #: Which scale of a coarse-to-fine run this image is at (a one-scale run has one).
    stage: Stage | None = None
    #: The exponential moving average of the iterates (config `average`), or None.
    average: torch.Tensor | None = None

    @property
    def shown(self) -> torch.Tensor:
        """The image that is saved: the average when one is kept, else the iterate."""
        return self.average if self.average is not None else self.image


@dataclass
class OptimizeResult:
    """What the loop ended with."""

    image: torch.Tensor
    losses: dict[str, float]
    step: int
    interrupted: bool
    seconds: float
    steps_run: int
    #: torch.compile's first-call cost at each scale, paid before the timed steps.
    warmup_seconds: float = 0.0


class Callback(Protocol):
    def __call__(self, event: StepEvent) -> None: ...


def make_optimizer(
    name: str,
    params: Sequence[torch.Tensor],
    lr: float,
    history_size: int = 20,
    trust_region: float | None = 0.05,
    compact_history: bool = False,
    precondition: str = "none",
) -> torch.optim.Optimizer:
    """Projected L-BFGS, one evaluation per step (so every step can be reported), or Adam."""
    if name == "lbfgs":
        return ProjectedLBFGS(
            params, lr=lr, history_size=history_size, max_rms_step=trust_region,
            compact_history=compact_history, precondition=precondition,
        )  # fmt: skip
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}")


def _check_finite(steps: Sequence[tuple[int, Losses]]) -> None:
    """Raise for the first of these steps whose losses are not finite (one transfer)."""
    index = first_non_finite([losses for _, losses in steps])
    if index is None:
        return
    step, losses = steps[index]
    bad = [name for name, value in losses.items() if not math.isfinite(value)]
    worst = next((n for n in bad if n != "total"), "total")
    raise NonFiniteLossError(
        f"the {worst} loss became {losses[worst]} at step {step}; the last good image is "
        "kept. Lower optimizer.lr or the loss weights and try again"
    )


def optimize(
    image: torch.Tensor,
    extractor: Callable[[torch.Tensor, list[str]], dict[str, torch.Tensor]],
    loss_fn: StyleTransferLoss,
    optimizer_name: str,
    lr: float,
    steps: int,
    *,
    start_step: int = 0,
    optimizer_state: Mapping[str, Any] | None = None,
    callbacks: Sequence[Callback] = (),
    should_stop: Callable[[], bool] = lambda: False,
    stage: Stage | None = None,
    report_last: bool = True,
    total_steps: int | None = None,
    elapsed_offset: float = 0.0,
    history_size: int = 20,
    trust_region: float | None = 0.05,
    average: float = 0.0,
    average_state: torch.Tensor | None = None,
    compact_history: bool = False,
    check_every: int = 1,
    precondition: str = "none",
) -> OptimizeResult:
    """Optimise `image` (RGB in [0, 1]) from `start_step` until `steps`, emitting a StepEvent per state.

    With `report_last=False` (a coarse scale of a multi-scale run) the loop ends after the
    last update without evaluating it: the next scale reports that step, upsampled.
    Events' `elapsed` counts from `elapsed_offset` (time already spent by earlier scales or
    sessions), so one clock runs through a whole run. With `average` > 0 an exponential
    moving average of the iterates is kept (from `average_state` on resume), carried by every
    event and returned as the result's image. `compact_history` keeps L-BFGS's pairs in
    float16 (memory: low).

    The losses are read back from the device (and checked to be finite) every `check_every`
    steps and at the end, before that step's event: a run passes `save_every`, so no frame or
    checkpoint is written from a diverged image and the GPU is not stalled at other steps.
    Between checks, callbacks may still read an event's losses (the bar, a few times a
    second).
    """
    pixels = image.detach().clone(memory_format=torch.contiguous_format).requires_grad_(True)
    optimizer = make_optimizer(
        optimizer_name, [pixels], lr, history_size, trust_region, compact_history, precondition
    )
    if optimizer_state is not None:
        optimizer.load_state_dict(dict(optimizer_state))
    layers = loss_fn.layers
    ema: torch.Tensor | None = None
    if average > 0:
        ema = (average_state if average_state is not None else pixels.detach()).clone()

    def evaluate() -> LossTerms:
        optimizer.zero_grad(set_to_none=True)
        terms = loss_fn(extractor(pixels, layers), pixels)
        terms.total.backward()
        return terms

    cached: list[torch.Tensor] = []

    def closure() -> torch.Tensor:
        # The first call of each step reuses the loss and gradient computed for the report;
        # any further call (none for Adam or line-search-free L-BFGS) re-evaluates.
        if cached:
            return cached.pop()
        return evaluate().total

    def emit(step: int, losses: Mapping[str, float], is_final: bool) -> None:
        event = StepEvent(
            step=step,
            total_steps=total_steps or steps,
            losses=losses,
            image=pixels.detach(),
            elapsed=elapsed_offset + time.perf_counter() - started,
            is_final=is_final,
            optimizer_state=optimizer.state_dict,
            stage=stage,
            average=ema,
        )
        for callback in callbacks:
            callback(event)

    started = time.perf_counter()
    step = start_step
    interrupted = False
    losses: Losses | None = None
    unchecked: list[tuple[int, Losses]] = []
    while True:
        if step >= steps and not report_last:
            break
        if step < steps:
            terms = evaluate()
        else:
            with torch.no_grad():
                terms = loss_fn(extractor(pixels, layers), pixels)
        losses = terms.lazy()
        unchecked.append((step, losses))
        is_last = step >= steps
        stop = not is_last and should_stop()
        if is_last or stop or step % check_every == 0:
            _check_finite(unchecked)  # the device sync point: one per check_every steps
            unchecked = []
        emit(step, losses, is_final=is_last or stop)
        if is_last or stop:
            interrupted = stop
            break
        cached.append(terms.total)
        optimizer.step(closure)  # type: ignore[arg-type]  # LBFGS and Adam accept a tensor
        cached.clear()
        if not isinstance(optimizer, ProjectedLBFGS):
            with torch.no_grad():
                # Adam: projected gradient descent, pixels back into the displayable range.
                # (Projected L-BFGS keeps them in range itself, and records the real step.)
                pixels.clamp_(0.0, 1.0)
        if ema is not None:
            ema.mul_(average).add_(pixels.detach(), alpha=1.0 - average)
        step += 1
    return OptimizeResult(
        image=ema if ema is not None else pixels.detach(),
        losses=dict(losses) if losses is not None else {},
        step=step,
        interrupted=interrupted,
        seconds=time.perf_counter() - started,
        steps_run=step - start_step,
    )
