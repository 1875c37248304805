"""Fused GRU gate math (PyTorch order r, z, n), both forms, one time step per call.

Conventions (pos / step order, histories ``hh``, padding rows, xsrc/xidx, store) are those of
:mod:`.lstm`.

reset_after (PyTorch/cuDNN): ``gh`` (N, 3H) = h @ W_hh.T from the driver.  Saved: gates
``act`` (r, z, n) and ``ghns`` = W_hn h + b_hn (T, N, H), needed by dr.  Backward writes
``dX`` = dL/d(input projection) (T, N, 3H); dL/d(recurrent product) differs from it only in
the n block (``dn * r``), kept alone in ``dGHn`` (T, N, H), with the step's whole (N, 3H)
slab in ``dGs`` for the next recurrent product.

reset_before (the notes' form) needs two products per step, W_hh[:2H] on h and W_hn on r*h,
so forward and backward are split into two kernels each: ``_fwd_gates`` (r, z and r*h, before
the second product) and ``_fwd_state`` (n and h' after it); ``_bwd_candidate`` (dn, dz before
dn @ W_hn) and ``_bwd_reset`` (dr after it).  Every kernel does batch rows [n0, n1) only.  Saved: ``act`` (r, z, n) and ``rhs = r * h`` (T, N, H).
"""

from __future__ import annotations

from numba import njit

from ._math import STEP_JIT, emit_row, one, sigmoid, tanh


@njit(**STEP_JIT)
def gru_reset_after_fwd(t, ti, to, n0, n1, pos, lens, xsrc, xidx, gh, b, bxn, hh, out, act,
                        ghns, xbufs, store):
    # Short loops over slice views indexed from 0 (see the note in :mod:`.lstm`).  xr is
    # copied first (into the row's own ``xbufs[n]``): without a table, the gates are written
    # over the projection row it is.  ``b`` is added to x W_i + h W_h of r and z (b_ih + b_hh
    # there) and to h W_hn; ``bxn`` (H,) is the candidate's input bias b_in, added to the
    # projection's n part as it is copied (zeros when a table already holds it).
    N, H = hh.shape[1], hh.shape[2]
    h, h_next = hh[ti], hh[to]
    br, bz, bn = b[:H], b[H:2 * H], b[2 * H:]
    for n in range(n0, n1):
        xbuf = xbufs[n]
        xr_, xz, xn = xbuf[:H], xbuf[H:2 * H], xbuf[2 * H:]
        p = pos[t, n]
        hn_ = h_next[n]
        if t < lens[n]:
            xr = xsrc[xidx[p, n]]
            for j in range(2 * H):
                xbuf[j] = xr[j]
            xrn = xr[2 * H:]
            for j in range(H):
                xn[j] = xrn[j] + bxn[j]
            g_ = gh[n]
            gr, gz, gn = g_[:H], g_[H:2 * H], g_[2 * H:]
            for j in range(H):
                gr[j] = sigmoid(xr_[j] + (gr[j] + br[j]))
            for j in range(H):
                gz[j] = sigmoid(xz[j] + (gz[j] + bz[j]))
            for j in range(H):
                gn[j] = gn[j] + bn[j]
            for j in range(H):
                xn[j] = tanh(xn[j] + gr[j] * gn[j])
            hp = h[n]
            for j in range(H):
                hn_[j] = xn[j] + gz[j] * (hp[j] - xn[j])
            if store:
                a = act[p, n]
                for j in range(2 * H):
                    a[j] = g_[j]
                an = a[2 * H:]
                for j in range(H):
                    an[j] = xn[j]
                gs = ghns[t, n]
                for j in range(H):
                    gs[j] = gn[j]
        else:
            hp = h[n]
            for j in range(H):
                hn_[j] = hp[j]
        emit_row(out[p, n], hn_, t < lens[n])


@njit(**STEP_JIT)
def gru_reset_after_bwd(t, n0, n1, pos, lens, dhrec, dhd, dout, has_dout, act, ghns, hh, dX,
                        dGHn, dGs, scratch):
    """``scratch`` (N, 3H), one row each; dX may be ``act`` and dGHn may be ``ghns`` (release
    mode): every saved value of a row is read before that row is written."""
    N, H = dhd.shape
    for n in range(n0, n1):
        s = scratch[n]
        sr, sz, sn = s[:H], s[H:2 * H], s[2 * H:]
        p = pos[t, n]
        dx = dX[t, n]
        dg = dGs[n]
        dh = dhd[n]
        dr_ = dhrec[n]
        dgn = dg[2 * H:]
        if t < lens[n]:
            for j in range(H):
                dh[j] = dr_[j] + dh[j]
            if has_dout:
                do = dout[p, n]
                for j in range(H):
                    dh[j] += do[j]
            a = act[p, n]
            ar, az, an = a[:H], a[H:2 * H], a[2 * H:]
            on = one(a[0])
            hp = hh[t, n]
            gns = ghns[t, n]
            for j in range(H):
                z = az[j]
                nn = an[j]
                sn[j] = dh[j] * (on - z) * (on - nn * nn)
                sz[j] = dh[j] * (hp[j] - nn) * z * (on - z)
            for j in range(H):
                r = ar[j]
                sr[j] = sn[j] * gns[j] * r * (on - r)
            for j in range(H):
                dgn[j] = sn[j] * ar[j]
            for j in range(H):
                dh[j] = dh[j] * az[j]
            for j in range(2 * H):
                dg[j] = s[j]
            dn_row = dGHn[t, n]
            for j in range(H):
                dn_row[j] = dgn[j]
            for j in range(3 * H):
                dx[j] = s[j]
        else:
            for j in range(H):
                dh[j] = dr_[j] + dh[j]
            dn_row = dGHn[t, n]
            for j in range(H):
                dn_row[j] = 0
            for j in range(3 * H):
                dx[j] = 0
                dg[j] = 0


@njit(**STEP_JIT)
def gru_reset_before_fwd_gates(t, ti, n0, n1, pos, lens, xsrc, xidx, grz, b, hh, xbuf, rz, rh,
                               act, rhs, store):
    """r, z from grz = h @ W_hh[:2H].T; writes r*h to ``rh`` (N, H) for the second product."""
    N, H = hh.shape[1], hh.shape[2]
    h = hh[ti]
    for n in range(n0, n1):
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


@njit(**STEP_JIT)
def gru_reset_before_fwd_state(t, ti, to, n0, n1, pos, lens, ghn, b, hh, xbuf, rz, out, act,
                               store):
    N, H = hh.shape[1], hh.shape[2]
    h, h_next = hh[ti], hh[to]
    for n in range(n0, n1):
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


@njit(**STEP_JIT)
def gru_reset_before_bwd_candidate(t, n0, n1, pos, lens, dhrec, dhd, dout, has_dout, act, hh,
                                   dX, dn_s):
    """dn, dz; ``dn_s`` (N, H) feeds drh = dn @ W_hn; dhd gets dh * z (dh if padding)."""
    N, H = dhd.shape
    for n in range(n0, n1):
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


@njit(**STEP_JIT)
def gru_reset_before_bwd_reset(t, n0, n1, pos, lens, drh, dhd, act, hh, dX, drz):
    """dr from drh = dn @ W_hn; ``drz`` (N, 2H) feeds dh += drz @ W_hh[:2H]."""
    N, H = dhd.shape
    for n in range(n0, n1):
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
