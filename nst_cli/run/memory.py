"""How much memory a run needs, and how much the device has: a run that cannot fit is refused before it starts."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import torch

from nst_cli.config.models import Config
from nst_cli.core.pixels import (
    fit_long_side,
)
from nst_cli.errors import ConfigError

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from nst_cli.run.inputs import Inputs


#: Bytes per pixel of the image being optimised, by `memory` mode: VGG19 activations up to
#: relu5_1 kept for the backward pass (~560 floats per pixel) and their gradients, the L-BFGS
#: history (20 pairs: 480 B, 240 B in float16 with `low`) and a checkpoint's copy of its
#: newest pairs. Measured on CPU with the history full (benchmarks/memory.py, 24 steps,
#: 256–512 px): 2995 B/px (normal) and 2278 B/px (low), plus ~17% margin.
RUN_BYTES_PER_PIXEL = {"normal": 3_500, "low": 2_700}
#: Bytes per pixel of the style image (one forward pass without gradients).
STYLE_BYTES_PER_PIXEL = 1_000
#: torch, the network and the process itself (0.85 GiB measured).
BASE_BYTES = 1 << 30


def estimate_run_bytes(config: Config, inputs: Inputs, memory: str | None = None) -> int:
    """Peak memory of the run's largest scale (with `memory`, default the config's mode),
    before anything is allocated."""
    width, height = fit_long_side(inputs.content.size, config.resolution)
    styles = [style_size(config, inputs, config.resolution, i) for i in range(len(inputs.styles))]
    return (
        BASE_BYTES
        + width * height * RUN_BYTES_PER_PIXEL[memory or config.memory]
        + max(w * h for w, h in styles) * STYLE_BYTES_PER_PIXEL  # one style pass at a time
    )


def check_memory(config: Config, inputs: Inputs) -> None:
    """Refuse a run that cannot fit in this machine's (or GPU's) memory, with the numbers
    (and `memory: low` as the way on, where it would fit)."""
    needed = estimate_run_bytes(config, inputs)
    available, where = memory_limit(config.device)
    if needed > available:
        low = estimate_run_bytes(config, inputs, "low")
        fits_low = config.memory != "low" and low <= available
        largest = largest_resolution(config, inputs, available)
        raise ConfigError(
            f"resolution {config.resolution} (style_scale {config.style_scale}) needs about "
            f"{needed / 2**30:.1f} GiB, more than the {available / 2**30:.1f} GiB of {where}; "
            + (f"set memory: low (about {low / 2**30:.1f} GiB, slower), " if fits_low else "")
            + (
                f"lower resolution (at most about {largest} px fits)"
                if largest
                else "lower resolution"
            )
            + " or style_scale, or pass --allow-large to try anyway"
        )


def largest_resolution(config: Config, inputs: Inputs, available: int) -> int | None:
    """The largest long side (in steps of 16 px) whose run fits in `available` bytes with the
    config's other settings; None if not even 16 px does."""
    low, high = 0, config.resolution // 16
    while low < high:  # the estimate grows with the resolution: bisect on it
        middle = (low + high + 1) // 2
        trial = config.model_copy(update={"resolution": middle * 16})
        if estimate_run_bytes(trial, inputs) <= available:
            low = middle
        else:
            high = middle - 1
    return low * 16 or None


def memory_limit(device: str) -> tuple[int, str]:
    """How much memory a run may plan on: 80% of the GPU's or of the machine's RAM."""
    if device.startswith("cuda") and torch.cuda.is_available():
        index = int(device.partition(":")[2] or 0) if ":" in device else 0
        total = torch.cuda.get_device_properties(index).total_memory
        return int(0.8 * total), f"GPU {index}"
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 2**62, "this machine"
    return int(0.8 * total), "this machine's memory"


def style_size(config: Config, inputs: Inputs, size: int, index: int = 0) -> tuple[int, int]:
    if config.style_resize == "content_shape":
        return fit_long_side(inputs.content.size, size)
    scale = config.style_scale_of(index)
    return fit_long_side(inputs.styles[index].size, max(1, round(size * scale)))
