"""Speed of the optimisation loop: it/s (and peak GPU memory) per resolution and optimiser.

Not a test: run it by hand on the machine you care about, e.g.
    python benchmarks/bench_stylize.py --device cpu --resolutions 128,256 --steps 20
    python benchmarks/bench_stylize.py --device cuda --resolutions 512,1024 --steps 100
It stylises the bundled samples into a temporary folder and prints one row per setting.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from nst_cli import stylize
from nst_cli.config.resolve import resolve_config
from nst_cli.run.cache import ModelCache

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--resolutions", default="128,256")
    parser.add_argument("--optimizers", default="lbfgs,adam")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    cache = ModelCache()  # the network is loaded once, as in a sweep
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print(
        f"{'optimizer':<10}{'resolution':>11}{'size':>11}{'it/s':>8}{'setup s':>9}{'peak MiB':>10}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for optimizer in args.optimizers.split(","):
            for resolution in (int(r) for r in args.resolutions.split(",")):
                config = resolve_config(
                    None,
                    [f"optimizer.name={optimizer}", f"save_every={args.steps}"],
                    {
                        "content": str(SAMPLES / "car.png"),
                        "style": str(SAMPLES / "fluid.png"),
                        "resolution": resolution,
                        "steps": args.steps,
                        "device": args.device,
                        "output": f"{tmp}/{optimizer}_{resolution}",
                    },
                )
                if torch.cuda.is_available():
                    torch.cuda.reset_peak_memory_stats()
                started = time.perf_counter()
                result = stylize(config, cache=cache)
                peak = (
                    torch.cuda.max_memory_allocated() / 2**20
                    if result.device.startswith("cuda")
                    else float("nan")
                )
                size = "×".join(str(s) for s in _size(result.final_image))
                print(
                    f"{optimizer:<10}{resolution:>11}{size:>11}{result.iterations_per_second:>8.2f}"
                    f"{result.setup_seconds:>9.1f}{peak:>10.0f}  ({time.perf_counter() - started:.1f} s)"
                )


def _size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        return image.size


if __name__ == "__main__":
    main()
