"""The Gram statistic (Gatys et al. 2015): channel correlations of a layer's features, and the style term that matches them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from nst_cli.core.losses.common import Crop, Shape, Sums, layer_shape, mean_power, whole, widened

#: How the Gram matrix is scaled: "mean" divides F·Fᵀ by C·H·W (nst, neural-style); "sum" is
#: the unnormalised F·Fᵀ whose layer loss is then divided by C·H·W (the seed recipe's form).
GRAM_FORMS = ("mean", "sum")


class _OuterSelf(torch.autograd.Function):
    """F·Fᵀ for F [C, N] or [B, C, N], with the gradient in one matrix product,
    (dG + dGᵀ)·F, where autograd's matmul takes two (one per factor): about half the cost of
    the Grams (docs/performance.md). Given Fᵀ instead (`rows`: [N, C] or [B, N, C], how a
    channels_last feature map lies in memory) it computes the same Gram from it and hands
    the gradient back in that layout, Fᵀ·(dG + dGᵀ)ᵀ: no copy into the other layout going
    in, and none coming out (a gradient in the other layout costs a strided copy-add per
    layer).

    bfloat16 features (`precision: bf16`) are upcast exactly and their Gram is a float32
    product, as precise as before; the gradient is computed in bfloat16, the precision the
    network's backward pass takes it in anyway, far cheaper than a float32 product plus a
    cast."""

    @staticmethod
    def forward(ctx: Any, matrix: torch.Tensor, rows: bool) -> torch.Tensor:
        ctx.save_for_backward(matrix)
        ctx.rows = rows
        exact = widened(matrix)
        transposed = exact.transpose(-1, -2)
        return transposed @ exact if rows else exact @ transposed

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (matrix,) = ctx.saved_tensors
        symmetric = (grad + grad.transpose(-1, -2)).to(matrix.dtype)
        return (matrix @ symmetric if ctx.rows else symmetric @ matrix), None


def channel_outer(features: torch.Tensor) -> torch.Tensor:
    """F·Fᵀ [B, C, C] of a feature map [B, C, H, W] seen as channels × positions, read in
    the layout it lies in (channels_last: as positions × channels) without copying it."""
    batch, channels, height, width = features.shape
    rows = not features.is_contiguous() and features.is_contiguous(
        memory_format=torch.channels_last
    )
    # One image (every loss term: a batch's lanes are sliced apart) as a plain matrix
    # product, which is faster than a batch of one; a reshape, whose gradient is a view.
    lead = (batch,) if batch > 1 else ()
    if rows:
        matrix = features.permute(0, 2, 3, 1).reshape(*lead, height * width, channels)
    else:
        matrix = features.reshape(*lead, channels, height * width)
    product: torch.Tensor = _OuterSelf.apply(matrix, rows)
    return product.reshape(batch, channels, channels)


def gram_from_outer(outer: torch.Tensor, shape: Shape, form: str = "mean") -> torch.Tensor:
    """The Gram matrix from F·Fᵀ summed over every position of a layer of `shape` (C, H, W)."""
    return outer / math.prod(shape) if form == "mean" else outer


def gram_matrix(features: torch.Tensor, form: str = "mean") -> torch.Tensor:
    """G = F·Fᵀ / (C·H·W) (form "mean") or F·Fᵀ (form "sum") for [B, C, H, W] -> [B, C, C].

    Departure from Gatys et al.: they use the unnormalised F·Fᵀ and divide the loss by
    4·N²·M² instead; normalising the Gram itself makes targets independent of image size,
    so a style image at another scale still gives comparable statistics.
    """
    return gram_from_outer(channel_outer(features), layer_shape(features), form)


def gram_distance(
    gram: torch.Tensor,
    target_gram: torch.Tensor,
    shape: Shape,
    normalize: bool = False,
    form: str = "mean",
) -> torch.Tensor:
    """Mean squared difference of Gram matrices (see style_transfer_loss for the scaling)."""
    loss = torch.mean((gram - target_gram) ** 2)
    if normalize:
        return loss / mean_power(target_gram)
    return loss / math.prod(shape) if form == "sum" else loss


def style_loss(
    features: torch.Tensor, target_gram: torch.Tensor, normalize: bool = False, form: str = "mean"
) -> torch.Tensor:
    """The Gram distance of a feature map to a target Gram."""
    return gram_distance(
        gram_matrix(features, form), target_gram, layer_shape(features), normalize, form
    )


@dataclass
class GramTerm:
    """One layer's Gram style term. With `norm` (normalised losses) it is the raw distance
    over that divisor; otherwise mean((G − A)²), over the target's power if `normalize`.

    The term is a function of one sum over the layer's positions (`sums`: F·Fᵀ), so a
    tiled run adds the tiles' sums and gets the whole image's term (`value`)."""

    target: torch.Tensor
    form: str = "mean"
    normalize: bool = False
    norm: torch.Tensor | None = None

    def sums(self, features: torch.Tensor, crop: Crop = whole) -> Sums:
        """F·Fᵀ over these positions."""
        return {"outer": channel_outer(features)}

    def value(self, sums: Sums, shape: Shape) -> torch.Tensor:
        """The term of a layer of `shape` whose positions summed to `sums`."""
        gram = gram_from_outer(sums["outer"], shape, self.form)
        if self.norm is not None:
            return gram_distance(gram, self.target, shape, form=self.form) / self.norm
        return gram_distance(gram, self.target, shape, self.normalize, self.form)

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        return self.value(self.sums(features), layer_shape(features))
