"""Keep large CPU tensors in glibc's heap instead of fresh ``mmap`` regions.

glibc serves every allocation above its mmap threshold (at most 32 MB with the
dynamic threshold) with a new ``mmap`` and unmaps it on free, so each large
activation map is page-faulted and zeroed by the kernel again. Training and
fine-tuning on CPU allocate hundreds of MB per layer per step (musicnn's timbral
maps are ~0.9 GB for 100 patches), and the measured cost was large: fine-tuning
``msd_musicnn`` spent as much time in the kernel as in PyTorch (15.6 s system vs
21.9 s user CPU for 32 patches forward + backward, 2.4 s system with the heap
kept; scripts/bench_finetune.py and docs/performance.md). Raising the mmap and trim
thresholds lets freed blocks be reused.

The cost is memory kept by the process after a peak (resident size stays near the
high-water mark), which is why only the ``fewshot`` command line calls
:func:`keep_heap` (and the Dask workers it starts); a library user opts in
explicitly. ``FEWSHOT_MALLOC=default`` in the environment turns it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

__all__ = ["keep_heap"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_LIMIT = 2**31 - 1  # mallopt takes an int
_done = False


def keep_heap() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; True when applied.

    A no-op (False) on other C libraries, when ``FEWSHOT_MALLOC=default`` is set, or
    when glibc refuses the values. Idempotent.
    """
    global _done
    if _done:
        return True
    if os.environ.get("FEWSHOT_MALLOC", "").lower() == "default":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = bool(mallopt(_M_MMAP_THRESHOLD, _LIMIT)) and bool(mallopt(_M_TRIM_THRESHOLD, _LIMIT))
    return _done
