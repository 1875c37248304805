"""Fused attention step, forward and backward: one compiled call per decoder step.

The NumPy step of :class:`rnnkit.layers.attention.Attention` makes the scores, the softmax
and the context in about ten array operations, each a temporary of (N, S) or (N, S, A)
values; these kernels do the same in one pass per row, into buffers the decoder allocated
once for all its steps.  Padded source positions (s >= lengths[n]) are skipped: their weight
is written as exactly 0 and nothing is read or accumulated there, which is what the
reference's -inf score gives.

Shapes: N batch, S source time, A attention size, Hq query size, Hs memory size.

- ``additive_fwd(qp, keys, v, lengths, memory, t, alpha, ctx)``: qp (N, A) = q W_q^T,
  keys (N, S, A) = memory W_k^T; writes t = tanh(keys + qp) (N, S, A), alpha (N, S),
  ctx (N, Hs).
- ``general_fwd(q, keys, lengths, memory, alpha, ctx)``: keys (N, S, Hq) = memory W_a^T.
- ``additive_bwd(dctx, alpha, t, memory, v, lengths, dalpha, dmem, dkeys, dv, dqp)``: adds
  dL/dmemory through the context into dmem (N, S, Hs), dL/dkeys into dkeys (N, S, A), dL/dv
  into dv (A,); writes dL/dqp (N, A); dalpha (N, S) is scratch.
- ``general_bwd(dctx, alpha, q, keys, memory, lengths, de, dmem, dq)``: writes the score
  gradients de (N, S) (dL/dkeys = sum over steps of de^T q, one product after the loop) and
  dL/dq (N, Hq); adds into dmem.
"""

from __future__ import annotations

import math

from numba import njit

from ._math import JIT, one, tanh


@njit(**JIT)
def _softmax_context(n, L, alpha, memory, ctx):
    """alpha[n, :L] holds the scores: turn them into weights (0 past L), ctx[n] = sum a m."""
    a = alpha[n]
    m = a[0]
    for s in range(1, L):
        m = max(m, a[s])
    tot = a[0] * 0
    for s in range(L):
        e = math.exp(a[s] - m)
        a[s] = e
        tot += e
    inv = one(tot) / tot
    for s in range(L):
        a[s] *= inv
    for s in range(L, a.shape[0]):
        a[s] = 0
    c = ctx[n]
    for h in range(c.shape[0]):
        c[h] = 0
    for s in range(L):
        w = a[s]
        mr = memory[n, s]
        for h in range(c.shape[0]):
            c[h] += w * mr[h]


@njit(**JIT)
def additive_fwd(qp, keys, v, lengths, memory, t, alpha, ctx):
    N, _, A = keys.shape
    for n in range(N):
        L = lengths[n]
        q = qp[n]
        for s in range(L):
            kr = keys[n, s]
            tr = t[n, s]
            for j in range(A):
                tr[j] = tanh(kr[j] + q[j])
            e = tr[0] * 0
            for j in range(A):
                e += tr[j] * v[j]
            alpha[n, s] = e
        _softmax_context(n, L, alpha, memory, ctx)


@njit(**JIT)
def general_fwd(q, keys, lengths, memory, alpha, ctx):
    N, _, Hq = keys.shape
    for n in range(N):
        L = lengths[n]
        qr = q[n]
        for s in range(L):
            kr = keys[n, s]
            e = kr[0] * 0
            for j in range(Hq):
                e += kr[j] * qr[j]
            alpha[n, s] = e
        _softmax_context(n, L, alpha, memory, ctx)


@njit(**JIT)
def _score_grads(n, L, dctx, alpha, memory, dalpha, dmem):
    """dalpha[n, s] <- dL/de_s (softmax backward; 0 at padding); dmem[n, s] += alpha_s dctx."""
    d = dctx[n]
    Hs = d.shape[0]
    dot = d[0] * 0
    for s in range(L):
        mr = memory[n, s]
        da = d[0] * 0
        for h in range(Hs):
            da += mr[h] * d[h]
        dalpha[n, s] = da
        dot += alpha[n, s] * da
        w = alpha[n, s]
        dm = dmem[n, s]
        for h in range(Hs):
            dm[h] += w * d[h]
    for s in range(L):
        dalpha[n, s] = alpha[n, s] * (dalpha[n, s] - dot)
    for s in range(L, dalpha.shape[1]):
        dalpha[n, s] = 0


@njit(**JIT)
def additive_bwd(dctx, alpha, t, memory, v, lengths, dalpha, dmem, dkeys, dv, dqp):
    N, _, A = t.shape
    for n in range(N):
        L = lengths[n]
        _score_grads(n, L, dctx, alpha, memory, dalpha, dmem)
        dq = dqp[n]
        for j in range(A):
            dq[j] = 0
        for s in range(L):
            de = dalpha[n, s]
            tr = t[n, s]
            dk = dkeys[n, s]
            for j in range(A):
                x = tr[j]
                dv[j] += de * x
                g = (one(x) - x * x) * v[j] * de
                dk[j] += g
                dq[j] += g


@njit(**JIT)
def general_bwd(dctx, alpha, q, keys, memory, lengths, de, dmem, dq):
    N, _, Hq = keys.shape
    for n in range(N):
        L = lengths[n]
        _score_grads(n, L, dctx, alpha, memory, de, dmem)
        dr = dq[n]
        for j in range(Hq):
            dr[j] = 0
        for s in range(L):
            g = de[n, s]
            kr = keys[n, s]
            for j in range(Hq):
                dr[j] += g * kr[j]
