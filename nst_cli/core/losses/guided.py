"""Guided (masked) Grams, Gatys et al. 2017: one style per region of the content."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import torch

from nst_cli.core.layers import downsampling_factor
from nst_cli.core.losses.common import Crop, Sums, whole
from nst_cli.core.losses.gram import channel_outer


def masked_gram(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The guided Gram of Gatys et al. 2017: features weighted by a region's mask (at the
    layer's resolution), (F·M)(F·M)ᵀ / (C·Σ M²), which equals the plain Gram for M ≡ 1."""
    channels = features.shape[1]
    return channel_outer(features * mask) / (channels * _mask_power(mask))


def masks_at_layers(mask: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
    """A [1, 1, H, W] mask at the image's size, area-averaged to each layer's resolution (a
    layer of downsampling factor f is H // f × W // f): what a guided term weighs positions by."""
    height, width = mask.shape[-2:]
    out = {}
    for name in layers:
        factor = downsampling_factor([name])
        size = (max(1, height // factor), max(1, width // factor))
        out[name] = torch.nn.functional.interpolate(mask, size=size, mode="area")
    return out


def _mask_power(mask: torch.Tensor) -> torch.Tensor:
    return mask.pow(2).sum().clamp_min(1e-6)


@dataclass
class Region:
    """One style confined to a region: its Gram targets, its mask at each layer's
    resolution, its weight and (normalised losses) its per-layer divisors.

    Its distance is a function of (F·M)(F·M)ᵀ summed over the layer's positions (`sums`),
    so a tiled run adds its tiles' sums, each with its own window of the mask (`crop`)."""

    targets: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]
    weight: float = 1.0
    #: A layer's weight here as a share of its weight in the loss (1 where not named): a
    #: region whose painting is a portrait keeps its deepest layer off (core.objects).
    layer_shares: dict[str, float] = field(default_factory=dict)
    norms: dict[str, torch.Tensor] | None = None
    #: Σ M² of each layer's whole mask (a tile sees only its window of it).
    powers: dict[str, torch.Tensor] = field(init=False)

    def __post_init__(self) -> None:
        self.powers = {name: _mask_power(mask) for name, mask in self.masks.items()}

    def sums(self, name: str, features: torch.Tensor, crop: Crop = whole) -> Sums:
        """(F·M)(F·M)ᵀ over these positions."""
        return {"outer": channel_outer(features * crop(self.masks[name]))}

    def raw(self, name: str, sums: Sums, channels: int) -> torch.Tensor:
        """The distance before the norm: mean((G_M − A)²) of the guided Gram G_M."""
        gram = sums["outer"] / (channels * self.powers[name])
        return torch.mean((gram - self.targets[name]) ** 2)

    def value(self, name: str, sums: Sums, channels: int) -> torch.Tensor:
        """The region's term at a layer whose positions summed to `sums`, at its share."""
        raw = self.raw(name, sums, channels) * self.layer_shares.get(name, 1.0)
        return raw / self.norms[name] if self.norms else raw

    def distance(self, name: str, features: torch.Tensor) -> torch.Tensor:
        return self.value(name, self.sums(name, features), features.shape[1])


def region_norms(region: Region, reference: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """As style_norms, inside one region: the content's distance to the style there."""
    return region_norms_from_sums(
        region,
        {name: region.sums(name, reference[name]) for name in region.targets},
        {name: reference[name].shape[1] for name in region.targets},
    )


def region_norms_from_sums(
    region: Region, sums: Mapping[str, Sums], channels: Mapping[str, int]
) -> dict[str, torch.Tensor]:
    """region_norms from the content's sums at each layer (a tiled run's)."""
    norms = {}
    for name, target in region.targets.items():
        distance = region.raw(name, sums[name], channels[name])
        norms[name] = torch.maximum(distance, 1e-2 * torch.mean(target**2)).detach()
    return norms
