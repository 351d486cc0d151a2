"""What a step of `nst stylize` costs beyond the forward and backward pass it cannot avoid.

Not a test: run it by hand on the machine you report, e.g.
    python benchmarks/overhead.py                      # 256 px, 100 steps, 3 repeats
    python benchmarks/overhead.py --size 448 --steps 40 --set optimizer.precondition=none
Each repeat, in this one process: an nst run minimising compare.py's J (default save_every,
so frames, the loss log and checkpoints are included), then J's floor (one forward+backward
with nst's Grams, compare.bare_step_seconds, at the precision the run used) right after it. The marginal step is taken from
losses.csv between step 10 and the last, so setup and the first steps are left out; projected
L-BFGS's own update (two-loop recursion, pyramid, projection, trust region) is timed in place
by wrapping its step, whose closure returns the loss already computed. Single floor
measurements move by ±5% on a shared 2-core machine, so the summary compares the median step
with the median floor of all repeats; run old and new code alternately to compare them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
from compare import J_SETTINGS, bare_step_seconds  # noqa: E402

from nst_cli import lbfgs, resolve_config, stylize  # noqa: E402
from nst_cli.devices import resolve_precision  # noqa: E402
from nst_cli.outputs import read_loss_rows  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _timed_updates() -> list[float]:
    """Wrap ProjectedLBFGS.step so each call's duration is recorded (the closure inside it
    only hands back the loss the loop already computed)."""
    seconds: list[float] = []
    step = lbfgs.ProjectedLBFGS.step

    def timed(self: lbfgs.ProjectedLBFGS, closure):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        result = step(self, closure)
        seconds.append(time.perf_counter() - started)
        return result

    lbfgs.ProjectedLBFGS.step = timed  # type: ignore[method-assign]
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--content", type=Path, default=ROOT / "samples" / "car.png")
    parser.add_argument("--style", type=Path, default=ROOT / "samples" / "fluid.png")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], help="extra nst setting")
    args = parser.parse_args()
    updates = _timed_updates()
    floor_args = argparse.Namespace(content=args.content, size=args.size, device="cpu")
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
            updates.clear()
            config = resolve_config(None, sets, overrides)
            stylize(config)
            elapsed = {
                int(float(r["step"])): float(r["elapsed_s"])
                for r in read_loss_rows(Path(tmp) / f"run{repeat}" / "losses.csv")
            }
            step = (elapsed[args.steps] - elapsed[10]) / (args.steps - 10)
            update = statistics.median(updates) if updates else float("nan")
            # The floor at the precision the run used (`auto`: bf16 on a CPU with AMX).
            precision = resolve_precision(torch.device("cpu"), config.precision)
            _, floor = bare_step_seconds(floor_args, "bf16" if precision == "bf16" else "fp32", 7)
            rows.append((step, floor, update))
            print(
                f"repeat {repeat + 1}: step {step * 1e3:.1f} ms, J floor {floor * 1e3:.1f} ms "
                f"(+{100 * (step / floor - 1):.1f}%), L-BFGS update {update * 1e3:.1f} ms "
                f"({100 * update / floor:.1f}% of the floor)"
            )
    # The floor is a constant of the machine, but one measurement of it moves by ±5% here:
    # the pooled median of all of them is the figure to compare each step with.
    floor = statistics.median(f for _, f, _ in rows)
    step = statistics.median(s for s, _, _ in rows)
    update = statistics.median(u for _, _, u in rows)
    print(
        f"{args.size} px, {args.steps} steps, medians of {len(rows)}: step {step * 1e3:.1f} ms, "
        f"J floor {floor * 1e3:.1f} ms: overhead {100 * (step / floor - 1):+.1f}%, of which "
        f"the L-BFGS update {100 * update / floor:.1f}%"
    )


if __name__ == "__main__":
    main()
