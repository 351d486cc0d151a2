"""A run's input images: checked, loaded and sized for each scale."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nst_cli.config.models import Config
from nst_cli.config.resolve import (
    names_several_images,
)
from nst_cli.core import color
from nst_cli.core.features import FeatureExtractor
from nst_cli.core.layers import downsampling_factor, layer_index
from nst_cli.core.objects import DETECT_SIDE, MEASURE_SIDE
from nst_cli.core.pixels import (
    fit_long_side,
    resize_long_side,
    resize_to,
    to_pil,
    to_tensor,
)
from nst_cli.errors import ConfigError
from nst_cli.io.images import load_image
from nst_cli.run.memory import check_memory, style_size

log = logging.getLogger(__name__)


def layer_fits(extractor: FeatureExtractor, layer: str) -> bool:
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
                "--content FOLDER` runs a batch: sweep.plan_folder + run_sweep in Python; a "
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

    @cached_property
    def measured_styles(self) -> list[torch.Tensor]:
        """The style images at the size core.objects measures them (from the decoded images,
        so the answer is the same at every scale of a run); made once, on first use."""
        return [to_tensor(resize_long_side(style, MEASURE_SIDE)) for style in self.styles]

    @cached_property
    def detected_content(self) -> np.ndarray:
        """The photo as core.objects looks for faces in it (see detected_styles)."""
        return _detected(self.content)

    @cached_property
    def detected_styles(self) -> list[np.ndarray]:
        """The style images as core.objects looks for faces in them: at their own size, up
        to DETECT_SIDE px (the detectors search at a fixed size; a larger one adds nothing)."""
        return [_detected(style) for style in self.styles]


def _detected(image: Image.Image) -> np.ndarray:
    """H×W×3 float32 in [0, 1], the long side at most DETECT_SIDE."""
    return np.asarray(resize_long_side(image, min(max(image.size), DETECT_SIDE)), np.float32) / 255


def load_inputs(config: Config, allow_large: bool = False) -> Inputs:
    """Decode both images once; check every scale is big enough and the run fits in memory."""
    require_inputs(config)
    assert config.content is not None and config.style is not None  # checked just above
    content = load_image(config.content, "content", allow_large)
    inputs = Inputs(
        content,
        tuple(load_image(s.path, "style", allow_large) for s in config.style_images),
        load_masks(config, content.size, allow_large),
    )
    # The smallest scale is the one that can be too small for the deepest layer.
    smallest = config.scale_sizes()[0]
    key = "resolution" if smallest == config.resolution else "scales"
    layers = [*config.layers.content, *config.layers.style]
    _check_size(fit_long_side(inputs.content.size, smallest), layers, "content", key)
    for index in range(len(inputs.styles)):
        size = style_size(config, inputs, smallest, index)
        _check_size(size, list(config.layers.style), "style", "style_scale")
    if not allow_large:
        check_memory(config, inputs)
    _warn_upscaling(config, inputs)
    return inputs


def load_masks(
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
        style_long_side = max(style_size(config, inputs, config.resolution, index))
        if config.style_resize == "long_side" and max(image.size) < style_long_side / 2:
            log.warning(
                "style image %s is %d×%d, far smaller than the %d px it is used at; upscaling "
                "it (its texture will be blurred)",
                spec.path, *image.size, style_long_side,
            )  # fmt: skip


def stage_images(
    config: Config, inputs: Inputs, size: int
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Content with long side `size`; each style at size × its scale (aspect kept) or
    squashed to the content's shape (`style_resize: content_shape`); colour mode applied."""
    content = to_tensor(resize_long_side(inputs.content, size))
    styles, prepared = [], content
    for index, image in enumerate(inputs.styles):
        style = to_tensor(resize_to(image, style_size(config, inputs, size, index)))
        prepared, style = color.prepare(content, style, config.color, config.match_luminance)
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


def stage_masks(inputs: Inputs, content: torch.Tensor) -> list[tuple[torch.Tensor, int]]:
    """The masks at the content's size at this scale, as [1, 1, H, W] tensors in [0, 1]."""
    height, width = content.shape[-2:]
    return [
        (to_tensor(resize_to(mask, (width, height)).convert("RGB"))[:, :1], index)
        for mask, index in inputs.masks
    ]
