"""Fused LSTM gate math (PyTorch order i, f, g, o), forward and backward of one time step.

Each kernel handles one step for the whole batch after the driver's recurrent product.
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

from ._math import JIT, one, sigmoid, tanh


@njit(**JIT)
def lstm_fwd(t, ti, to, pos, lens, xsrc, xidx, gh, b, hh, ch, out, act, store):
    N, H = hh.shape[1], hh.shape[2]
    h, c, h_next, c_next = hh[ti], ch[ti], hh[to], ch[to]
    for n in range(N):
        p = pos[t, n]
        if t < lens[n]:
            xr = xsrc[xidx[p, n]]
            g_ = gh[n]
            for j in range(4 * H):
                g_[j] = (xr[j] + g_[j]) + b[j]
            a = act[p, n]
            for j in range(H):
                i = sigmoid(g_[j])
                f = sigmoid(g_[H + j])
                g = tanh(g_[2 * H + j])
                o = sigmoid(g_[3 * H + j])
                cn = f * c[n, j] + i * g
                hn = o * tanh(cn)
                if store:
                    a[j] = i
                    a[H + j] = f
                    a[2 * H + j] = g
                    a[3 * H + j] = o
                c_next[n, j] = cn
                h_next[n, j] = hn
                out[p, n, j] = hn
        else:
            for j in range(H):
                h_next[n, j] = h[n, j]
                c_next[n, j] = c[n, j]
                out[p, n, j] = 0


@njit(**JIT)
def lstm_bwd(t, pos, lens, dhrec, dhd, dout, has_dout, dc, act, ch, dG):
    """dh = dhrec (= dG[t+1] @ W_hh) + dhd (the part not through W_hh) + dout[p].

    Writes dG[t]; leaves in ``dhd`` the direct part of dL/dh_{t-1}, in ``dc`` dL/dc_{t-1}.
    """
    N, H = dhd.shape
    for n in range(N):
        p = pos[t, n]
        d = dG[t, n]
        if t < lens[n]:
            a = act[p, n]
            on = one(a[0])
            for j in range(H):
                dh = dhrec[n, j] + dhd[n, j]
                if has_dout:
                    dh += dout[p, n, j]
                i = a[j]
                f = a[H + j]
                g = a[2 * H + j]
                o = a[3 * H + j]
                tc = tanh(ch[t + 1, n, j])
                dct = dh * o * (on - tc * tc) + dc[n, j]
                d[j] = dct * g * i * (on - i)
                d[H + j] = dct * ch[t, n, j] * f * (on - f)
                d[2 * H + j] = dct * i * (on - g * g)
                d[3 * H + j] = dh * tc * o * (on - o)
                dc[n, j] = dct * f
                dhd[n, j] = 0
        else:
            for j in range(H):
                dhd[n, j] = dhrec[n, j] + dhd[n, j]
            for j in range(4 * H):
                d[j] = 0
