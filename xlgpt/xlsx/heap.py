"""Keep mid-sized numpy temporaries on the heap while a vectorized loop runs.

glibc serves blocks over 128 KB with fresh mmaps and trims freed heap eagerly, so every one of the
~100 vector operations per slice in numblock.py (or per chunk in reader.py) pays page faults: 4x the
arithmetic on this kind of machine. Inside `with heap_reuse():` such blocks stay on the heap and are
reused; on leaving, the default thresholds come back and the heap is trimmed. glibc only; elsewhere
this does nothing.
"""
from __future__ import annotations

import sys
import threading

_lock = threading.Lock()
_depth = 0
_libc = None
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3


def _load():
    global _libc
    if _libc is None and sys.platform.startswith("linux"):
        try:
            import ctypes

            _libc = ctypes.CDLL("libc.so.6")
            _libc.mallopt  # noqa: B018 - glibc only
        except (OSError, AttributeError):
            _libc = False
    return _libc or None


class heap_reuse:
    def __enter__(self):
        global _depth
        with _lock:
            libc = _load()
            if libc is not None and _depth == 0:
                libc.mallopt(M_MMAP_THRESHOLD, 64 << 20)
                libc.mallopt(M_TRIM_THRESHOLD, 256 << 20)
            _depth += 1
        return self

    def __exit__(self, *exc):
        global _depth
        with _lock:
            _depth -= 1
            libc = _load()
            if libc is not None and _depth == 0:
                libc.mallopt(M_MMAP_THRESHOLD, 128 << 10)
                libc.mallopt(M_TRIM_THRESHOLD, 128 << 10)
                libc.malloc_trim(0)
