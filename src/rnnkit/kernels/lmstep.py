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

import os

import numpy as np
from numba import njit, prange

from ._math import JIT, sigmoid, tanh
from .loss import log_softmax_rows
from .sample import draw_row


@njit(**JIT)
def _dot8(w, x, out, r):
    """out[r:r+8] = w[r:r+8] . x: eight independent streams of the weights (the step is bound
    by reading them from cache; eight streams read them ~20% faster than four, a GRU 2 x 256
    token's three matrices in 47 against 59 us on an AMD Zen 3 core)."""
    K = w.shape[1]
    w0, w1, w2, w3 = w[r], w[r + 1], w[r + 2], w[r + 3]
    w4, w5, w6, w7 = w[r + 4], w[r + 5], w[r + 6], w[r + 7]
    x0 = x[0]
    s0 = w0[0] * x0
    s1 = w1[0] * x0
    s2 = w2[0] * x0
    s3 = w3[0] * x0
    s4 = w4[0] * x0
    s5 = w5[0] * x0
    s6 = w6[0] * x0
    s7 = w7[0] * x0
    for k in range(1, K):
        xk = x[k]
        s0 += w0[k] * xk
        s1 += w1[k] * xk
        s2 += w2[k] * xk
        s3 += w3[k] * xk
        s4 += w4[k] * xk
        s5 += w5[k] * xk
        s6 += w6[k] * xk
        s7 += w7[k] * xk
    out[r] = s0
    out[r + 1] = s1
    out[r + 2] = s2
    out[r + 3] = s3
    out[r + 4] = s4
    out[r + 5] = s5
    out[r + 6] = s6
    out[r + 7] = s7


@njit(**JIT)
def _dot1(w, x, out, r):
    row = w[r]
    s = row[0] * x[0]
    for k in range(1, w.shape[1]):
        s += row[k] * x[k]
    out[r] = s


@njit(**JIT)
def _matvec(w, x, out, rev):
    """out[r] = w[r] . x for w (R, K), eight rows at a time, the rows in ascending order or
    (``rev``) descending.  Every out[r] is the same dot product either way, so the order
    changes only which weights are still in cache (see :func:`lm_token`)."""
    R = w.shape[0]
    full = R - R % 8
    if rev:
        for r in range(R - 1, full - 1, -1):
            _dot1(w, x, out, r)
        for r in range(full - 8, -1, -8):
            _dot8(w, x, out, r)
    else:
        for r in range(0, full, 8):
            _dot8(w, x, out, r)
        for r in range(full, R):
            _dot1(w, x, out, r)


@njit(**JIT)
def _rows(w, x, out, r0, r1):
    """out[r] = w[r] . x for rows [r0, r1), in the 8-row blocks of :func:`_matvec` (the same
    dot products wherever r0 is a multiple of 8)."""
    r = r0
    while r + 8 <= r1:
        _dot8(w, x, out, r)
        r += 8
    while r < r1:
        _dot1(w, x, out, r)
        r += 1


@njit(**JIT)
def _cell_units(cell, xp, gh, b, hp, cp, hn, cn, H, j0, j1):
    """The gate math of hidden units [j0, j1): xp, gh (G*H) the input and recurrent
    products (gate g of unit j at g*H + j), b the recurrent bias; writes hn (and cn)."""
    if cell == 3:
        for j in range(j0, j1):
            i = sigmoid((xp[j] + gh[j]) + b[j])
            f = sigmoid((xp[H + j] + gh[H + j]) + b[H + j])
            g = tanh((xp[2 * H + j] + gh[2 * H + j]) + b[2 * H + j])
            o = sigmoid((xp[3 * H + j] + gh[3 * H + j]) + b[3 * H + j])
            cc = f * cp[j] + i * g
            cn[j] = cc
            hn[j] = o * tanh(cc)
    elif cell == 2:
        for j in range(j0, j1):
            r = sigmoid(xp[j] + (gh[j] + b[j]))
            u = sigmoid(xp[H + j] + (gh[H + j] + b[H + j]))
            ghn = gh[2 * H + j] + b[2 * H + j]
            nn = tanh(xp[2 * H + j] + r * ghn)
            hn[j] = nn + u * (hp[j] - nn)
    elif cell == 1:
        for j in range(j0, j1):
            a = (xp[j] + gh[j]) + b[j]
            hn[j] = a if a > 0 else a * 0
    else:
        for j in range(j0, j1):
            hn[j] = tanh((xp[j] + gh[j]) + b[j])


@njit(**JIT)
def _log_softmax_row(z, bout, out):
    """out = log softmax(z + bout); z (V,) gets the bias added."""
    V = z.shape[0]
    for v in range(V):
        z[v] += bout[v]
    log_softmax_rows(z.reshape((1, V)), out.reshape((1, V)))


@njit(**JIT)
def _outputs(tok, table, h, c):
    """(bad, h_new, c_new, logp): the step's output arrays, and whether a token id lies
    outside [0, V) (then nothing else is done)."""
    N, V = tok.shape[0], table.shape[0]
    lp = np.empty((N, V), dtype=table.dtype)
    for n in range(N):
        if tok[n] < 0 or tok[n] >= V:
            return True, np.empty_like(h), np.empty_like(c), lp
    return False, np.empty_like(h), np.empty_like(c), lp


