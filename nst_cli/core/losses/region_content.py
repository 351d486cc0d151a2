"""A content term inside a region of the photo: its faces held to the photo's features harder
than the rest (`protect: faces`), so eyes, nose and mouth stay readable in a fully painted
picture.

term = Σ_l w_l · Σ M·(F − P)² / (C·Σ M) / mean_M(P²): the relative content error of each
layer weighed by the region's mask M (at the layer's resolution, feathered at its edge),
averaged over the region, so it does not depend on how large the face is. Like the other
feature terms it is a function of sums over positions, so a tiled run adds its tiles' sums,
each against its own window of the target and the mask."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from nst_cli.core.losses.common import Crop, Shape, Sums, put_sums, take_sums, whole, widened

#: The layers it holds: relu4_2 (the content layer: the face's layout) and relu3_1 (its
#: parts, the eyes and mouth a few pixels wide that relu4_2's 8-px cells blur).
LAYERS = {"relu3_1": 1.0, "relu4_2": 1.0}


class RegionContent:
    """The content term inside a mask; `layers` name the layers and their weights."""

    def __init__(
        self,
        targets: Mapping[str, torch.Tensor],
        masks: Mapping[str, torch.Tensor],
        layers: Mapping[str, float],
    ) -> None:
        self.layers = dict(layers)
        self.targets = {name: widened(targets[name].detach()) for name in self.layers}
        self.masks = {name: masks[name].to(self.targets[name]) for name in self.layers}
        #: C·Σ M over the whole layer (a tile sees only its window of the mask).
        self.mass = {
            name: (self.masks[name].sum() * self.targets[name].shape[1]).clamp_min(1e-6)
            for name in self.layers
        }
        #: mean(P²) under the mask: the relative error's divisor.
        self.power = {
            name: ((self.masks[name] * self.targets[name] ** 2).sum() / self.mass[name]).clamp_min(
                1e-12
            )
            for name in self.layers
        }

    def sums(self, features: Mapping[str, torch.Tensor], crops: Mapping[str, Crop] | None) -> Sums:
        """Σ M·(F − P)² over these positions, per layer."""
        out: Sums = {}
        for name in self.layers:
            crop = crops[name] if crops else whole
            difference = widened(features[name]) - crop(self.targets[name])
            squares = torch.sum(crop(self.masks[name]) * difference**2)
            put_sums(out, f"region_content.{name}", {"squares": squares})
        return out

    def value(
        self, sums: Mapping[str, torch.Tensor], shapes: Mapping[str, Shape], zero: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        total = zero
        for name, weight in self.layers.items():
            squares = take_sums(sums, f"region_content.{name}")["squares"]
            total = total + weight * squares / self.mass[name] / self.power[name]
        return total, {}
