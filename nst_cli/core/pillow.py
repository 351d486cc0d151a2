"""Pillow's process-wide decompression-bomb limit, switched off safely across threads.

`Image.MAX_IMAGE_PIXELS` is one global. nst reads image headers with it off (it checks sizes
itself, before any pixel is decoded), while the frame writer and the preview server run in
other threads; each of them saving and restoring the global on its own could leave the limit
off for good, or turn it back on under another reader. Here every holder counts in under one
lock, and the first in saves the limit and the last out restores it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import struct
import threading
from collections.abc import Iterator, Mapping
from typing import Any

_lock = threading.Lock()
_holders = 0
_saved: int | None = None


@contextlib.contextmanager
def no_pixel_limit() -> Iterator[None]:
    """Inside this block Pillow opens images of any size (the caller checks sizes itself)."""
    global _holders, _saved
    from PIL import Image  # here, so that the config layer imports no Pillow until it reads one

    with _lock:
        if _holders == 0:
            _saved = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0:
                Image.MAX_IMAGE_PIXELS = _saved


#: The TIFF tag nst's settings go in (ImageDescription).
TIFF_DESCRIPTION = 270


def encode_text(text: Mapping[str, str]) -> str:
    """nst's metadata as one string, for formats with a single comment field (JPEG, TIFF)."""
    return json.dumps(dict(text), ensure_ascii=False)


def embedded_text(info: dict[str, Any], tags: Any = None) -> dict[str, str]:
    """nst's text metadata from an opened image, whatever the format: PNG text chunks, or the
    JSON object nst writes into a JPEG comment or a TIFF description. Empty if there is none."""
    raw: Any = info.get("comment")
    if raw is None and tags is not None:
        raw = tags.get(TIFF_DESCRIPTION)
    if raw is None:
        return {k: v for k, v in info.items() if isinstance(k, str) and isinstance(v, str)}
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    try:
        data = json.loads(raw) if isinstance(raw, str) and raw.startswith("{") else None
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}


def srgb_profile() -> bytes:
    """The sRGB ICC profile every image nst writes carries (LittleCMS's, through Pillow)."""
    global _SRGB
    if _SRGB is None:
        from PIL import ImageCms

        _SRGB = _dated(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    return _SRGB


#: The creation date every profile nst writes carries (LittleCMS stamps the time it made
#: the profile, which made two runs of one command differ in final.png's bytes).
PROFILE_DATE = (2000, 1, 1, 0, 0, 0)


def _dated(profile: bytes) -> bytes:
    """The profile with its creation date set to PROFILE_DATE and its ID (the MD5 of the
    profile with the flags, the rendering intent and the ID zeroed, ICC.1:2010 7.2.18)
    recomputed where it has one, so the same image is the same bytes."""
    data = bytearray(profile)
    data[24:36] = struct.pack(">6H", *PROFILE_DATE)
    if any(data[84:100]):
        hashed = bytearray(data)
        hashed[44:48] = hashed[64:68] = bytes(4)
        hashed[84:100] = bytes(16)
        data[84:100] = hashlib.md5(hashed, usedforsecurity=False).digest()
    return bytes(data)


_SRGB: bytes | None = None
