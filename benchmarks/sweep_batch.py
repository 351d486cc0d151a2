"""Batched sweeps: the same sweep run one by one (`--batch 1`) and as batches (`--batch N`),
one after the other in this process, with the wall time of each and how far their results
lie apart.

Not a test: run it by hand on the machine you care about, e.g.
    python benchmarks/sweep_batch.py --device cpu --resolution 256 --steps 40
    python benchmarks/sweep_batch.py --device cuda --resolution 512 --steps 200 --batch 4
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nst_cli.sweep.execute import run_sweep
from nst_cli.sweep.grid import parse_param
from nst_cli.sweep.plan import plan_sweep

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def _sweep(folder: Path, args: argparse.Namespace, batch: int) -> tuple[float, list[dict]]:
    overrides = {
        "content": str(SAMPLES / args.content),
        "style": str(SAMPLES / args.style),
        "resolution": args.resolution,
        "steps": args.steps,
        "device": args.device,
        "save_every": args.steps,
    }
    root, runs = plan_sweep(
        None, [parse_param(f"weights.style={args.weights}")], (), overrides, folder
    )
    started = time.perf_counter()
    run_sweep(root, runs, batch=batch)
    seconds = time.perf_counter() - started
    with (root / "summary.csv").open() as fh:
        return seconds, list(csv.DictReader(fh))


def _pixels(path: str) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float64) / 255


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--weights", default="0.5,1,2,4", help="style weights swept")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--content", default="car.png")
    parser.add_argument("--style", default="fluid.png")
    args = parser.parse_args()
    device = (
        args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    )
    where = (
        torch.cuda.get_device_name()
        if device.startswith("cuda")
        else f"{torch.get_num_threads()} CPU threads"
    )
    print(
        f"torch {torch.__version__}, {where}; {args.content} + {args.style}, {args.resolution} px, {args.steps} steps, weights.style={args.weights}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        # A first, unmeasured sweep loads the network and warms up the allocator.
        _sweep(Path(tmp) / "warm", argparse.Namespace(**{**vars(args), "steps": 2}), 1)
        alone_s, alone = _sweep(Path(tmp) / "alone", args, 1)
        batch_s, batched = _sweep(Path(tmp) / "batched", args, args.batch)
        print(f"one by one:   {alone_s:7.1f} s")
        print(f"batch of {args.batch}:   {batch_s:7.1f} s   speed-up {alone_s / batch_s:.2f}×")
        for one, other in zip(alone, batched, strict=True):
            difference = np.abs(_pixels(one["image"]) - _pixels(other["image"])).mean()
            change = float(other["total"]) / float(one["total"]) - 1
            print(
                f"  {one['run']:<20} total {float(one['total']):.4g} vs {float(other['total']):.4g}"
                f" ({change:+.2%}), mean pixel difference {difference * 255:.2f}/255"
            )


if __name__ == "__main__":
    main()
