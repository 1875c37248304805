"""Fused LSTM gate math (PyTorch order i, f, g, o), forward and backward of one time step.

Each kernel handles one step for batch rows [n0, n1) after the driver's recurrent product;
threads over disjoint row ranges may run the same step at once (every buffer a kernel
writes is indexed by row).
Shapes: N batch, H hidden, T steps.  Conventions shared by every kernel of this package:

- Row ``n`` of step ``t`` reads and writes the *sequence* arrays (input projection, gates,
  output) at time position ``p = pos[t, n]``: ``t`` for the forward direction, the
  within-length reversal for the reverse one — so reversed sequences need no gathers.
- The state history ``hh`` (and ``ch``) is in *step* order: ``hh[t]`` enters step t and the
  kernel writes ``hh[t + 1]``; it is the recurrent product's contiguous operand, the saved
  state for backward and (forward direction) the output itself.  Without ``store``
  (inference) it has two slots and the driver passes ``ti``/``to`` = t % 2, (t + 1) % 2.
- Rows with ``t >= lens[n]`` are padding: the state is carried, the output is 0; backward
  gives them zero gate gradients and passes dh/dc straight through.
- The input projection of row (p, n) is ``xsrc[xidx[p, n]]``: a (T*N, G*H) view of the hoisted
  ``x @ W_ih.T + b_ih`` or a (V, G*H) embedding-projection table indexed by token id.
- Gate gradients ``dG`` are written in step order, so dW_hh is one product with ``hh[:-1]``
  and each step's slab is the next recurrent product's contiguous operand.

Forward saves the activated gates in ``act`` (T, N, 4H) (over the projection they came from)
and the histories ``hh``, ``ch`` (T+1, N, H); tanh(c') is recomputed in backward, which is
cheaper than keeping it.  ``gh`` (N, 4H) holds h @ W_hh.T and becomes the pre-activation.
"""

from __future__ import annotations

from numba import njit

from ._math import STEP_JIT, emit_row, one, sigmoid, tanh


# Each row is done in short loops over one or two arrays (pre-activation, activations in
# place, then c and h), each indexed from 0 through slice views: a loop that writes several
# arrays while reading several others, or indexes ``k * H + j`` (which Numba must check for
# negative wraparound), is left scalar by LLVM — that was 6x slower.


@njit(**STEP_JIT)
def lstm_fwd(t, ti, to, n0, n1, pos, lens, xsrc, xidx, gh, b, hh, ch, out, act, store):
    N, H = hh.shape[1], hh.shape[2]
    G = 4 * H
    h, c, h_next, c_next = hh[ti], ch[ti], hh[to], ch[to]
    for n in range(n0, n1):
        p = pos[t, n]
        hn_ = h_next[n]
        cn_ = c_next[n]
        if t < lens[n]:
            xr = xsrc[xidx[p, n]]
            g_ = gh[n]
            for j in range(G):
                g_[j] = (xr[j] + g_[j]) + b[j]
            gi, gf, gg, go = g_[:H], g_[H:2 * H], g_[2 * H:3 * H], g_[3 * H:]
            for j in range(H):
                gi[j] = sigmoid(gi[j])
            for j in range(H):
                gf[j] = sigmoid(gf[j])
            for j in range(H):
                gg[j] = tanh(gg[j])
            for j in range(H):
                go[j] = sigmoid(go[j])
            if store:
                a = act[p, n]
                for j in range(G):
                    a[j] = g_[j]
            cp = c[n]
            for j in range(H):
                cn_[j] = gf[j] * cp[j] + gi[j] * gg[j]
            for j in range(H):
                hn_[j] = go[j] * tanh(cn_[j])
        else:
            hp, cp = h[n], c[n]
            for j in range(H):
                hn_[j] = hp[j]
            for j in range(H):
                cn_[j] = cp[j]
        emit_row(out[p, n], hn_, t < lens[n])


@njit(**STEP_JIT)
def lstm_bwd(t, n0, n1, pos, lens, dhrec, dhd, dout, has_dout, dc, act, ch, dG, scratch):
    """dh = dhrec (= dG[t+1] @ W_hh) + dhd (the part not through W_hh) + dout[p].

    Writes dG[t]; leaves in ``dhd`` the direct part of dL/dh_{t-1}, in ``dc`` dL/dc_{t-1}.
    ``scratch`` (N, 4H): the gate gradients of row n are made in ``scratch[n]`` and then
    copied, so dG may be the saved gates ``act`` themselves (release mode) without slowing
    the loops; one row each, so threads over disjoint rows never share it.
    """
    N, H = dhd.shape
    G = 4 * H
    for n in range(n0, n1):
        s = scratch[n]
        si, sf, sg, so = s[:H], s[H:2 * H], s[2 * H:3 * H], s[3 * H:]
        p = pos[t, n]
        d = dG[t, n]
        dh = dhd[n]
        dr = dhrec[n]
        if t < lens[n]:
            for j in range(H):
                dh[j] = dr[j] + dh[j]
            if has_dout:
                do = dout[p, n]
                for j in range(H):
                    dh[j] += do[j]
            a = act[p, n]
            ai, af, ag, ao = a[:H], a[H:2 * H], a[2 * H:3 * H], a[3 * H:]
            on = one(a[0])
            c1 = ch[t + 1, n]
            c0 = ch[t, n]
            dcn = dc[n]
            for j in range(H):
                o = ao[j]
                tc = tanh(c1[j])
                so[j] = dh[j] * tc * o * (on - o)
                dcn[j] = dh[j] * o * (on - tc * tc) + dcn[j]
            for j in range(H):
                i = ai[j]
                f = af[j]
                g = ag[j]
                dct = dcn[j]
                si[j] = dct * g * i * (on - i)
                sf[j] = dct * c0[j] * f * (on - f)
                sg[j] = dct * i * (on - g * g)
                dcn[j] = dct * f
            for j in range(G):
                d[j] = s[j]
            for j in range(H):
                dh[j] = 0
        else:
            for j in range(H):
                dh[j] = dr[j] + dh[j]
            for j in range(G):
                d[j] = 0
