"""Keep large tensor buffers on the heap (glibc) instead of fresh ``mmap`` pages per allocation.

PyTorch's CPU tensors come straight from ``malloc``. Under glibc every buffer above 32 MB is an
``mmap`` that is unmapped when freed, so the next tensor of that size page-faults all its pages in
again. Phase 1 re-runs the tail of the network for every (group, candidate) on a batch of 64 images,
so that churn dominated its time (39 M page faults and 90 s on EfficientNet-Lite0; 2.4 M and 48 s
with the heap kept; see BENCHMARKS.md). The resident peak is the same either way.

This changes the allocator of the whole process, so the library never does it on its own: the
``mixq`` command line calls it (it owns its process), and so can an application that wants the speed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

logger = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_KEEP_BYTES = 1 << 40  # never trim the heap back while the process runs


def prefer_heap_allocations() -> bool:
    """Tell glibc's malloc to serve large blocks from the heap and to keep freed memory.

    Returns False (and changes nothing) where the C library is not glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    done = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, min(_KEEP_BYTES, 2**31 - 1)))
    logger.debug("glibc malloc: large blocks from the heap: %s", done)
    return done
