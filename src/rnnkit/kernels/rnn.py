"""Fused Elman RNN step (tanh or relu); conventions as in :mod:`.lstm`.

Backward reads the step's output from the history ``hh[t + 1]`` (tanh' = 1 - y^2,
relu' = [y > 0]), so nothing but the history is saved.
"""

from __future__ import annotations

from numba import njit

from ._math import STEP_JIT, emit_row, one, tanh


@njit(**STEP_JIT)
def rnn_fwd(t, ti, to, n0, n1, pos, lens, xsrc, xidx, gh, b, relu, hh, out):
    # Short loops indexed from 0 (see the note in :mod:`.lstm`).
    N, H = hh.shape[1], hh.shape[2]
    h, h_next = hh[ti], hh[to]
    for n in range(n0, n1):
        p = pos[t, n]
        hn_ = h_next[n]
        if t < lens[n]:
            xr = xsrc[xidx[p, n]]
            g_ = gh[n]
            for j in range(H):
                g_[j] = (xr[j] + g_[j]) + b[j]
            if relu:
                for j in range(H):
                    a = g_[j]
                    hn_[j] = a if a > 0 else a * 0
            else:
                for j in range(H):
                    hn_[j] = tanh(g_[j])
        else:
            hp = h[n]
            for j in range(H):
                hn_[j] = hp[j]
        emit_row(out[p, n], hn_, t < lens[n])


@njit(**STEP_JIT)
def rnn_bwd(t, n0, n1, pos, lens, dhrec, dhd, dout, has_dout, relu, hh, dG):
    """dG may be ``dout`` itself (release mode): a row of dout is read before it is written."""
    N, H = dhd.shape
    for n in range(n0, n1):
        p = pos[t, n]
        d = dG[t, n]
        dh = dhd[n]
        dr = dhrec[n]
        for j in range(H):
            dh[j] = dr[j] + dh[j]
        if t < lens[n]:
            if has_dout:
                do = dout[p, n]
                for j in range(H):
                    dh[j] += do[j]
            y = hh[t + 1, n]
            on = one(y[0])
            if relu:
                for j in range(H):
                    d[j] = dh[j] if y[j] > 0 else dh[j] * 0
            else:
                for j in range(H):
                    d[j] = dh[j] * (on - y[j] * y[j])
            for j in range(H):
                dh[j] = 0
        else:
            for j in range(H):
                d[j] = 0
