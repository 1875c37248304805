"""Fused LSTM gate math (PyTorch order i, f, g, o), forward and backward of one time step.

Each kernel handles one step for the whole batch after the driver's recurrent product.
Arrays are time-major; row ``n`` of step ``t`` lives at time position ``p = pos[t, n]`` (``t``
forward, the within-length reversal for the reverse direction), so reversed sequences need
no gathers.  Rows with ``t >= lens[n]`` are padding: the state is carried, the output is 0,
and in backward their gate gradients are 0 and dh/dc pass straight through.

Forward inputs: ``xsrc[xidx[p, n]]`` is the row's input projection (an (T*N, 4H) view of the
hoisted ``x @ W_ih.T + b_ih``, or a (V, 4H) embedding-projection table indexed by token id);
``gh`` (N, 4H) holds ``h @ W_hh.T`` and is overwritten with the pre-activation.  With
``store`` the step saves what backward needs: gates ``act`` (T, N, 4H) (activated), the
entering state ``hs`` and cell ``cs``, and ``tcs = tanh(c')`` (T, N, H each).
"""

from __future__ import annotations

from numba import njit

from ._math import JIT, one, sigmoid, tanh


@njit(**JIT)
def lstm_fwd(t, pos, lens, xsrc, xidx, gh, b, h, c, h_next, out, act, hs, cs, tcs, store):
    N, H = h.shape
    for n in range(N):
        p = pos[t, n]
        if t < lens[n]:
            xr = xsrc[xidx[p, n]]
            g_ = gh[n]
            for j in range(4 * H):
                g_[j] = (xr[j] + g_[j]) + b[j]
            for j in range(H):
                i = sigmoid(g_[j])
                f = sigmoid(g_[H + j])
                g = tanh(g_[2 * H + j])
                o = sigmoid(g_[3 * H + j])
                cp = c[n, j]
                cn = f * cp + i * g
                tc = tanh(cn)
                hn = o * tc
                if store:
                    act[p, n, j] = i
                    act[p, n, H + j] = f
                    act[p, n, 2 * H + j] = g
                    act[p, n, 3 * H + j] = o
                    hs[p, n, j] = h[n, j]
                    cs[p, n, j] = cp
                    tcs[p, n, j] = tc
                c[n, j] = cn
                h_next[n, j] = hn
                out[p, n, j] = hn
        else:
            for j in range(H):
                h_next[n, j] = h[n, j]
                out[p, n, j] = 0
            if store:
                for j in range(4 * H):
                    act[p, n, j] = 0
                for j in range(H):
                    hs[p, n, j] = h[n, j]
                    cs[p, n, j] = c[n, j]
                    tcs[p, n, j] = 0


@njit(**JIT)
def lstm_bwd(t, pos, lens, dhrec, dhd, dout, has_dout, dc, act, cs, tcs, dG, dGs, copy_step):
    """dh = dhrec (= dG[t+1] @ W_hh) + dhd (the part not through W_hh) + dout[p].

    Writes dG[p, n] (and dGs[n] if ``copy_step``); leaves in ``dhd`` the direct part of
    dL/dh_{t-1} and in ``dc`` dL/dc_{t-1}.
    """
    N, H = dhd.shape
    for n in range(N):
        p = pos[t, n]
        if t < lens[n]:
            a = act[p, n]
            d = dG[p, n]
            on = one(a[0])
            for j in range(H):
                dh = dhrec[n, j] + dhd[n, j]
                if has_dout:
                    dh += dout[p, n, j]
                i = a[j]
                f = a[H + j]
                g = a[2 * H + j]
                o = a[3 * H + j]
                tc = tcs[p, n, j]
                dct = dh * o * (on - tc * tc) + dc[n, j]
                d[j] = dct * g * i * (on - i)
                d[H + j] = dct * cs[p, n, j] * f * (on - f)
                d[2 * H + j] = dct * i * (on - g * g)
                d[3 * H + j] = dh * tc * o * (on - o)
                dc[n, j] = dct * f
                dhd[n, j] = 0
            if copy_step:
                for j in range(4 * H):
                    dGs[n, j] = d[j]
        else:
            for j in range(H):
                dh = dhrec[n, j] + dhd[n, j]
                dhd[n, j] = dh
            for j in range(4 * H):
                dG[p, n, j] = 0
            if copy_step:
                for j in range(4 * H):
                    dGs[n, j] = 0
