"""`stylize()`: the plain Python API behind `nst stylize`.

config -> images -> features -> losses -> optimisation loop -> files in the run folder.
Whatever happens (finished, Ctrl-C, NaN, disk full), the newest good image, the frames and
the loss log already written are kept, and config.yaml says how the run ended.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from . import __version__, color, heap
from .callbacks import (
    Checkpointer,
    FrameSaver,
    LatestImage,
    LossLog,
    output_pil,
)
from .checkpoints import load_checkpoint
from .config import (
    DEFAULT_LR,
    SENSIBLE_LR,
    Config,
    Stage,
    StyleImage,
    dump_yaml,
    map_input_paths,
    names_several_images,
    resolve_config,
    resume_config,
)
from .devices import configure_precision, resolve_device, resolve_precision, runs_channels_last
from .errors import ConfigError, NSTError
from .features import FeatureExtractor, build_extractor
from .images import (
    fit_long_side,
    load_image,
    resize_long_side,
    resize_to,
    to_pil,
    to_tensor,
    upsample,
)
from .layers import downsampling_factor, layer_index
from .lbfgs import carry_history
from .losses import (
    Region,
    StyleTransferLoss,
    blend_targets,
    region_norms,
    style_norms,
    style_targets,
)
from .optimize import Callback, Lane, OptimizeResult, lane_layers, optimize_batch
from .outputs import RunDir, read_loss_rows, read_run_config, save_image, save_png, write_text

log = logging.getLogger("nst")


@dataclass
class StylizeResult:
    """Where the outputs are and how the run went."""

    run_dir: Path
    final_image: Path
    losses: dict[str, float]
    steps: int
    steps_run: int
    seconds: float
    setup_seconds: float
    status: str
    device: str
    frames: list[int] = field(default_factory=list)
    #: torch.compile's warm-up (compile: true), not part of `seconds`.
    warmup_seconds: float = 0.0
    #: The precision the network ran at (`precision: auto` decided: tf32, fp32 or bf16).
    precision: str = ""

    @property
    def iterations_per_second(self) -> float:
        return self.steps_run / self.seconds if self.seconds > 0 else 0.0


#: Style targets kept between runs (a few MB each: one per style, scale and content shape).
MAX_CACHED_TARGETS = 32


class ModelCache:
    """Keeps loaded networks and style targets between runs (a sweep reuses them)."""

    def __init__(self) -> None:
        self._extractors: dict[tuple[Any, ...], FeatureExtractor] = {}
        self._targets: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._compiled: dict[tuple[Any, ...], Callable[..., Any]] = {}

    def extractor(
        self, config: Config, layers: Sequence[str], device: torch.device, precision: str
    ) -> FeatureExtractor:
        """The network for these layers on `device`, set to run at `precision` (resolved)."""
        model = config.model
        # The deepest layer decides the truncation; a deeper network serves shallower runs too.
        key = (
            model.weights,
            model.pooling,
            model.preprocessing,
            config.seed if model.weights == "random" else None,
            str(device),
        )
        cached = self._extractors.get(key)
        if cached is None or not all(_fits(cached, n) for n in layers):
            cached = build_extractor(
                model.weights, layers, model.pooling, model.preprocessing, config.seed
            ).to(device)
            self._extractors[key] = cached
            self._targets.clear()
            self._compiled.pop(key, None)
        # How it runs may differ between the runs of a sweep; what it computes does not.
        return cached.configure(
            precision="bf16" if precision == "bf16" else "fp32",
            low_memory=config.memory == "low",
            channels_last=runs_channels_last(torch.device(device)),
        )

    def forward(self, config: Config, extractor: FeatureExtractor) -> Callable[..., Any]:
        """What the optimisation loop calls: the extractor, or its torch.compile'd form
        (compiled once per network and kept, so a sweep pays the compile once)."""
        if not config.compile:
            return extractor
        key = next(k for k, v in self._extractors.items() if v is extractor)
        if key not in self._compiled:
            self._compiled[key] = torch.compile(extractor)
        return self._compiled[key]

    def style_targets(
        self,
        extractor: FeatureExtractor,
        style: torch.Tensor,
        key: tuple[Any, ...],
        layers: dict[str, float],
        form: str = "mean",
        statistic: str = "gram",
    ) -> dict[str, Any]:
        full_key = (id(extractor), key, tuple(layers), form, statistic)
        cached = self._targets.get(full_key)
        if cached is None:
            with torch.no_grad():
                cached = style_targets(extractor(style, layers), layers, form, statistic)
            if len(self._targets) >= MAX_CACHED_TARGETS:  # a batch of many photo sizes
                self._targets.pop(next(iter(self._targets)))
            self._targets[full_key] = cached
        return cached


def _fits(extractor: FeatureExtractor, layer: str) -> bool:
    return layer_index(layer) < len(extractor.layers)


def _check_size(size: tuple[int, int], layers: Sequence[str], role: str, key: str) -> None:
    factor = downsampling_factor(layers)
    if min(size) < factor:
        raise ConfigError(
            f"{key}: the {role} image would be {size[0]}×{size[1]} px, too small for the layers "
            f"used (down to {max(layers, key=layer_index)}, halved {factor.bit_length() - 1} "
            f"times); its short side must be at least {factor} px. Raise {key}"
        )


def require_inputs(config: Config) -> None:
    """Both images must be named and exist: checked before any work (or any sweep run) starts."""
    styles: list[Path | None] = [s.path for s in config.style_images] or [None]
    for role, path in [("content", config.content), *(("style", p) for p in styles)]:
        if path is None:
            raise ConfigError(
                f"{role}: no {role} image given; set {role}: in the config or pass --{role}"
            )
        if role == "content" and names_several_images(path):
            raise ConfigError(
                f"content: {path} names several images; one run takes one (`nst stylize "
                "--content FOLDER` runs a batch: sweep.plan_batch + run_sweep in Python; a "
                "sweep over images: --param content=a.jpg,b.jpg)"
            )
        if not Path(path).exists():
            raise ConfigError(f"{role} image {path}: file not found")


@dataclass(frozen=True)
class Inputs:
    """The decoded content and style images at their own size, resized per scale on demand."""

    content: Image.Image
    styles: tuple[Image.Image, ...]
    #: (mask image, style index) pairs of the config's `masks`, greyscale.
    masks: tuple[tuple[Image.Image, int], ...] = ()

    @property
    def style(self) -> Image.Image:
        """The first (or only) style image."""
        return self.styles[0]


def load_inputs(config: Config, allow_large: bool = False) -> Inputs:
    """Decode both images once; check every scale is big enough and the run fits in memory."""
    require_inputs(config)
    assert config.content is not None and config.style is not None  # checked just above
    content = load_image(config.content, "content", allow_large)
    inputs = Inputs(
        content,
        tuple(load_image(s.path, "style", allow_large) for s in config.style_images),
        _load_masks(config, content.size, allow_large),
    )
    # The smallest scale is the one that can be too small for the deepest layer.
    smallest = config.scale_sizes()[0]
    key = "resolution" if smallest == config.resolution else "scales"
    layers = [*config.layers.content, *config.layers.style]
    _check_size(fit_long_side(inputs.content.size, smallest), layers, "content", key)
    for index in range(len(inputs.styles)):
        style_size = _style_size(config, inputs, smallest, index)
        _check_size(style_size, list(config.layers.style), "style", "style_scale")
    if not allow_large:
        _check_memory(config, inputs)
    _warn_upscaling(config, inputs)
    return inputs


def _load_masks(
    config: Config, content_size: tuple[int, int], allow_large: bool
) -> tuple[tuple[Image.Image, int], ...]:
    """The `masks` as greyscale images, each of the content's aspect ratio (checked here,
    before any work: a mask stretched onto the content would put styles in wrong places)."""
    width, height = content_size
    masks = []
    for path, index in config.masks.items():
        if not Path(path).is_file():
            raise ConfigError(f"masks: mask image {path} not found")
        mask = load_image(path, "mask", allow_large).convert("L")
        if abs(mask.width * height - mask.height * width) > 0.01 * width * height:
            raise ConfigError(
                f"masks: {path} is {mask.width}×{mask.height} but the content is "
                f"{width}×{height}; a mask must have the content's aspect ratio"
            )
        masks.append((mask, index))
    return tuple(masks)


def _warn_upscaling(config: Config, inputs: Inputs) -> None:
    content = inputs.content.size
    if max(content) < config.resolution / 2:
        log.warning(
            "content image %s is %d×%d, far smaller than resolution %d; upscaling it (the "
            "result will look soft)",
            config.content, *content, config.resolution,
        )  # fmt: skip
    for index, (spec, image) in enumerate(zip(config.style_images, inputs.styles, strict=True)):
        style_long_side = max(_style_size(config, inputs, config.resolution, index))
        if config.style_resize == "long_side" and max(image.size) < style_long_side / 2:
            log.warning(
                "style image %s is %d×%d, far smaller than the %d px it is used at; upscaling "
                "it (its texture will be blurred)",
                spec.path, *image.size, style_long_side,
            )  # fmt: skip


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
    styles = [_style_size(config, inputs, config.resolution, i) for i in range(len(inputs.styles))]
    return (
        BASE_BYTES
        + width * height * RUN_BYTES_PER_PIXEL[memory or config.memory]
        + max(w * h for w, h in styles) * STYLE_BYTES_PER_PIXEL  # one style pass at a time
    )


def _check_memory(config: Config, inputs: Inputs) -> None:
    """Refuse a run that cannot fit in this machine's (or GPU's) memory, with the numbers
    (and `memory: low` as the way on, where it would fit)."""
    needed = estimate_run_bytes(config, inputs)
    available, where = memory_limit(config.device)
    if needed > available:
        low = estimate_run_bytes(config, inputs, "low")
        fits_low = config.memory != "low" and low <= available
        raise ConfigError(
            f"resolution {config.resolution} (style_scale {config.style_scale}) needs about "
            f"{needed / 2**30:.1f} GiB, more than the {available / 2**30:.1f} GiB of {where}; "
            + (f"set memory: low (about {low / 2**30:.1f} GiB, slower), " if fits_low else "")
            + "lower resolution or style_scale, or pass --allow-large to try anyway"
        )


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


def _style_size(config: Config, inputs: Inputs, size: int, index: int = 0) -> tuple[int, int]:
    if config.style_resize == "content_shape":
        return fit_long_side(inputs.content.size, size)
    scale = config.style_scale_of(index)
    return fit_long_side(inputs.styles[index].size, max(1, round(size * scale)))


def stage_images(
    config: Config, inputs: Inputs, size: int
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Content with long side `size`; each style at size × its scale (aspect kept) or
    squashed to the content's shape (`style_resize: content_shape`); colour mode applied."""
    content = to_tensor(resize_long_side(inputs.content, size))
    styles, prepared = [], content
    for index, image in enumerate(inputs.styles):
        style = to_tensor(resize_to(image, _style_size(config, inputs, size, index)))
        prepared, style = color.prepare(content, style, config.color)
        styles.append(style)
    return prepared, styles


