"""The content term and total variation."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from nst_cli.core.losses.common import Crop, Shape, Sums, layer_shape, mean_power, whole, widened


def content_loss(
    features: torch.Tensor, target: torch.Tensor, normalize: bool = False
) -> torch.Tensor:
    """Mean squared difference of feature maps; relative to the target's power if normalised
    (in float32 whatever precision the network ran at)."""
    return ContentTerm(target, normalize)(features)


@dataclass
class ContentTerm:
    """One layer's content term: mean((F − P)²), over mean(P²) if `normalize`.

    Like the style terms, a function of a sum over the layer's positions (`sums`), so a
    tiled run adds its tiles' sums, each against its own window of the target (`crop`)."""

    target: torch.Tensor
    normalize: bool = False

    def __post_init__(self) -> None:
        self.target = widened(self.target.detach())
        #: The whole target's power: a tile sees only its window of the target.
        self.power = mean_power(self.target) if self.normalize else None

    def sums(self, features: torch.Tensor, crop: Crop = whole) -> Sums:
        """Σ (F − P)² over these positions."""
        return {"squares": torch.sum((widened(features) - crop(self.target)) ** 2)}

    def value(self, sums: Sums, shape: Shape) -> torch.Tensor:
        """The term of a layer of `shape` whose positions summed to `sums`."""
        loss = sums["squares"] / math.prod(shape)
        return loss / self.power if self.power is not None else loss

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        return self.value(self.sums(features), layer_shape(features))


def tv_loss(image: torch.Tensor) -> torch.Tensor:
    """Total variation: mean squared difference of neighbouring pixels, both directions."""
    dy = image[..., 1:, :] - image[..., :-1, :]
    dx = image[..., :, 1:] - image[..., :, :-1]
    return torch.mean(dy**2) + torch.mean(dx**2)
