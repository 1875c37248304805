"""Softmax cross-entropy forward and backward in one pass over the logits, in place.

The NumPy reference (:func:`rnnkit.layers.basic.softmax_cross_entropy`) makes about six
(M, V) temporaries (shifted logits, exp, log-softmax, probabilities, ...); this kernel reads
each row of logits once, keeps its sums in float64 and overwrites the row with dL/dlogits
= (softmax - onehot) * scale.  Rows are M = N*T positions, V the vocabulary.

Two forms per operation, picked by dtype in the Python-level functions :func:`xent`,
:func:`pick_log_softmax` and :func:`log_softmax`:

- float64 (gradient checks, 1e-10 parity with PyTorch): libm's ``exp``/``log``, fastmath off,
  so the results are the reference's to the rounding of the sums' order;
- float32 (training and evaluation): the row max in eight registers and a branch-free ``exp`` —
  Cody–Waite reduction x = n ln2 + r, a degree-7 polynomial for e^r (the Cephes ``expf``
  form) and 2^n made from its exponent bits through an int32 view of a scratch row — so
  LLVM vectorises every pass.  libm's scalar ``exp`` cost ~5 ns per logit: 58 ms of a
  word-level step at V = 9,867 and 1,120 rows, now 14 ms (``bench/RESULTS.md``).  Relative
  error of the exponential below 3e-7 (a few float32 ulp); sums stay float64.
"""

from __future__ import annotations

import math

import numpy as np
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


# ---- float32: vectorised passes --------------------------------------------------------
_F = np.float32
_LOG2E, _LN2_HI, _LN2_LO = _F(1.44269504088896341), _F(0.693359375), _F(-2.12194440e-4)
_P0, _P1, _P2 = _F(1.9875691500e-4), _F(1.3981999507e-3), _F(8.3334519073e-3)
_P3, _P4, _P5 = _F(4.1665795894e-2), _F(1.6666665459e-1), _F(5.0000001201e-1)
_LO, _HALF, _ONE = _F(-87.0), _F(0.5), _F(1.0)


@njit(**JIT)
def _row_max32(row):
    """max(row) in eight running maxima held in registers (0.24 against 0.96 ns a value, a
    row of 9,867 in cache, AMD Zen 3: one running max is a dependency chain, and maxima kept
    in a scratch array go through memory every step)."""
    V = row.shape[0]
    m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = row[0]
    nb = V // 8
    for i in range(nb):
        b = 8 * i
        m0 = max(m0, row[b])
        m1 = max(m1, row[b + 1])
        m2 = max(m2, row[b + 2])
        m3 = max(m3, row[b + 3])
        m4 = max(m4, row[b + 4])
        m5 = max(m5, row[b + 5])
        m6 = max(m6, row[b + 6])
        m7 = max(m7, row[b + 7])
    mx = max(max(max(m0, m1), max(m2, m3)), max(max(m4, m5), max(m6, m7)))
    for j in range(nb * 8, V):
        mx = max(mx, row[j])
    return mx


@njit(**JIT)
def _exp_parts32(row, mx, p_out, two_n):
    """exp(row[j] - mx) = p_out[j] * two_n[j]; returns the sum in float64.  Arguments below
    -87 (e^-87 ~ 1e-38, nothing next to the row's max) are clamped.  p_out must not be row:
    LLVM's run-time overlap check would then take the scalar loop (2.7x slower)."""
    bits = two_n.view(np.int32)
    for j in range(row.shape[0]):
        x = max(row[j] - mx, _LO)
        n = np.floor(x * _LOG2E + _HALF)
        r = x - n * _LN2_HI
        r = r - n * _LN2_LO
        p = ((((_P0 * r + _P1) * r + _P2) * r + _P3) * r + _P4) * r + _P5
        p_out[j] = p * (r * r) + r + _ONE
        bits[j] = (np.int32(n) + np.int32(127)) << np.int32(23)
    s = 0.0
    for j in range(row.shape[0]):
        s += p_out[j] * two_n[j]
    return s


@njit(**JIT)
def _xent32(z, targets, scale, has_bias, bias, dbias, p, two_n):
    """With ``has_bias``: the rows are z + bias (added in place, a pass over a row already in
    cache instead of one over the whole matrix) and ``dbias`` (V,) += the column sums of
    dL/dz, made in the pass that writes them."""
    M, V = z.shape
    total = 0.0
    for m in range(M):
        row = z[m]
        if has_bias:
            for j in range(V):
                row[j] += bias[j]
        mx = _row_max32(row)
        y = targets[m]
        zy = row[y] - mx
        s = _exp_parts32(row, mx, p, two_n)
        total += math.log(s) - zy
        inv = _F(scale / s)
        if has_bias:
            for j in range(V):
                d = p[j] * two_n[j] * inv
                row[j] = d
                dbias[j] += d
            dbias[y] -= scale
        else:
            for j in range(V):
                row[j] = p[j] * two_n[j] * inv
        row[y] -= scale
    return total


