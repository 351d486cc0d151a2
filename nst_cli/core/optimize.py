"""The pixel-optimisation loop. It never prints or writes files: it emits a StepEvent per
state of the image and lets callbacks react (progress bar, frames, loss log, checkpoints).

Step k is "the image after k optimiser updates". Every event carries that image and the
losses *of that image*, so a frame and its row in losses.csv always describe the same pixels.
The loss and gradient of state k are computed once and reused by the optimiser's update, so
reporting costs no extra forward pass (only the very last state needs one).

Several runs of one image size can share the loop (`optimize_batch`, one Lane each): their
pixels go through the network as one batch, each with its own optimiser and callbacks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from nst_cli.core.lbfgs import ProjectedLBFGS
from nst_cli.core.losses.total import WeightedSum
from nst_cli.core.losses.values import Losses, LossTerms, first_non_finite
from nst_cli.core.schedule import Stage
from nst_cli.core.tiles import Forward, TileProgress, Tiler
from nst_cli.errors import CheckpointError, NonFiniteLossError, NSTError


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
    def saved(self) -> torch.Tensor:
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
    #: Preparing each scale (its features and the loss's targets), between the timed steps.
    scale_setup_seconds: float = 0.0
    #: Why this run stopped early, in a batch (optimize_batch); `optimize` raises it.
    error: NSTError | None = None
    #: The optimiser's state_dict at the end, for the next scale (lbfgs.carry_history).
    optimizer_state: dict[str, Any] | None = field(default=None, repr=False)


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
) -> ProjectedLBFGS | torch.optim.Optimizer:
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


@dataclass
class Lane:
    """One run in a loop that may hold several (`optimize_batch`): its start image, loss,
    optimiser settings and callbacks. Lanes share the network's forward and backward pass,
    as one batch, and nothing else: each keeps its own L-BFGS history and step size, so it
    follows the path it would alone."""

    image: torch.Tensor
    loss_fn: WeightedSum
    optimizer_name: str = "lbfgs"
    lr: float = 1.0
    callbacks: Sequence[Callback] = ()
    optimizer_state: Mapping[str, Any] | None = None
    history_size: int = 20
    trust_region: float | None = 0.05
    compact_history: bool = False
    precondition: str = "none"
    #: An exponential moving average of the iterates with this decay (0: none) ...
    average: float = 0.0
    #: ... continued from this image on resume.
    average_state: torch.Tensor | None = None
    #: Tiles of about this many px for each evaluation (an image too large for one pass,
    #: core.tiles), or None: the whole image in one pass. A tiled lane runs on its own,
    #: not in a batch.
    tile: int | None = None
    #: Told of each tile of a tiled step (the progress display's "tile 3/12").
    tile_progress: TileProgress | None = None


def lane_layers(lanes: Sequence[Lane]) -> list[str]:
    """Every layer a batched forward pass must return: each lane's, each once."""
    return list(dict.fromkeys(name for lane in lanes for name in lane.loss_fn.layers))


