"""Adam's update of one parameter in one pass (no temporaries).

The same operations in the same order as the NumPy formula of :class:`rnnkit.optim.Adam`,
each rounded to the parameter's dtype (the scalars are cast to it first, as NumPy does with
Python floats), and compiled without fastmath, so no reassociation or fused multiply-add can
change a result: the update is bit-identical to the NumPy one (tests/kernels/test_speed_paths.py).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import _cacheload

_cacheload.install()


@njit(cache=True, fastmath=False, error_model="numpy", nogil=True)
def adam_update(p, g, m, v, c1, b2, c2, step_size, bc2, eps, wd):
    """p, g, m, v flat arrays of one dtype; scalars already cast to it.

    m += c1 * (g - m); v = v * b2 + c2 * (g * g); p -= step_size * (m / (sqrt(v) / bc2 + eps)),
    with g = g + wd * p when wd != 0 (c1 = 1 - beta1, c2 = 1 - beta2, bc2 = sqrt(1 - beta2^t)).
    """
    use_wd = wd != 0
    for i in range(p.size):
        gi = g[i]
        if use_wd:
            gi = gi + wd * p[i]
        mi = m[i] + c1 * (gi - m[i])
        vi = v[i] * b2
        vi = vi + c2 * (gi * gi)
        m[i] = mi
        v[i] = vi
        d = np.sqrt(vi) / bc2
        d = d + eps
        p[i] = p[i] - step_size * (mi / d)


@njit(cache=True, fastmath={"reassoc", "contract"}, error_model="numpy", nogil=True)
def sq_sum(x):
    """(sum of x*x in float64, 0.0 if every value is finite else NaN) for a flat array x,
    in one pass with no temporary.  Reassociation lets the sums vectorise; without the
    no-NaN/no-Inf flags ``v - v`` is NaN for an infinity or a NaN, as it must be."""
    s = 0.0
    bad = 0.0
    for i in range(x.size):
        v = np.float64(x[i])
        s += v * v
        bad += v - v
    return s, bad
