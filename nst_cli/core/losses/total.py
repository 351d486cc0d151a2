"""The weighted sum of every term, and the style targets it is built from."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from nst_cli.core.losses.common import (
    Crop,
    Shape,
    Sums,
    layer_shape,
    put_sums,
    take_sums,
    whole,
)
from nst_cli.core.losses.content import ContentTerm, tv_loss
from nst_cli.core.losses.gram import GramTerm, channel_outer, gram_from_outer
from nst_cli.core.losses.guided import Region
from nst_cli.core.losses.palette import PaletteTerm
from nst_cli.core.losses.temporal import TemporalTerm
from nst_cli.core.losses.values import LossTerms
from nst_cli.core.losses.wasserstein import (
    GaussianTarget,
    WassersteinTerm,
    gaussian_power,
)
from nst_cli.core.losses.wasserstein import target_from_sums as gaussian_from_sums
from nst_cli.core.losses.wasserstein import target_sums as gaussian_sums


def _style_power(target: Any, shape: Shape, form: str) -> torch.Tensor:
    if isinstance(target, GaussianTarget):
        return gaussian_power(target)
    power = torch.mean(target**2)
    return power / math.prod(shape) if form == "sum" else power


class StyleTransferLoss(nn.Module):
    """total = α·Σ w_l·content_l + β·Σ w_l·style_l + γ·tv.

    With `normalize` (the default in the config) every term is a relative error:
    content_l = mean((F−P)²)/mean(P²) and style_l = mean((G−A)²)/D_l, where D_l comes from
    `style_norms` (the content image's own distance to the style at that layer; without
    them, mean(A²)). Relative errors do not depend on the scale of the weights' features
    (Caffe's are ~60× torchvision's), on the resolution, or on the layer's depth, so with unit
    layer weights each style layer pulls comparably (raw, relu4_1 owned ~98% of the Caffe
    style loss). Without `normalize`, the raw means are used.

    The logged `content` and `style` terms are the layer-weighted sums before α and β, so
    they stay comparable across runs with different weights (a sweep over β shows the style
    loss falling as β rises).
    """

    def __init__(
        self,
        content_targets: Mapping[str, torch.Tensor],
        style_targets: Mapping[str, Any],
        content_layers: Mapping[str, float],
        style_layers: Mapping[str, float],
        content_weight: float,
        style_weight: float,
        tv_weight: float = 0.0,
        *,
        normalize: bool = False,
        gram_form: str = "mean",
        style_norms: Mapping[str, torch.Tensor] | None = None,
        regions: Sequence[Region] = (),
    ) -> None:
        super().__init__()
        self.content_targets = {k: v.detach() for k, v in content_targets.items()}
        self.style_targets = dict(style_targets)  # detached by style_targets()
        self.content_layers = dict(content_layers)
        self.style_layers = dict(style_layers)
        self.content_weight = content_weight
        self.style_weight = style_weight
        self.tv_weight = tv_weight
        self.normalize = normalize
        self.gram_form = gram_form
        self.style_norms = {k: v.detach() for k, v in (style_norms or {}).items()}
        #: Masked styles (`masks`): when given, each style term is theirs, region by region.
        self.regions = list(regions)
        #: A video frame's temporal term (`with_temporal`), and its weight.
        self.temporal: TemporalTerm | None = None
        self.temporal_weight = 0.0
        #: The painting's colours as a distribution (`with_palette`), and its weight.
        self.palette: PaletteTerm | None = None
        self.palette_weight = 0.0
        self.content_terms = {
            name: ContentTerm(target, normalize) for name, target in self.content_targets.items()
        }
        #: Each style layer's term, by the statistic its target is (a Gram or a Gaussian).
        self.style_terms = {
            name: style_term(target, normalize, gram_form, self.style_norms.get(name))
            for name, target in self.style_targets.items()
        }

    @property
    def layers(self) -> list[str]:
        """Every layer a forward pass must return, each once."""
        return list(dict.fromkeys([*self.content_layers, *self.style_layers]))

    def forward(self, features: Mapping[str, torch.Tensor], image: torch.Tensor) -> LossTerms:
        shapes = {name: layer_shape(tensor) for name, tensor in features.items()}
        return self.from_sums(self.sums(features), shapes, image)

    def sums(
        self, features: Mapping[str, torch.Tensor], crops: Mapping[str, Crop] | None = None
    ) -> Sums:
        """Every sum over positions the feature terms are functions of, by term: the whole
        image's from its features, or (a tiled run) one tile's from its own positions, with
        `crops` cutting each layer's targets and masks to them. Sums add over tiles."""
        out: Sums = {}
        for name in self.content_layers:
            crop = crops[name] if crops else whole
            put_sums(out, f"content.{name}", self.content_terms[name].sums(features[name], crop))
        for name in self.style_layers:
            if self.regions:
                crop = crops[name] if crops else whole
                for index, region in enumerate(self.regions):
                    put_sums(out, f"style.{name}#{index}", region.sums(name, features[name], crop))
            else:
                put_sums(out, f"style.{name}", self.style_terms[name].sums(features[name]))
        return out

    def from_sums(
        self, sums: Mapping[str, torch.Tensor], shapes: Mapping[str, Shape], image: torch.Tensor
    ) -> LossTerms:
        """The loss from the feature sums of the whole image (layers of `shapes`), plus the
        terms of the image itself (total variation, a video frame's temporal term)."""
        terms: dict[str, torch.Tensor] = {}
        zero = image.new_zeros(())
        content = zero
        for name, weight in self.content_layers.items():
            term = self.content_terms[name].value(take_sums(sums, f"content.{name}"), shapes[name])
            terms[f"content.{name}"] = term
            content = content + weight * term
        style = zero
        for name, weight in self.style_layers.items():
            if self.regions:
                channels = shapes[name][0]
                term = sum(
                    (
                        r.weight * r.value(name, take_sums(sums, f"style.{name}#{i}"), channels)
                        for i, r in enumerate(self.regions)
                    ),
                    zero,
                )
            else:
                term = self.style_terms[name].value(take_sums(sums, f"style.{name}"), shapes[name])
            terms[f"style.{name}"] = term
            style = style + weight * term
        tv = tv_loss(image) if self.tv_weight else zero
        total = self.content_weight * content + self.style_weight * style + self.tv_weight * tv
        if self.temporal is not None:
            temporal = self.temporal(image)
            terms["temporal"] = temporal
            total = total + self.temporal_weight * temporal
        if self.palette is not None:
            palette = self.palette(image)
            terms["palette"] = palette
            total = total + self.palette_weight * palette
        return LossTerms(total=total, terms={"content": content, "style": style, "tv": tv, **terms})

    def with_palette(self, term: PaletteTerm, weight: float) -> StyleTransferLoss:
        """This loss plus the palette term (see losses.palette), in place."""
        self.palette = term
        self.palette_weight = weight
        return self

    def with_temporal(self, term: TemporalTerm, weight: float) -> StyleTransferLoss:
        """This loss plus a video frame's temporal term (see losses.temporal), in place."""
        self.temporal = term
        self.temporal_weight = weight
        return self


