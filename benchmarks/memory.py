"""Peak memory against resolution, with `memory: normal`, `memory: low` and in tiles.

Not a test: run it by hand on the machine you report, e.g.
    python benchmarks/memory.py --sizes 256,512,768 --steps 24
    python benchmarks/memory.py --modes normal,tiled --tile 256 --sizes 512,768,1024
    python benchmarks/memory.py --device cuda --sizes 512,1024,2048,4096
Mode `tiled` runs with `tile: --tile` (normal and low run untiled, `tile: off`); where a
size runs both tiled and untiled, the time per step of each is printed as a ratio, the
tiles' cost (the second pass, the halo).
Each run is its own process (`nst stylize`, one scale, L-BFGS; give --steps above the history
size, 20, or the history is not full and its memory not counted). CPU: peak RSS of
that process; CUDA: torch.cuda.max_memory_allocated of the run. A straight-line fit of peak
against pixels gives bytes per pixel, and from it the largest square image that fits in
8, 24 and 80 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUDGETS_GB = (8, 24, 80)

_WORKER = """
import json, sys, torch
from nst_cli import resolve_config, stylize
sets, output, device = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
if len(sys.argv) > 4:  # low-fp32: memory: low with the L-BFGS history in float32, as before
    import nst_cli.core.optimize as optimize
    make = optimize.make_optimizer
    optimize.make_optimizer = lambda *a, **k: make(*a[:5], compact_history=False)
config = resolve_config(None, sets, {"output": output, "device": device})
result = stylize(config, allow_large=True)
peak = torch.cuda.max_memory_allocated() if device.startswith("cuda") else None
print(json.dumps({"peak": peak, "seconds": result.seconds, "steps": result.steps_run}))
"""


def measure(
    size: int, mode: str, steps: int, device: str, out: Path, tile: int = 256
) -> dict[str, float]:
    memory = "low" if mode.startswith("low") else "normal"
    sets = [
        f"content={ROOT / 'samples' / 'car.png'}",
        f"style={ROOT / 'samples' / 'fluid.png'}",
        f"resolution={size}",
        f"scales=[{size}]",
        f"steps={steps}",
        f"save_every={steps}",
        f"memory={memory}",
        f"tile={tile if mode == 'tiled' else 'off'}",
    ]
    command = [sys.executable, "-c", _WORKER, json.dumps(sets), str(out), device]
    command += ["fp32-history"] if mode == "low-fp32" else []
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    stdout = process.stdout.read() if process.stdout else ""
    if os.waitstatus_to_exitcode(status):
        stderr = process.stderr.read() if process.stderr else ""
        raise RuntimeError(stderr.strip().splitlines()[-1] if stderr.strip() else "failed")
    data = json.loads(stdout.strip().splitlines()[-1])
    peak = data["peak"] if data["peak"] is not None else usage.ru_maxrss * 1024
    return {
        "peak_bytes": peak,
        "seconds_per_step": data["seconds"] / max(data["steps"], 1),
        "wall_s": time.perf_counter() - started,
    }


def _fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least squares peak = base + slope · pixels."""
    n = len(points)
    mx = sum(p for p, _ in points) / n
    my = sum(b for _, b in points) / n
    var = sum((p - mx) ** 2 for p, _ in points)
    slope = sum((p - mx) * (b - my) for p, b in points) / var if var else 0.0
    return my - slope * mx, slope


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,512,768")
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--modes",
        default="normal,low",
        help="normal, low, low-fp32 (low, float32 history), tiled (tile: --tile)",
    )
    parser.add_argument("--tile", type=int, default=256, help="the tile size of mode tiled")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes.split(","):
            rows = results.setdefault(mode, [])
            for size in sizes:
                row = measure(
                    size, mode, args.steps, args.device, Path(tmp) / f"{mode}_{size}", args.tile
                )
                # car.png is 768×512 (3:2): the long side is `size`.
                row["pixels"] = size * round(size * 2 / 3)
                row["size"] = size
                rows.append(row)
                print(
                    f"{mode:<7}{size:>6} px  peak {row['peak_bytes'] / 2**30:6.2f} GiB  "
                    f"{row['seconds_per_step']:.2f} s/step",
                    flush=True,
                )
    print(f"\n{args.device}: bytes per pixel, and the largest 3:2 image that fits")
    for mode, rows in results.items():
        if len({r["pixels"] for r in rows}) < 2:
            print(f"{mode:<7}one size: no line to fit (give --sizes two or more)")
            continue
        base, slope = _fit([(int(r["pixels"]), r["peak_bytes"]) for r in rows])
        fits = []
        for budget in BUDGETS_GB:
            pixels = max(budget * 2**30 - base, 0) / slope if slope > 0 else float("inf")
            long_side = int((pixels * 1.5) ** 0.5)
            fits.append(f"{budget} GB: {long_side} px")
        print(f"{mode:<7}{slope:8.0f} B/px + {base / 2**30:.2f} GiB   " + ", ".join(fits))
    if "tiled" in results and "normal" in results:
        print("\ntime per step, tiled / untiled (the same objective, side by side):")
        untiled = {r["size"]: r["seconds_per_step"] for r in results["normal"]}
        for row in results["tiled"]:
            if row["size"] in untiled:
                ratio = row["seconds_per_step"] / untiled[row["size"]]
                print(f"{int(row['size']):>6} px  {ratio:.2f}x")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
