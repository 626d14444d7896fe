"""Process-wide CPU runtime settings, applied by the entry points (CLI, TorchServe handler, benchmark),
never at import: a library must not change its host process behind its back.

glibc's default malloc serves every block over its mmap threshold (≤ 32 MB) with a fresh mmap and
returns it on free, so each of FP-LIIF's multi-MB activations is page-faulted in again on every
forward pass — about 20 % of the encoder's time on this 2-core machine. Keeping large blocks in the
heap lets them be reused, the same effect PyTorch's CPU performance guide gets from jemalloc/tcmalloc.
The cost: the process keeps its peak heap instead of handing it back to the OS."""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# mallopt parameters (glibc malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4
DISABLE_ENV = "FACEPARSE_GLIBC_MALLOC_DEFAULTS"  # set to 1 to keep glibc's defaults

_applied: bool | None = None


def tune_cpu_allocator() -> bool:
    """Keep large allocations in the malloc heap (no per-block mmap, no trimming). Idempotent; returns
    whether the settings are in effect (False off glibc Linux or when DISABLE_ENV=1)."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get(DISABLE_ENV) == "1" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other libcs have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success
    _applied = bool(mallopt(_M_MMAP_MAX, 0) and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
                    and mallopt(_M_TOP_PAD, 64 << 20))
    return _applied
