"""The loss of a run at one scale: content targets, style targets (several styles, masks) and their norms."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from nst_cli.config.models import Config
from nst_cli.config.sections import StyleImage
from nst_cli.core.features import FeatureExtractor
from nst_cli.core.losses import region_content
from nst_cli.core.losses.common import Crop, Sums, put_sums, take_sums
from nst_cli.core.losses.guided import Region, masks_at_layers, region_norms_from_sums
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
from nst_cli.core.objects import MIN_KEPT, Fraction, kept_share, object_layers, object_mask
from nst_cli.core.pixels import to_tensor
from nst_cli.core.tiles import Tiler
from nst_cli.io.images import load_image
from nst_cli.run.cache import ModelCache
from nst_cli.run.inputs import Inputs

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
    objects: str


def build_loss(
    config: Config,
    extractor: FeatureExtractor,
    content: torch.Tensor,
    style: torch.Tensor | Sequence[torch.Tensor],
    cache: ModelCache,
    size: int,
    inputs_masks: Sequence[tuple[torch.Tensor, int]] = (),
    tile: int | None = None,
    inputs: Inputs | None = None,
) -> WeightedSum:
    """Targets are computed once per scale: content features, and the style Grams (cached
    across runs; several style images blend by their weights). With `tile`, every pass
    over an image runs in tiles of about that many px (core.tiles). `inputs`: the decoded
    paintings, which core.objects measures at sizes of its own (the same answer at every
    scale); without them, the scale's style images are measured."""
    styles = [style] if isinstance(style, torch.Tensor) else list(style)
    specs: list[StyleImage | None] = list(config.style_images) or [None]
    shares, boxes = _object_rules(config, extractor, styles, specs, cache, inputs)
    blend = [
        _painting_targets(config, extractor, image, spec, index, size, content, cache, tile, found)
        for index, (image, spec, found) in enumerate(zip(styles, specs, boxes, strict=False))
    ]
    weights = [spec.weight if spec else 1.0 for spec in specs][: len(blend)]
    targets = blend[0] if len(blend) == 1 else blend_targets(blend, weights)
    if inputs_masks:
        # No palette term: each painting's colours belong to its own region, and the term
        # compares the whole image's colours. Each region keeps its own painting's share.
        return _masked_loss(config, extractor, content, blend, weights, inputs_masks, tile, shares)
    layers = _blended_layers(config, shares, weights)
    faces = _photo_faces(config, content, cache, inputs)
    held = list(region_content.LAYERS) if faces else []
    # One pass over the content serves its targets, the style normalisers and the faces'.
    tiler = Tiler.plan(extractor, content.shape[-2:], tile, [*config.network_layers, *held])
    form = config.loss.gram
    wanted = [*config.layers.content, *(config.layers.style if config.loss.normalize else ())]
    if not wanted:
        return _with_palette(
            _loss_for(config, {}, targets, layers), config, content, styles, weights
        )
    kept, sums, shapes = tiler.collect(
        content,
        list(dict.fromkeys([*wanted, *held])),
        keep=list(dict.fromkeys([*config.layers.content, *held])),
        sums=(lambda features, _: norm_sums(features, targets, form))
        if config.loss.normalize
        else None,
    )
    # Each normalised style term is measured against how far the content's own Gram is
    # from the style's at this scale (see losses.style_norms).
    norms = style_norms_from_sums(sums, shapes, targets, form) if config.loss.normalize else None
    own = {name: kept[name] for name in config.layers.content}
    loss = _loss_for(config, own, targets, layers, norms=norms)
    if faces:
        height, width = content.shape[-2:]
        masks = masks_at_layers(1 - object_mask(faces, height, width, *FACE_EDGE), held)
        term = region_content.RegionContent(kept, masks, region_content.LAYERS)
        loss = loss.plus(Weighted("faces", config.weights.faces, term, headline=True))
    return _with_palette(loss, config, content, styles, weights)


def _painting_targets(
    config: Config,
    extractor: FeatureExtractor,
    image: torch.Tensor,
    spec: StyleImage | None,
    index: int,
    size: int,
    content: torch.Tensor,
    cache: ModelCache,
    tile: int | None,
    found: Sequence[Fraction],
) -> dict[str, Any]:
    """One painting's style targets at this scale (from the cache where a run before made
    them), its object block guided round the faces `found` in it."""
    style_key = StyleKey(
        str(spec.path if spec else config.style), index, size,
        config.style_scale_of(index) if spec else config.style_scale, config.style_resize,
        tuple(content.shape), config.loss.style, config.color, config.loss.objects,
    )  # fmt: skip
    keep = object_mask(found, *image.shape[-2:]) if found else None
    return cache.style_targets(
        extractor, image, style_key, config.layers.style, config.loss.gram, config.loss.style,
        tile, keep,
    )  # fmt: skip


