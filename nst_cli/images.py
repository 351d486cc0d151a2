"""Image files in and out: safe loading (EXIF, odd modes, size limits), resizing, tensors.

Every problem with an input image becomes one ImageError line; every silent conversion a
user might care about (alpha dropped, first GIF frame taken, upscaling) is logged as a warning.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageFont, ImageOps, UnidentifiedImageError

from .errors import ImageError

if TYPE_CHECKING:  # torch is imported where a tensor is made: `nst gif` needs none (~3 s less)
    import torch

log = logging.getLogger("nst")

#: Largest input accepted without --allow-large: about 100 megapixels (a 10000×10000 photo).
MAX_PIXELS = 100_000_000


def load_image(path: Path, role: str, allow_large: bool = False) -> Image.Image:
    """Open an image file as 8-bit RGB, honouring EXIF orientation."""
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{role} image {path}: file not found")
    if path.is_dir():
        raise ImageError(f"{role} image {path}: is a directory, expected an image file")
    if not path.is_file():
        raise ImageError(f"{role} image {path}: not a regular file (a pipe or device?)")
    if path.stat().st_size == 0:
        raise ImageError(f"{role} image {path}: file is empty")
    previous_limit = Image.MAX_IMAGE_PIXELS
    # Pillow's own bomb check is replaced by ours: the header gives the size before any pixel
    # is decoded, so one clear message (with the way out) covers every format.
    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(path) as image:
            if not allow_large and image.width * image.height > MAX_PIXELS:
                raise ImageError(_too_large(path, role, image.width, image.height))
            frames = getattr(image, "n_frames", 1)
            if frames > 1:
                log.warning("%s image %s has %d frames; using the first", role, path, frames)
            image.seek(0)
            image.load()
            upright = ImageOps.exif_transpose(image)
            return _to_rgb(upright, path, role)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(
            f"{role} image {path}: not an image Pillow can read (PNG, JPEG, WebP, TIFF, BMP, …)"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"{role} image {path}: damaged or truncated image ({exc})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = previous_limit


def _too_large(path: Path, role: str, width: int, height: int) -> str:
    return (
        f"{role} image {path}: {width}×{height} is over the {MAX_PIXELS:,}-pixel limit; "
        "shrink it or pass --allow-large if you trust the file"
    )


def _to_rgb(image: Image.Image, path: Path, role: str) -> Image.Image:
    """Bring any Pillow mode to 8-bit RGB; transparent pixels are composited on white."""
    mode = image.mode
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        log.warning("%s image %s has transparency; composited on white", role, path)
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16-bit / 32-bit greyscale: scale to 8 bits instead of clipping at 255.
        array = np.asarray(image, dtype=np.float64)
        if mode == "F":
            peak = 1.0 if array.max() <= 1.0 else 255.0
        else:
            peak = 65535.0 if array.max() > 255 else 255.0
        grey = np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if mode != "RGB":
        return image.convert("RGB")
    return image


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


def label_font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's bundled font at `size` px (no system fonts needed), for labels on images."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size default font
        return ImageFont.load_default()
