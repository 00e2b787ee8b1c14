"""Keep freed buffers in the process, so the engine's next step reuses them (glibc only).

PyTorch's CPU tensors come from ``malloc``. glibc serves a buffer above its
*mmap threshold* with a fresh ``mmap`` and gives it back to the system on
``free``, and it trims freed memory at the top of the heap once more than the
*trim threshold* is free. A training step of the vectorized engine allocates
the same large buffers every step (a recurrent layer of 32 slices saves ~20 MB
of gates per forward), so without this each step page-faults all of them in
afresh: the forward of a K = 32 GRU layer took 9.0 ms, 3.6 ms with the
thresholds raised (``benchmarks/study.py`` has the end-to-end effect).

:func:`retain_freed_memory` raises both thresholds through ``mallopt``: freed
memory up to 1 GiB stays in the process for reuse (the engines' working sets
are tens of MB). It is process-wide and cannot be undone (glibc keeps no
"previous" value); the engines call it once, and
``WEIGHTLAB_RETAIN_FREED_MEMORY=0`` turns it off. Elsewhere than glibc it does
nothing.
"""

from __future__ import annotations

import ctypes
import functools
import os

__all__ = ["retain_freed_memory"]

# mallopt parameters, from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Buffers up to this size come from the heap (glibc's largest allowed value on 64 bits).
MMAP_THRESHOLD = 32 << 20
#: Freed memory at the top of the heap kept for reuse before it is returned to the system.
TRIM_THRESHOLD = 1 << 30


@functools.cache
def retain_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds once; True where they were set.

    False when ``WEIGHTLAB_RETAIN_FREED_MEMORY`` is ``"0"``, when the C library
    has no ``mallopt`` (not glibc), or when glibc refuses a value.

    Example:
        >>> retain_freed_memory() in (True, False)
        True
    """
    if os.environ.get("WEIGHTLAB_RETAIN_FREED_MEMORY", "1") == "0":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the interpreter runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    trim = mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    mmap = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    return bool(trim and mmap)
