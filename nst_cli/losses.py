"""Content, style (Gram) and total-variation losses.

The loss module is built once with its targets; each call takes the features of one forward
pass and returns the weighted total plus every named term, so progress bars and logs can show
`content`, `style`, `style.relu3_1`, … without recomputing anything.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn

#: How the Gram matrix is scaled: "mean" divides F·Fᵀ by C·H·W (nst, neural-style); "sum" is
#: the unnormalised F·Fᵀ whose layer loss is then divided by C·H·W (the seed recipe's form).
GRAM_FORMS = ("mean", "sum")


def widened(tensor: torch.Tensor) -> torch.Tensor:
    """A reduced-precision tensor (bfloat16 features) in float32; anything wider as it is."""
    return tensor.float() if tensor.element_size() < 4 and tensor.is_floating_point() else tensor


class _OuterSelf(torch.autograd.Function):
    """F·Fᵀ for F [C, N] or [B, C, N], with the gradient in one matrix product,
    (dG + dGᵀ)·F, where autograd's matmul takes two (one per factor). The Grams are a tenth
    of a step's time; this makes them about half as costly (measured against bmm: 55 → 21 ms
    per step at 256 px on the CPU). Given Fᵀ instead (`rows`: [N, C] or [B, N, C], how a
    channels_last feature map lies in memory) it computes the same Gram from it and hands
    the gradient back in that layout, Fᵀ·(dG + dGᵀ)ᵀ: no copy into the other layout going
    in, and none coming out (a gradient in the other layout costs a strided copy-add per
    layer, 12–29 ms per step at 448 px under bf16 on the CPU).

    bfloat16 features (`precision: bf16`) are upcast exactly and their Gram is a float32
    product, as precise as before; the gradient is computed in bfloat16, the precision the
    network's backward pass takes it in anyway: ten times cheaper than a float32 product
    plus a cast (31 → 4 ms per step at 448 px on the CPU)."""

    @staticmethod
    def forward(ctx: Any, matrix: torch.Tensor, rows: bool) -> torch.Tensor:
        ctx.save_for_backward(matrix)
        ctx.rows = rows
        exact = widened(matrix)
        transposed = exact.transpose(-1, -2)
        return transposed @ exact if rows else exact @ transposed

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (matrix,) = ctx.saved_tensors
        symmetric = (grad + grad.transpose(-1, -2)).to(matrix.dtype)
        return (matrix @ symmetric if ctx.rows else symmetric @ matrix), None


def channel_outer(features: torch.Tensor) -> torch.Tensor:
    """F·Fᵀ [B, C, C] of a feature map [B, C, H, W] seen as channels × positions, read in
    the layout it lies in (channels_last: as positions × channels) without copying it."""
    batch, channels, height, width = features.shape
    rows = not features.is_contiguous() and features.is_contiguous(
        memory_format=torch.channels_last
    )
    # One image (every loss term: a batch's lanes are sliced apart) as a plain matrix
    # product, which is faster than a batch of one; a reshape, whose gradient is a view.
    lead = (batch,) if batch > 1 else ()
    if rows:
        matrix = features.permute(0, 2, 3, 1).reshape(*lead, height * width, channels)
    else:
        matrix = features.reshape(*lead, channels, height * width)
    product: torch.Tensor = _OuterSelf.apply(matrix, rows)
    return product.reshape(batch, channels, channels)


def gram_matrix(features: torch.Tensor, form: str = "mean") -> torch.Tensor:
    """G = F·Fᵀ / (C·H·W) (form "mean") or F·Fᵀ (form "sum") for [B, C, H, W] -> [B, C, C].

    Departure from Gatys et al.: they use the unnormalised F·Fᵀ and divide the loss by
    4·N²·M² instead; normalising the Gram itself makes targets independent of image size,
    so a style image at another scale still gives comparable statistics.
    """
    _, channels, height, width = features.shape
    gram = channel_outer(features)
    return gram / (channels * height * width) if form == "mean" else gram


def content_loss(
    features: torch.Tensor, target: torch.Tensor, normalize: bool = False
) -> torch.Tensor:
    """Mean squared difference of feature maps; relative to the target's power if normalised
    (in float32 whatever precision the network ran at)."""
    target = widened(target)
    loss = torch.mean((widened(features) - target) ** 2)
    return loss / _power(target) if normalize else loss


def style_loss(
    features: torch.Tensor, target_gram: torch.Tensor, normalize: bool = False, form: str = "mean"
) -> torch.Tensor:
    """Mean squared difference of Gram matrices (see StyleTransferLoss for the scaling)."""
    loss = torch.mean((gram_matrix(features, form) - target_gram) ** 2)
    if normalize:
        return loss / _power(target_gram)
    if form == "sum":
        _, channels, height, width = features.shape
        return loss / (channels * height * width)
    return loss


#: Normalised Wasserstein terms are multiplied by this, so one `weights.style` gives about the
#: same content/style balance with either statistic: measured by eye and by the terms' values
#: on astronaut + swirls, where W2 at β = 0.3 looked as balanced as Gram at β = 2.
WASSERSTEIN_SCALE = 0.15


class GaussianTarget(NamedTuple):
    """A style layer summarised as a Gaussian: feature mean [C], covariance [C, C], and the
    covariance's symmetric square root (precomputed once, for the 2-Wasserstein distance)."""

    mean: torch.Tensor
    cov: torch.Tensor
    cov_sqrt: torch.Tensor


