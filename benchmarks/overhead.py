"""What a step of `nst stylize` costs beyond the forward and backward pass it cannot avoid.

Not a test: run it by hand on the machine you report, e.g.
    python benchmarks/overhead.py                      # 256 px, 100 steps, 3 repeats
    python benchmarks/overhead.py --size 448 --steps 40 --set optimizer.precondition=none
Each repeat is an nst run minimising compare.py's J on one scale, at the default save_every
(so frames, the loss log and checkpoints are included). Between every two of its steps the
benchmark runs J's floor once (compare.j_objective: one forward and backward pass with nst's
Grams) on the run's own network, at its precision, and takes that pass's time out of the
step it interrupted. Floor and step are so measured in the same seconds: on a shared 2-core
machine single floor measurements move by ±5-30% from one minute to the next, which a floor
measured after the run (as this script did before) mixed into the result.

Per step, from step 10 to the last (setup and the first steps left out):
    step     wall time between nst's forward passes, less the floor pass put in between
    pass     nst's own forward and backward pass with its loss terms
    update   projected L-BFGS's update (two-loop recursion, pyramid, projection, trust
             region), timed in place; its closure hands back the loss already computed
    rest     step - pass - update: callbacks, progress, frames, loss log, checkpoints
The overhead is mean step / mean floor - 1 (the means include the frames and checkpoints
written every save_every steps); the steady one, the median of step / floor over the steps.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
from compare import J_SETTINGS, j_objective  # noqa: E402

from nst_cli import stylize
from nst_cli.config.resolve import resolve_config
from nst_cli.core import (
    lbfgs,
    optimize,  # noqa: E402
)

ROOT = Path(__file__).resolve().parent.parent


class Probe:
    """Times an nst run's passes and updates, and runs J's floor between its steps."""

    def __init__(self) -> None:
        self.starts: list[float] = []  # when each forward pass began: one per step
        self.passes: list[float] = []
        self.updates: list[float] = []
        self.floors: list[float] = []  # the floor run after step k's update
        self.objective: Any = None
        evaluate, step = optimize._evaluate, lbfgs.ProjectedLBFGS.step

        def timed_evaluate(running, extractor, layers, backward=True):  # type: ignore[no-untyped-def]
            started = time.perf_counter()
            if backward:
                self.starts.append(started)
            result = evaluate(running, extractor, layers, backward)
            if backward:
                self.passes.append(time.perf_counter() - started)
            if self.objective is None:
                self.objective = j_objective(extractor, running[0].pixels.detach().clone())
            return result

        def timed_step(optimizer: lbfgs.ProjectedLBFGS, closure):  # type: ignore[no-untyped-def]
            started = time.perf_counter()
            result = step(optimizer, closure)
            self.updates.append(time.perf_counter() - started)
            pixels = optimizer.param_groups[0]["params"][0].detach().clone().requires_grad_(True)
            started = time.perf_counter()
            self.objective(pixels).backward()
            self.floors.append(time.perf_counter() - started)
            return result

        optimize._evaluate = timed_evaluate  # type: ignore[assignment]
        lbfgs.ProjectedLBFGS.step = timed_step  # type: ignore[method-assign]

    def reset(self) -> None:
        for times in (self.starts, self.passes, self.updates, self.floors):
            times.clear()
        self.objective = None

    def summary(self, first: int) -> dict[str, float]:
        """Means per step from step `first` on (seconds), and the steady overhead."""
        last = len(self.starts) - 1  # the last step's wall ends at the next pass's start
        steps = [self.starts[k + 1] - self.starts[k] - self.floors[k] for k in range(first, last)]
        floors = self.floors[first:last]
        mean = statistics.fmean
        return {
            "step": mean(steps),
            "floor": mean(floors),
            "pass": mean(self.passes[first:last]),
            "update": mean(self.updates[first:last]),
            "steady": statistics.median(s / f for s, f in zip(steps, floors, strict=True)) - 1,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--content", type=Path, default=ROOT / "samples" / "car.png")
    parser.add_argument("--style", type=Path, default=ROOT / "samples" / "fluid.png")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], help="extra nst setting")
    args = parser.parse_args()
    probe = Probe()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            # One scale: every step at the size whose floor it is compared with.
            sets = [*J_SETTINGS, f"scales=[{args.size}]", f"steps={args.steps}"]
            sets += [f"resolution={args.size}", *args.set]
            overrides = {
                "content": str(args.content),
                "style": str(args.style),
                "output": str(Path(tmp) / f"run{repeat}"),
                "device": "cpu",
            }
            probe.reset()
            stylize(resolve_config(None, sets, overrides))
            row = probe.summary(first=10)
            rows.append(row)
            print(
                f"repeat {repeat + 1}: step {row['step'] * 1e3:.1f} ms, J floor "
                f"{row['floor'] * 1e3:.1f} ms (+{100 * (row['step'] / row['floor'] - 1):.1f}%, "
                f"steady {100 * row['steady']:+.1f}%); nst's pass {row['pass'] * 1e3:.1f} ms, "
                f"update {row['update'] * 1e3:.1f} ms, rest "
                f"{(row['step'] - row['pass'] - row['update']) * 1e3:.1f} ms"
            )
    median = {key: statistics.median(row[key] for row in rows) for key in rows[0]}
    floor = median["floor"]

    def share(key: str) -> str:
        return f"{100 * median[key] / floor:.1f}%"

    rest = median["step"] - median["pass"] - median["update"]
    print(
        f"{args.size} px, {args.steps} steps, {torch.get_num_threads()} threads, medians of "
        f"{len(rows)} runs: step {median['step'] * 1e3:.1f} ms, J floor {floor * 1e3:.1f} ms: "
        f"overhead {100 * (median['step'] / floor - 1):+.1f}% (steady "
        f"{100 * median['steady']:+.1f}%); nst's pass {100 * (median['pass'] / floor - 1):+.1f}%"
        f" over the floor, the L-BFGS update {share('update')} of it, the rest "
        f"{100 * rest / floor:.1f}%"
    )


if __name__ == "__main__":
    main()
