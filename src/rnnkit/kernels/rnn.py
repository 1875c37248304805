"""Fused Elman RNN step (tanh or relu); conventions as in :mod:`.lstm`.

Backward reads the step's output from the history ``hh[t + 1]`` (tanh' = 1 - y^2,
relu' = [y > 0]), so nothing but the history is saved.
"""

from __future__ import annotations

from numba import njit

from ._math import JIT, one, tanh


@njit(**JIT)
def rnn_fwd(t, ti, to, pos, lens, xsrc, xidx, gh, b, relu, hh, out):
    N, H = hh.shape[1], hh.shape[2]
    h, h_next = hh[ti], hh[to]
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
                    h_next[n, j] = hn
                    out[p, n, j] = hn
            else:
                for j in range(H):
                    hn = tanh(g_[j])
                    h_next[n, j] = hn
                    out[p, n, j] = hn
        else:
            for j in range(H):
                h_next[n, j] = h[n, j]
                out[p, n, j] = 0


@njit(**JIT)
def rnn_bwd(t, pos, lens, dhrec, dhd, dout, has_dout, relu, hh, dG):
    N, H = dhd.shape
    for n in range(N):
        p = pos[t, n]
        d = dG[t, n]
        if t < lens[n]:
            y = hh[t + 1, n]
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
        else:
            for j in range(H):
                dhd[n, j] = dhrec[n, j] + dhd[n, j]
                d[j] = 0
