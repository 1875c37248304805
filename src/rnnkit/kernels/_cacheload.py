"""Loading rnnkit's compiled kernels from Numba's disk cache without the compiler's set-up.

Numba's ``Cache.load_overload`` refreshes the target context before every load.  The first
refresh in a process imports and registers every implementation Numba has (its CPython,
NumPy, typed-container and random-number lowering): 0.24-0.27 s of each ``rnnkit eval``,
``train`` or ``sample`` that runs a kernel (bench/RESULTS.md, session 14), a quarter of a
short command's wall time.
A compile needs those registries; loading machine code from the cache does not.  The
loaded library needs Numba's runtime (NRT) for its array references, which is initialised
here, and a parallel kernel relaunches its thread pool through the cache entry's own
``reload_init`` hooks, as before.  A cache miss compiles through Numba's own path, which
refreshes the context itself (``numba.core.compiler.compile_extra``), so nothing is ever
compiled without the registries.

Only functions defined in rnnkit's own modules load this way; every other Numba function in
the process keeps Numba's behaviour.  If Numba's internals have moved (another version), or
``RNNKIT_NUMBA_REFRESH=1`` is set, nothing is changed.
"""

from __future__ import annotations

import os

_installed = False


def _ours(cache) -> bool:
    func = getattr(cache, "_py_func", None)
    return getattr(func, "__module__", "").startswith("rnnkit.")


def install() -> bool:
    """Route cache loads of rnnkit's kernels past the context refresh (once per process).
    True when the lean load is in place."""
    global _installed
    if _installed:
        return True
    if os.environ.get("RNNKIT_NUMBA_REFRESH", "") not in ("", "0"):
        return False
    try:
        from numba.core import caching
        from numba.core.runtime import rtsys
    except ImportError:
        return False
    cls = caching.Cache
    needed = ("load_overload", "_load_overload", "_guard_against_spurious_io_errors")
    if not all(hasattr(cls, name) for name in needed) or not hasattr(rtsys, "initialize"):
        return False
    numba_load = cls.load_overload

    def load_overload(self, sig, target_context):
        if not _ours(self):
            return numba_load(self, sig, target_context)
        rtsys.initialize(target_context)  # idempotent; what loaded code links against
        with self._guard_against_spurious_io_errors():
            return self._load_overload(sig, target_context)

    load_overload.__doc__ = numba_load.__doc__
    load_overload.numba_load_overload = numba_load
    cls.load_overload = load_overload
    _installed = True
    return True
