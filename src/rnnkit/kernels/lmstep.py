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
def _matvec(w, x, out):
    """out[r] = w[r] . x for w (R, K), four rows at a time (four independent streams of
    the weights: the step is bound by reading them from cache)."""
    R, K = w.shape
    r = 0
    while r + 4 <= R:
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
        r += 4
    while r < R:
        row = w[r]
        s = row[0] * x[0]
        for k in range(1, K):
            s += row[k] * x[k]
        out[r] = s
        r += 1


@njit(**JIT)
def lm_token(cell, tok, table, wih, bih, whh, bhh, wout, bout, h, c):
    """tok (N,) int64; h, c (L, N, H) (c unused unless LSTM).

    Returns (bad, h_new, c_new, logp (N, V)); bad is True (and nothing valid returned) when a
    token id lies outside [0, V).
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
    z = np.empty(V, dtype=dt)
    for n in range(N):
        for l in range(L):
            if l == 0:
                row = table[tok[n]]
                for j in range(GH):
                    xp[j] = row[j]
            else:
                _matvec(wih[l - 1], h_new[l - 1, n], xp)
                b = bih[l - 1]
                for j in range(GH):
                    xp[j] += b[j]
            hp = h[l, n]
            _matvec(whh[l], hp, gh)
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
        _matvec(wout, h_new[L - 1, n], z)
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
