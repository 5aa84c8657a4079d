"""Keep freed memory in the process instead of handing it back to the operating system after every step.

glibc's malloc serves blocks over 128 KiB (raised as they are freed, up to 32 MiB) straight from ``mmap`` and
returns the top of the heap to the system when more than twice that is free. A transformer's activations and
gradients are just such blocks, allocated and freed at every step, so each step faults its pages in again
(3.4 million page faults in one 2,000-row CLI run). :func:`keep_freed_memory` raises both thresholds: what
PyTorch's CPU performance guide gets by preloading jemalloc or tcmalloc, without a library to install
(bench/results/auto.md#whole-process-session-14).
"""

from __future__ import annotations

import ctypes
import os
import platform
import threading

# mallopt's parameters (malloc.h) and the values set: blocks up to 32 MiB (glibc's largest mmap threshold) come from
# the heap, and up to 1 GiB of free heap top is kept.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 1024 * 1024 * 1024

_lock = threading.Lock()
_done = False


def keep_freed_memory() -> bool:
    """Raise glibc malloc's mmap and trim thresholds once per process; whether they are set now. Nothing is changed
    on other C libraries, or when ``GLIBC_TUNABLES`` already sets malloc's behaviour (the person's own choice)."""
    global _done
    with _lock:
        if _done:
            return True
        if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
            return False
        if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
            return False
        try:
            libc = ctypes.CDLL("libc.so.6")
        except OSError:
            return False
        _done = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
                     and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
        return _done
