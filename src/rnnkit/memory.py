"""Keep memory a step frees for the next step (glibc's malloc), as the ``rnnkit`` command does.

A training or scoring step allocates the same arrays of 1-50 MB every time (gate histories,
the input projection, the logits) and frees them at its end.  glibc's malloc serves a block
above its mmap threshold (128 KiB, rising to at most 32 MiB as such blocks are freed) with a
fresh ``mmap`` and unmaps it on ``free``, and gives the top of its heap back to the kernel
once more than twice the threshold lies free there.  So each step maps its arrays anew, and
the kernel zero-fills every 4 KiB page on its first touch — inside the time loops, on both
worker threads.  A 200-step char-LM GRU ``rnnkit train`` made 740,000-840,000 page faults
(~16 MB of fresh pages a step) and spent 3.0-3.6 s of its ~40 CPU-seconds in the kernel;
with the settings below, 28,000 faults and 0.1-0.3 s (bench/RESULTS.md).

:func:`keep_freed_memory` raises both thresholds, so freed blocks stay in the heap and the
next step reuses pages that are already mapped.  The peak resident memory does not change
(a step's arrays are live at once either way); memory is returned to the system when the
process ends.  It changes the whole process's allocator, so rnnkit does not call it on
import: the command line calls it before running a command, and a program that uses rnnkit
as a library may call it itself.  Not applied (returns False) where the C library is not
glibc, where the user tuned malloc already (``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TRIM_THRESHOLD_``, ``GLIBC_TUNABLES``), or with ``RNNKIT_KEEP_MEMORY=0``.
"""

from __future__ import annotations

import os

ENV = "RNNKIT_KEEP_MEMORY"
# mallopt parameter numbers (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# Blocks up to this size come from the heap (word-level logits at V 30k, batch 32 x 35, are
# 134 MB); larger ones are still mapped and unmapped alone.
MMAP_THRESHOLD = 256 << 20
TRIM_THRESHOLD = 1 << 30
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")

_applied: bool | None = None


def _glibc() -> bool:
    """Whether this process runs on glibc (its version string, without reading the
    interpreter's binary as ``platform.libc_ver`` does)."""
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (AttributeError, ValueError, OSError):  # not Linux/glibc
        return False


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds so freed blocks are reused, not unmapped; once
    per process.  Returns whether the settings are in effect."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get(ENV, "1").strip() in ("0", "no", "false", "off"):
        return False
    if any(k in os.environ for k in USER_SETTINGS):
        return False
    if not _glibc():
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # pragma: no cover - glibc always has mallopt
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    _applied = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and \
        bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _applied
