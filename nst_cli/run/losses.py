"""The loss of a run at one scale: content targets, style targets (several styles, masks) and their norms."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

from nst_cli.config.models import Config
from nst_cli.config.sections import StyleImage
from nst_cli.core.features import FeatureExtractor
from nst_cli.core.losses.guided import Region, region_norms
from nst_cli.core.losses.total import StyleTransferLoss, blend_targets, style_norms
from nst_cli.run.models import ModelCache

log = logging.getLogger(__name__)


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