def style_term(
    target: Any, normalize: bool, form: str = "mean", norm: torch.Tensor | None = None
) -> GramTerm | WassersteinTerm:
    """The style term of one layer for its statistic: a Gram target or a GaussianTarget."""
    if isinstance(target, GaussianTarget):
        return WassersteinTerm(target, normalize, norm)
    return GramTerm(target, form, normalize, norm)


def style_norms(
    reference: Mapping[str, torch.Tensor], targets: Mapping[str, Any], form: str = "mean"
) -> dict[str, torch.Tensor]:
    """Per-layer divisors for normalised style terms: the raw distance from the reference
    (content) image's Gram to the style's, floored at 1% of the style Gram's own power.

    A normalised term then reads "the fraction of the way from the content's statistics to
    the style's still to go": every layer starts at 1 from the content image, whatever the
    weights' feature scale, the resolution or the layer's depth. The floor keeps a layer where
    content and style already agree from being magnified without bound.
    """
    shapes = {name: layer_shape(reference[name]) for name in targets}
    return style_norms_from_sums(norm_sums(reference, targets, form), shapes, targets, form)


def norm_sums(
    reference: Mapping[str, torch.Tensor], targets: Mapping[str, Any], form: str = "mean"
) -> Sums:
    """The sums over the reference's positions that style_norms needs (they add over tiles)."""
    out: Sums = {}
    for name, target in targets.items():
        put_sums(out, name, style_term(target, False, form).sums(reference[name]))
    return out