class _LaneInLoop:
    """A lane while the loop runs: its pixels, optimiser, average and unread losses."""

    def __init__(self, lane: Lane, step: int, forward: Forward) -> None:
        self.lane = lane
        size = lane.image.shape[-2:]
        layers = lane.loss_fn.layers
        self.tiler = (
            Tiler.plan(forward, size, lane.tile, layers, lane.tile_progress)
            if lane.tile is not None
            else None
        )
        self.pixels = (
            lane.image.detach().clone(memory_format=torch.contiguous_format).requires_grad_(True)
        )
        self.optimizer = make_optimizer(
            lane.optimizer_name, [self.pixels], lane.lr, lane.history_size, lane.trust_region,
            lane.compact_history, lane.precondition,
        )  # fmt: skip
        if lane.optimizer_state is not None:
            try:
                self.optimizer.load_state_dict(dict(lane.optimizer_state))
            except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
                raise CheckpointError(
                    f"the checkpoint's optimiser state does not load ({type(exc).__name__}: "
                    f"{str(exc)[:80]}); not a valid nst checkpoint: delete it to start over"
                ) from None
            # Consumed: the optimiser now holds the pairs, and frees each as newer ones
            # replace it (a lane still holding them all would double the history's memory).
            lane.optimizer_state = None
        self.ema: torch.Tensor | None = None
        if lane.average > 0:
            start = lane.average_state if lane.average_state is not None else self.pixels
            self.ema = start.detach().clone()
        self.losses: Losses | None = None
        self.unchecked: list[tuple[int, Losses]] = []
        #: The loss of the current pixels, already computed, for the optimiser's closure.
        self.cached: list[torch.Tensor] = []
        # Where the lane stands until it takes a step: a resumed run whose checkpoint is
        # already past this scale's end (written under another split) goes on from there.
        self.step = step
        self.error: NSTError | None = None

    def update(self, closure: Callable[[], torch.Tensor]) -> None:
        """One optimiser step from the current pixels."""
        self.optimizer.step(closure)  # type: ignore[arg-type]  # LBFGS and Adam accept a tensor
        self.cached.clear()
        if not isinstance(self.optimizer, ProjectedLBFGS):
            with torch.no_grad():
                # Adam: projected gradient descent, pixels back into the displayable range.
                # (Projected L-BFGS keeps them in range itself, and records the real step.)
                self.pixels.clamp_(0.0, 1.0)
        if self.ema is not None:
            self.ema.mul_(self.lane.average).add_(self.pixels.detach(), alpha=1 - self.lane.average)

    def result(self, interrupted: bool, seconds: float, start_step: int) -> OptimizeResult:
        return OptimizeResult(
            image=self.ema if self.ema is not None else self.pixels.detach(),
            losses=dict(self.losses) if self.losses is not None else {},
            step=self.step,
            interrupted=interrupted,
            seconds=seconds,
            steps_run=self.step - start_step,
            error=self.error,
            optimizer_state=self.optimizer.state_dict(),
        )


def _evaluate(
    running: Sequence[_LaneInLoop],
    extractor: Callable[[torch.Tensor, list[str]], dict[str, torch.Tensor]],
    layers: list[str],
    backward: bool = True,
) -> list[LossTerms]:
    """Every lane's losses from one forward pass over their pixels stacked as a batch, and
    (with `backward`) their gradients from one backward pass: the lanes' losses are summed,
    and each lane's pixels only reach its own term. A tiled lane runs alone, in its tiles."""
    if any(r.tiler is not None for r in running):
        return [_evaluate_alone(r, extractor, layers, backward) for r in running]
    if len(running) == 1:
        features = extractor(running[0].pixels, layers)
        terms = [running[0].lane.loss_fn(features, running[0].pixels)]
    else:
        features = extractor(torch.cat([r.pixels for r in running]), layers)
        terms = [
            r.lane.loss_fn({k: v[i : i + 1] for k, v in features.items()}, r.pixels)
            for i, r in enumerate(running)
        ]
    if backward:
        for r in running:
            r.optimizer.zero_grad(set_to_none=True)
        total = terms[0].total if len(terms) == 1 else torch.stack([t.total for t in terms]).sum()
        total.backward()
    return terms


def _evaluate_alone(
    running: _LaneInLoop,
    extractor: Callable[[torch.Tensor, list[str]], dict[str, torch.Tensor]],
    layers: list[str],
    backward: bool,
) -> LossTerms:
    """One lane's loss (and gradient), in tiles if it has a tiler."""
    if running.tiler is None:
        return _evaluate([running], extractor, layers, backward)[0]
    if backward:
        running.optimizer.zero_grad(set_to_none=True)
    return running.tiler.evaluate(running.pixels, running.lane.loss_fn, backward)


