"""The sampler of :mod:`rnnkit.decode` for one row, compiled: temperature, top-k, top-p and
one inverse-CDF draw, for generation loops that run whole in compiled code
(:func:`rnnkit.kernels.lmstep.lm_sample`).

The same arithmetic as :func:`rnnkit.decode.filter_logits` and :func:`rnnkit.decode.draw`,
in the same order: float64 from the log-probabilities, the row max subtracted, divided by
the temperature (unless it is 1), ``exp``, the top-k cut at the k-th largest probability,
the normaliser summed pairwise as NumPy's ``add.reduce`` sums a row (:func:`pairwise_sum`),
the top-p cut on the stable descending order, the cumulative sum, and the count of its
entries at or below ``u`` times its last.  So a draw gives NumPy's token from the same
uniform number; the one thing that may differ is ``exp`` itself (libm's here, NumPy's own
SIMD form on AVX-512), by a unit in the last place, which moves a token only when the
uniform falls within that rounding of a boundary between two tokens.

fastmath is off: the filters rely on ``-inf`` and ``exp(-inf) = 0`` (a temperature so small
that the division overflows), and the sums must not be reassociated.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._math import JIT

_JIT = dict(JIT, fastmath=False)


@njit(**_JIT)
def _leaf_sum(a, lo, n):
    """NumPy's pairwise sum of a[lo:lo+n] for n <= 128: plain below 8 values, else eight
    running sums over blocks of 8, combined as a tree, then the rest in order."""
    if n < 8:
        res = 0.0
        for i in range(lo, lo + n):
            res += a[i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    full = n - n % 8
    for i in range(lo + 8, lo + full, 8):
        r0 += a[i]
        r1 += a[i + 1]
        r2 += a[i + 2]
        r3 += a[i + 3]
        r4 += a[i + 4]
        r5 += a[i + 5]
        r6 += a[i + 6]
        r7 += a[i + 7]
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    for i in range(lo + full, lo + n):
        res += a[i]
    return res


@njit(**_JIT)
def pairwise_sum(a, lo, n):
    """The sum of a[lo:lo+n] as NumPy's float64 ``add.reduce`` over a contiguous row: above
    128 values the sum of the two halves (split on a multiple of 8), each summed so again.

    The recursion runs on an explicit stack: Numba's disk cache loads a self-recursive
    function's callers broken (they crashed the process on their first call)."""
    if n <= 128:
        return _leaf_sum(a, lo, n)
    los = np.empty(64, dtype=np.int64)  # a frame per halving: 64 covers any array
    ns = np.empty(64, dtype=np.int64)
    stage = np.zeros(64, dtype=np.int64)  # 0: left half next, 1: right half next, 2: add
    left = np.empty(64)
    los[0], ns[0], sp, ret = lo, n, 1, 0.0
    while sp > 0:
        i = sp - 1
        if ns[i] <= 128:
            ret = _leaf_sum(a, los[i], ns[i])
            sp -= 1
            continue
        n2 = ns[i] // 2
        n2 -= n2 % 8
        if stage[i] == 0:
            stage[i] = 1
            los[sp], ns[sp], stage[sp] = los[i], n2, 0
            sp += 1
        elif stage[i] == 1:
            left[i] = ret
            stage[i] = 2
            los[sp], ns[sp], stage[sp] = los[i] + n2, ns[i] - n2, 0
            sp += 1
        else:
            ret = left[i] + ret
            sp -= 1
    return ret


@njit(**_JIT)
def _nucleus_sorted(p, top_p, kept):
    """kept[v] = p[v] for the tokens top-p keeps, 0 elsewhere, through the stable argsort
    itself (ties keep the lower index first): what :func:`nucleus` falls back to."""
    order = np.argsort(-p, kind="mergesort")
    acc = 0.0
    for i in range(p.shape[0]):
        v = order[i]
        acc += p[v]
        # kept while the mass before it is below top_p; the first always stays
        if i > 0 and not (acc - p[v]) < top_p - 1e-12:
            kept[v] = 0.0
        else:
            kept[v] = p[v]


@njit(**_JIT)
def nucleus(p, top_p, kept):
    """kept[v] = p[v] for the tokens top-p keeps of probabilities p (V,), 0 elsewhere: in
    the stable descending order (ties: lower index first), each whose mass before it is
    below top_p (:func:`rnnkit.decode._top_p_keep`, the same rule and the same shortcut).

    The running sums need the sorted values only, so they come from a plain sort of the
    values; the kept prefix is every token above its last value and, of those equal to it,
    the lowest-indexed as many as the prefix holds.  A NaN, or kept positions that are not
    a prefix, send the row through :func:`_nucleus_sorted`."""
    V = p.shape[0]
    asc = np.sort(p)  # descending position i is asc[V - 1 - i]
    acc = 0.0
    m = V  # kept prefix length
    for i in range(V):
        x = asc[V - 1 - i]
        if x != x:
            _nucleus_sorted(p, top_p, kept)
            return
        acc += x
        keep = i == 0 or (acc - x) < top_p - 1e-12
        if not keep and m == V:
            m = i
        elif keep and m < V:  # kept again after a cut: not a prefix
            _nucleus_sorted(p, top_p, kept)
            return
    cut = asc[V - m]  # the last kept value
    # tied tokens the prefix holds, lowest index first: m less those above the cut
    need = m - (V - np.searchsorted(asc, cut, side="right"))
    for v in range(V):
        x = p[v]
        if x > cut:
            kept[v] = x
        elif x == cut and need > 0:
            kept[v] = x
            need -= 1
        else:
            kept[v] = 0.0


@njit(**_JIT)
def draw_row(logp, u, temperature, top_k, top_p, p, cum):
    """One token drawn from log-probabilities ``logp`` (V,) with the uniform number ``u`` in
    [0, 1): ``top_k`` 0 and ``top_p`` 1.0 switch those filters off.  ``p``, ``cum`` (V,)
    float64 scratch."""
    V = logp.shape[0]
    mx = np.float64(logp[0])
    for v in range(1, V):
        if logp[v] > mx:
            mx = np.float64(logp[v])
    for v in range(V):
        z = np.float64(logp[v]) - mx
        if temperature != 1.0:
            z = z / temperature
        p[v] = math.exp(z)
    if 0 < top_k < V:
        kth = np.partition(p, V - top_k)[V - top_k]  # the k-th largest
        for v in range(V):
            if not p[v] >= kth:
                p[v] = 0.0
    s = pairwise_sum(p, 0, V)
    for v in range(V):
        p[v] = p[v] / s
    if top_p < 1.0:
        nucleus(p, top_p, cum)
        s = pairwise_sum(cum, 0, V)
        for v in range(V):
            p[v] = cum[v] / s
    acc = 0.0
    for v in range(V):
        acc += p[v]
        cum[v] = acc
    x = u * cum[V - 1]
    idx = 0
    for v in range(V):
        if cum[v] <= x:
            idx += 1
    return min(idx, V - 1)
