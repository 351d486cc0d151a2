"""Pixels between PIL and torch: [1, 3, H, W] float tensors in [0, 1], and the resizing every scale uses."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:  # torch is imported where a tensor is made: `nst gif` needs none (~3 s less)
    import torch


log = logging.getLogger(__name__)


def fit_long_side(size: tuple[int, int], long_side: int) -> tuple[int, int]:
    """The (width, height) that `size` becomes with its longer side at `long_side` px."""
    width, height = size
    scale = long_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def resize_long_side(image: Image.Image, long_side: int) -> Image.Image:
    """Resize so the longer side is `long_side` px, keeping the aspect ratio."""
    size = fit_long_side(image.size, long_side)
    if size == image.size:
        return image
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def resize_to(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Resize to an exact (width, height)."""
    if image.size == size:
        return image
    return image.resize(size, Image.Resampling.LANCZOS)


def upsample(image: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Resize an image tensor to (height, width) for the next scale, bicubic, kept in [0, 1]."""
    import torch

    resized = torch.nn.functional.interpolate(
        image, size=tuple(size), mode="bicubic", align_corners=False
    )
    return resized.clamp_(0.0, 1.0)


def to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB -> float tensor [1, 3, H, W] in [0, 1]."""
    import torch

    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous()


def to_pil(tensor: torch.Tensor) -> Image.Image:
    """Float tensor [1, 3, H, W] (any range) -> PIL RGB, clamped to [0, 1] and rounded."""
    # The arithmetic in numpy: frames are written on a background thread, and a torch op
    # there starts a second OpenMP thread pool that slowed every later step by 6–8% on a
    # 2-core CPU (measured). A float32 CPU tensor passes `.to` as it is.
    import torch

    array = tensor.detach().to("cpu", torch.float32).squeeze(0).permute(1, 2, 0).numpy()
    return Image.fromarray((np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))


def to_float_array(image: torch.Tensor, size: tuple[int, int] | None = None) -> np.ndarray:
    """[1, 3, H, W] in [0, 1] -> H×W×3 float32, resized to (width, height) channel by channel
    in float (Lanczos, as resize_to): for output deeper than 8 bits."""
    array = image.detach()[0].float().clamp(0.0, 1.0).permute(1, 2, 0).cpu().numpy()
    if size is None or (array.shape[1], array.shape[0]) == size:
        return np.ascontiguousarray(array)
    channels = [
        np.asarray(Image.fromarray(array[..., c], mode="F").resize(size, Image.Resampling.LANCZOS))
        for c in range(3)
    ]
    return np.clip(np.stack(channels, axis=-1), 0.0, 1.0)