def _mean_cov(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flat = widened(features[0].reshape(features.shape[1], -1))
    mean = flat.mean(dim=1)
    centered = flat - mean[:, None]
    return mean, centered @ centered.T / flat.shape[1]


def gaussian_target(features: torch.Tensor) -> GaussianTarget:
    """The mean, covariance and covariance square root of a style image's features."""
    mean, cov = _mean_cov(features.detach().double())
    values, vectors = torch.linalg.eigh(cov)
    sqrt = vectors @ torch.diag(values.clamp_min(0).sqrt()) @ vectors.T
    return GaussianTarget(mean.float(), cov.float(), sqrt.float())


def wasserstein_loss(features: torch.Tensor, target: GaussianTarget) -> torch.Tensor:
    """Squared 2-Wasserstein distance between the Gaussians of the features and the style,
    per channel: (|μ−μ_s|² + tr Σ + tr Σ_s − 2·tr (Σ_s^½ Σ Σ_s^½)^½) / C.

    Matching the whole covariance (not only the Gram, which mixes mean and covariance) is
    what crowsonkb's style-transfer-pytorch does; its results look cleaner. Only eigenvalues
    are differentiated (eigvalsh), which stays stable when eigenvalues repeat.
    """
    mean, cov = _mean_cov(features)
    middle = target.cov_sqrt @ cov @ target.cov_sqrt
    eigenvalues = torch.linalg.eigvalsh(middle)
    floor = 1e-8 * eigenvalues.abs().max().detach().clamp_min(1e-12)
    root_trace = eigenvalues.clamp_min(floor).sqrt().sum()
    distance = (mean - target.mean).pow(2).sum() + cov.trace() + target.cov.trace() - 2 * root_trace
    return distance.clamp_min(0) / features.shape[1]


def _gaussian_power(target: GaussianTarget) -> torch.Tensor:
    # The distance from all-zero features, in the same units.
    return ((target.mean.pow(2).sum() + target.cov.trace()) / target.mean.numel()).clamp_min(1e-12)


def style_distance(features: torch.Tensor, target: Any, form: str = "mean") -> torch.Tensor:
    """The raw style term of one layer for either statistic (a Gram or a GaussianTarget)."""
    if isinstance(target, GaussianTarget):
        return wasserstein_loss(features, target)
    return style_loss(features, target, form=form)


def _style_power(target: Any, reference: torch.Tensor, form: str) -> torch.Tensor:
    if isinstance(target, GaussianTarget):
        return _gaussian_power(target)
    power = torch.mean(target**2)
    return power / reference[0].numel() if form == "sum" else power


def _power(target: torch.Tensor) -> torch.Tensor:
    # The mean square of the target: a constant per layer, so dividing by it rescales that
    # layer's term without changing its minimiser. The floor keeps an all-black target finite.
    return torch.mean(target.detach() ** 2).clamp_min(1e-12)


def tv_loss(image: torch.Tensor) -> torch.Tensor:
    """Total variation: mean squared difference of neighbouring pixels, both directions."""
    dy = image[..., 1:, :] - image[..., :-1, :]
    dx = image[..., :, 1:] - image[..., :, :-1]
    return torch.mean(dy**2) + torch.mean(dx**2)


def masked_gram(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The guided Gram of Gatys et al. 2017: features weighted by a region's mask (at the
    layer's resolution), (F·M)(F·M)ᵀ / (C·Σ M²), which equals the plain Gram for M ≡ 1."""
    channels = features.shape[1]
    weight = mask.pow(2).sum().clamp_min(1e-6)
    return channel_outer(features * mask) / (channels * weight)


@dataclass
class Region:
    """One style confined to a region: its Gram targets, its mask at each layer's
    resolution, its weight and (normalised losses) its per-layer divisors."""

    targets: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]
    weight: float = 1.0
    norms: dict[str, torch.Tensor] | None = None

    def distance(self, name: str, features: torch.Tensor) -> torch.Tensor:
        raw = torch.mean((masked_gram(features, self.masks[name]) - self.targets[name]) ** 2)
        return raw / self.norms[name] if self.norms else raw


def region_norms(region: Region, reference: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """As style_norms, inside one region: the content's distance to the style there."""
    norms = {}
    for name, target in region.targets.items():
        distance = torch.mean((masked_gram(reference[name], region.masks[name]) - target) ** 2)
        norms[name] = torch.maximum(distance, 1e-2 * torch.mean(target**2)).detach()
    return norms


class Losses(Mapping[str, float]):
    """One step's named losses, read back from the device only when something looks at
    them (a frame save, a bar refresh, the loss log's flush): on a GPU, reading a number is
    a sync that stalls the queue of work, so the loop itself never reads one per step."""

    def __init__(self, names: Sequence[str], values: torch.Tensor) -> None:
        self._names = tuple(names)
        self._values = values.detach()
        self._floats: dict[str, float] | None = None
        #: Whether every term is finite, as a device bool: usable without reading it.
        self.finite = torch.isfinite(self._values).all()

    @property
    def read(self) -> bool:
        """Whether the values are on the host already (reading them costs nothing more)."""
        return self._floats is not None

    def _host(self) -> dict[str, float]:
        if self._floats is None:
            Losses.read_all([self])
        assert self._floats is not None
        return self._floats

    def __getitem__(self, name: str) -> float:
        return self._host()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    @staticmethod
    def read_all(items: Sequence[Mapping[str, float]]) -> None:
        """Bring many steps' losses to the host with one transfer."""
        pending = [i for i in items if isinstance(i, Losses) and i._floats is None]
        for size in {len(p._names) for p in pending}:
            group = [p for p in pending if len(p._names) == size]
            rows = torch.stack([p._values.float() for p in group]).cpu().tolist()
            for item, row in zip(group, rows, strict=True):
                item._floats = dict(zip(item._names, row, strict=True))


def first_non_finite(items: Sequence[Mapping[str, float]]) -> int | None:
    """The index of the first of these steps' losses that is not finite (one transfer)."""
    Losses.read_all(items)
    for index, losses in enumerate(items):
        if not all(math.isfinite(v) for v in losses.values()):
            return index
    return None


@dataclass
class LossTerms:
    """Weighted total (what is minimised) and the unweighted named terms (what is logged)."""

    total: torch.Tensor
    terms: dict[str, torch.Tensor]

    def lazy(self) -> Losses:
        """Every term, read back from the device only when looked at (see Losses)."""
        names = ["total", *self.terms]
        return Losses(names, torch.stack([t.detach() for t in (self.total, *self.terms.values())]))

    def as_floats(self) -> dict[str, float]:
        """Every term as a Python float (one device sync for all of them)."""
        return dict(self.lazy())


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
        self.content_targets = {k: widened(v.detach()) for k, v in content_targets.items()}
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

    @property
    def layers(self) -> list[str]:
        """Every layer a forward pass must return, each once."""
        return list(dict.fromkeys([*self.content_layers, *self.style_layers]))

    def forward(self, features: Mapping[str, torch.Tensor], image: torch.Tensor) -> LossTerms:
        terms: dict[str, torch.Tensor] = {}
        zero = image.new_zeros(())
        content = zero
        for name, weight in self.content_layers.items():
            term = content_loss(features[name], self.content_targets[name], self.normalize)
            terms[f"content.{name}"] = term
            content = content + weight * term
        style = zero
        for name, weight in self.style_layers.items():
            if self.regions:
                term = sum(
                    (r.weight * r.distance(name, features[name]) for r in self.regions), zero
                )
                terms[f"style.{name}"] = term
                style = style + weight * term
                continue
            target = self.style_targets[name]
            if name in self.style_norms:
                term = style_distance(features[name], target, self.gram_form)
                term = term / self.style_norms[name]
                if isinstance(target, GaussianTarget):
                    term = term * WASSERSTEIN_SCALE
            elif isinstance(target, GaussianTarget):
                term = wasserstein_loss(features[name], target)
                if self.normalize:
                    term = term * WASSERSTEIN_SCALE / _gaussian_power(target)
            else:
                term = style_loss(features[name], target, self.normalize, self.gram_form)
            terms[f"style.{name}"] = term
            style = style + weight * term
        tv = tv_loss(image) if self.tv_weight else zero
        total = self.content_weight * content + self.style_weight * style + self.tv_weight * tv
        return LossTerms(total=total, terms={"content": content, "style": style, "tv": tv, **terms})


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
    norms = {}
    for name, target in targets.items():
        distance = style_distance(reference[name], target, form)
        # The distance from all-zero features, in the same units.
        power = _style_power(target, reference[name], form)
        norms[name] = torch.maximum(distance, 1e-2 * power).detach()
    return norms


def style_targets(
    features: Mapping[str, torch.Tensor],
    layers: Mapping[str, float],
    form: str = "mean",
    statistic: str = "gram",
) -> dict[str, Any]:
    """Targets of a style image's features for the given layers: Gram matrices, or the
    Gaussians (mean, covariance) the Wasserstein loss matches."""
    if statistic == "wasserstein":
        return {name: gaussian_target(features[name]) for name in layers}
    return {name: gram_matrix(features[name], form).detach() for name in layers}


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
