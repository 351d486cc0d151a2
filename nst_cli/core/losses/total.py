"""The loss as a weighted sum of named terms (content, style, tv, and any other: the
palette, a video frame's temporal term), and the style targets it is built from."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

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


class FeatureLoss(Protocol):
    """A term that is a function of the network's features: its layers (by weight), the sums
    over positions it is a function of (they add over tiles), and its value from them."""

    layers: dict[str, float]

    def sums(
        self, features: Mapping[str, torch.Tensor], crops: Mapping[str, Crop] | None
    ) -> Sums: ...

    def value(
        self, sums: Mapping[str, torch.Tensor], shapes: Mapping[str, Shape], zero: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...


#: A term that is a function of the image itself (total variation, the palette, a video
#: frame's temporal term).
ImageLoss = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Weighted:
    """One named term of the sum and its weight. A headline term (content, style, tv) is
    logged by its name among the first columns; any other by its name after the layers'."""

    name: str
    weight: float
    term: FeatureLoss | ImageLoss
    headline: bool = False

    @property
    def on_features(self) -> bool:
        return hasattr(self.term, "sums")


class ContentLoss:
    """Σ w_l·content_l over the content layers (see ContentTerm)."""

    def __init__(
        self, targets: Mapping[str, torch.Tensor], layers: Mapping[str, float], normalize: bool
    ) -> None:
        self.layers = dict(layers)
        self.terms = {name: ContentTerm(target, normalize) for name, target in targets.items()}

    def sums(self, features: Mapping[str, torch.Tensor], crops: Mapping[str, Crop] | None) -> Sums:
        out: Sums = {}
        for name in self.layers:
            crop = crops[name] if crops else whole
            put_sums(out, f"content.{name}", self.terms[name].sums(features[name], crop))
        return out

    def value(
        self, sums: Mapping[str, torch.Tensor], shapes: Mapping[str, Shape], zero: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        total, parts = zero, {}
        for name, weight in self.layers.items():
            term = self.terms[name].value(take_sums(sums, f"content.{name}"), shapes[name])
            parts[f"content.{name}"] = term
            total = total + weight * term
        return total, parts


class StyleLoss:
    """Σ w_l·style_l over the style layers: each layer's statistic (a Gram or a Gaussian) of
    the whole image, or (`regions`, masked styles) each region's, weighed by region."""

    def __init__(
        self,
        targets: Mapping[str, Any],
        layers: Mapping[str, float],
        normalize: bool,
        gram_form: str = "mean",
        norms: Mapping[str, torch.Tensor] | None = None,
        regions: Sequence[Region] = (),
    ) -> None:
        self.layers = dict(layers)
        self.regions = list(regions)
        norms = {k: v.detach() for k, v in (norms or {}).items()}
        #: Each style layer's term, by the statistic its target is (a Gram or a Gaussian).
        self.terms = {
            name: style_term(target, normalize, gram_form, norms.get(name))
            for name, target in targets.items()
        }

    def sums(self, features: Mapping[str, torch.Tensor], crops: Mapping[str, Crop] | None) -> Sums:
        out: Sums = {}
        for name in self.layers:
            if self.regions:
                crop = crops[name] if crops else whole
                for index, region in enumerate(self.regions):
                    put_sums(out, f"style.{name}#{index}", region.sums(name, features[name], crop))
            else:
                put_sums(out, f"style.{name}", self.terms[name].sums(features[name]))
        return out

    def value(
        self, sums: Mapping[str, torch.Tensor], shapes: Mapping[str, Shape], zero: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        total, parts = zero, {}
        for name, weight in self.layers.items():
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
                term = self.terms[name].value(take_sums(sums, f"style.{name}"), shapes[name])
            parts[f"style.{name}"] = term
            total = total + weight * term
        return total, parts


class WeightedSum:
    """The loss: Σ weight·term over named terms (content, style, tv, palette, a video frame's
    temporal term, …), in their order.

    Feature terms are functions of sums over positions (`sums`, which add over tiles), so a
    tiled run gets the exact loss of the whole image (`from_sums`). A term whose weight is 0
    is not evaluated; it is logged as 0. The logged values are each term's before its weight
    (a sweep over β shows the style loss falling as β rises), and each feature term's layers.
    """

    def __init__(self, terms: Sequence[Weighted]) -> None:
        self.terms = list(terms)

    @property
    def layers(self) -> list[str]:
        """Every layer a forward pass must return, each once."""
        return list(dict.fromkeys(n for t in self.terms if t.on_features for n in t.term.layers))  # type: ignore[union-attr]

    def term(self, name: str) -> Any:
        """The term called `name` (its targets, its layers); KeyError if there is none."""
        found = next((t for t in self.terms if t.name == name), None)
        if found is None:
            raise KeyError(name)
        return found.term

    def plus(self, term: Weighted) -> WeightedSum:
        """This sum with one more term (a video frame's temporal term, say)."""
        return WeightedSum([*self.terms, term])

    def __call__(self, features: Mapping[str, torch.Tensor], image: torch.Tensor) -> LossTerms:
        shapes = {name: layer_shape(tensor) for name, tensor in features.items()}
        return self.from_sums(self.sums(features), shapes, image)

    def sums(
        self, features: Mapping[str, torch.Tensor], crops: Mapping[str, Crop] | None = None
    ) -> Sums:
        """Every sum over positions the feature terms are functions of: the whole image's from
        its features, or (a tiled run) one tile's, `crops` cutting each layer's targets and
        masks to the tile's window."""
        out: Sums = {}
        for weighted in self.terms:
            if weighted.on_features:
                out.update(weighted.term.sums(features, crops))  # type: ignore[union-attr]
        return out

    def from_sums(
        self, sums: Mapping[str, torch.Tensor], shapes: Mapping[str, Shape], image: torch.Tensor
    ) -> LossTerms:
        """The loss from the feature sums of the whole image (layers of `shapes`), plus the
        terms of the image itself."""
        zero = image.new_zeros(())
        headline: dict[str, torch.Tensor] = {}
        parts: dict[str, torch.Tensor] = {}
        total: torch.Tensor | None = None
        for weighted in self.terms:
            if weighted.on_features:
                value, own = weighted.term.value(sums, shapes, zero)  # type: ignore[union-attr]
            else:
                value = weighted.term(image) if weighted.weight else zero  # type: ignore[operator]
                own = {} if weighted.headline else {weighted.name: value}
            if weighted.headline:
                headline[weighted.name] = value
            parts.update(own)
            scaled = weighted.weight * value
            total = scaled if total is None else total + scaled
        return LossTerms(total=zero if total is None else total, terms={**headline, **parts})


def style_transfer_loss(
    content: ContentLoss, style: StyleLoss, weights: Mapping[str, float]
) -> WeightedSum:
    """total = α·Σ w_l·content_l + β·Σ w_l·style_l + γ·tv (weights "content", "style", "tv").

    With `normalize` (the default in the config) every term is a relative error:
    content_l = mean((F−P)²)/mean(P²) and style_l = mean((G−A)²)/D_l, where D_l comes from
    `style_norms` (the content image's own distance to the style at that layer; without
    them, mean(A²)). Relative errors do not depend on the scale of the weights' features
    (Caffe's are ~60× torchvision's), on the resolution, or on the layer's depth, so with unit
    layer weights each style layer pulls comparably (raw, relu4_1 owned ~98% of the Caffe
    style loss). Without `normalize`, the raw means are used.
    """
    return WeightedSum(
        [
            Weighted("content", weights["content"], content, headline=True),
            Weighted("style", weights["style"], style, headline=True),
            Weighted("tv", weights.get("tv", 0.0), tv_loss, headline=True),
        ]
    )


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
    features: Mapping[str, torch.Tensor],
    layers: Iterable[str],
    statistic: str = "gram",
    masks: Mapping[str, torch.Tensor] | None = None,
    crops: Mapping[str, Crop] | None = None,
) -> Sums:
    """The sums over a style image's positions its targets are made from (float64 moments
    for a Gaussian, F·Fᵀ for a Gram), by layer; they add over tiles. A layer with a mask in
    `masks` (at the layer's resolution; `crops` cut a tile's window of it) sums (F·M)(F·M)ᵀ
    and Σ M², the guided Gram's parts: the painting's positions under M ≈ 0 do not count."""
    out: Sums = {}
    for name in layers:
        layer = features[name].detach()
        if statistic == "wasserstein":
            put_sums(out, name, gaussian_sums(layer))
        elif masks and name in masks:
            mask = (crops[name] if crops else whole)(masks[name])
            put_sums(out, name, {"outer": channel_outer(layer * mask), "power": mask.pow(2).sum()})
        else:
            put_sums(out, name, {"outer": channel_outer(layer)})
    return out


def targets_from_sums(
    sums: Mapping[str, torch.Tensor],
    shapes: Mapping[str, Shape],
    form: str = "mean",
    statistic: str = "gram",
) -> dict[str, Any]:
    """Each layer's style target from its target_sums over every position (layers of `shapes`);
    a guided layer's Gram is scaled to the whole layer's positions from the mask's Σ M²."""
    out: dict[str, Any] = {}
    for name, shape in shapes.items():
        part = take_sums(sums, name)
        if statistic == "wasserstein":
            out[name] = gaussian_from_sums(part, shape[1] * shape[2])
            continue
        outer = part["outer"]
        if "power" in part:
            outer = outer * (shape[1] * shape[2] / part["power"].clamp_min(1e-6))
        out[name] = gram_from_outer(outer, shape, form).detach()
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
