"""Scatter-add of per-position rows into an embedding-projection table's gradient."""

from __future__ import annotations

from numba import njit

from ._math import JIT


@njit(**JIT)
def scatter_rows(dst, ids, src):
    """dst[ids[t, n]] += src[t, n] for ids (T, N), src (T, N, F), dst (V, F)."""
    T, N = ids.shape
    F = dst.shape[1]
    for t in range(T):
        for n in range(N):
            d = dst[ids[t, n]]
            s = src[t, n]
            for j in range(F):
                d[j] += s[j]
