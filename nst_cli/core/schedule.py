"""The coarse-to-fine schedule: which sizes a run passes through and how its steps are split between them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# --------------------------------------------------------------------------- schedule

#: Coarse-to-fine starts near this long side: below it VGG19's deepest style layers see
#: too few positions to carry a style's large structures.
AUTO_SCALE_START = 256
#: `scales: auto` runs a single scale up to this resolution.
AUTO_SCALE_SINGLE_MAX = 384
#: The share of a coarse-to-fine run's time that its last (full-size) scale gets.
FINAL_SCALE_TIME = 0.7
#: A step's cost grows as (long side)^STEP_COST_EXPONENT: pixels^0.85 rather than pixels, since
#: a small image uses the cores less well and a step has a fixed part (measured on a 2-core
#: CPU: a 384 px step costs 3.3× a 192 px one, a 1024 px step 10× a 256 px one).
STEP_COST_EXPONENT = 1.7
#: Preparing a scale (the painting's and the photo's features at its size, the loss's targets)
#: costs about this many of its steps; it runs between the scales, so the ETA counts it.
SCALE_SETUP_STEPS = 1.5


@dataclass(frozen=True)
class Stage:
    """One scale of a coarse-to-fine run: its long side and its global step range."""

    index: int
    count: int
    size: int
    start: int
    end: int
    #: (long side, steps) of every scale of the run, in order: what `work_until` weighs.
    scales: tuple[tuple[int, int], ...] = ()

    @property
    def is_last(self) -> bool:
        return self.index == self.count - 1

    def work_until(self, step: int) -> float:
        """The cost of the run up to `step`, in steps at this scale: each step weighed by its
        scale's cost (STEP_COST_EXPONENT), and each later scale's preparation counted once its
        first step is done (SCALE_SETUP_STEPS; the first scale's comes before any step). With
        the last scale taking 70% of the time, an ETA that counted steps alike would be ~3×
        short while the first scale runs. Steps alike where the run's scales are not known."""
        if not self.scales:
            return float(step)
        work, start = 0.0, 0
        for index, (size, count) in enumerate(self.scales):
            cost = (size / self.size) ** STEP_COST_EXPONENT
            done = min(max(step - start, 0), count)
            work += done * cost + (SCALE_SETUP_STEPS * cost if index and done else 0.0)
            start += count
        return work + max(step - start, 0)


#: Below this many steps a scale, coarse-to-fine does more harm than good: each scale gets a
#: step or two, and the picture comes out soft and without the painting's palette.
MIN_STEPS_PER_SCALE = 10


def auto_scales(resolution: int, steps: int | None = None) -> list[int]:
    """From ~256 px up to `resolution` in steps of about √2 (one scale up to 384 px); with
    `steps` (the run's total), at most one scale per MIN_STEPS_PER_SCALE steps, spread over
    the same range (`--resolution 1600 --steps 8` runs one scale, not seven)."""
    if resolution <= AUTO_SCALE_SINGLE_MAX:
        return [resolution]
    count = max(1, round(math.log(resolution / AUTO_SCALE_START, math.sqrt(2))))
    if steps is not None:
        count = min(count, steps // MIN_STEPS_PER_SCALE - 1)
        if count < 1:
            return [resolution]
    ratio = resolution / AUTO_SCALE_START
    sizes = [round(AUTO_SCALE_START * ratio ** (i / count)) for i in range(count)]
    return [*sizes, resolution]


def split_steps(total: int, sizes: Sequence[int]) -> list[int]:
    """Share `total` steps among scales so that the last scale gets FINAL_SCALE_TIME of the
    time and the coarser ones share the rest equally (each gets at least one step).

    A step costs about size² (pixels), so a scale's steps are ∝ its time share / size². The
    coarse scales, cheap per step, lay out the style's large structures in a few steps; the
    full size, started from their upsampled result, is where the picture is finished. Giving
    every scale the same time instead left the last scale 23 of 160 steps at 512 px, and
    its strokes soft: at the same time in all, this split lowered the evaluator's style
    error 11% and its content error 10% over five pairs (docs/defaults.md, How the defaults were
    chosen).
    """
    if len(sizes) == 1:
        return [total]
    if total < len(sizes):
        raise ValueError(f"steps: {total} is fewer than the {len(sizes)} scales {list(sizes)}")
    coarse = (1 - FINAL_SCALE_TIME) / (len(sizes) - 1)
    times = [coarse] * (len(sizes) - 1) + [FINAL_SCALE_TIME]
    shares = [time / size**2 for time, size in zip(times, sizes, strict=True)]
    exact = [total * share / sum(shares) for share in shares]
    counts = [max(1, math.floor(x)) for x in exact]
    # Hand the rounding remainder to the scales that lost the most to floor().
    by_loss = sorted(range(len(sizes)), key=lambda i: counts[i] - exact[i])
    for i in by_loss[: total - sum(counts)]:
        counts[i] += 1
    while sum(counts) > total:
        counts[counts.index(max(counts))] -= 1
    return counts
