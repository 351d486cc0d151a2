"""Images in: files of any mode and orientation, bounded in size, as RGB; the font for labels."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
from PIL import Image, ImageFont, ImageOps, UnidentifiedImageError

from nst_cli.core.pillow import no_pixel_limit, srgb_profile
from nst_cli.errors import ImageError

log = logging.getLogger(__name__)

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
    # Pillow's own bomb check is replaced by ours: the header gives the size before any pixel
    # is decoded, so one clear message (with the way out) covers every format.
    with no_pixel_limit():
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
                return to_srgb(
                    _to_rgb(upright, path, role), image.info.get("icc_profile"), path, role
                )
        except ImageError:
            raise
        except UnidentifiedImageError:
            raise ImageError(
                f"{role} image {path}: not an image Pillow can read (PNG, JPEG, WebP, TIFF, BMP, …)"
            ) from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageError(f"{role} image {path}: damaged or truncated image ({exc})") from None


def to_srgb(image: Image.Image, icc: bytes | None, path: Path, role: str) -> Image.Image:
    """An RGB image whose embedded ICC profile is another colour space (Display P3 from a
    phone, Adobe RGB from a camera) converted to sRGB, perceptual intent, so its colours are
    the ones the photo shows, not its numbers read as sRGB. Untagged or sRGB images pass
    as they are; a profile LittleCMS cannot read is said, and the numbers used as sRGB."""
    if not icc or image.mode != "RGB":
        return image
    from PIL import ImageCms

    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        description = (ImageCms.getProfileDescription(source) or "").strip()
        if "srgb" in description.lower().replace(" ", ""):
            return image
        target = ImageCms.ImageCmsProfile(io.BytesIO(srgb_profile()))
        converted = ImageCms.profileToProfile(
            image, source, target, renderingIntent=ImageCms.Intent.PERCEPTUAL, outputMode="RGB"
        )
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as exc:
        log.warning(
            "%s image %s: its colour profile cannot be read (%s); its colours are taken as sRGB",
            role, path, str(exc).splitlines()[0][:80] if str(exc) else type(exc).__name__,
        )  # fmt: skip
        return image
    log.info("%s image %s: converted from %s to sRGB", role, path, description or "its profile")
    return converted if converted is not None else image


#: The way past the size limit that `_too_large` names (a front end without the flag says its own).
SIZE_WAY_OUT = "shrink it or pass --allow-large if you trust the file"


def _too_large(path: Path, role: str, width: int, height: int) -> str:
    return f"{role} image {path}: {width}×{height} is over the {MAX_PIXELS:,}-pixel limit; {SIZE_WAY_OUT}"


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
        elif mode.startswith("I;16") or image.format == "PNG":
            # The file says 16 bits (a PNG has no 32-bit grey): a dark image whose values
            # all lie under 256 is dark, not 257× brighter 8-bit.
            peak = 65535.0
        else:  # 32-bit integers (TIFF): their range is not in the mode; the values tell
            peak = 65535.0 if array.max() > 255 else 255.0
        grey = np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if mode != "RGB":
        return image.convert("RGB")
    return image


def label_font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's bundled font at `size` px (no system fonts needed), for labels on images."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size default font
        return ImageFont.load_default()
