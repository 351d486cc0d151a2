"""The loss of a run at one scale: content targets, style targets (several styles, masks) and their norms."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch

from nst_cli.config.models import Config
from nst_cli.config.sections import StyleImage
from nst_cli.core.features import FeatureExtractor
from nst_cli.core.layers import downsampling_factor
from nst_cli.core.losses.common import Crop, Sums, put_sums, take_sums
from nst_cli.core.losses.guided import Region, region_norms_from_sums
from nst_cli.core.losses.palette import PaletteTerm, pooled_colours, pooling_for
from nst_cli.core.losses.total import (
    ContentLoss,
    StyleLoss,
    Weighted,
    WeightedSum,
    blend_targets,
    norm_sums,
    style_norms_from_sums,
    style_transfer_loss,
)
from nst_cli.core.tiles import Tiler
from nst_cli.run.cache import ModelCache

log = logging.getLogger(__name__)


class StyleKey(NamedTuple):
    """What a painting's targets at one scale depend on (beyond the network and layers),
    so a sweep's runs find them in the ModelCache instead of computing them again."""

    path: str
    #: Which painting of a blend (the same file twice is two paintings).
    painting: int
    size: int
    style_scale: float
    style_resize: str
    content_shape: tuple[int, ...]
    statistic: str
    color: str


def build_loss(
    config: Config,
    extractor: FeatureExtractor,
    content: torch.Tensor,
    style: torch.Tensor | Sequence[torch.Tensor],
    cache: ModelCache,
    size: int,
    inputs_masks: Sequence[tuple[torch.Tensor, int]] = (),
    tile: int | None = None,
    measured: Sequence[torch.Tensor] = (),
) -> WeightedSum:
    """Targets are computed once per scale: content features, and the style Grams (cached
    across runs; several style images blend by their weights). With `tile`, every pass
    over an image runs in tiles of about that many px (core.tiles). `measured`: the style
    images as core.objects measures them (Inputs.measured_styles); without them, the
    scale's style images are measured."""
    styles = [style] if isinstance(style, torch.Tensor) else list(style)
    specs: list[StyleImage | None] = list(config.style_images) or [None]
    blend = []
    for index, (image, spec) in enumerate(zip(styles, specs, strict=False)):
        style_key = StyleKey(
            str(spec.path if spec else config.style), index, size,
            config.style_scale_of(index) if spec else config.style_scale, config.style_resize,
            tuple(content.shape), config.loss.style, config.color,
        )  # fmt: skip
        blend.append(
            cache.style_targets(
                extractor,
                image,
                style_key,
                config.layers.style,
                config.loss.gram,
                config.loss.style,
                tile,
            )  # fmt: skip
        )
    weights = [spec.weight if spec else 1.0 for spec in specs][: len(blend)]
    shares = _texture_shares(config, extractor, measured or styles, specs, cache)
    targets = blend[0] if len(blend) == 1 else blend_targets(blend, weights)
    if inputs_masks:
        # No palette term: each painting's colours belong to its own region, and the term
        # compares the whole image's colours. Each region keeps its own painting's share.
        return _masked_loss(config, extractor, content, blend, weights, inputs_masks, tile, shares)
    layers = _blended_layers(config, shares, weights)
    # One pass over the content serves both its targets and the style normalisers.
    tiler = Tiler.plan(extractor, content.shape[-2:], tile, config.network_layers)
    form = config.loss.gram
    wanted = [*config.layers.content, *(config.layers.style if config.loss.normalize else ())]
    if not wanted:
        return _with_palette(
            _loss_for(config, {}, targets, layers), config, content, styles, weights
        )
    kept, sums, shapes = tiler.collect(
        content,
        wanted,
        keep=list(config.layers.content),
        sums=(lambda features, _: norm_sums(features, targets, form))
        if config.loss.normalize
        else None,
    )
    # Each normalised style term is measured against how far the content's own Gram is
    # from the style's at this scale (see losses.style_norms).
    norms = style_norms_from_sums(sums, shapes, targets, form) if config.loss.normalize else None
    return _with_palette(
        _loss_for(config, kept, targets, layers, norms=norms), config, content, styles, weights
    )