def optimize_batch(
    lanes: Sequence[Lane],
    extractor: Callable[[torch.Tensor, list[str]], dict[str, torch.Tensor]],
    steps: int,
    *,
    start_step: int = 0,
    should_stop: Callable[[], bool] = lambda: False,
    stage: Stage | None = None,
    report_last: bool = True,
    total_steps: int | None = None,
    elapsed_offset: float = 0.0,
    check_every: int = 1,
) -> list[OptimizeResult]:
    """`optimize` for several runs of one image size at once (see Lane), all on one step
    schedule: one forward and backward pass per step serves them all. A lane whose loss
    turns non-finite, or whose callback fails, stops with that error in its result (the
    others go on); Ctrl-C (`should_stop`) stops them all at the same step."""
    running = [_LaneInLoop(lane, start_step, extractor) for lane in lanes]
    layers = lane_layers(lanes)
    started = time.perf_counter()
    step = start_step
    interrupted = False
    while True:
        active = [r for r in running if r.error is None]
        if not active or (step >= steps and not report_last):
            break
        is_last = step >= steps
        if is_last:
            with torch.no_grad():
                terms = _evaluate(active, extractor, layers, backward=False)
                back = [
                    i for i, r in enumerate(active) if _keep_better_last_point(r, terms[i].total)
                ]
                if back:
                    again = _evaluate([active[i] for i in back], extractor, layers, backward=False)
                    for i, lane_terms in zip(back, again, strict=True):
                        terms[i] = lane_terms
        else:
            terms = _evaluate(active, extractor, layers)
        stop = not is_last and should_stop()
        check = is_last or stop or step % check_every == 0
        for r, lane_terms in zip(active, terms, strict=True):
            r.step, r.losses = step, lane_terms.lazy()
            r.unchecked.append((step, r.losses))
            try:
                if check:
                    _check_finite(r.unchecked)  # the device sync point: one per check_every
                    r.unchecked = []
                event = StepEvent(
                    step=step,
                    total_steps=total_steps or steps,
                    losses=r.losses,
                    image=r.pixels.detach(),
                    elapsed=elapsed_offset + time.perf_counter() - started,
                    is_final=is_last or stop,
                    optimizer_state=r.optimizer.state_dict,
                    stage=stage,
                    average=r.ema,
                )
                for callback in r.lane.callbacks:
                    callback(event)
            except NSTError as exc:
                r.error = exc
            else:
                r.cached.append(lane_terms.total)
        if is_last or stop:
            interrupted = stop
            break
        for r in active:
            if r.error is None:
                r.update(_closure(r, extractor))
                r.step = step + 1
        step += 1
    seconds = time.perf_counter() - started
    return [r.result(interrupted, seconds, start_step) for r in running]


def _keep_better_last_point(running: _LaneInLoop, total: torch.Tensor) -> bool:
    """At a run's last step, put back the point projected L-BFGS stands on if the one its
    last step reached is worse: the step that would undo that overshoot never comes, and the
    result would be an image worse than one the run already had. (Where its last steps
    overshot every few steps, J at 448 px, the last point was 0.4% above the one before.)
    One value read back, once per run."""
    if not isinstance(running.optimizer, ProjectedLBFGS):
        return False
    state = running.optimizer.state.get(running.pixels, {})
    if "x" not in state or not bool(total > state["loss"]):
        return False
    running.pixels.copy_(state["x"].view_as(running.pixels))  # (under no_grad)
    return True


def _closure(
    running: _LaneInLoop,
    extractor: Callable[[torch.Tensor, list[str]], dict[str, torch.Tensor]],
) -> Callable[[], torch.Tensor]:
    """The optimiser's closure: its first call reuses the loss and gradient computed for the
    report; any further call (none for Adam or line-search-free L-BFGS) evaluates this lane
    alone."""

    def closure() -> torch.Tensor:
        if running.cached:
            return running.cached.pop()
        return _evaluate([running], extractor, running.lane.loss_fn.layers)[0].total

    return closure
