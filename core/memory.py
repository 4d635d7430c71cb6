"""Process-wide allocator setting that the CPU speed of the generator depends on (glibc only).

By default glibc returns every large freed block (>= 32 MB after its adaptive threshold, or any mmap'd
block) to the operating system, so each new large tensor pays page faults that zero its memory again:
about a quarter of the super-resolution time and 1.6 s of a full ffhq512-128 G(z,c) on a 2-core CPU.
Keeping freed blocks in the process removes that cost (peak RSS +0.1 GB). It is applied when `core` is
imported, so a notebook or script gets the same speed as `python main.py`; set
TRIPLANE_KEEP_FREED_MEMORY=0 before importing to leave the allocator alone.
"""
from __future__ import annotations

import ctypes
import os
import sys

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # mallopt parameters from glibc's malloc.h
_applied = False


def keep_freed_memory() -> bool:
    """Keep large freed blocks inside the process (glibc mallopt); idempotent. -> whether it is in effect."""
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux") or os.environ.get("TRIPLANE_KEEP_FREED_MEMORY", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (e.g. musl): nothing to tune
        return False
    _applied = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30))
    return _applied
