"""The temporal term of a video frame (Ruder et al. 2016): stay where the flow says the
previous stylised frames already are."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass
class TemporalTarget:
    """One earlier stylised frame warped onto this frame, and the 0/1 mask [1, 1, H, W] of
    the pixels its warp is trusted for (no occlusion, no motion boundary)."""

    warped: torch.Tensor
    mask: torch.Tensor

    def to(self, device: torch.device | str) -> TemporalTarget:
        return TemporalTarget(self.warped.to(device), self.mask.to(device))

    def resized(self, size: tuple[int, int]) -> TemporalTarget:
        """At another (height, width): a coarse scale of the frame's own schedule."""
        if tuple(self.warped.shape[-2:]) == size:
            return self
        warped = torch.nn.functional.interpolate(self.warped, size=size, mode="area")
        mask = torch.nn.functional.interpolate(self.mask, size=size, mode="area")
        return TemporalTarget(warped, (mask > 0.999).to(mask.dtype))


class TemporalTerm:
    """Σ_j (1/D)·Σ_p c_j(p)·(x(p) − ω_j(p))²: each target's squared difference over its
    trusted pixels, D the number of values (pixels × channels), as the paper's equation 3.

    With several targets (the long-term variant: frames t−1, t−2, t−4 …) the masks passed in
    must already exclude pixels a nearer frame covers (`long_term_masks`), so a pixel is held
    to one earlier frame, the nearest that saw it."""

    def __init__(self, targets: Sequence[TemporalTarget]) -> None:
        self.targets = list(targets)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        total = image.new_zeros(())
        for target in self.targets:
            difference = (image - target.warped.to(image.dtype)) ** 2
            total = total + (target.mask.to(image.dtype) * difference).mean()
        return total

    def resized(self, size: tuple[int, int]) -> TemporalTerm:
        return TemporalTerm([t.resized(size) for t in self.targets])


def long_term_masks(masks: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Masks for frames t−j, nearest first, each without the pixels nearer frames already
    cover: c_long(t−j) = max(c(t−j) − Σ_{k<j} c(t−k), 0) (the paper's equation 6)."""
    covered = torch.zeros_like(masks[0])
    result = []
    for mask in masks:
        result.append((mask - covered).clamp_(min=0.0))
        covered = covered + mask
    return result