#: A face's box in the photo is held with this margin round it, fading out over this share
#: of its size (core.objects.object_mask's margin and feather).
FACE_EDGE = (0.1, 0.3)


def _photo_faces(
    config: Config, content: torch.Tensor, cache: ModelCache, inputs: Inputs | None
) -> list[Fraction]:
    """The faces found in the photo (`protect: faces`, a weight on them), at its own size."""
    if config.protect != "faces" or not config.weights.faces:
        return []
    image = inputs.detected_content if inputs else _array(content)
    return cache.faces(image, (str(config.content), "photo"), PHOTO_FACES)


#: What a run says of the faces it finds in a painting, and in the photo.
PAINTING_FACES = (
    "{where}; the deepest style layer leaves {it} out, so {they} {be} not painted into the "
    "photo (loss.objects: allow paints the whole painting)"
)
PHOTO_FACES = (
    "{where} in the photo, held to the photo's features harder so that {they} {be} still "
    "readable (protect: off paints {it} like the rest)"
)
#: The faces leave too little of the painting for a guided Gram (a close portrait).
PAINTING_FACES_FILL = (
    "{where}; {they} and {its} margin cover most of the painting, so the deepest style "
    "layer is off and {they} {be} not painted into the photo (loss.objects: allow keeps "
    "the layer)"
)
#: `loss.style: wasserstein` has no guided statistic: the layer goes for the whole painting.
PAINTING_FACES_W2 = (
    "{where}; loss.style: wasserstein cannot leave {it} out of the deepest style layer alone, "
    "so that layer is off and {they} {be} not painted into the photo (loss.style: gram keeps "
    "the rest of the painting there; loss.objects: allow keeps the layer)"
)


def guided(config: Config, found: Sequence[Fraction]) -> bool:
    """Whether a painting's found faces are left out of its block-5 Grams (a guided Gram
    over the rest of it), rather than the block switched off."""
    return config.loss.style == "gram" and kept_share(found) >= MIN_KEPT


def _painting_said(config: Config) -> Callable[[list[Fraction]], str]:
    """The info line for a painting's faces: what the rule does with them."""

    def said(found: list[Fraction]) -> str:
        if guided(config, found):
            return PAINTING_FACES
        return PAINTING_FACES_W2 if config.loss.style != "gram" else PAINTING_FACES_FILL

    return said


def object_rules(config: Config, painting: Path, cache: ModelCache) -> dict[str, float]:
    """Each object-block style layer's share of its weight that `painting` keeps under
    `config` (1 where it is kept, guided round the painting's faces or not): what a run's
    info line says, for a benchmark or a check."""
    image = load_image(painting, "style")
    inputs = Inputs(image, (image,))
    config = config.model_copy(update={"style": painting})  # the painting's own cache key
    extractor = cache.network(config)[2]
    styles = [to_tensor(image)]
    shares, _ = _object_rules(config, extractor, styles, [None], cache, inputs)
    return {name: shares[0].get(name, 1.0) for name in object_layers(config.layers.style)}


def _object_rules(
    config: Config,
    extractor: FeatureExtractor,
    styles: Sequence[torch.Tensor],
    specs: Sequence[StyleImage | None],
    cache: ModelCache,
    inputs: Inputs | None,
) -> tuple[list[dict[str, float]], list[list[Fraction]]]:
    """Per painting (core.objects): how much of each object-block style layer's weight it
    keeps, and the found faces its guided Grams leave out. A painting with faces keeps the
    layer over the rest of it (a Gram statistic; under `loss.style: wasserstein`, or where
    the faces fill the painting, the layer is off); one without is weighed by how
    stationary it is. Nothing changes with `loss.objects: allow`."""
    shares: list[dict[str, float]] = []
    boxes: list[list[Fraction]] = []
    if config.loss.objects != "avoid":
        return [{} for _ in styles], [[] for _ in styles]
    device = styles[0].device
    measured = [m.to(device) for m in inputs.measured_styles] if inputs else styles
    looked = inputs.detected_styles if inputs else [_array(s) for s in styles]
    for index, (image, spec) in enumerate(zip(measured, specs, strict=False)):
        key = (str(spec.path if spec else config.style), index)
        found = cache.faces(looked[index], key, _painting_said(config))
        if found and guided(config, found):
            shares.append({})
            boxes.append(found)
        elif found:
            shares.append({name: 0.0 for name in object_layers(config.layers.style)})
            boxes.append([])
        else:
            shares.append(cache.texture_shares(extractor, image, key, config.layers.style))
            boxes.append([])
    return shares, boxes


def _array(image: torch.Tensor) -> np.ndarray:
    """[1, 3, H, W] as H×W×3 float32 on the CPU."""
    return image[0].permute(1, 2, 0).float().cpu().numpy()


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
    regions = [
        Region(
            per_style[index], masks_at_layers(mask, config.layers.style), weights[index],
            shares[index],
        )
        for mask, index in masks
    ]  # fmt: skip

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
