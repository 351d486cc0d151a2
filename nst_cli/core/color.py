"""Colour control (Gatys et al. 2016, "Preserving colour in neural artistic style transfer"):
keep the content's colours, or bring the photo's palette to the painting.

- `luminance`: the painting's luminance is first matched to the photo's, its mean and spread
  (Gatys et al. 2016: a night photo stays dark, a bright one bright, the painting's chroma
  kept); the run is then the default one, in full colour, and every saved image takes its
  luminance from the result and its chroma from the content (YCbCr), so the photo's colours
  survive exactly and the painting's texture is as strong as in the default mode (colour
  transfer after the run, neural-style's `-original_colors`). Optimising on luminance alone,
  against a grey style matched to the photo, was measured much weaker (docs/creative.md).
- `histogram`: before the run, the style image's colours are mapped linearly so their mean
  and covariance in RGB equal the content's; the texture then carries the photo's palette.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

from nst_cli.core.pixels import resize_to


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


#: BT.601 luma and chroma rows (Pillow's YCbCr), for [3] RGB in [0, 1].
_YCBCR = torch.tensor(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]]
)


def match_luminance(source: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """`source` [1, 3, H, W] with its luma (BT.601) shifted and scaled so its mean and spread
    are `reference`'s. Each pixel's colour moves towards black where its luma falls and
    towards white where it rises (x·Y'/Y, or 1 − (1 − x)·(1 − Y')/(1 − Y)): that luma
    exactly, its hue kept, and no channel pushed out of [0, 1] (a shift of luma alone would
    clip a saturated painting's colours on a dark photo and raise its mean again)."""
    weights = _YCBCR[0].to(source.device, torch.float64)
    rgb = source[0].double()
    luma = torch.einsum("j,jhw->hw", weights, rgb)
    target = torch.einsum("j,jhw->hw", weights, reference[0].double())
    spread = luma.std().clamp_min(1e-6)
    wanted = ((luma - luma.mean()) * (target.std() / spread) + target.mean()).clamp(0.0, 1.0)
    darker = rgb * (wanted / luma.clamp_min(1e-6))
    lighter = 1 - (1 - rgb) * ((1 - wanted) / (1 - luma).clamp_min(1e-6))
    out = torch.where(wanted <= luma, darker, lighter)
    return out.float().unsqueeze(0).clamp(0.0, 1.0)


def prepare(
    content: torch.Tensor, style: torch.Tensor, mode: str, match: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """The content and style the optimiser sees under colour mode `mode`; `match`: under
    `luminance`, the painting's luminance matched to the photo's first."""
    if mode == "histogram":
        return content, match_color(style, content)
    if mode == "luminance" and match:
        return content, match_luminance(style, content)
    return content, style  # `luminance` puts the colours back afterwards (recolor)


def recolor(content: Image.Image) -> Callable[[Image.Image], Image.Image]:
    """For `luminance`: a saved image's luma with the content's chroma, at the image's size."""

    def apply(image: Image.Image) -> Image.Image:
        y = image.convert("YCbCr").getchannel("Y")
        _, cb, cr = resize_to(content.convert("RGB"), image.size).convert("YCbCr").split()
        return Image.merge("YCbCr", (y, cb, cr)).convert("RGB")

    return apply


def recolor_float(content: Image.Image) -> Callable[[np.ndarray], np.ndarray]:
    """recolor for a float H×W×3 image (16-bit output): its luma (BT.601, as Pillow's YCbCr)
    with the content's chroma at the image's size, without rounding to 8 bits between."""

    def apply(image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        photo = np.asarray(resize_to(content.convert("RGB"), (width, height)), np.float32) / 255
        luma = image @ np.array([0.299, 0.587, 0.114], np.float32)
        cb = photo @ np.array([-0.168736, -0.331264, 0.5], np.float32)
        cr = photo @ np.array([0.5, -0.418688, -0.081312], np.float32)
        red = luma + 1.402 * cr
        green = luma - 0.344136 * cb - 0.714136 * cr
        blue = luma + 1.772 * cb
        return np.clip(np.stack([red, green, blue], axis=-1), 0.0, 1.0)

    return apply
