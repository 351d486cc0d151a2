"""How much memory a run needs, and how much the device has: a run that cannot fit is refused before it starts."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from nst_cli.config.models import Config
from nst_cli.core.devices import resolve_device, resolve_precision
from nst_cli.core.pixels import fit_long_side
from nst_cli.core.tiles import halo
from nst_cli.errors import ConfigError, DeviceError

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from nst_cli.run.inputs import Inputs


#: Bytes per pixel of the image being optimised, by `memory` mode, with the network in
#: float32 (fp32, tf32) and in bfloat16: VGG19's activations up to relu5_1 kept for the
#: backward pass and their gradients, the L-BFGS history (20 pairs: 480 B, 240 B in float16
#: with `low`) and a checkpoint's copy of its newest pairs. Measured with the history full
#: (benchmarks/memory.py, 24 steps, 512-1024 px): float32 on a 2-core EPYC 4,300 B/px
#: (normal); bfloat16 on an AMX Xeon 2,995 (normal) and 2,278 (low); plus ~15% margin.
RUN_BYTES_PER_PIXEL = {"normal": 5_000, "low": 3_900}
RUN_BYTES_PER_PIXEL_BF16 = {"normal": 3_500, "low": 2_700}
#: The part of RUN_BYTES_PER_PIXEL that is L-BFGS's history (and a checkpoint's copy of it).
HISTORY_BYTES_PER_PIXEL = {"normal": 600, "low": 300}
#: Bytes per pixel of the style image (one forward pass without gradients).
STYLE_BYTES_PER_PIXEL = 1_000
#: torch, the network and the process itself (0.85 GiB measured).
BASE_BYTES = 1 << 30


#: Bytes per image pixel that stay with the image when the network runs in tiles: the
#: pixels and their gradient, L-BFGS's vectors and its 20 pairs (kept in float16 when tiled:
#: 240 B), the content target at relu4_2 (32 B) and a frame's copy (benchmarks/memory.py).
TILED_BYTES_PER_PIXEL = 600
#: Tile sizes `tile: auto` tries, largest first (a larger tile spends less on its halo).
AUTO_TILES = (2048, 1536, 1024, 768, 512, 384, 256, 128)


@dataclass(frozen=True)
class MemoryPlan:
    """How a scale of a run will use memory: its tile size (None: untiled) and its peak."""

    tile: int | None
    bytes: int


def estimate_run_bytes(config: Config, inputs: Inputs, memory: str | None = None) -> int:
    """Peak memory of the run's largest scale (with `memory`, default the config's mode),
    tiled as `tile` says, before anything is allocated."""
    return plan_memory(config, inputs, memory=memory).bytes


def plan_memory(
    config: Config,
    inputs: Inputs,
    size: int | None = None,
    memory: str | None = None,
    available: int | None = None,
) -> MemoryPlan:
    """The tile size and peak memory of the scale whose long side is `size` (default the
    run's resolution). `tile: auto` tiles only when the untiled run would not fit in
    `available` (default: the device's), with the largest tile that fits."""
    size = size or config.resolution
    memory = memory or config.memory
    width, height = fit_long_side(inputs.content.size, size)
    styles = [style_size(config, inputs, size, i) for i in range(len(inputs.styles))]
    style_width, style_height = max(styles, key=lambda s: s[0] * s[1])
    margin = halo(config.network_layers)
    per_pixel = _run_bytes_per_pixel(config)[memory]

    def peak(tile: int | None) -> int:
        if tile is None or tile >= max(width, height):
            return (
                BASE_BYTES
                + width * height * per_pixel
                + style_width * style_height * STYLE_BYTES_PER_PIXEL  # one style at a time
            )
        side = tile + 2 * margin
        tile_pixels = min(side, width) * min(side, height)
        style_tile = min(side, style_width) * min(side, style_height)
        active = per_pixel - HISTORY_BYTES_PER_PIXEL[memory]
        return (
            BASE_BYTES
            + width * height * TILED_BYTES_PER_PIXEL
            + style_width * style_height * 12  # the style image itself
            + max(tile_pixels * active, style_tile * STYLE_BYTES_PER_PIXEL)
        )

    if config.tile == "off":
        return MemoryPlan(None, peak(None))
    if isinstance(config.tile, int):
        tile = config.tile if config.tile < max(width, height) else None
        return MemoryPlan(tile, peak(tile))
    if available is None:
        available = memory_limit(config.device, config.max_memory)[0]
    if peak(None) <= available:
        return MemoryPlan(None, peak(None))
    tiles = [t for t in AUTO_TILES if t < max(width, height)] or [AUTO_TILES[-1]]
    fitting = next((t for t in tiles if peak(t) <= available), tiles[-1])
    return MemoryPlan(fitting, peak(fitting))


def _run_bytes_per_pixel(config: Config) -> dict[str, int]:
    """RUN_BYTES_PER_PIXEL for the precision the run will have on its device."""
    try:
        precision = resolve_precision(resolve_device(config.device), config.precision)
    except (ConfigError, DeviceError):  # a device not here: refused elsewhere, in its words
        precision = "fp32"
    return RUN_BYTES_PER_PIXEL_BF16 if precision == "bf16" else RUN_BYTES_PER_PIXEL


def check_memory(config: Config, inputs: Inputs) -> None:
    """Refuse a run that cannot fit in this machine's (or GPU's) memory even in tiles, with
    the numbers (and `memory: low` as the way on, where it would fit)."""
    available, where = memory_limit(config.device, config.max_memory)
    plan = plan_memory(config, inputs, available=available)
    if plan.bytes > available:
        low = plan_memory(config, inputs, memory="low", available=available).bytes
        fits_low = config.memory != "low" and low <= available
        largest = largest_resolution(config, inputs, available)
        tiled = f" in tiles of {plan.tile} px" if plan.tile else ""
        raise ConfigError(
            f"resolution {config.resolution} (style_scale {config.style_scale}) needs about "
            f"{plan.bytes / 2**30:.1f} GiB{tiled}, more than the {available / 2**30:.1f} GiB "
            f"of {where}; "
            + (f"set memory: low (about {low / 2**30:.1f} GiB, slower), " if fits_low else "")
            + ("set tile: auto, " if config.tile == "off" else "")
            + (
                f"lower resolution (at most about {largest} px fits)"
                if largest
                else "lower resolution"
            )
            + " or style_scale, or pass --allow-large to try anyway"
        )
    if plan.tile is not None:
        log.info(
            "resolution %d runs in tiles of %d px (about %.1f GiB of the %.1f GiB of %s)",
            config.resolution, plan.tile, plan.bytes / 2**30, available / 2**30, where,
        )  # fmt: skip


def largest_resolution(config: Config, inputs: Inputs, available: int) -> int | None:
    """The largest long side (in steps of 16 px) whose run fits in `available` bytes with the
    config's other settings; None if not even 16 px does."""
    low, high = 0, config.resolution // 16
    while low < high:  # the estimate grows with the resolution: bisect on it
        middle = (low + high + 1) // 2
        trial = config.model_copy(update={"resolution": middle * 16})
        if plan_memory(trial, inputs, available=available).bytes <= available:
            low = middle
        else:
            high = middle - 1
    return low * 16 or None


def memory_limit(device: str, max_memory: float | None = None) -> tuple[int, str]:
    """How much memory a run may plan on: 80% of the GPU's, or on the CPU 80% of the least of
    the machine's RAM, the container's limit (cgroup memory.max, less what it already uses)
    and the process's address-space limit (`ulimit -v`, less what is already mapped: the
    CUDA torch wheel alone maps gigabytes). `max_memory` (GiB, the config key) caps it."""
    room, where = _device_limit(device)
    if max_memory is not None and max_memory * 2**30 < room:
        return int(max_memory * 2**30), f"max_memory ({max_memory:g} GiB)"
    return room, where


def _device_limit(device: str) -> tuple[int, str]:
    if device.startswith("cuda") and torch.cuda.is_available():
        index = int(device.partition(":")[2] or 0) if ":" in device else 0
        total = torch.cuda.get_device_properties(index).total_memory
        return int(0.8 * total), f"GPU {index}"
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 2**62, "this machine"
    limits = [(total, "this machine's memory")]
    container = _cgroup_room()
    if container is not None:
        limits.append((container, "this container's memory limit"))
    address_space = _address_space_room()
    if address_space is not None:
        limits.append((address_space, "this process's address-space limit (ulimit -v)"))
    room, where = min(limits)
    return int(0.8 * room), where


def _cgroup_room() -> int | None:
    """Bytes the process's cgroup may still allocate (v2 memory.max, or v1's limit), or None."""
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        try:
            limit = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if not limit.isdigit() or int(limit) >= 2**60:  # "max", or v1's "no limit"
            return None
        try:
            used = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            used = 0
        return max(int(limit) - used, 0)
    return None


def _address_space_room() -> int | None:
    """Bytes of address space a run may plan on (RLIMIT_AS less VmSize, plus the plan's own
    base that VmSize already holds), or None without a limit."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError):  # pragma: no cover - not POSIX
        return None
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return None
    mapped = 0
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                mapped = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        pass
    # The plan's BASE_BYTES (torch and the process itself) is already among what is mapped:
    # counted there, not twice.
    return max(soft - mapped, 0) + BASE_BYTES


def style_size(config: Config, inputs: Inputs, size: int, index: int = 0) -> tuple[int, int]:
    if config.style_resize == "content_shape":
        return fit_long_side(inputs.content.size, size)
    scale = config.style_scale_of(index)
    return fit_long_side(inputs.styles[index].size, max(1, round(size * scale)))