@njit(**JIT)
def _pick32(z, targets, out, has_bias, bias, p, two_n):
    """With ``has_bias`` the rows are z + bias, added in place while the row is in cache."""
    for m in range(z.shape[0]):
        row = z[m]
        if has_bias:
            for j in range(row.shape[0]):
                row[j] += bias[j]
        mx = _row_max32(row)
        s = _exp_parts32(row, mx, p, two_n)
        out[m] = (np.float64(row[targets[m]]) - np.float64(mx)) - math.log(s)


@njit(**JIT)
def _log_softmax32(z, out, p, two_n):
    for m in range(z.shape[0]):
        row = z[m]
        mx = _row_max32(row)
        c = _F(mx + math.log(_exp_parts32(row, mx, p, two_n)))
        o = out[m]
        for j in range(row.shape[0]):
            o[j] = row[j] - c


def _scratch(V):
    return np.empty(V, dtype=np.float32), np.empty(V, dtype=np.float32)


# Rows x vocabulary from which the float32 loss splits its rows over the thread plan's
# workers (the kernels release the GIL): a word-level batch (1,120 x 9,867) takes 13 ms on
# one core, and the products around it already run on every core.
SPLIT_MIN = 1 << 20


def xent(z, targets, scale, bias=None):
    """Summed nll of the rows of z (M, V) C-contiguous float32/64 against targets (M,) int64;
    z becomes scale * dnll/dz.  ``scale`` of z's dtype.

    ``bias`` (V,): the logits are z + bias (z holds them unbiased on entry); returns
    ``(total, dL/dbias)`` instead of the total."""
    V = z.shape[1]
    if z.dtype != np.float32:
        if bias is not None:
            z += bias
        total = float(xent_inplace(z, targets, scale))
        return total if bias is None else (total, z.sum(axis=0))
    has_bias = bias is not None
    b = np.ascontiguousarray(bias, dtype=np.float32) if has_bias else np.zeros(1, np.float32)
    totals, partial = {}, {}

    def rows(n0, n1):
        db = np.zeros(V if has_bias else 1, dtype=np.float32)
        totals[n0] = _xent32(z[n0:n1], targets[n0:n1], scale, has_bias, b, db, *_scratch(V))
        partial[n0] = db

    _by_rows(z, rows)
    total = float(sum(totals[k] for k in sorted(totals)))
    if not has_bias:
        return total
    keys = sorted(partial)
    db = partial[keys[0]]
    for k in keys[1:]:
        db += partial[k]
    return total, db


def _by_rows(z, rows):
    """rows(n0, n1) over all of z's rows: one call below SPLIT_MIN logits, else one per
    worker of the thread plan, side by side."""
    M, V = z.shape
    if M * V < SPLIT_MIN:
        rows(0, M)
        return
    from ..recurrent import _on_rows  # the time loops' row workers: one pool
    from . import blas

    _on_rows(blas.plan(M, compiled=True), M, rows)


def pick_log_softmax(z, targets, bias=None):
    """log softmax(z + bias)[m, targets[m]] (M,) float64 for z (M, V) C-contiguous.

    Without ``bias`` z is unchanged; with one (V,) z is overwritten with z + bias, added row
    by row inside the kernel's passes (float32: a pass over a row already in cache instead of
    one over the whole (M, V) block, which at word level is larger than the cache)."""
    out = np.empty(z.shape[0], dtype=np.float64)
    if z.dtype == np.float32:
        from . import warm

        warm.wait_for("pick")  # a cold start's helper may be compiling it
        has_bias = bias is not None
        b = np.ascontiguousarray(bias, dtype=np.float32) if has_bias else np.zeros(1, np.float32)
        _by_rows(z, lambda n0, n1: _pick32(z[n0:n1], targets[n0:n1], out[n0:n1], has_bias, b,
                                           *_scratch(z.shape[1])))
    else:
        if bias is not None:
            z += bias
        _pick64(z, targets, out)
    return out


def log_softmax(z, out):
    """out[m] = z[m] - logsumexp(z[m]) for z, out (M, V) C-contiguous; out may be z."""
    if z.dtype == np.float32:
        _by_rows(z, lambda n0, n1: _log_softmax32(z[n0:n1], out[n0:n1], *_scratch(z.shape[1])))
    else:
        log_softmax_rows(z, out)


@njit(**_JIT)
def _pick64(z, targets, out):
    for m in range(z.shape[0]):
        row = z[m]
        mx = row[0]
        for j in range(1, row.shape[0]):
            if row[j] > mx:
                mx = row[j]
        s = 0.0
        for j in range(row.shape[0]):
            s += math.exp(row[j] - mx)
        out[m] = (row[targets[m]] - mx) - math.log(s)