@njit(**JIT)
def _token_scratch(GH, V, dt):
    """The scratch rows of :func:`_token`: xp, gh, gtop (G*H) and z (V) of dtype ``dt``."""
    return np.empty(GH, dtype=dt), np.empty(GH, dtype=dt), np.empty(GH, dtype=dt), \
        np.empty(V, dtype=dt)


@njit(**JIT)
def _token(cell, tok, table, wih, bih, whh, bhh, wout, bout, h, c, h_new, c_new, lp, flip,
           xp, gh, gtop, z):
    """One token of every row: h, c (L, N, H) -> h_new, c_new, lp (N, V); xp, gh, gtop (G*H)
    and z (V) scratch.  Token ids must lie in [0, V) (checked by the callers)."""
    L, N, H = h.shape
    GH = table.shape[1]
    for n in range(N):
        rev = flip ^ (n % 2 == 1)
        if rev:
            _matvec(whh[L - 1], h[L - 1, n], gtop, True)
        for l in range(L):
            if l == 0:
                row = table[tok[n]]
                for j in range(GH):
                    xp[j] = row[j]
            else:
                _matvec(wih[l - 1], h_new[l - 1, n], xp, rev)
                b = bih[l - 1]
                for j in range(GH):
                    xp[j] += b[j]
            hp = h[l, n]
            if rev and l == L - 1:
                for j in range(GH):
                    gh[j] = gtop[j]
            else:
                _matvec(whh[l], hp, gh, rev)
            hn = h_new[l, n]
            _cell_units(cell, xp, gh, bhh[l], hp, c[l, n], hn, c_new[l, n], H, 0, H)
        _matvec(wout, h_new[L - 1, n], z, rev)
        _log_softmax_row(z, bout, lp[n])


@njit(**JIT)
def lm_token(cell, tok, table, wih, bih, whh, bhh, wout, bout, h, c, flip):
    """tok (N,) int64; h, c (L, N, H) (c unused unless LSTM); ``flip`` (bool) the order of
    the weight reads, alternated by the caller from one token to the next.

    Returns (bad, h_new, c_new, logp (N, V)); bad is True (and nothing valid returned) when a
    token id lies outside [0, V).

    Order of the weight reads: a token reads every weight once, more than one core's L2 holds
    at 2 x 256 (GRU 2.4 MB, LSTM 3.2 MB), so reading them in the same order every token
    finds none of them left in cache (each read evicts what the next token needs first).
    Every other row pass runs backwards: the last layer's recurrent product first (it needs
    only the previous state), then the layers in order, each matrix's rows descending — so it
    starts with what the pass before read last.  GRU 2 x 256 at batch 1: 75-94 -> 60-80 us a
    token for the three products (bench/RESULTS.md).  Each output is the same dot product in
    either order: the results do not depend on ``flip`` beyond float rounding (LLVM may
    vectorise the inlined copies of a call site apart: a last-bit difference seen on an AVX2
    CPU).
    """
    bad, h_new, c_new, lp = _outputs(tok, table, h, c)
    if bad:
        return True, h_new, c_new, lp
    xp, gh, gtop, z = _token_scratch(table.shape[1], table.shape[0], table.dtype)
    _token(cell, tok, table, wih, bih, whh, bhh, wout, bout, h, c, h_new, c_new, lp, flip,
           xp, gh, gtop, z)
    return False, h_new, c_new, lp


@njit(**dict(JIT, fastmath=False))
def lm_sample(cell, table, wih, bih, whh, bhh, wout, bout, h, c, lp, u, t0, max_len, eos,
              stop, temperature, top_k, top_p, flip, out, ends, total, done):
    """The loop of :func:`rnnkit.decode.sample` for tokens t0, t0+1, ... in one call: for
    each token one draw per row (:func:`rnnkit.kernels.sample.draw_row` with the uniforms
    ``u`` (K, N) of the ``rng.random(N)`` calls that loop makes), the bookkeeping, then
    :func:`lm_token`'s step on the drawn tokens unless it was the last (t + 1 == max_len).

    lp (N, V) the log-probabilities of token t0; h, c (L, N, H) the state after them (not
    written: the loop works on its own buffers).  out (N, max_len), ends, total, done (N,)
    the sampler's records, updated in place.  ``stop``: rows end at ``eos``, and the loop
    ends once every row has.  Returns (draws made, h, c, lp after them, flip): fewer than K
    draws only when every row ended."""
    L, N, H = h.shape
    V, GH = table.shape[0], table.shape[1]
    dt = table.dtype
    K = u.shape[0]
    h, c, lp = h.copy(), c.copy(), lp.copy()
    h2, c2, lp2 = np.empty_like(h), np.empty_like(c), np.empty_like(lp)
    xp, gh, gtop, z = _token_scratch(GH, V, dt)
    p, cum = np.empty(V), np.empty(V)
    tok = np.empty(N, dtype=np.int64)
    for i in range(K):
        t = t0 + i
        ended = stop
        for n in range(N):
            v = draw_row(lp[n], u[i, n], temperature, top_k, top_p, p, cum)
            tok[n] = v
            out[n, t] = v
            if not done[n]:
                total[n] += np.float64(lp[n, v])
                if stop and v == eos:
                    ends[n] = t
                    done[n] = True
            ended = ended and done[n]
        if ended:
            return i + 1, h, c, lp, flip
        if t + 1 < max_len:
            flip = not flip
            _token(cell, tok, table, wih, bih, whh, bhh, wout, bout, h, c, h2, c2, lp2, flip,
                   xp, gh, gtop, z)
            h, h2 = h2, h
            lp, lp2 = lp2, lp
            if cell == 3:
                c, c2 = c2, c
    return K, h, c, lp, flip


