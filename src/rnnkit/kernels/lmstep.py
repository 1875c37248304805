"""One generation step of a whole language model in one compiled call.

At batch 1 a token costs a few matrix-vector products (each layer's input and recurrent
product, the output layer) — well under a millisecond of arithmetic — so the general
per-layer path (a BLAS call, a gate kernel and ~10 small NumPy calls per layer, then the
output layer and a log-softmax) is dominated by call overhead.  :func:`lm_token` does all
layers, the output layer and the log-softmax for N rows in one call, with the same gate
math (and the same float32 fast tanh) as the sequence kernels, so its results are the
sequence forward's to rounding (tests/test_speed_paths.py).

Weights come stacked per layer (all layers above the first have the same shapes):
``table`` (V, G*H) = embedding @ W_ih_l0.T + b_ih_l0; ``wih`` (max(L-1, 1), G*H, H),
``bih`` like it (G*H); ``whh`` (L, G*H, H), ``bhh`` (L, G*H); ``wout`` (V, H), ``bout`` (V,).
Cells: 0 Elman tanh, 1 Elman relu, 2 GRU (reset_after, PyTorch's form), 3 LSTM.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._math import JIT, sigmoid, tanh


@njit(**JIT)
def _dot4(w, x, out, r):
    """out[r:r+4] = w[r:r+4] . x: four independent streams of the weights (the step is bound
    by reading them from cache)."""
    K = w.shape[1]
    w0, w1, w2, w3 = w[r], w[r + 1], w[r + 2], w[r + 3]
    x0 = x[0]
    s0 = w0[0] * x0
    s1 = w1[0] * x0
    s2 = w2[0] * x0
    s3 = w3[0] * x0
    for k in range(1, K):
        xk = x[k]
        s0 += w0[k] * xk
        s1 += w1[k] * xk
        s2 += w2[k] * xk
        s3 += w3[k] * xk
    out[r] = s0
    out[r + 1] = s1
    out[r + 2] = s2
    out[r + 3] = s3


@njit(**JIT)
def _dot1(w, x, out, r):
    row = w[r]
    s = row[0] * x[0]
    for k in range(1, w.shape[1]):
        s += row[k] * x[k]
    out[r] = s


@njit(**JIT)
def _matvec(w, x, out, rev):
    """out[r] = w[r] . x for w (R, K), four rows at a time, the rows in ascending order or
    (``rev``) descending.  Every out[r] is the same dot product either way, so the order
    changes only which weights are still in cache (see :func:`lm_token`)."""
    R = w.shape[0]
    full = R - R % 4
    if rev:
        for r in range(R - 1, full - 1, -1):
            _dot1(w, x, out, r)
        for r in range(full - 4, -1, -4):
            _dot4(w, x, out, r)
    else:
        for r in range(0, full, 4):
            _dot4(w, x, out, r)
        for r in range(full, R):
            _dot1(w, x, out, r)


@njit(**JIT)
def lm_token(cell, tok, table, wih, bih, whh, bhh, wout, bout, h, c, flip):
    """tok (N,) int64; h, c (L, N, H) (c unused unless LSTM); ``flip`` (bool) the order of
    the weight reads, alternated by the caller from one token to the next.

    Returns (bad, h_new, c_new, logp (N, V)); bad is True (and nothing valid returned) when a
    token id lies outside [0, V).

    Order of the weight reads: a token reads every weight once, more than one core's L2 holds
    at 2 x 256 (GRU 2.4 MB, LSTM 3.2 MB), so reading them in the same order every token
    finds none of them left in cache (each read evicts what the next token needs first).
    Every other row pass runs backwards: the last layer's recurrent product first (it needs
    only the previous state), then the layers in order, each matrix's rows descending — so it
    starts with what the pass before read last.  GRU 2 x 256 at batch 1: 75-94 -> 60-80 us a
    token for the three products (bench/RESULTS.md).  Each output is the same dot product in
    either order: the results do not depend on ``flip``.
    """
    L, N, H = h.shape
    V = table.shape[0]
    GH = table.shape[1]
    dt = table.dtype
    h_new = np.empty_like(h)
    c_new = np.empty_like(c)
    lp = np.empty((N, V), dtype=dt)
    for n in range(N):
        if tok[n] < 0 or tok[n] >= V:
            return True, h_new, c_new, lp
    xp = np.empty(GH, dtype=dt)
    gh = np.empty(GH, dtype=dt)
    gtop = np.empty(GH, dtype=dt)  # the last layer's recurrent product, read first in a flip
    z = np.empty(V, dtype=dt)
    for n in range(N):
        rev = flip ^ (n % 2 == 1)
        if rev:
            _matvec(whh[L - 1], h[L - 1, n], gtop, True)
        for l in range(L):
            if l == 0:
                row = table[tok[n]]
                for j in range(GH):
                    xp[j] = row[j]
            else:
                _matvec(wih[l - 1], h_new[l - 1, n], xp, rev)
                b = bih[l - 1]
                for j in range(GH):
                    xp[j] += b[j]
            hp = h[l, n]
            if rev and l == L - 1:
                for j in range(GH):
                    gh[j] = gtop[j]
            else:
                _matvec(whh[l], hp, gh, rev)
            b = bhh[l]
            hn = h_new[l, n]
            if cell == 3:
                cp = c[l, n]
                cn_ = c_new[l, n]
                for j in range(H):
                    i = sigmoid((xp[j] + gh[j]) + b[j])
                    f = sigmoid((xp[H + j] + gh[H + j]) + b[H + j])
                    g = tanh((xp[2 * H + j] + gh[2 * H + j]) + b[2 * H + j])
                    o = sigmoid((xp[3 * H + j] + gh[3 * H + j]) + b[3 * H + j])
                    cc = f * cp[j] + i * g
                    cn_[j] = cc
                    hn[j] = o * tanh(cc)
            elif cell == 2:
                for j in range(H):
                    r = sigmoid(xp[j] + (gh[j] + b[j]))
                    u = sigmoid(xp[H + j] + (gh[H + j] + b[H + j]))
                    ghn = gh[2 * H + j] + b[2 * H + j]
                    nn = tanh(xp[2 * H + j] + r * ghn)
                    hn[j] = nn + u * (hp[j] - nn)
            elif cell == 1:
                for j in range(H):
                    a = (xp[j] + gh[j]) + b[j]
                    hn[j] = a if a > 0 else a * 0
            else:
                for j in range(H):
                    hn[j] = tanh((xp[j] + gh[j]) + b[j])
        _matvec(wout, h_new[L - 1, n], z, rev)
        mx = z[0] + bout[0]
        for v in range(V):
            z[v] += bout[v]
            if z[v] > mx:
                mx = z[v]
        s = 0.0
        for v in range(V):
            s += math.exp(z[v] - mx)
        cst = mx + math.log(s)
        for v in range(V):
            lp[n, v] = z[v] - cst
    return False, h_new, c_new, lp
