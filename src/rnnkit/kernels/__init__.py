"""Fused fast paths (Numba) behind the same layer interface as :mod:`rnnkit.cells`.

Per time step only two things run: the recurrent product (in the compiled loop a
register-tiled kernel on the weight packed once per sequence, :mod:`.packed`; ``np.matmul``
in the per-step fallback) into a preallocated buffer and one compiled kernel doing all the gate math of the step, reading
and writing (T, N, .) buffers allocated once per sequence; the T steps of a direction are
one compiled call (:mod:`.sequence`).  Everything else is hoisted: the
input projection of all steps is one product before the loop, the weight gradients one
product each after it.  The NumPy cells stay the ground truth; ``tests/kernels/test_kernels.py``
proves both agree.  Kernels are compiled once and cached on disk (numba ``cache=True``).

:func:`available` tells whether Numba imports; layers built with ``backend="auto"`` use this
path exactly when it does.
"""

from __future__ import annotations

import importlib.util

_AVAILABLE = None


def available() -> bool:
    """True when the Numba fast path can be used.

    Asks whether the package is installed without importing it: Numba's import costs ~0.15 s
    and is paid only when a kernel is first called (DESIGN: no fixed costs a user notices).
    """
    global _AVAILABLE
    if _AVAILABLE is None:
        _AVAILABLE = importlib.util.find_spec("numba") is not None
    return _AVAILABLE


def make_fused_cell(mode: str, *, nonlinearity: str = "tanh", reset_after: bool = True):
    """The fused counterpart of :func:`rnnkit.cells.make_cell` (needs Numba)."""
    from .cells import make_fused_cell as _make

    return _make(mode, nonlinearity=nonlinearity, reset_after=reset_after)


def scatter_rows(dst, ids, src):
    """dst[ids[t, n]] += src[t, n]; ids (T, N) int64, src (T, N, F), dst (V, F)."""
    from . import warm
    from .table import scatter_rows as _scatter

    warm.wait_for("scatter")
    _scatter(dst, ids, src)


__all__ = ["available", "make_fused_cell", "scatter_rows"]
