"""Small pieces every loss term shares."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

#: A layer's size without the batch: (channels, height, width).
Shape = tuple[int, int, int]
#: Sums over a layer's positions that a term is a function of, by name (see GramTerm).
Sums = dict[str, torch.Tensor]
#: Cuts a tensor laid out like a whole layer (a content target, a mask) to the positions at
#: hand: the identity for the whole image, a tile's own window in a tiled run.
Crop = Callable[[torch.Tensor], torch.Tensor]


def whole(tensor: torch.Tensor) -> torch.Tensor:
    """The crop of an untiled pass: every position."""
    return tensor


def put_sums(into: Sums, prefix: str, sums: Sums) -> None:
    """Store a term's sums in a flat table of many terms' sums, as `prefix/name`."""
    into.update({f"{prefix}/{key}": value for key, value in sums.items()})


def take_sums(sums: Mapping[str, torch.Tensor], prefix: str) -> Sums:
    """One term's sums back from a flat table (put_sums)."""
    start = prefix + "/"
    return {key[len(start) :]: value for key, value in sums.items() if key.startswith(start)}


def layer_shape(features: torch.Tensor) -> Shape:
    """(C, H, W) of a [B, C, H, W] feature map."""
    _, channels, height, width = features.shape
    return channels, height, width


def widened(tensor: torch.Tensor) -> torch.Tensor:
    """A reduced-precision tensor (bfloat16 features) in float32; anything wider as it is."""
    return tensor.float() if tensor.element_size() < 4 and tensor.is_floating_point() else tensor


def mean_power(target: torch.Tensor) -> torch.Tensor:
    # The mean square of the target: a constant per layer, so dividing by it rescales that
    # layer's term without changing its minimiser. The floor keeps an all-black target finite.
    return torch.mean(target.detach() ** 2).clamp_min(1e-12)
