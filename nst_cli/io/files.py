"""Writing files so that a reader never sees half of one: atomic writes, PNG/JPEG/TIFF saving with provenance."""

from __future__ import annotations

import contextlib
import functools
import io
import os
import struct
import tempfile
import zlib

from nst_cli.core.pillow import (
    TIFF_DESCRIPTION,
    embedded_text,
    encode_text,
    no_pixel_limit,
    srgb_profile,
)

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, runs are not guarded
    fcntl = None  # type: ignore[assignment]
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
from PIL import Image, PngImagePlugin

from nst_cli.errors import OutputError


def png_header(path: Path) -> tuple[tuple[int, int], dict[str, Any]] | None:
    """An image's size and text metadata from its header, no pixel decoded; None if unreadable.

    Pillow's decompression-bomb check is off here (nothing is decoded, and its warning would
    leak into the output): callers that go on to decode check the size themselves."""
    if not Path(path).is_file():  # a FIFO would block the open forever
        return None
    with no_pixel_limit():
        try:
            with Image.open(path) as image:
                info = cast("dict[str, Any]", image.info)  # Pillow 12 types its keys wider
                return image.size, {**info, **embedded_text(info, getattr(image, "tag_v2", None))}
        except (OSError, ValueError, SyntaxError):
            return None


def describe_os_error(exc: OSError) -> str:
    return exc.strerror or str(exc)


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temp file beside `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"{path.parent}: cannot write here ({describe_os_error(exc)})") from None
    try:
        binary = "b" in mode
        with (
            os.fdopen(fd, mode)
            if binary
            else os.fdopen(fd, mode, encoding="utf-8", newline="") as fh
        ):
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        publish(Path(tmp), path)
    except OSError as exc:
        _remove_quietly(tmp)
        raise OutputError(
            f"{path}: write failed ({describe_os_error(exc)}); earlier files are kept"
        ) from None
    except BaseException:
        _remove_quietly(tmp)
        raise


def publish(temporary: Path, path: Path) -> None:
    """Move a finished temporary file onto `path` with the permissions a new file gets (a
    temporary file is private): the last step of every atomic write."""
    os.chmod(temporary, 0o666 & ~_umask())
    os.replace(temporary, path)


@functools.cache
def _umask() -> int:
    """The process umask, read without changing it where Linux tells it (/proc), else by
    setting and restoring it once, at the first write rather than at import."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def write_text(path: Path, text: str) -> None:
    """Atomically write a text file."""
    with atomic_open(path, "w") as fh:
        fh.write(text)


def write_bytes(path: Path, data: bytes) -> None:
    """Atomically write a binary file."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def save_png(image: Image.Image, path: Path, text: Mapping[str, str] | None = None) -> None:
    """Atomically save a PNG, with `text` stored as PNG text chunks (provenance)."""
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_itxt(key, value)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, compress_level=6, icc_profile=srgb_profile())
    write_bytes(path, buffer.getvalue())


def save_image(image: Image.Image, path: Path, text: Mapping[str, str] | None = None) -> None:
    """Atomically save in the format the suffix names, with `text` (provenance) where the
    format has room for it: PNG text chunks, a JPEG comment, a TIFF description (so
    `nst stylize --config result.jpg` re-runs it). JPEG is written at quality 95, TIFF and
    WebP losslessly."""
    suffix = path.suffix.lower()
    if suffix == ".png":
        save_png(image, path, text)
        return
    buffer = io.BytesIO()
    comment = encode_text(text) if text else None
    if suffix in (".jpg", ".jpeg"):
        extra = {"comment": comment.encode("utf-8")} if comment else {}
        image.convert("RGB").save(
            buffer, format="JPEG", quality=95, icc_profile=srgb_profile(), **extra
        )
    elif suffix == ".webp":
        image.save(buffer, format="WEBP", lossless=True, icc_profile=srgb_profile())
    else:
        tags = {TIFF_DESCRIPTION: comment} if comment else None
        image.save(
            buffer, format="TIFF", compression="tiff_deflate", tiffinfo=tags,
            icc_profile=srgb_profile(),
        )  # fmt: skip
    write_bytes(path, buffer.getvalue())


def save_image_16bit(pixels: np.ndarray, path: Path, text: Mapping[str, str] | None = None) -> None:
    """Atomically save an RGB float image (H×W×3 in [0, 1]) with 16 bits per channel, as a
    PNG or TIFF by the suffix, with an sRGB profile and `text` as save_image stores it.
    (Pillow writes 8-bit RGB only: the PNG is OpenCV's with the chunks added, the TIFF
    tifffile's.)"""
    values = np.round(np.clip(pixels, 0.0, 1.0) * 65535.0).astype(np.uint16)
    if path.suffix.lower() == ".png":
        write_bytes(path, _png_16bit(values, text))
        return
    import tifffile

    comment = encode_text(text) if text else None
    buffer = io.BytesIO()
    tifffile.imwrite(
        buffer, values, photometric="rgb", compression="zlib", description=comment, metadata=None,
        iccprofile=srgb_profile(),
    )  # fmt: skip
    write_bytes(path, buffer.getvalue())


def _png_16bit(values: np.ndarray, text: Mapping[str, str] | None) -> bytes:
    """A 16-bit RGB PNG of `values` (H×W×3 uint16) with an iCCP chunk (sRGB) and one iTXt
    chunk per `text` entry, after the header, as save_png writes them."""
    import cv2

    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(values[..., ::-1]))
    if not ok:  # pragma: no cover - OpenCV encodes any uint16 RGB array
        raise OutputError("could not encode the 16-bit PNG")
    data = encoded.tobytes()
    header_end = 8 + 4 + 4 + 13 + 4  # signature, then IHDR: length, type, 13 bytes, CRC
    chunks = [_png_chunk(b"iCCP", b"sRGB\0\0" + zlib.compress(srgb_profile()))]
    for key, value in (text or {}).items():
        chunks.append(
            _png_chunk(b"iTXt", key.encode("latin-1") + b"\0\0\0\0\0" + value.encode("utf-8"))
        )
    return data[:header_end] + b"".join(chunks) + data[header_end:]


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