def style_norms_from_sums(
    sums: Mapping[str, torch.Tensor],
    shapes: Mapping[str, Shape],
    targets: Mapping[str, Any],
    form: str = "mean",
) -> dict[str, torch.Tensor]:
    """style_norms from the reference's norm_sums over every position (layers of `shapes`)."""
    norms = {}
    for name, target in targets.items():
        distance = style_term(target, False, form).value(take_sums(sums, name), shapes[name])
        power = _style_power(target, shapes[name], form)  # the distance from all-zero features
        norms[name] = torch.maximum(distance, 1e-2 * power).detach()
    return norms


def target_sums(
    features: Mapping[str, torch.Tensor], layers: Iterable[str], statistic: str = "gram"
) -> Sums:
    """The sums over a style image's positions its targets are made from (float64 moments
    for a Gaussian, F·Fᵀ for a Gram), by layer; they add over tiles."""
    out: Sums = {}
    for name in layers:
        layer = features[name].detach()
        if statistic == "wasserstein":
            put_sums(out, name, gaussian_sums(layer))
        else:
            put_sums(out, name, {"outer": channel_outer(layer)})
    return out


def targets_from_sums(
    sums: Mapping[str, torch.Tensor],
    shapes: Mapping[str, Shape],
    form: str = "mean",
    statistic: str = "gram",
) -> dict[str, Any]:
    """Each layer's style target from its target_sums over every position (layers of `shapes`)."""
    out: dict[str, Any] = {}
    for name, shape in shapes.items():
        part = take_sums(sums, name)
        if statistic == "wasserstein":
            out[name] = gaussian_from_sums(part, shape[1] * shape[2])
        else:
            out[name] = gram_from_outer(part["outer"], shape, form).detach()
    return out


def style_targets(
    features: Mapping[str, torch.Tensor],
    layers: Mapping[str, float],
    form: str = "mean",
    statistic: str = "gram",
) -> dict[str, Any]:
    """Targets of a style image's features for the given layers: Gram matrices, or the
    Gaussians (mean, covariance) the Wasserstein loss matches."""
    shapes = {name: layer_shape(features[name]) for name in layers}
    return targets_from_sums(target_sums(features, layers, statistic), shapes, form, statistic)


def blend_targets(targets: Sequence[Mapping[str, Any]], weights: Sequence[float]) -> dict[str, Any]:
    """Several style images' targets as one, by weight (normalised to sum 1): Grams average;
    Gaussians combine as the mixture's mean and covariance (moment matching)."""
    total = float(sum(weights))
    shares = [w / total for w in weights]
    blended: dict[str, Any] = {}
    for name, first in targets[0].items():
        if isinstance(first, GaussianTarget):
            mean = sum(w * t[name].mean for w, t in zip(shares, targets, strict=True))
            second = sum(
                w * (t[name].cov + torch.outer(t[name].mean, t[name].mean))
                for w, t in zip(shares, targets, strict=True)
            )
            cov = second - torch.outer(mean, mean)  # type: ignore[arg-type]
            values, vectors = torch.linalg.eigh(cov.double())
            root = vectors @ torch.diag(values.clamp_min(0).sqrt()) @ vectors.T
            blended[name] = GaussianTarget(mean, cov, root.float())  # type: ignore[arg-type]
        else:
            blended[name] = sum(w * t[name] for w, t in zip(shares, targets, strict=True))
    return blended
