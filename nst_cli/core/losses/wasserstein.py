"""The Wasserstein statistic: each layer's features as a Gaussian (mean, covariance), matched by the closed-form 2-Wasserstein distance."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from nst_cli.core.losses.common import Crop, Shape, Sums, layer_shape, whole
from nst_cli.core.losses.gram import channel_outer

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


def moment_sums(features: torch.Tensor, shift: torch.Tensor) -> Sums:
    """Σ (F − s) and Σ (F − s)(F − s)ᵀ over these positions, about a fixed shift `s` [C]
    (the target's mean), in float64: the covariance is the second sum less the mean's
    outer product, and in float32 that difference loses digits to cancellation where the
    image's mean is far from the target's (0.2% of the term on noise)."""
    shift = shift.to(device=features.device, dtype=torch.float64)
    centered = features.double() - shift.view(1, -1, 1, 1)
    return {"first": centered.sum(dim=(0, 2, 3)), "outer": channel_outer(centered)[0]}


def moments(sums: Sums, count: int, shift: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and covariance (float32) of `count` positions from their moment_sums."""
    offset = sums["first"] / count
    cov = sums["outer"] / count - torch.outer(offset, offset)
    return (shift.to(offset) + offset).float(), cov.float()


def gaussian_target(features: torch.Tensor) -> GaussianTarget:
    """The mean, covariance and covariance square root of a style image's features."""
    _, _, height, width = features.shape
    return target_from_sums(target_sums(features), height * width)


def target_sums(features: torch.Tensor) -> Sums:
    """The moment sums a style target is made from (about 0: they add over tiles)."""
    return moment_sums(features.detach(), features.new_zeros(features.shape[1]))


def target_from_sums(sums: Sums, count: int) -> GaussianTarget:
    """The GaussianTarget of `count` positions from their target_sums."""
    zero = sums["first"].new_zeros(sums["first"].shape)
    return target_from_moments(*moments(sums, count, zero))


def target_from_moments(mean: torch.Tensor, cov: torch.Tensor) -> GaussianTarget:
    """A GaussianTarget from a mean and covariance (computed in float64, stored in float32)."""
    values, vectors = torch.linalg.eigh(cov.double())
    sqrt = vectors @ torch.diag(values.clamp_min(0).sqrt()) @ vectors.T
    return GaussianTarget(mean.float(), cov.float(), sqrt.float())


def wasserstein_loss(features: torch.Tensor, target: GaussianTarget) -> torch.Tensor:
    """Squared 2-Wasserstein distance between the Gaussians of the features and the style,
    per channel: (|μ−μ_s|² + tr Σ + tr Σ_s − 2·tr (Σ_s^½ Σ Σ_s^½)^½) / C.

    Matching the whole covariance (not only the Gram, which mixes mean and covariance) is
    what crowsonkb's style-transfer-pytorch does; its results look cleaner.
    """
    return WassersteinTerm(target)(features)


def gaussian_distance(
    mean: torch.Tensor, cov: torch.Tensor, target: GaussianTarget
) -> torch.Tensor:
    """wasserstein_loss from the features' mean and covariance. Only eigenvalues are
    differentiated (eigvalsh), which stays stable when eigenvalues repeat."""
    middle = target.cov_sqrt @ cov @ target.cov_sqrt
    eigenvalues = torch.linalg.eigvalsh(middle)
    floor = 1e-8 * eigenvalues.abs().max().detach().clamp_min(1e-12)
    root_trace = eigenvalues.clamp_min(floor).sqrt().sum()
    distance = (mean - target.mean).pow(2).sum() + cov.trace() + target.cov.trace() - 2 * root_trace
    return distance.clamp_min(0) / mean.numel()


def gaussian_power(target: GaussianTarget) -> torch.Tensor:
    # The distance from all-zero features, in the same units.
    return ((target.mean.pow(2).sum() + target.cov.trace()) / target.mean.numel()).clamp_min(1e-12)


@dataclass
class WassersteinTerm:
    """One layer's Wasserstein style term, scaled by WASSERSTEIN_SCALE when normalised (so a
    unit weight pulls about as hard as a Gram layer's), over `norm` or the target's power.

    A function of the features' moment sums (`sums`), so a tiled run adds its tiles' sums."""

    target: GaussianTarget
    normalize: bool = False
    norm: torch.Tensor | None = None

    def sums(self, features: torch.Tensor, crop: Crop = whole) -> Sums:
        """The moment sums of these positions about the target's mean."""
        return moment_sums(features, self.target.mean)

    def value(self, sums: Sums, shape: Shape) -> torch.Tensor:
        """The term of a layer of `shape` whose positions summed to `sums`."""
        mean, cov = moments(sums, shape[1] * shape[2], self.target.mean.to(sums["first"].device))
        term = gaussian_distance(mean, cov, self.target)
        if self.norm is not None:
            return term / self.norm * WASSERSTEIN_SCALE
        if self.normalize:
            return term * WASSERSTEIN_SCALE / gaussian_power(self.target)
        return term

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        return self.value(self.sums(features), layer_shape(features))
