"""Colour control (Gatys et al. 2017, "Controlling Perceptual Factors in Neural Style
Transfer"): keep the content's colours, or bring the painting's palette to the photo's.

- `histogram`: before the run, the style image's colours are mapped linearly so their mean
  and covariance in RGB equal the content's; the texture then carries the photo's palette.
- `luminance`: the run sees luminance only (content and style as grey images, the style's
  luminance matched to the content's mean and spread); every saved image then takes its
  luminance from the result and its chroma from the content (YCbCr), so the photo's
  colours survive exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from PIL import Image

from nst_cli.core.pixels import resize_to

#: Rec. 601 luma, the Y of PIL's YCbCr (used again when the colours are put back).
_LUMA = (0.299, 0.587, 0.114)


def luminance(image: torch.Tensor) -> torch.Tensor:
    """[1, 3, H, W] RGB -> the same shape, each channel the luma Y."""
    weights = image.new_tensor(_LUMA).view(1, 3, 1, 1)
    return (image * weights).sum(dim=1, keepdim=True).expand_as(image).contiguous()


def match_luminance(style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The style's luma shifted and scaled to the content's mean and standard deviation."""
    shifted = (style - style.mean()) / style.std().clamp_min(1e-6)
    return (shifted * content.std() + content.mean()).clamp(0.0, 1.0)


def _sqrt_and_inverse(cov: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    values, vectors = torch.linalg.eigh(cov)
    values = values.clamp_min(1e-8)
    root = vectors @ torch.diag(values.sqrt()) @ vectors.T
    inverse_root = vectors @ torch.diag(values.rsqrt()) @ vectors.T
    return root, inverse_root


def match_color(source: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """`source` mapped by x -> A(x − μ_s) + μ_r with A = Σ_r^½ Σ_s^-½: its RGB mean and
    covariance become the reference's (clamped to [0, 1] afterwards)."""
    src = source[0].reshape(3, -1).double()
    ref = reference[0].reshape(3, -1).double()
    mu_s, mu_r = src.mean(1, keepdim=True), ref.mean(1, keepdim=True)
    cov_s = torch.cov(src) + 1e-6 * torch.eye(3, dtype=src.dtype)
    cov_r = torch.cov(ref) + 1e-6 * torch.eye(3, dtype=ref.dtype)
    root_r, _ = _sqrt_and_inverse(cov_r)
    _, inverse_root_s = _sqrt_and_inverse(cov_s)
    mapped = root_r @ inverse_root_s @ (src - mu_s) + mu_r
    return mapped.float().reshape_as(source[0]).unsqueeze(0).clamp(0.0, 1.0)


def prepare(
    content: torch.Tensor, style: torch.Tensor, mode: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """The content and style the optimiser sees under colour mode `mode`."""
    if mode == "histogram":
        return content, match_color(style, content)
    if mode == "luminance":
        grey = luminance(content)
        return grey, match_luminance(luminance(style), grey)
    return content, style


def recolor(content: Image.Image) -> Callable[[Image.Image], Image.Image]:
    """For `luminance`: a saved image's luma with the content's chroma, at the image's size."""

    def apply(image: Image.Image) -> Image.Image:
        y = image.convert("YCbCr").getchannel("Y")
        _, cb, cr = resize_to(content.convert("RGB"), image.size).convert("YCbCr").split()
        return Image.merge("YCbCr", (y, cb, cr)).convert("RGB")

    return apply
