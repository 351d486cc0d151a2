"""Small pieces every loss term shares."""

from __future__ import annotations

import torch


def widened(tensor: torch.Tensor) -> torch.Tensor:
    """A reduced-precision tensor (bfloat16 features) in float32; anything wider as it is."""
    return tensor.float() if tensor.element_size() < 4 and tensor.is_floating_point() else tensor


def mean_power(target: torch.Tensor) -> torch.Tensor:
    # The mean square of the target: a constant per layer, so dividing by it rescales that
    # layer's term without changing its minimiser. The floor keeps an all-black target finite.
    return torch.mean(target.detach() ** 2).clamp_min(1e-12)
