"""Content, style (Gram) and total-variation losses.

The loss module is built once with its targets; each call takes the features of one forward
pass and returns the weighted total plus every named term, so progress bars and logs can show
`content`, `style`, `style.relu3_1`, … without recomputing anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """G = F·Fᵀ / (C·H·W) for features [B, C, H, W] -> [B, C, C].

    Departure from Gatys et al.: they use the unnormalised F·Fᵀ and divide the loss by
    4·N²·M² instead; normalising the Gram itself makes targets independent of image size,
    so a style image at another scale still gives comparable statistics.
    """
    batch, channels, height, width = features.shape
    flat = features.reshape(batch, channels, height * width)
    return torch.bmm(flat, flat.transpose(1, 2)) / (channels * height * width)


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of feature maps."""
    return torch.mean((features - target) ** 2)


def style_loss(features: torch.Tensor, target_gram: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of Gram matrices."""
    return torch.mean((gram_matrix(features) - target_gram) ** 2)


def tv_loss(image: torch.Tensor) -> torch.Tensor:
    """Total variation: mean squared difference of neighbouring pixels, both directions."""
    dy = image[..., 1:, :] - image[..., :-1, :]
    dx = image[..., :, 1:] - image[..., :, :-1]
    return torch.mean(dy**2) + torch.mean(dx**2)


@dataclass
class LossTerms:
    """Weighted total (what is minimised) and the unweighted named terms (what is logged)."""

    total: torch.Tensor
    terms: dict[str, torch.Tensor]

    def as_floats(self) -> dict[str, float]:
        """Every term as a Python float (one device sync for all of them)."""
        names = ["total", *self.terms]
        values = torch.stack([self.total.detach(), *(t.detach() for t in self.terms.values())])
        return dict(zip(names, values.float().cpu().tolist(), strict=True))


class StyleTransferLoss(nn.Module):
    """total = α·Σ w_l·content_l + β·Σ w_l·style_l + γ·tv.

    The logged `content` and `style` terms are the layer-weighted sums before α and β, so
    they stay comparable across runs with different weights (a sweep over β shows the style
    loss falling as β rises).
    """

    def __init__(
        self,
        content_targets: Mapping[str, torch.Tensor],
        style_targets: Mapping[str, torch.Tensor],
        content_layers: Mapping[str, float],
        style_layers: Mapping[str, float],
        content_weight: float,
        style_weight: float,
        tv_weight: float = 0.0,
    ) -> None:
        super().__init__()
        self.content_targets = {k: v.detach() for k, v in content_targets.items()}
        self.style_targets = {k: v.detach() for k, v in style_targets.items()}
        self.content_layers = dict(content_layers)
        self.style_layers = dict(style_layers)
        self.content_weight = content_weight
        self.style_weight = style_weight
        self.tv_weight = tv_weight

    @property
    def layers(self) -> list[str]:
        """Every layer a forward pass must return, each once."""
        return list(dict.fromkeys([*self.content_layers, *self.style_layers]))

    def forward(self, features: Mapping[str, torch.Tensor], image: torch.Tensor) -> LossTerms:
        terms: dict[str, torch.Tensor] = {}
        zero = image.new_zeros(())
        content = zero
        for name, weight in self.content_layers.items():
            term = content_loss(features[name], self.content_targets[name])
            terms[f"content.{name}"] = term
            content = content + weight * term
        style = zero
        for name, weight in self.style_layers.items():
            term = style_loss(features[name], self.style_targets[name])
            terms[f"style.{name}"] = term
            style = style + weight * term
        tv = tv_loss(image) if self.tv_weight else zero
        total = self.content_weight * content + self.style_weight * style + self.tv_weight * tv
        return LossTerms(total=total, terms={"content": content, "style": style, "tv": tv, **terms})


def style_targets(
    features: Mapping[str, torch.Tensor], layers: Mapping[str, float]
) -> dict[str, torch.Tensor]:
    """Gram targets of a style image's features for the given layers."""
    return {name: gram_matrix(features[name]).detach() for name in layers}
