"""Softmax cross-entropy forward and backward in one pass over the logits, in place.

The NumPy reference (:func:`rnnkit.layers.basic.softmax_cross_entropy`) makes about six
(M, V) temporaries (shifted logits, exp, log-softmax, probabilities, ...); this kernel reads
each row of logits once, keeps its sums in float64 and overwrites the row with dL/dlogits
= (softmax - onehot) * scale.  Rows are M = N*T positions, V the vocabulary.
"""

from __future__ import annotations

import math

from numba import njit

from ._math import JIT

# exp/log here are libm's (no fast tanh involved); fastmath is off so float64 results are
# the reference's to rounding of the sums' order.
_JIT = dict(JIT, fastmath=False)


@njit(**_JIT)
def xent_inplace(z, targets, scale):
    """z (M, V) logits -> dL/dz in place for loss = scale * sum_m nll_m; returns sum_m nll_m
    (float64).  targets (M,) int64 in [0, V)."""
    M, V = z.shape
    total = 0.0
    for m in range(M):
        row = z[m]
        mx = row[0]
        for j in range(1, V):
            if row[j] > mx:
                mx = row[j]
        y = targets[m]
        zy = row[y] - mx
        s = 0.0
        for j in range(V):
            e = math.exp(row[j] - mx)
            row[j] = e
            s += e
        total += math.log(s) - zy
        inv = scale / s
        for j in range(V):
            row[j] = row[j] * inv
        row[y] -= scale
    return total


@njit(**_JIT)
def log_softmax_rows(z, out):
    """out[m] = z[m] - logsumexp(z[m]) for z, out (M, V); out may be z."""
    M, V = z.shape
    for m in range(M):
        row = z[m]
        mx = row[0]
        for j in range(1, V):
            if row[j] > mx:
                mx = row[j]
        s = 0.0
        for j in range(V):
            s += math.exp(row[j] - mx)
        c = mx + math.log(s)
        o = out[m]
        for j in range(V):
            o[j] = row[j] - c