def _texture_shares(
    config: Config,
    extractor: FeatureExtractor,
    styles: Sequence[torch.Tensor],
    specs: Sequence[StyleImage | None],
    cache: ModelCache,
) -> list[dict[str, float]]:
    """Per painting, how much of each object-block style layer's weight it keeps (core.objects);
    nothing is turned down with `loss.objects: allow`."""
    if config.loss.objects != "avoid":
        return [{} for _ in styles]
    return [
        cache.texture_shares(
            extractor, image, (str(spec.path if spec else config.style), index), config.layers.style
        )
        for index, (image, spec) in enumerate(zip(styles, specs, strict=False))
    ]


def _blended_layers(
    config: Config, shares: Sequence[dict[str, float]], weights: Sequence[float]
) -> dict[str, float]:
    """The style layers' weights in force for a blend: each layer's share is the paintings'
    shares weighed as the blend weighs them."""
    layers = dict(config.layers.style)
    total = sum(weights) or 1.0
    for kept, weight in zip(shares, weights, strict=False):
        for name, share in kept.items():
            layers[name] -= config.layers.style[name] * (1.0 - share) * weight / total
    return layers


def _with_palette(
    loss: WeightedSum,
    config: Config,
    content: torch.Tensor,
    styles: Sequence[torch.Tensor],
    weights: Sequence[float],
) -> WeightedSum:
    """The palette term added, where weighed and the run's colours are the painting's
    (`color: style`, and `luminance`, whose run is the default one with the photo's colours
    put back afterwards): every painting's colours, each weighing its share of a blend."""
    if not config.weights.palette or config.color not in ("style", "luminance"):
        return loss
    pooling = pooling_for(content.shape[-2:])
    colours = [pooled_colours(s, pooling) for s in styles]
    shares = [
        torch.full((len(c),), w / len(c), device=c.device)
        for c, w in zip(colours, weights, strict=False)
    ]
    term = PaletteTerm(torch.cat(colours), torch.cat(shares), pooling).normalise_by(content)
    return loss.plus(Weighted("palette", config.weights.palette, term))


def _loss_for(
    config: Config,
    content_targets: dict[str, torch.Tensor],
    targets: dict[str, Any],
    style_layers: dict[str, float],
    norms: dict[str, torch.Tensor] | None = None,
    regions: Sequence[Region] = (),
) -> WeightedSum:
    """The content, style and tv terms with the config's layers, weights and loss form."""
    normalize = config.loss.normalize
    return style_transfer_loss(
        ContentLoss(content_targets, config.layers.content, normalize),
        StyleLoss(targets, style_layers, normalize, config.loss.gram, norms, regions),
        config.weights.model_dump(),
    )


def _masked_loss(
    config: Config,
    extractor: FeatureExtractor,
    content: torch.Tensor,
    per_style: list[dict[str, Any]],
    weights: list[float],
    masks: Sequence[tuple[torch.Tensor, int]],
    tile: int | None,
    shares: Sequence[dict[str, float]],
) -> WeightedSum:
    """Each masked style only inside its region (guided Grams, masks downsampled to each
    layer), its object-block layers at its own painting's share; outside every mask only the
    content loss applies."""
    tiler = Tiler.plan(extractor, content.shape[-2:], tile, config.network_layers)
    height, width = content.shape[-2:]
    regions = []
    for mask, index in masks:
        at_layers = {}
        for name in config.layers.style:
            factor = downsampling_factor([name])
            size = (height // factor, width // factor)
            at_layers[name] = torch.nn.functional.interpolate(mask, size=size, mode="area")
        regions.append(Region(per_style[index], at_layers, weights[index], shares[index]))

    def region_sums(features: dict[str, torch.Tensor], crops: dict[str, Crop]) -> Sums:
        out: Sums = {}
        for i, region in enumerate(regions):
            for name in region.targets:
                put_sums(out, f"{i}:{name}", region.sums(name, features[name], crops[name]))
        return out

    kept, sums, shapes = tiler.collect(
        content,
        config.network_layers,
        keep=list(config.layers.content),
        sums=region_sums if config.loss.normalize else None,
    )
    if config.loss.normalize:
        channels = {name: shape[0] for name, shape in shapes.items()}
        for i, region in enumerate(regions):
            per_layer = {name: take_sums(sums, f"{i}:{name}") for name in region.targets}
            region.norms = region_norms_from_sums(region, per_layer, channels)
    return _loss_for(config, kept, {}, dict(config.layers.style), regions=regions)
