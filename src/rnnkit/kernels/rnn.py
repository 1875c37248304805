"""Fused Elman RNN step (tanh or relu); conventions as in :mod:`.lstm`.

Backward reads the step's output from ``out`` itself (tanh' = 1 - y^2, relu' = [y > 0]), so the
forward pass saves only the entering state ``hs``.
"""

from __future__ import annotations

from numba import njit

from ._math import JIT, one, tanh


@njit(**JIT)
def rnn_fwd(t, pos, lens, xsrc, xidx, gh, b, relu, h, h_next, out, hs, store):
    N, H = h.shape
    for n in range(N):
        p = pos[t, n]
        if t < lens[n]:
            xr = xsrc[xidx[p, n]]
            g_ = gh[n]
            for j in range(H):
                g_[j] = (xr[j] + g_[j]) + b[j]
            if relu:
                for j in range(H):
                    a = g_[j]
                    hn = a if a > 0 else a * 0
                    if store:
                        hs[p, n, j] = h[n, j]
                    h_next[n, j] = hn
                    out[p, n, j] = hn
            else:
                for j in range(H):
                    hn = tanh(g_[j])
                    if store:
                        hs[p, n, j] = h[n, j]
                    h_next[n, j] = hn
                    out[p, n, j] = hn
        else:
            for j in range(H):
                h_next[n, j] = h[n, j]
                out[p, n, j] = 0
                if store:
                    hs[p, n, j] = h[n, j]


@njit(**JIT)
def rnn_bwd(t, pos, lens, dhrec, dhd, dout, has_dout, relu, out, dG, dGs, copy_step):
    N, H = dhd.shape
    for n in range(N):
        p = pos[t, n]
        if t < lens[n]:
            d = dG[p, n]
            y = out[p, n]
            on = one(y[0])
            for j in range(H):
                dh = dhrec[n, j] + dhd[n, j]
                if has_dout:
                    dh += dout[p, n, j]
                if relu:
                    d[j] = dh if y[j] > 0 else dh * 0
                else:
                    d[j] = dh * (on - y[j] * y[j])
                dhd[n, j] = 0
            if copy_step:
                for j in range(H):
                    dGs[n, j] = d[j]
        else:
            for j in range(H):
                dhd[n, j] = dhrec[n, j] + dhd[n, j]
                dG[p, n, j] = 0
                if copy_step:
                    dGs[n, j] = 0
