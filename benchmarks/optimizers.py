"""How the pixel range is kept during L-BFGS: which variant gives the best *saved* image.

Not a test. Every variant minimises the same objective (nst's loss for the given settings)
from the same start with one loss evaluation per step, so equal steps are equal wall time;
what is compared is that objective on the saved 8-bit image, and the worst spike on the way.
    python benchmarks/optimizers.py                       # defaults, 64/128/256 px
    python benchmarks/optimizers.py --set loss.normalize=false --sizes 96 --steps 20
Variants:
    torch+clamp    torch.optim.LBFGS (no line search), pixels clamped after every step
    torch free     torch.optim.LBFGS, pixels left free, clamped only when saved
    projected      nst's ProjectedLBFGS: clipped steps recorded as taken, bad steps undone
    adam           Adam lr 0.02, clamped after every step
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from nst_cli.config.resolve import resolve_config
from nst_cli.core.devices import resolve_device, resolve_precision
from nst_cli.core.lbfgs import ProjectedLBFGS
from nst_cli.core.pixels import to_pil, to_tensor
from nst_cli.run.cache import ModelCache
from nst_cli.run.inputs import images_at, initial_image, load_inputs
from nst_cli.run.losses import build_loss

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
PAIRS = {
    "chelsea-fluid": ("chelsea.png", "fluid.png"),
    "astronaut-strokes": ("astronaut.png", "strokes.png"),
    "rocket-swirls": ("rocket.jpg", "swirls.png"),
}
VARIANTS = ("torch+clamp", "torch free", "projected", "adam")


def _optimizer(variant: str, pixels: torch.Tensor) -> torch.optim.Optimizer | ProjectedLBFGS:
    if variant.startswith("torch"):
        return torch.optim.LBFGS(
            [pixels], lr=1.0, max_iter=1, history_size=20, tolerance_grad=-1, tolerance_change=-1
        )
    if variant == "projected":
        return ProjectedLBFGS([pixels], lr=1.0, history_size=20)
    return torch.optim.Adam([pixels], lr=0.02)


def run(variant: str, loss_fn, extractor, start: torch.Tensor, steps: int) -> dict[str, float]:
    """Optimise from `start`; the objective of the saved 8-bit image and the worst spike."""
    pixels = start.clone().requires_grad_(True)
    optimizer = _optimizer(variant, pixels)
    layers = loss_fn.layers
    history: list[float] = []

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        total = loss_fn(extractor(pixels, layers), pixels).total
        total.backward()
        history.append(float(total.detach()))
        return total

    started = time.perf_counter()
    for _ in range(steps):
        optimizer.step(closure)  # type: ignore[arg-type]  # LBFGS and Adam accept a tensor
        if variant in ("torch+clamp", "adam"):
            with torch.no_grad():
                pixels.clamp_(0, 1)
    seconds = time.perf_counter() - started
    saved = to_tensor(to_pil(pixels.detach()))  # what the user gets: clamped, 8-bit
    with torch.no_grad():
        final = float(loss_fn(extractor(saved, layers), saved).total)
    return {
        "saved": final,
        "spike": max(b / a for a, b in zip(history, history[1:], strict=False)),
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,128,256")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--pairs", default="chelsea-fluid,astronaut-strokes")
    parser.add_argument("--set", action="append", default=[], help="config key=value")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    cache = ModelCache()
    device = resolve_device(args.device)
    print(f"objective: nst loss with {args.set or 'the defaults'}; {args.steps} steps each")
    print(f"{'pair':<20}{'px':>5}" + "".join(f"{v:>24}" for v in VARIANTS))
    for pair in args.pairs.split(","):
        content_file, style_file = (str(SAMPLES / n) for n in PAIRS[pair])
        for size in (int(s) for s in args.sizes.split(",")):
            config = resolve_config(
                None,
                [*args.set, f"scales=[{size}]"],
                {"content": content_file, "style": style_file, "resolution": size},
            )
            inputs = load_inputs(config)
            extractor = cache.extractor(
                config,
                [*config.layers.style, *config.layers.content],
                device,
                resolve_precision(device, config.precision),
            )
            content, style = (t.to(device) for t in images_at(config, inputs, size))
            loss_fn = build_loss(config, extractor, content, style, cache, size)
            start = initial_image(config, content, style)
            cells = []
            for variant in VARIANTS:
                r = run(variant, loss_fn, extractor, start, args.steps)
                cells.append(f"{r['saved']:>12.4g} (×{r['spike']:<7.3g})")
            print(f"{pair:<20}{size:>5}" + "".join(f"{c:>24}" for c in cells), flush=True)
    print("cells: objective of the saved 8-bit image (worst one-step rise of the loss)")


if __name__ == "__main__":
    main()
