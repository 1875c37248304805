"""How many threads NumPy's BLAS may use, switched around the time loop.

The per-step products of a recurrent layer are small (e.g. (32, 256) @ (256, 1024), 17
MFLOP).  Split across cores they gain little on an idle machine and lose badly on a busy
one: OpenBLAS's threads meet at a barrier after every call, and a thread that the OS has
descheduled stalls every step (measured: 20x slower on a loaded 2-core machine).  On an idle
machine, though, splitting them wins (char-LM LSTM training step 1.16x -> 1.43x PyTorch,
scoring 0.72x -> 0.96x, both cores each, bench/RESULTS.md).  So the fused driver splits a
step's products across all threads when they are worth it (``SPLIT_MACS`` multiply-adds) and
the machine is not oversubscribed (1-minute load average below the core count + 0.5 — our
own threads included), else runs its time loop on one BLAS thread; the large hoisted products
(input projection, weight gradients) always use all of them.  ``RNNKIT_STEP_THREADS=n``
forces n.

This talks to OpenBLAS (NumPy's wheels) through ctypes; with any other BLAS it does nothing.
The setting is process-wide, like the BLAS's own.
"""

from __future__ import annotations

import ctypes
import os
from contextlib import contextmanager

STEP_THREADS = int(os.environ.get("RNNKIT_STEP_THREADS", "0"))  # 0: by size
# Per-step multiply-adds from which the step products may use all threads: the char-LM step
# (32 x 256 x 1024 = 2^23) splits, batch-1 generation (2^18) does not.  On the shared 2-core
# machine (load 4-6) one thread won at every size tried (LSTM batch 128, H 256: 1.9-2.4 s per
# training step on one BLAS thread against 2.7-7.6 s on two; H 1024: 5.2 s against 18.3 s),
# hence the load check in step_threads.
SPLIT_MACS = 1 << 22

_SYMBOLS = (("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
            ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
            ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
            ("openblas_set_num_threads", "openblas_get_num_threads"))
_api = None


def _load():
    global _api
    if _api is not None:
        return _api
    _api = False
    try:
        import numpy  # noqa: F401  (loads the BLAS)

        with open("/proc/self/maps") as f:
            paths = sorted({ln.split()[-1] for ln in f if "openblas" in ln.lower()
                            and ln.split()[-1].startswith("/")})
    except OSError:
        return _api
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for set_name, get_name in _SYMBOLS:
            if hasattr(lib, set_name) and hasattr(lib, get_name):
                setter, getter = getattr(lib, set_name), getattr(lib, get_name)
                setter.argtypes, setter.restype = [ctypes.c_int], None
                getter.argtypes, getter.restype = [], ctypes.c_int
                _api = (setter, getter)
                return _api
    return _api


def get_threads() -> int | None:
    """BLAS threads now, or None if the BLAS is not OpenBLAS."""
    api = _load()
    return api[1]() if api else None


def step_threads(macs: int) -> int:
    """BLAS threads for a time loop whose step products do ``macs`` multiply-adds (0: all)."""
    if STEP_THREADS > 0:
        return STEP_THREADS
    if macs < SPLIT_MACS or _oversubscribed():
        return 1
    return 0


def _oversubscribed() -> bool:
    try:
        return os.getloadavg()[0] >= (os.cpu_count() or 1) + 0.5
    except (AttributeError, OSError):  # no load average on this platform: stay safe
        return True


@contextmanager
def threads(n: int | None = None):
    """Run the block with ``n`` BLAS threads (default ``STEP_THREADS``), then restore.

    n = 0 leaves the BLAS as it is (all threads)."""
    api = _load()
    n = STEP_THREADS if n is None else n
    if not api or n <= 0:
        yield
        return
    before = api[1]()
    if before == n:
        yield
        return
    api[0](n)
    try:
        yield
    finally:
        api[0](before)
