"""Fused GRU gate math (PyTorch order r, z, n), both forms, one time step per call.

Conventions (pos / step order, histories ``hh``, padding rows, xsrc/xidx, store) are those of
:mod:`.lstm`.

reset_after (PyTorch/cuDNN): ``gh`` (N, 3H) = h @ W_hh.T from the driver.  Saved: gates
``act`` (r, z, n) and ``ghns`` = W_hn h + b_hn (T, N, H), needed by dr.  Backward writes
``dX`` = dL/d(input projection) (T, N, 3H); dL/d(recurrent product) differs from it only in
the n block (``dn * r``), kept alone in ``dGHn`` (T, N, H), with the step's whole (N, 3H)
slab in ``dGs`` for the next recurrent product.

reset_before (the notes' form) needs two products per step, W_hh[:2H] on h and W_hn on r*h,
so forward and backward are split into two kernels (``_a`` before the second product, ``_b``
after it).  Saved: ``act`` (r, z, n) and ``rhs = r * h`` (T, N, H).
"""

from __future__ import annotations

from numba import njit

from ._math import JIT, one, sigmoid, tanh


@njit(**JIT)
def gru_fwd(t, ti, to, pos, lens, xsrc, xidx, gh, b, hh, out, act, ghns, xbuf, store):
    N, H = hh.shape[1], hh.shape[2]
    h, h_next = hh[ti], hh[to]
    for n in range(N):
        p = pos[t, n]
        if t < lens[n]:
            xr = xsrc[xidx[p, n]]
            for j in range(3 * H):
                xbuf[j] = xr[j]
            g_ = gh[n]
            a = act[p, n]
            for j in range(H):
                r = sigmoid(xbuf[j] + (g_[j] + b[j]))
                z = sigmoid(xbuf[H + j] + (g_[H + j] + b[H + j]))
                ghn = g_[2 * H + j] + b[2 * H + j]
                nn = tanh(xbuf[2 * H + j] + r * ghn)
                hp = h[n, j]
                hn = nn + z * (hp - nn)
                if store:
                    a[j] = r
                    a[H + j] = z
                    a[2 * H + j] = nn
                    ghns[t, n, j] = ghn
                h_next[n, j] = hn
                out[p, n, j] = hn
        else:
            for j in range(H):
                h_next[n, j] = h[n, j]
                out[p, n, j] = 0


@njit(**JIT)
def gru_bwd(t, pos, lens, dhrec, dhd, dout, has_dout, act, ghns, hh, dX, dGHn, dGs):
    N, H = dhd.shape
    for n in range(N):
        p = pos[t, n]
        dx = dX[t, n]
        dg = dGs[n]
        if t < lens[n]:
            a = act[p, n]
            on = one(a[0])
            for j in range(H):
                dh = dhrec[n, j] + dhd[n, j]
                if has_dout:
                    dh += dout[p, n, j]
                r = a[j]
                z = a[H + j]
                nn = a[2 * H + j]
                dn = dh * (on - z) * (on - nn * nn)
                dz = dh * (hh[t, n, j] - nn) * z * (on - z)
                dr = dn * ghns[t, n, j] * r * (on - r)
                dx[j] = dr
                dx[H + j] = dz
                dx[2 * H + j] = dn
                dg[j] = dr
                dg[H + j] = dz
                dg[2 * H + j] = dn * r
                dGHn[t, n, j] = dn * r
                dhd[n, j] = dh * z
        else:
            for j in range(H):
                dhd[n, j] = dhrec[n, j] + dhd[n, j]
                dGHn[t, n, j] = 0
            for j in range(3 * H):
                dx[j] = 0
                dg[j] = 0


@njit(**JIT)
def grub_fwd_a(t, ti, pos, lens, xsrc, xidx, grz, b, hh, xbuf, rz, rh, act, rhs, store):
    """r, z from grz = h @ W_hh[:2H].T; writes r*h to ``rh`` (N, H) for the second product."""
    N, H = hh.shape[1], hh.shape[2]
    h = hh[ti]
    for n in range(N):
        p = pos[t, n]
        if t < lens[n]:
            xr = xsrc[xidx[p, n]]
            for j in range(3 * H):
                xbuf[n, j] = xr[j]
            a = act[p, n]
            for j in range(H):
                r = sigmoid(xbuf[n, j] + (grz[n, j] + b[j]))
                z = sigmoid(xbuf[n, H + j] + (grz[n, H + j] + b[H + j]))
                rz[n, j] = r
                rz[n, H + j] = z
                rh[n, j] = r * h[n, j]
                if store:
                    a[j] = r
                    a[H + j] = z
                    rhs[t, n, j] = r * h[n, j]
        else:
            for j in range(H):
                rh[n, j] = 0
                if store:
                    rhs[t, n, j] = 0


@njit(**JIT)
def grub_fwd_b(t, ti, to, pos, lens, ghn, b, hh, xbuf, rz, out, act, store):
    N, H = hh.shape[1], hh.shape[2]
    h, h_next = hh[ti], hh[to]
    for n in range(N):
        p = pos[t, n]
        if t < lens[n]:
            a = act[p, n]
            for j in range(H):
                nn = tanh(xbuf[n, 2 * H + j] + (ghn[n, j] + b[2 * H + j]))
                hp = h[n, j]
                hn = nn + rz[n, H + j] * (hp - nn)
                if store:
                    a[2 * H + j] = nn
                h_next[n, j] = hn
                out[p, n, j] = hn
        else:
            for j in range(H):
                h_next[n, j] = h[n, j]
                out[p, n, j] = 0


@njit(**JIT)
def grub_bwd_a(t, pos, lens, dhrec, dhd, dout, has_dout, act, hh, dX, dn_s):
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
                dX[t, n, H + j] = dh * (hh[t, n, j] - nn) * z * (on - z)
                dX[t, n, 2 * H + j] = dn
                dn_s[n, j] = dn
                dhd[n, j] = dh * z
        else:
            for j in range(H):
                dhd[n, j] = dhrec[n, j] + dhd[n, j]
                dn_s[n, j] = 0
            for j in range(3 * H):
                dX[t, n, j] = 0


@njit(**JIT)
def grub_bwd_b(t, pos, lens, drh, dhd, act, hh, dX, drz):
    """dr from drh = dn @ W_hn; ``drz`` (N, 2H) feeds dh += drz @ W_hh[:2H]."""
    N, H = dhd.shape
    for n in range(N):
        p = pos[t, n]
        if t < lens[n]:
            a = act[p, n]
            on = one(a[0])
            for j in range(H):
                r = a[j]
                dr = drh[n, j] * hh[t, n, j] * r * (on - r)
                dX[t, n, j] = dr
                drz[n, j] = dr
                drz[n, H + j] = dX[t, n, H + j]
                dhd[n, j] += drh[n, j] * r
        else:
            for j in range(2 * H):
                drz[n, j] = 0
