"""Fused GRU gate math (PyTorch order r, z, n), both forms, one time step per call.

Conventions (pos, lens, xsrc/xidx, padding rows, store) are those of :mod:`.lstm`.

reset_after (PyTorch/cuDNN): ``gh`` (N, 3H) = h @ W_hh.T from the driver.  Saved: gates
``act`` (r, z, n), ``ghn = W_hn h + b_hn`` (needed by dr), and the entering state ``hs``.
Backward writes ``dX`` = dL/d(input projection) and ``dGH`` = dL/d(recurrent product), which
differ only in the n block (``dn * r``).

reset_before (the notes' form) needs two products per step, W_hh[:2H] on h and W_hn on r*h,
so forward and backward are split into two kernels (``_a`` before the second product, ``_b``
after it).  Saved: ``act`` (r, z, n), ``hs`` and ``rhs = r * h``.
"""

from __future__ import annotations

from numba import njit

from ._math import JIT, one, sigmoid, tanh


@njit(**JIT)
def gru_fwd(t, pos, lens, xsrc, xidx, gh, b, h, h_next, out, act, ghns, hs, xbuf, store):
    N, H = h.shape
    for n in range(N):
        p = pos[t, n]
        if t < lens[n]:
            xr = xsrc[xidx[p, n]]
            for j in range(3 * H):
                xbuf[j] = xr[j]
            g_ = gh[n]
            for j in range(H):
                r = sigmoid(xbuf[j] + (g_[j] + b[j]))
                z = sigmoid(xbuf[H + j] + (g_[H + j] + b[H + j]))
                ghn = g_[2 * H + j] + b[2 * H + j]
                nn = tanh(xbuf[2 * H + j] + r * ghn)
                hp = h[n, j]
                hn = nn + z * (hp - nn)
                if store:
                    act[p, n, j] = r
                    act[p, n, H + j] = z
                    act[p, n, 2 * H + j] = nn
                    ghns[p, n, j] = ghn
                    hs[p, n, j] = hp
                h_next[n, j] = hn
                out[p, n, j] = hn
        else:
            for j in range(H):
                h_next[n, j] = h[n, j]
                out[p, n, j] = 0
            if store:
                for j in range(3 * H):
                    act[p, n, j] = 0
                for j in range(H):
                    ghns[p, n, j] = 0
                    hs[p, n, j] = h[n, j]


@njit(**JIT)
def gru_bwd(t, pos, lens, dhrec, dhd, dout, has_dout, act, ghns, hs, dX, dGH, dGs, copy_step):
    N, H = dhd.shape
    for n in range(N):
        p = pos[t, n]
        if t < lens[n]:
            a = act[p, n]
            dx = dX[p, n]
            dg = dGH[p, n]
            on = one(a[0])
            for j in range(H):
                dh = dhrec[n, j] + dhd[n, j]
                if has_dout:
                    dh += dout[p, n, j]
                r = a[j]
                z = a[H + j]
                nn = a[2 * H + j]
                dn = dh * (on - z) * (on - nn * nn)
                dz = dh * (hs[p, n, j] - nn) * z * (on - z)
                dr = dn * ghns[p, n, j] * r * (on - r)
                dx[j] = dr
                dx[H + j] = dz
                dx[2 * H + j] = dn
                dg[j] = dr
                dg[H + j] = dz
                dg[2 * H + j] = dn * r
                dhd[n, j] = dh * z
            if copy_step:
                for j in range(3 * H):
                    dGs[n, j] = dg[j]
        else:
            for j in range(H):
                dhd[n, j] = dhrec[n, j] + dhd[n, j]
            for j in range(3 * H):
                dX[p, n, j] = 0
                dGH[p, n, j] = 0
            if copy_step:
                for j in range(3 * H):
                    dGs[n, j] = 0


@njit(**JIT)
def grub_fwd_a(t, pos, lens, xsrc, xidx, grz, b, h, xbuf, rz, rh, act, rhs, store):
    """r, z from grz = h @ W_hh[:2H].T; writes r*h to ``rh`` (N, H) for the second product."""
    N, H = h.shape
    for n in range(N):
        p = pos[t, n]
        xr = xsrc[xidx[p, n]]
        for j in range(3 * H):
            xbuf[n, j] = xr[j]
        if t < lens[n]:
            for j in range(H):
                r = sigmoid(xbuf[n, j] + (grz[n, j] + b[j]))
                z = sigmoid(xbuf[n, H + j] + (grz[n, H + j] + b[H + j]))
                rz[n, j] = r
                rz[n, H + j] = z
                rh[n, j] = r * h[n, j]
                if store:
                    act[p, n, j] = r
                    act[p, n, H + j] = z
                    rhs[p, n, j] = r * h[n, j]
        else:
            for j in range(H):
                rh[n, j] = 0
                if store:
                    act[p, n, j] = 0
                    act[p, n, H + j] = 0
                    rhs[p, n, j] = 0


@njit(**JIT)
def grub_fwd_b(t, pos, lens, ghn, b, h, xbuf, rz, h_next, out, act, hs, store):
    N, H = h.shape
    for n in range(N):
        p = pos[t, n]
        if t < lens[n]:
            for j in range(H):
                nn = tanh(xbuf[n, 2 * H + j] + (ghn[n, j] + b[2 * H + j]))
                hp = h[n, j]
                hn = nn + rz[n, H + j] * (hp - nn)
                if store:
                    act[p, n, 2 * H + j] = nn
                    hs[p, n, j] = hp
                h_next[n, j] = hn
                out[p, n, j] = hn
        else:
            for j in range(H):
                h_next[n, j] = h[n, j]
                out[p, n, j] = 0
                if store:
                    act[p, n, 2 * H + j] = 0
                    hs[p, n, j] = h[n, j]


@njit(**JIT)
def grub_bwd_a(t, pos, lens, dhrec, dhd, dout, has_dout, act, hs, dX, dn_s):
    """dn, dz; ``dn_s`` (N, H) feeds drh = dn @ W_hn; dhd gets dh * z (dh if padding)."""
    N, H = dhd.shape
    for n in range(N):
        p = pos[t, n]
        if t < lens[n]:
            a = act[p, n]
            on = one(a[0])
            for j in range(H):
                dh = dhrec[n, j] + dhd[n, j]
                if has_dout:
                    dh += dout[p, n, j]
                z = a[H + j]
                nn = a[2 * H + j]
                dn = dh * (on - z) * (on - nn * nn)
                dX[p, n, H + j] = dh * (hs[p, n, j] - nn) * z * (on - z)
                dX[p, n, 2 * H + j] = dn
                dn_s[n, j] = dn
                dhd[n, j] = dh * z
        else:
            for j in range(H):
                dhd[n, j] = dhrec[n, j] + dhd[n, j]
                dn_s[n, j] = 0
            for j in range(3 * H):
                dX[p, n, j] = 0


@njit(**JIT)
def grub_bwd_b(t, pos, lens, drh, dhd, act, hs, dX, drz):
    """dr from drh = dn @ W_hn; ``drz`` (N, 2H) feeds dh += drz @ W_hh[:2H]."""
    N, H = dhd.shape
    for n in range(N):
        p = pos[t, n]
        if t < lens[n]:
            a = act[p, n]
            on = one(a[0])
            for j in range(H):
                r = a[j]
                dr = drh[n, j] * hs[p, n, j] * r * (on - r)
                dX[p, n, j] = dr
                drz[n, j] = dr
                drz[n, H + j] = dX[p, n, H + j]
                dhd[n, j] += drh[n, j] * r
        else:
            for j in range(2 * H):
                drz[n, j] = 0
