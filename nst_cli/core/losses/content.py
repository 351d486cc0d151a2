"""The content term and total variation."""

from __future__ import annotations

import torch

from nst_cli.core.losses.common import mean_power, widened


def content_loss(
    features: torch.Tensor, target: torch.Tensor, normalize: bool = False
) -> torch.Tensor:
    """Mean squared difference of feature maps; relative to the target's power if normalised
    (in float32 whatever precision the network ran at)."""
    target = widened(target)
    loss = torch.mean((widened(features) - target) ** 2)
    return loss / mean_power(target) if normalize else loss


def tv_loss(image: torch.Tensor) -> torch.Tensor:
    """Total variation: mean squared difference of neighbouring pixels, both directions."""
    dy = image[..., 1:, :] - image[..., :-1, :]
    dx = image[..., :, 1:] - image[..., :, :-1]
    return torch.mean(dy**2) + torch.mean(dx**2)
