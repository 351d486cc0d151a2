"""glibc's malloc while the optimisation loop runs: freed memory is kept for the next step.

Every step allocates and frees the same large tensors (feature maps, their gradients, the
Grams' float32 copies). glibc hands out a block above its mmap threshold (32 MB at most; at
512 px relu1_1's map is 32 MB in bfloat16 for a square image, its float32 copy 64 MB) as a
fresh mapping and unmaps it when it is freed, so each step page-faults that memory in afresh
and the kernel zeroes every page (the figures: docs/performance.md). While the loop runs, large blocks come from the heap instead, and
what a step frees stays there for the next one (no mapping, no trimming). When the loop
ends, glibc's usual settings come back and the memory not in use is returned to the system,
so a long-lived process (a sweep, the Python API) does not keep it.

The cost is the heap's, as glibc already pays it below the threshold: torch allocates with
posix_memalign, and a freed block is a little short of the next request of the same size
until the slivers cut off for alignment are merged back, so a few freed blocks can stay
unused for a while. That raised the peak memory of the largest runs, so only runs up to
KEEP_UP_TO_PIXELS (and not `memory: low`) use this.

Elsewhere than glibc (macOS, Windows, musl) this does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import threading
from collections.abc import Iterator

# mallopt's parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4

#: While the loop runs: no block is mapped on its own, and the heap's top is never trimmed.
KEPT = {_M_MMAP_MAX: 0, _M_TRIM_THRESHOLD: 2**31 - 1}

#: After it: glibc's defaults as its dynamic thresholds leave them once large blocks have been
#: freed (setting either threshold turns that adjustment off, so they are set as it would).
USUAL = {_M_MMAP_MAX: 65536, _M_MMAP_THRESHOLD: 32 * 2**20, _M_TRIM_THRESHOLD: 64 * 2**20}

#: The largest run (pixels per image times images in the batch) that keeps freed memory.
KEEP_UP_TO_PIXELS = 1024 * 1024

_lock = threading.Lock()
_depth = 0


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library, where it is glibc (the only one whose mallopt this is written for):
    asked of the C library this process runs on, not guessed from the executable."""
    try:
        if (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
            return ctypes.CDLL("libc.so.6")
    except (AttributeError, OSError, ValueError):  # not POSIX, not glibc, or not loadable
        pass
    return None


def _set(libc: ctypes.CDLL, settings: dict[int, int]) -> None:
    for parameter, value in settings.items():
        libc.mallopt(parameter, value)


@contextlib.contextmanager
def kept_between_steps() -> Iterator[None]:
    """Within this, freed memory stays in the heap for reuse (see the module docstring).
    Nested or concurrent uses (a sweep's lanes, threads) share it: the last one out restores
    glibc's settings and trims."""
    global _depth
    libc = _glibc()
    if libc is None:
        yield
        return
    with _lock:
        _depth += 1
        if _depth == 1:
            _set(libc, KEPT)
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _set(libc, USUAL)
                libc.malloc_trim(0)


def in_force() -> bool:
    """Whether freed memory is being kept now (some loop is inside kept_between_steps, on
    glibc); elsewhere always False."""
    return _depth > 0
