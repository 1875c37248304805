"""The attention decoder's time loop on the fused kernels: the same math as
:meth:`rnnkit.layers.attention_decoder.AttentionDecoder.forward` / ``backward``, the same
arguments and results, no per-step temporaries.

Input feeding keeps the time loop in Python (step t+1's input needs step t's output), but
each step is only preallocated-buffer work:

- every layer runs as the fused driver runs a direction (:class:`rnnkit.recurrent.FusedWork`,
  one per layer, T = M): its input projection is written into the run's projection buffer
  (layer 0: the hoisted embedding part plus ``h~_{t-1} @ W_feed^T``), then the fused cell's
  own step (recurrent product + one gate kernel, :mod:`rnnkit.kernels.cells`);
- the attention step is one compiled call (:mod:`rnnkit.kernels.attention`): scores of all
  source positions, softmax and context, or in backward the score gradients, dL/dmemory
  through the contexts and the key / v gradients, accumulated in place;
- the products of a step (``W_feed``, ``W_q``, ``W_c``) go into buffers with ``out=``.

Backward runs the fused cells' backward steps with the outside gradient of each layer's state
added to the run's direct-gradient buffer (``dhd``), then every weight gradient is one product
over all M*N rows, as in the reference.  ``tests/attention/test_attention_fused.py`` holds
the two paths equal (float64 1e-10, float32 1e-5) for every cell, depth, dropout and kind.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..recurrent import FusedWork


def _layer_work(fcell, dec, layer, M, N, h0, c0, xsrc):
    _, _, w_hh, b_hh = dec._w(layer)
    H, dt = dec.H, dec.rnn.dtype
    G = w_hh.shape[0]
    hh = np.empty((M + 1, N, H), dtype=dt)
    hh[0] = h0
    ch = None
    if fcell.has_cell:
        ch = np.empty_like(hh)
        ch[0] = c0
    w = FusedWork(
        T=M, N=N, H=H, dtype=dt, store=True, reverse=False, lens=np.full(N, M, dtype=np.int64),
        pos=np.repeat(np.arange(M, dtype=np.int64)[:, None], N, axis=1), xsrc=xsrc,
        xidx=np.arange(M * N, dtype=np.int64).reshape(M, N), act=xsrc.reshape(M, N, G),
        w_hh=np.ascontiguousarray(w_hh), w_hh_t=np.ascontiguousarray(w_hh.T),
        b=b_hh if b_hh is not None else np.zeros(G, dtype=dt), hh=hh, ch=ch, out=hh[1:])
    fcell.begin_forward(w)
    return w


@dataclasses.dataclass
class FusedDecoderCache:
    """What :func:`backward` needs; never mutated by it."""

    y: np.ndarray  # (N, M, E) embedded decoder inputs
    prep: object  # attention.Prepared
    memory: np.ndarray  # (N, S, Hs) C-contiguous
    lengths: np.ndarray  # (N,) int64 source lengths
    works: list  # L FusedWork, one per layer (hh[1:] of the top one are the queries)
    inputs: list  # [None] + (M, N, H) inputs of layers 1..L-1 (after dropout)
    ht_prev: np.ndarray  # (M, N, H) h~ entering each step
    ctx: np.ndarray  # (M, N, Hs)
    ht: np.ndarray  # (M, N, H)
    alpha: np.ndarray  # (M, N, S)
    t: np.ndarray | None  # (M, N, S, A) additive: tanh(keys + qp)
    drop: list | None


def forward(dec, y, prep, state, drop):
    """:meth:`AttentionDecoder.forward` (dropout masks ``drop`` already drawn) on the fused
    kernels -> ``((h~ (N, M, H), alpha (N, M, S)), FusedDecoderCache)``."""
    from ..kernels import attention as katt

    fcell = dec.rnn.fused_cell
    att = dec.attention
    N, M, E = y.shape
    H, L, dt = dec.H, dec.L, dec.rnn.dtype
    memory = np.ascontiguousarray(prep.memory)
    keys = np.ascontiguousarray(prep.keys)
    lengths = np.ascontiguousarray(prep.lengths, dtype=np.int64)
    S, Hs = memory.shape[1], memory.shape[2]
    hs0, cs0, _ = dec.start(state, N)
    w_ih0, b_ih0, _, _ = dec._w(0)
    G = w_ih0.shape[0]
    # Layer 0's projection buffer starts as the hoisted embedding part (+ bias); each step
    # adds h~_{t-1} @ W_feed^T to its rows.
    x0 = y.transpose(1, 0, 2).reshape(M * N, E) @ w_ih0[:, :E].T
    if b_ih0 is not None:
        x0 += b_ih0
    w_feed_t = np.ascontiguousarray(w_ih0[:, E:].T)
    works, w_in_t, b_in = [], [None], [None]
    for layer in range(L):
        xsrc = x0 if layer == 0 else np.empty((M * N, G), dtype=dt)
        works.append(_layer_work(fcell, dec, layer, M, N, hs0[layer],
                                 None if cs0 is None else cs0[layer], xsrc))
        if layer:
            w_ih, b_ih, _, _ = dec._w(layer)
            w_in_t.append(np.ascontiguousarray(w_ih.T))
            b_in.append(b_ih)
    inputs = [None] + [np.empty((M, N, H), dtype=dt) for _ in range(L - 1)]
    ht_prev = np.zeros((M, N, H), dtype=dt)
    ht_all = np.empty((M, N, H), dtype=dt)
    ctx_all = np.empty((M, N, Hs), dtype=dt)
    alpha_all = np.empty((M, N, S), dtype=dt)
    additive = att.kind == "additive"
    t_all = np.empty((M, N, S, att.attn_size), dtype=dt) if additive else None
    qp = np.empty((N, att.attn_size), dtype=dt)
    gproj = np.empty((N, G), dtype=dt)
    tmp = np.empty((N, H), dtype=dt)
    wq_t = np.ascontiguousarray(att.params["query_weight"].T) if additive else None
    v = att.params.get("v")
    wc = dec.combine.params["weight"]
    wc_ctx_t, wc_q_t = np.ascontiguousarray(wc[:, :Hs].T), np.ascontiguousarray(wc[:, Hs:].T)
    bc = dec.combine.params.get("bias")
    x0_3 = x0.reshape(M, N, G)
    for t in range(M):
        if t:
            ht_prev[t] = ht_all[t - 1]
            np.matmul(ht_all[t - 1], w_feed_t, out=gproj)
            x0_3[t] += gproj
        for layer in range(L):
            w = works[layer]
            if layer:
                inp = inputs[layer][t]
                below = works[layer - 1].hh[t + 1]
                if drop is None:
                    inp[...] = below
                else:
                    np.multiply(below, drop[layer - 1][t], out=inp)
                xr = w.xsrc.reshape(M, N, G)[t]
                np.matmul(inp, w_in_t[layer], out=xr)
                if b_in[layer] is not None:
                    xr += b_in[layer]
            fcell.forward_step(w, t, t, t + 1, 0, N)
        q = works[-1].hh[t + 1]
        if additive:
            np.matmul(q, wq_t, out=qp)
            katt.additive_fwd(qp, keys, v, lengths, memory, t_all[t], alpha_all[t], ctx_all[t])
        else:
            katt.general_fwd(q, keys, lengths, memory, alpha_all[t], ctx_all[t])
        z = ht_all[t]
        np.matmul(ctx_all[t], wc_ctx_t, out=z)
        np.matmul(q, wc_q_t, out=tmp)
        z += tmp
        if bc is not None:
            z += bc
        np.tanh(z, out=z)
    cache = FusedDecoderCache(y, prep, memory, lengths, works, inputs, ht_prev, ctx_all, ht_all,
                              alpha_all, t_all, drop)
    return (ht_all.transpose(1, 0, 2), alpha_all.transpose(1, 0, 2)), cache


def backward(dec, dht_out, c: FusedDecoderCache):
    """:meth:`AttentionDecoder.backward` for a :func:`forward` cache: same results."""
    from ..kernels import attention as katt

    fcell = dec.rnn.fused_cell
    att = dec.attention
    N, M, E = c.y.shape
    H, L, dt = dec.H, dec.L, dec.rnn.dtype
    S, Hs = c.memory.shape[1], c.memory.shape[2]
    additive = att.kind == "additive"
    acc = att.new_accumulator(c.prep, work=False)
    acc.dmemory = np.zeros((N, S, Hs), dtype=dt)
    dalpha = np.empty((N, S), dtype=dt)
    de_all = None if additive else np.empty((M, N, S), dtype=dt)
    dqp_all = np.empty((M, N, att.attn_size), dtype=dt) if additive else None
    keys = np.ascontiguousarray(c.prep.keys)
    wq = att.params["query_weight"] if additive else None
    v = att.params.get("v")
    wc = dec.combine.params["weight"]
    wc_ctx, wc_q = np.ascontiguousarray(wc[:, :Hs]), np.ascontiguousarray(wc[:, Hs:])
    works = []
    for w0 in c.works:
        w = dataclasses.replace(
            w0, has_dout=False, dout=np.zeros((1, 1, 1), dtype=dt), release=False,
            dhrec=np.zeros((N, H), dtype=dt), dhd=np.zeros((N, H), dtype=dt),
            dc=np.zeros((N, H), dtype=dt) if fcell.has_cell else None)
        fcell.begin_backward(w)
        works.append(w)
    w_ih = [np.ascontiguousarray(dec._w(layer)[0]) for layer in range(L)]
    dout_tm = dht_out.transpose(1, 0, 2)
    dz_all = np.empty((M, N, H), dtype=dt)
    dy = np.empty((M, N, E), dtype=dt)
    dctx = np.empty((N, Hs), dtype=dt)
    dq = np.empty((N, H), dtype=dt)
    tmp = np.empty((N, H), dtype=dt)
    dx0 = np.empty((N, E + H), dtype=dt)
    dfeed = np.zeros((N, H), dtype=dt)
    q_all = c.works[-1].hh[1:]  # (M, N, H) the queries
    for t in range(M - 1, -1, -1):
        dz = dz_all[t]
        np.add(dout_tm[t], dfeed, out=dz)
        ht = c.ht[t]
        np.multiply(ht, ht, out=tmp)
        np.subtract(1.0, tmp, out=tmp)
        dz *= tmp
        np.matmul(dz, wc_ctx, out=dctx)
        np.matmul(dz, wc_q, out=dq)
        if additive:
            katt.additive_bwd(dctx, c.alpha[t], c.t[t], c.memory, v, c.lengths, dalpha,
                              acc.dmemory, acc.dkeys, acc.dv, dqp_all[t])
            np.matmul(dqp_all[t], wq, out=tmp)
        else:
            katt.general_bwd(dctx, c.alpha[t], q_all[t], keys, c.memory, c.lengths, de_all[t],
                             acc.dmemory, tmp)
        dq += tmp
        works[-1].dhd += dq
        for layer in range(L - 1, -1, -1):
            w = works[layer]
            fcell.backward_step(w, t, 0, N)
            dxp = w.dG[t]
            if layer:
                np.matmul(dxp, w_ih[layer], out=tmp)
                if c.drop is not None:
                    tmp *= c.drop[layer - 1][t]
                works[layer - 1].dhd += tmp
            else:
                np.matmul(dxp, w_ih[0], out=dx0)
                dy[t] = dx0[:, :E]
                dfeed[...] = dx0[:, E:]
    MN = M * N
    if additive:
        acc.dquery = dqp_all.reshape(MN, -1).T @ q_all.reshape(MN, H)
    else:
        acc.dkeys = np.matmul(de_all.transpose(1, 2, 0), q_all.transpose(1, 0, 2))
    grads = {}
    for layer, w in enumerate(works):
        s = f"l{layer}"
        dG, dw_hh, db_hh = fcell.grads(w)
        d2 = dG.reshape(MN, -1)
        if layer == 0:
            x2 = np.concatenate([c.y.transpose(1, 0, 2).reshape(MN, E), c.ht_prev.reshape(MN, H)],
                                axis=1)
        else:
            x2 = c.inputs[layer].reshape(MN, H)
        grads[f"weight_ih_{s}"] = d2.T @ x2
        grads[f"weight_hh_{s}"] = dw_hh
        if f"bias_ih_{s}" in dec.rnn.params:
            grads[f"bias_ih_{s}"] = d2.sum(axis=0)
        if f"bias_hh_{s}" in dec.rnn.params:
            grads[f"bias_hh_{s}"] = db_hh
    dz2 = dz_all.reshape(MN, H)
    gcomb = {"weight": dz2.T @ np.concatenate([c.ctx.reshape(MN, Hs), q_all.reshape(MN, H)],
                                              axis=1)}
    if "bias" in dec.combine.params:
        gcomb["bias"] = dz2.sum(axis=0)
    dh0 = np.stack([w.dhrec + w.dhd for w in works])
    dstate0 = (dh0, np.stack([w.dc for w in works])) if fcell.has_cell else dh0
    grads = {k: grads[k] for k in dec.rnn.params}
    return dy.transpose(1, 0, 2), acc, dstate0, grads, gcomb
