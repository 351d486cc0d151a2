"""The Gram statistic (Gatys et al. 2015): channel correlations of a layer's features, and the style term that matches them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from nst_cli.core.losses.common import mean_power, widened

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


def gram_matrix(features: torch.Tensor, form: str = "mean") -> torch.Tensor:
    """G = F·Fᵀ / (C·H·W) (form "mean") or F·Fᵀ (form "sum") for [B, C, H, W] -> [B, C, C].

    Departure from Gatys et al.: they use the unnormalised F·Fᵀ and divide the loss by
    4·N²·M² instead; normalising the Gram itself makes targets independent of image size,
    so a style image at another scale still gives comparable statistics.
    """
    _, channels, height, width = features.shape
    gram = channel_outer(features)
    return gram / (channels * height * width) if form == "mean" else gram


def style_loss(
    features: torch.Tensor, target_gram: torch.Tensor, normalize: bool = False, form: str = "mean"
) -> torch.Tensor:
    """Mean squared difference of Gram matrices (see StyleTransferLoss for the scaling)."""
    loss = torch.mean((gram_matrix(features, form) - target_gram) ** 2)
    if normalize:
        return loss / mean_power(target_gram)
    if form == "sum":
        _, channels, height, width = features.shape
        return loss / (channels * height * width)
    return loss


@dataclass
class GramTerm:
    """One layer's Gram style term. With `norm` (normalised losses) it is the raw distance
    over that divisor; otherwise mean((G − A)²), over the target's power if `normalize`."""

    target: torch.Tensor
    form: str = "mean"
    normalize: bool = False
    norm: torch.Tensor | None = None

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        if self.norm is not None:
            return style_loss(features, self.target, form=self.form) / self.norm
        return style_loss(features, self.target, self.normalize, self.form)