def block_edges(n: int, blocks: int, align: int = 8) -> np.ndarray:
    """``blocks + 1`` edges splitting range(n) into near-equal blocks whose starts are
    multiples of ``align`` (so :func:`_rows` groups rows as :func:`_matvec` does)."""
    step = -(-n // blocks)
    step = -(-step // align) * align
    return np.minimum(np.arange(blocks + 1, dtype=np.int64) * step, n)


@njit(**dict(JIT, parallel=True))
def lm_token_split(cell, tok, table, wih, bih, whh, bhh, wout, bout, h, c, units, vocab):
    """:func:`lm_token` with each layer's products and gate math split over threads by
    hidden units (block k: units [units[k], units[k+1]) of every gate, so each thread reads
    its own rows of every matrix — at 2 x 256 each core's half of the weights stays in its
    own L2), then the output layer split by ``vocab`` edges; a layer waits for the whole of
    the one below.  Same arguments but the block edges; the same results to rounding (the
    same 8-row dot products where H is a multiple of 8; a block's gate math may take the
    vector or the scalar form of tanh, which differ in the last bit)."""
    L, N, H = h.shape
    V = table.shape[0]
    GH = table.shape[1]
    G = GH // H
    dt = table.dtype
    bad, h_new, c_new, lp = _outputs(tok, table, h, c)
    if bad:
        return True, h_new, c_new, lp
    nb = units.shape[0] - 1
    xps = np.empty((nb, GH), dtype=dt)
    ghs = np.empty((nb, GH), dtype=dt)
    z = np.empty(V, dtype=dt)
    for n in range(N):
        for l in range(L):
            for k in prange(nb):
                j0, j1 = units[k], units[k + 1]
                xp, gh = xps[k], ghs[k]
                for g in range(G):
                    r0, r1 = g * H + j0, g * H + j1
                    if l == 0:
                        row = table[tok[n]]
                        for r in range(r0, r1):
                            xp[r] = row[r]
                    else:
                        _rows(wih[l - 1], h_new[l - 1, n], xp, r0, r1)
                        b = bih[l - 1]
                        for r in range(r0, r1):
                            xp[r] += b[r]
                    _rows(whh[l], h[l, n], gh, r0, r1)
                _cell_units(cell, xp, gh, bhh[l], h[l, n], c[l, n], h_new[l, n], c_new[l, n],
                            H, j0, j1)
        for k in prange(vocab.shape[0] - 1):
            _rows(wout, h_new[L - 1, n], z, vocab[k], vocab[k + 1])
        _log_softmax_row(z, bout, lp[n])
    return False, h_new, c_new, lp


_split_layer_ok = None  # None: not tried yet
_split_pid = None  # the process that started Numba's thread pool


def split_call(nthreads, *args):
    """:func:`lm_token_split` on ``nthreads`` Numba threads, or None where it cannot run.

    Numba's threading layer must be OpenMP or TBB: its fallback, the workqueue, aborts the
    process when two threads enter it at once.  The first call picks the layer
    ("threadsafe", unless the user chose one with NUMBA_THREADING_LAYER).  GNU OpenMP does
    not survive ``fork`` (Numba aborts a child that uses a pool its parent started), so a
    forked child runs the one-thread kernel instead."""
    global _split_layer_ok, _split_pid
    if _split_layer_ok is False or (_split_pid is not None and _split_pid != os.getpid()):
        return None
    import numba
    from numba.np.ufunc import parallel

    if _split_layer_ok is None:
        if getattr(parallel, "_is_initialized", False):
            return None  # someone else started Numba's pool: its layer, its process
        if "NUMBA_THREADING_LAYER" not in os.environ:
            numba.config.THREADING_LAYER = "threadsafe"
    nthreads = min(nthreads, numba.config.NUMBA_NUM_THREADS)
    try:
        before = numba.get_num_threads()
        numba.set_num_threads(nthreads)
        try:
            out = lm_token_split(*args)
        finally:
            numba.set_num_threads(before)
    except (ValueError, RuntimeError):  # no OpenMP or TBB layer could be loaded
        _split_layer_ok = False
        return None
    if _split_layer_ok is None:
        _split_pid = os.getpid()
        _split_layer_ok = numba.threading_layer() in ("omp", "tbb")
    return out