def images_at(config: Config, inputs: Inputs, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The content and the first style image at a scale (see stage_images)."""
    content, styles = stage_images(config, inputs, size)
    return content, styles[0]


def initial_image(
    config: Config, content: torch.Tensor, style: torch.Tensor, allow_large: bool = False
) -> torch.Tensor:
    """The starting pixels: the content photo, seeded noise, the style image, or a file."""
    height, width = content.shape[-2:]
    if config.init == "content":
        return content.clone()
    if config.init == "noise":
        generator = torch.Generator().manual_seed(config.seed)
        return torch.rand(content.shape, generator=generator)
    if config.init == "style":
        return to_tensor(resize_to(to_pil(style), (width, height)))
    path = Path(config.init)
    if not path.exists():
        raise ConfigError(
            f"init: '{config.init}' is neither content, noise, style nor an existing image file"
        )
    return to_tensor(resize_to(load_image(path, "init", allow_large), (width, height)))


def png_metadata(config: Config) -> dict[str, str]:
    """Text stored in every PNG: enough to re-run the exact settings (`--config final.png`)."""
    return {
        "Software": f"nst {__version__}",
        "nst:version": __version__,
        "nst:config": dump_yaml(run_config_dict(config)),
    }


def run_config_dict(config: Config) -> dict[str, Any]:
    """The config as saved in config.yaml and PNG metadata (absolute image paths)."""
    data = config.to_yaml_dict()
    # Absolute paths, so the saved config re-runs from any working directory.
    map_input_paths(data, lambda value: str(Path(value).expanduser().resolve()))
    return data


def write_run_config(run_dir: RunDir, config: Config, **run: Any) -> None:
    """config.yaml: the resolved config plus a `run:` section the loader ignores."""
    data = run_config_dict(config)
    data["run"] = {"nst_version": __version__, **run}
    write_text(run_dir.config, dump_yaml(data))


#: Keys a resumed run may change: how long it runs, how often it saves, where it computes.
#: Anything else would make the saved config (and every PNG's provenance) describe settings
#: the continued optimisation does not use.
RESUMABLE_KEYS = ("steps", "save_every", "device", "checkpoint")


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix: data}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        # Layer maps are one setting: adding or dropping a layer is a change of that key.
        flat.update(
            _flatten(value, name)
            if name not in ("layers.content", "layers.style")
            else {name: value}
        )
    return flat


def _shown(value: Any) -> str:
    return "the default" if value is None else repr(value)


def _check_resume_changes(run_dir: RunDir, config: Config) -> None:
    """Refuse to resume with settings other than the run's own, except RESUMABLE_KEYS."""
    saved = read_run_config(run_dir.config)
    if saved is None:
        return
    before, now = _flatten(saved[0]), _flatten(run_config_dict(config))
    for key in sorted(set(before) | set(now)):
        if key in RESUMABLE_KEYS or key in ("output", "sweep"):
            continue
        if before.get(key) != now.get(key):
            was, wanted = (_shown(v) for v in (before.get(key), now.get(key)))
            raise ConfigError(
                f"--resume {run_dir.root}: {key} cannot change on resume (the run used {was}, "
                f"now {wanted}); only {', '.join(RESUMABLE_KEYS)} can. Start a new run with "
                "another --output instead"
            )


@dataclass
class _StartingPoint:
    image: torch.Tensor
    step: int = 0
    stage: int = 0
    optimizer_state: dict[str, Any] | None = None
    elapsed: float = 0.0
    rows: list[dict[str, float]] = field(default_factory=list)
    average: torch.Tensor | None = None

    def take_optimizer_state(self) -> dict[str, Any] | None:
        """The saved history, handed over once: kept here too, a resumed run would hold a
        second history (pixels × pairs × 2) for as long as it runs."""
        state, self.optimizer_state = self.optimizer_state, None
        return state


def _check_output_image(config: Config, resume: bool, overwrite: bool) -> None:
    """`-o result.png`: an image already there is the user's; replace it only when asked."""
    image = config.output_image
    if image is None or resume or overwrite or not image.exists():
        return
    raise ConfigError(
        f"output image {image} already exists; pass --overwrite to replace it, or choose another -o"
    )


def check_run_folder(run_dir: RunDir, resume: bool, overwrite: bool) -> None:
    """Never mix a new run into (or silently overwrite) a previous run's folder."""
    previous = run_dir.previous_outputs()
    if not previous or resume:
        return
    if overwrite:
        foreign = run_dir.foreign_files()
        if foreign:
            raise ConfigError(
                f"output folder {run_dir.root}: {foreign[0].name} was not written by nst (it "
                f"may be yours, or the config being read), so --overwrite will not replace it; "
                "move it or choose another --output"
            )
        return
    raise ConfigError(
        f"output folder {run_dir.root} already holds a run ({len(previous)} files); pass "
        "--overwrite to replace it, --resume to continue it, or choose another --output"
    )


def build_loss(
    config: Config,
    extractor: FeatureExtractor,
    content: torch.Tensor,
    style: torch.Tensor | Sequence[torch.Tensor],
    cache: ModelCache,
    size: int,
    inputs_masks: Sequence[tuple[torch.Tensor, int]] = (),
) -> StyleTransferLoss:
    """Targets are computed once per scale: content features, and the style Grams (cached
    across runs; several style images blend by their weights)."""
    styles = [style] if isinstance(style, torch.Tensor) else list(style)
    specs: list[StyleImage | None] = list(config.style_images) or [None]
    blend = []
    for index, (image, spec) in enumerate(zip(styles, specs, strict=False)):
        style_key = (
            str(spec.path if spec else config.style), index, size, config.style_scale_of(index)
            if spec else config.style_scale, config.style_resize, content.shape,
            config.loss.style, config.color,
        )  # fmt: skip
        blend.append(
            cache.style_targets(
                extractor,
                image,
                style_key,
                config.layers.style,
                config.loss.gram,
                config.loss.style,
            )  # fmt: skip
        )
    weights = [spec.weight if spec else 1.0 for spec in specs][: len(blend)]
    targets = blend[0] if len(blend) == 1 else blend_targets(blend, weights)
    if inputs_masks:
        return _masked_loss(config, extractor, content, blend, weights, inputs_masks)
    # One pass over the content serves both its targets and the style normalisers.
    wanted = [*config.layers.content, *(config.layers.style if config.loss.normalize else ())]
    with torch.no_grad():
        features = extractor(content, wanted) if wanted else {}
        content_targets = {k: features[k].detach() for k in config.layers.content}
        # Each normalised style term is measured against how far the content's own Gram is
        # from the style's at this scale (see losses.style_norms).
        norms = style_norms(features, targets, config.loss.gram) if config.loss.normalize else None
    return _loss_for(config, content_targets, targets, norms=norms)


def _loss_for(
    config: Config,
    content_targets: dict[str, torch.Tensor],
    targets: dict[str, Any],
    norms: dict[str, torch.Tensor] | None = None,
    regions: Sequence[Region] = (),
) -> StyleTransferLoss:
    """The loss module with the config's layers, weights and loss form."""
    return StyleTransferLoss(
        content_targets,
        targets,
        config.layers.content,
        config.layers.style,
        config.weights.content,
        config.weights.style,
        config.weights.tv,
        normalize=config.loss.normalize,
        gram_form=config.loss.gram,
        style_norms=norms,
        regions=regions,
    )


def _masked_loss(
    config: Config,
    extractor: FeatureExtractor,
    content: torch.Tensor,
    per_style: list[dict[str, Any]],
    weights: list[float],
    masks: Sequence[tuple[torch.Tensor, int]],
) -> StyleTransferLoss:
    """Each masked style only inside its region (guided Grams, masks downsampled to each
    layer); outside every mask only the content loss applies."""
    layers = config.network_layers
    with torch.no_grad():
        features = extractor(content, layers)
    regions = []
    for mask, index in masks:
        at_layers = {
            name: torch.nn.functional.interpolate(
                mask, size=tuple(features[name].shape[-2:]), mode="area"
            )
            for name in config.layers.style
        }
        region = Region(per_style[index], at_layers, weights[index])
        if config.loss.normalize:
            region.norms = region_norms(region, features)
        regions.append(region)
    content_targets = {k: features[k].detach() for k in config.layers.content}
    return _loss_for(config, content_targets, {}, regions=regions)


def stage_masks(inputs: Inputs, content: torch.Tensor) -> list[tuple[torch.Tensor, int]]:
    """The masks at the content's size at this scale, as [1, 1, H, W] tensors in [0, 1]."""
    height, width = content.shape[-2:]
    return [
        (to_tensor(resize_to(mask, (width, height)).convert("RGB"))[:, :1], index)
        for mask, index in inputs.masks
    ]


def _starting_point(
    config: Config, run_dir: RunDir, inputs: Inputs, resume: bool, allow_large: bool
) -> _StartingPoint:
    """The checkpoint of a resumed run, or the configured initial image at the first scale."""
    checkpoint = load_checkpoint(run_dir.checkpoint) if resume else None
    stages = config.schedule()
    if checkpoint is None:
        if resume and run_dir.previous_outputs():
            raise ConfigError(
                f"--resume {run_dir.root}: there is no checkpoint.pt"
                + (" (the run has checkpoint: off)" if config.checkpoint == "off" else "")
                + ", so the run cannot continue where it stopped; start it over with --overwrite (instead of --resume) or use "
                "another --output"
            )
        content, style = images_at(config, inputs, stages[0].size)
        return _StartingPoint(initial_image(config, content, style, allow_large))
    step = int(checkpoint["step"])
    if step > config.total_steps:
        raise ConfigError(
            f"--resume {run_dir.root}: the run already did {step} steps; steps must be at least "
            f"{step} (pass --steps {step} or more)"
        )
    index = min(int(checkpoint.get("stage", 0)), len(stages) - 1)
    image = checkpoint["image"]
    expected = fit_long_side(inputs.content.size, stages[index].size)
    if tuple(image.shape[-2:]) != (expected[1], expected[0]):
        raise ConfigError(
            f"--resume {run_dir.root}: the checkpoint image is {image.shape[-1]}×{image.shape[-2]} "
            f"but this config gives {expected[0]}×{expected[1]} at that scale; keep resolution, "
            "scales and content unchanged"
        )
    log.info("resuming %s from step %d", run_dir.root, step)
    return _StartingPoint(
        image=image,
        step=step,
        stage=index,
        optimizer_state=checkpoint.get("optimizer"),
        elapsed=float(checkpoint.get("elapsed", 0.0)),
        rows=[r for r in read_loss_rows(run_dir.losses) if r["step"] < step],
        average=checkpoint.get("average"),
    )


def _run_scales(
    prepared: Sequence[_Prepared],
    callbacks: Sequence[Sequence[Callback]],
    should_stop: Callable[[], bool],
) -> list[OptimizeResult]:
    """Coarse to fine: each scale starts from the previous one's result, upsampled.

    Several runs (a batch: same content, sizes, schedule and network, see `batch_key`) go
    through the scales together, one lane each; a lane that fails stops and the rest go on."""
    first = prepared[0]  # a batch shares its network (stylize_batch gives each run the same)
    config, device, cache, start = first.config, first.device, first.cache, first.start
    extractor = first.extractor
    images = [p.start.image.to(device) for p in prepared]
    states = [p.start.take_optimizer_state() for p in prepared]
    averages = [None if p.start.average is None else p.start.average.to(device) for p in prepared]
    step, seconds, steps_run, warmup = start.step, 0.0, 0, 0.0
    done: dict[int, OptimizeResult] = {}
    live = list(range(len(prepared)))
    for stage in config.schedule()[start.stage :]:
        lanes = [
            _lane(prepared[i], extractor, stage, images[i], states[i], averages[i], callbacks[i])
            for i in live
        ]
        states = [None] * len(prepared)  # in the lanes now (resized or dropped)
        forward = cache.forward(config, extractor)
        if config.compile:
            warmup += _warm_up(forward, lanes)
        # Freed memory kept for the next step (no fresh pages each step), except where the
        # run was asked to use as little memory as it can, or is large enough that the
        # heap's slack would cost more memory than the pages cost time (heap.py).
        pixels = len(lanes) * lanes[0].image[0, 0].numel()
        kept = config.memory == "normal" and pixels <= heap.KEEP_UP_TO_PIXELS
        with heap.kept_between_steps() if kept else contextlib.nullcontext():
            results = optimize_batch(
                lanes,
                forward,
                config.total_steps if stage.is_last else max(stage.end, step),
                start_step=step,
                should_stop=should_stop,
                stage=stage,
                report_last=stage.is_last,
                total_steps=config.total_steps,
                elapsed_offset=start.elapsed + seconds,
                check_every=config.save_every,
            )
        seconds += results[0].seconds
        steps_run += results[0].steps_run
        for i, result in zip(live, results, strict=True):
            images[i], states[i], averages[i] = result.image, result.optimizer_state, None
            done[i] = replace(
                result,
                seconds=seconds,
                steps_run=steps_run,
                warmup_seconds=warmup,
                optimizer_state=None,
            )
        live = [i for i in live if done[i].error is None]
        if not live or done[live[0]].interrupted:
            break
        step = done[live[0]].step
    return [done[i] for i in range(len(prepared))]


def _lane(
    prepared: _Prepared,
    extractor: FeatureExtractor,
    stage: Stage,
    image: torch.Tensor,
    optimizer_state: dict[str, Any] | None,
    average: torch.Tensor | None,
    callbacks: Sequence[Callback],
) -> Lane:
    """One run's images, loss and optimiser settings at this scale; its image so far is
    upsampled to the scale, and L-BFGS's curvature pairs resized with it
    (`optimizer.carry_history`) or dropped."""
    config, device = prepared.config, prepared.device
    content, styles = stage_images(config, prepared.inputs, stage.size)
    content, styles = content.to(device), [s.to(device) for s in styles]
    precondition = config.preconditioner(stage.index)
    if image.shape != content.shape:
        previous, image = image.shape, next_scale_start(image, content, config.upsample)
        carry = config.optimizer.name == "lbfgs" and config.optimizer.carry_history
        optimizer_state = (
            carry_history(optimizer_state, previous, image.shape, precondition)
            if carry and optimizer_state is not None
            else None
        )
    masks = [(m.to(device), i) for m, i in stage_masks(prepared.inputs, content)]
    return Lane(
        image,
        build_loss(config, extractor, content, styles, prepared.cache, stage.size, masks),
        config.optimizer.name,
        config.optimizer.effective_lr,
        callbacks,
        optimizer_state,
        history_size=config.optimizer.history_size,
        trust_region=config.optimizer.trust_region,
        compact_history=config.memory == "low",
        precondition=precondition,
        average=config.average,
        average_state=average,
    )


def next_scale_start(image: torch.Tensor, content: torch.Tensor, mode: str) -> torch.Tensor:
    """The start of the next scale: the result so far, upsampled to the content's size.

    `detail` also adds the content's own detail at the new size, the part an image at the
    previous size could not hold (content − content downsampled and upsampled again, a
    Laplacian-pyramid band): the finer scale then starts with the photo's edges and texture in
    place instead of a blur, and spends its steps on the style's fine texture.
    """
    size = content.shape[-2:]
    start = upsample(image, size)
    if mode == "detail":
        coarse = torch.nn.functional.interpolate(content, size=tuple(image.shape[-2:]), mode="area")
        start = (start + content - upsample(coarse, size)).clamp_(0.0, 1.0)
    return start


def _warm_up(forward: Callable[..., Any], lanes: Sequence[Lane]) -> float:
    """One forward+backward outside the loop's clock, at the loop's batch size and layers,
    so torch.compile's tracing and code generation (tens of seconds, once per size) is
    reported apart from the steps' speed."""
    started = time.perf_counter()
    pixels = torch.cat([lane.image for lane in lanes]).detach().requires_grad_(True)
    features = forward(pixels, lane_layers(lanes))
    torch.stack([f.sum() for f in features.values()]).sum().backward()
    if pixels.device.type == "cuda":
        torch.cuda.synchronize(pixels.device)
    return time.perf_counter() - started


@dataclass
class _Recorder:
    """The callbacks that keep the run folder up to date, and the newest good image."""

    latest: LatestImage
    frames: FrameSaver
    loss_log: LossLog
    checkpointer: Checkpointer

    def callbacks(self) -> list[Callback]:
        return [self.latest, self.frames, self.loss_log, self.checkpointer]


@dataclass
class _Prepared:
    """Everything checked and loaded before the run folder is touched."""

    config: Config
    #: What config.yaml and the PNGs record (the config itself, unless it was relocated).
    recorded: Config
    device: torch.device
    #: config.precision decided for the device (`auto` resolved).
    precision: str
    run_dir: RunDir
    inputs: Inputs
    extractor: FeatureExtractor
    cache: ModelCache
    start: _StartingPoint
    setup_started: float


def stylize(
    config: Config | str | Path,
    *,
    callbacks: Sequence[Callback] = (),
    should_stop: Callable[[], bool] = lambda: False,
    resume: bool = False,
    overwrite: bool = False,
    allow_large: bool = False,
    cache: ModelCache | None = None,
    recorded: Config | None = None,
) -> StylizeResult:
    """Run one stylisation and write its run folder; returns where things are and the losses.

    `config` is a Config or a config file's path; with `resume=True` it may also be a run
    folder, which continues that run with its own settings (`nst stylize --resume DIR`).
    `recorded` is the config written into config.yaml and the PNGs when `config` is a
    relocated copy of it: a run shipped to another machine reads its inputs and writes its
    folder in a scratch directory there, but records the paths its user gave."""
    if not isinstance(config, Config):
        is_run_dir = resume and Path(config).is_dir()
        config = resume_config(Path(config)) if is_run_dir else resolve_config(config)
    prepared = _prepare(
        config, resume, overwrite, allow_large, cache or ModelCache(), recorded or config
    )
    run_dir = prepared.run_dir
    with run_dir.lock():
        # Checked again under the lock: another process may have written a run here meanwhile.
        check_run_folder(run_dir, resume, overwrite)
        if overwrite and not resume:
            run_dir.clear()  # only now, once the new run's inputs have all been checked
        return _execute(prepared, callbacks, should_stop)


def stylize_batch(
    configs: Sequence[Config],
    *,
    callbacks: Sequence[Sequence[Callback]] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    overwrite: bool = False,
    allow_large: bool = False,
    cache: ModelCache | None = None,
) -> list[StylizeResult | NSTError]:
    """Several new runs optimised together, each written to its own run folder as `stylize`
    writes it: one forward and backward pass of the network per step serves them all, and
    each run keeps its own optimiser, so it follows the path it would alone (to within
    floating-point rounding). The configs must share `batch_key`: they may differ in loss
    weights, layers, style images, optimiser settings, init and seed. Returns each run's
    result or the error that stopped it; a run that fails does not stop the others."""
    keys = {batch_key(config) for config in configs}
    if len(keys) > 1:
        raise ValueError(
            "stylize_batch: the configs differ in " + ", ".join(_batch_differences(configs))
        )
    cache = cache or ModelCache()
    outcomes: list[StylizeResult | NSTError | None] = [None] * len(configs)
    ready: list[tuple[int, _Prepared]] = []
    for index, config in enumerate(configs):
        try:
            ready.append((index, _prepare(config, False, overwrite, allow_large, cache, config)))
        except NSTError as exc:
            outcomes[index] = exc
    with contextlib.ExitStack() as locks:
        running: list[tuple[int, _Prepared]] = []
        for index, prepared in ready:
            try:
                locks.enter_context(prepared.run_dir.lock())
                check_run_folder(prepared.run_dir, False, overwrite)
                if overwrite:
                    prepared.run_dir.clear()
            except NSTError as exc:
                outcomes[index] = exc
            else:
                running.append((index, prepared))
        if running:
            # One network for all, deep enough for every run's layers.
            layers = list(dict.fromkeys(n for _, p in running for n in p.config.network_layers))
            first = running[0][1]
            extractor = cache.extractor(first.config, layers, first.device, first.precision)
            batch = [replace(p, extractor=extractor) for _, p in running]
            extra = callbacks or [()] * len(configs)
            results = _execute_all(batch, [extra[i] for i, _ in running], should_stop)
            for (index, _), outcome in zip(running, results, strict=True):
                outcomes[index] = outcome
    return [o for o in outcomes if o is not None]


#: What runs of one batch must share: the image being optimised (content, sizes, schedule),
#: the network and how it runs, and the loop's check interval. Anything else may differ.
BATCH_SHARED_KEYS = (
    "content", "resolution", "scales", "steps", "save_every", "device", "precision", "compile",
    "memory", "model",
)  # fmt: skip


def batch_key(config: Config) -> str:
    """Runs with the same key can be optimised together (stylize_batch)."""
    data = run_config_dict(config)
    shared = {key: data.get(key) for key in BATCH_SHARED_KEYS}
    if config.model.weights == "random":
        shared["seed"] = config.seed  # the seed draws the network's weights
    return json.dumps(shared, sort_keys=True, default=str)


def _batch_differences(configs: Sequence[Config]) -> list[str]:
    keys = [json.loads(batch_key(c)) for c in configs]
    return sorted({k for k in keys[0] if any(other.get(k) != keys[0][k] for other in keys)})


def _prepare(
    config: Config,
    resume: bool,
    overwrite: bool,
    allow_large: bool,
    cache: ModelCache,
    recorded: Config,
) -> _Prepared:
    """Check the folder and the settings, load the images, the network and the start image."""
    setup_started = time.perf_counter()
    torch.manual_seed(config.seed)
    device = resolve_device(config.device)
    precision = resolve_precision(device, config.precision)
    configure_precision(device, precision)
    run_dir = RunDir(config.output_dir)
    check_run_folder(run_dir, resume, overwrite)
    _check_output_image(config, resume, overwrite)
    if resume:
        _check_resume_changes(run_dir, recorded)
    _warn_unusual_lr(config)
    inputs = load_inputs(config, allow_large)
    layers = config.network_layers
    extractor = cache.extractor(config, layers, device, precision)
    if config.model.weights == "random":
        log.warning("model.weights=random: the network is untrained; results show no real style")
    start = _starting_point(config, run_dir, inputs, resume, allow_large)
    return _Prepared(
        config, recorded, device, precision, run_dir, inputs, extractor, cache, start,
        setup_started,
    )  # fmt: skip


def _warn_unusual_lr(config: Config) -> None:
    """An lr meant for one optimiser is far off for the other; say so before it ruins a run."""
    name, lr = config.optimizer.name, config.optimizer.lr
    if lr is None:
        return
    low, high = SENSIBLE_LR[name]
    if not low <= lr <= high:
        log.warning(
            "optimizer.lr=%g is outside %s's usual range %g–%g (an lr set for the other "
            "optimiser?); remove optimizer.lr to use %s's default %g",
            lr, name, low, high, name, DEFAULT_LR[name],
        )  # fmt: skip


def _execute(
    prepared: _Prepared, callbacks: Sequence[Callback], should_stop: Callable[[], bool]
) -> StylizeResult:
    """Run every scale, keeping the run folder current; whatever happens, save what we have."""
    (outcome,) = _execute_all([prepared], [callbacks], should_stop)
    if isinstance(outcome, NSTError):
        raise outcome
    return outcome


def _execute_all(
    prepared: Sequence[_Prepared],
    callbacks: Sequence[Sequence[Callback]],
    should_stop: Callable[[], bool],
) -> list[StylizeResult | NSTError]:
    """`_execute` for the runs of a batch, optimised together: each run's outcome, or the
    error that stopped it (the others went on). Ctrl-C or a crash settles every run's folder
    (newest image, frames, loss log, config.yaml's status) before it propagates."""
    outcomes: list[StylizeResult | NSTError | None] = [None] * len(prepared)
    sessions: dict[int, _Session] = {}
    results: list[OptimizeResult] = []
    errors: list[NSTError | None] = []
    try:
        for index, one in enumerate(prepared):
            try:
                sessions[index] = _Session(one)
            except NSTError as exc:  # its folder cannot be written: that run fails, alone
                outcomes[index] = exc
        if sessions:
            results = _run_scales(
                [prepared[i] for i in sessions],
                [[*s.recorder.callbacks(), *callbacks[i]] for i, s in sessions.items()],
                should_stop,
            )
            errors = [s.finish(r) for s, r in zip(sessions.values(), results, strict=True)]
    except BaseException as exc:
        for session in sessions.values():
            if isinstance(exc, KeyboardInterrupt):
                session.status = "interrupted"
            session.close()
        raise
    for (index, session), result, error in zip(sessions.items(), results, errors, strict=True):
        closing = session.close()
        error = error or closing
        outcomes[index] = error if error is not None else session.outcome(result)
    return [outcome for outcome in outcomes if outcome is not None]


class _Session:
    """One run's folder while the run goes on: config.yaml says "running", the recorder's
    callbacks keep frames, loss log, checkpoint and newest image current; `finish` and
    `close` settle it however the run ended."""

    def __init__(self, prepared: _Prepared) -> None:
        self.prepared = prepared
        config, run_dir, start = prepared.config, prepared.run_dir, prepared.start
        self.started_at = _now()
        write_run_config(
            run_dir, prepared.recorded, status="running", started=self.started_at,
            device=str(prepared.device), precision=prepared.precision, steps_done=start.step,
        )  # fmt: skip
        self.text = png_metadata(prepared.recorded)
        self.output_size = fit_long_side(prepared.inputs.content.size, config.resolution)
        # What every saved image goes through: the content's colours put back (luminance).
        self.shown = color.recolor(prepared.inputs.content) if config.color == "luminance" else None
        self.recorder = _Recorder(
            latest=LatestImage(),
            frames=FrameSaver(run_dir, config.save_every, self.text, self.output_size, self.shown),
            loss_log=LossLog(
                run_dir.losses,
                config.save_every,
                start.rows,
                run_dir.loss_plot,
                {"Software": self.text["Software"], "nst:version": self.text["nst:version"]},
            ),
            checkpointer=Checkpointer(run_dir, config.save_every, config.checkpoint),
        )
        self.setup_seconds = time.perf_counter() - prepared.setup_started
        self.status = "failed"
        self.final_saved = False

    def finish(self, result: OptimizeResult) -> NSTError | None:
        """The run's end: every frame on disk, then final.png (and the `-o` image); the
        error that stopped the run, or that stops these writes, is returned."""
        if result.error is not None:
            return result.error
        try:
            self.recorder.frames.flush()  # every frame on disk (or its write error) first
            self.status = "interrupted" if result.interrupted else "completed"
            final = output_pil(result.image, self.output_size, self.shown)
            final_text = {**self.text, "nst:step": str(result.step)}
            save_png(final, self.prepared.run_dir.final, final_text)
            if self.prepared.config.output_image is not None:
                save_image(final, self.prepared.config.output_image, final_text)
        except NSTError as exc:
            return exc
        self.final_saved = True
        return None

    def close(self) -> NSTError | None:
        """Bookkeeping on the way out: the newest good image as final.png when the run did not
        save one, frames still being written, the loss log, config.yaml's final status. One
        part failing (a full disk refusing losses.png) does not skip the others, nor hide
        the error that ended the run; its error is returned when the run itself succeeded."""
        prepared, latest = self.prepared, self.recorder.latest
        run_dir, start = prepared.run_dir, prepared.start

        def save_latest() -> None:
            if not self.final_saved:
                _save_on_the_way_out(
                    run_dir, latest, self.text, self.status, self.output_size,
                    prepared.config.output_image, self.shown,
                )  # fmt: skip

        errors = _each_logged(
            save_latest,
            self.recorder.frames.close,  # frames still being written (after an error, say)
            self.recorder.loss_log.flush,
            lambda: write_run_config(
                run_dir, prepared.recorded, status=self.status, started=self.started_at,
                finished=_now(), device=str(prepared.device), precision=prepared.precision,
                steps_done=max(latest.step, start.step),
                losses={k: latest.losses[k] for k in ("total", "content", "style", "tv") if k in latest.losses},
            ),
        )  # fmt: skip
        return errors[0] if errors and self.status == "completed" else None

    def outcome(self, result: OptimizeResult) -> StylizeResult:
        config, run_dir = self.prepared.config, self.prepared.run_dir
        return StylizeResult(
            run_dir=run_dir.root,
            final_image=config.output_image or run_dir.final,
            losses=result.losses,
            steps=result.step,
            steps_run=result.steps_run,
            seconds=result.seconds,
            setup_seconds=self.setup_seconds,
            warmup_seconds=result.warmup_seconds,
            status=self.status,
            device=str(self.prepared.device),
            precision=self.prepared.precision,
            # Every frame in the folder, earlier sessions of a resumed run included.
            frames=sorted(int(p.stem.split("_")[-1]) for p in run_dir.frames.glob("step_*.png")),
        )


def _each_logged(*steps: Callable[[], object]) -> list[NSTError]:
    """Run every step; an NSTError in one is said and the next still runs. Returns them."""
    errors = []
    for step in steps:
        try:
            step()
        except NSTError as exc:
            log.error("%s", exc)
            errors.append(exc)
    return errors


def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def _save_on_the_way_out(
    run_dir: RunDir,
    latest: LatestImage,
    text: dict[str, str],
    status: str,
    output_size: tuple[int, int],
    output_image: Path | None = None,
    shown: Callable[[Image.Image], Image.Image] | None = None,
) -> None:
    """On failure or interrupt, the newest good image still becomes final.png (and the
    `-o` image)."""
    if latest.image is None:
        return
    try:
        image = output_pil(latest.image, output_size, shown)
        final_text = {**text, "nst:step": str(latest.step), "nst:status": status}
        save_png(image, run_dir.final, final_text)
        if output_image is not None:
            save_image(image, output_image, final_text)
    except NSTError as exc:  # the original error matters more; say this one and go on
        log.error("%s", exc)
