"""Guided (masked) Grams, Gatys et al. 2017: one style per region of the content."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from nst_cli.core.losses.gram import channel_outer


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
