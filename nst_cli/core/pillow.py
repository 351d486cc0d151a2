"""Pillow's process-wide decompression-bomb limit, switched off safely across threads.

`Image.MAX_IMAGE_PIXELS` is one global. nst reads image headers with it off (it checks sizes
itself, before any pixel is decoded), while the frame writer and the preview server run in
other threads; each of them saving and restoring the global on its own could leave the limit
off for good, or turn it back on under another reader. Here every holder counts in under one
lock, and the first in saves the limit and the last out restores it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

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
