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
    step: object  # the _Attend of the forward pass: its weights and (M, ...) step results
    works: list  # L FusedWork, one per layer (hh[1:] of the top one are the queries)
    inputs: list  # [None] + (M, N, H) inputs of layers 1..L-1 (after dropout)
    drop: list | None


class _Attend:
    """The attention and combine part of each step, forward and backward, on buffers made
    once: context_t, alpha_t = attention(q_t); h~_t = tanh(W_c [context_t, q_t] + b_c)."""

    def __init__(self, dec, prep, M):
        att = dec.attention
        self.additive = att.kind == "additive"
        self.memory = np.ascontiguousarray(prep.memory)
        self.keys = np.ascontiguousarray(prep.keys)
        self.lengths = np.ascontiguousarray(prep.lengths, dtype=np.int64)
        N, S, Hs = self.memory.shape
        H, A, dt = dec.H, att.attn_size, dec.rnn.dtype
        self.v = att.params.get("v")
        self.wq = att.params["query_weight"] if self.additive else None
        wc = dec.combine.params["weight"]
        self.wc_ctx, self.wc_q = np.ascontiguousarray(wc[:, :Hs]), np.ascontiguousarray(wc[:, Hs:])
        # Forward products read C-contiguous transposes: OpenBLAS's transposed-operand path
        # is slower at these small sizes (see rnnkit.recurrent).
        self.wq_t = np.ascontiguousarray(self.wq.T) if self.additive else None
        self.wc_ctx_t, self.wc_q_t = (np.ascontiguousarray(self.wc_ctx.T),
                                      np.ascontiguousarray(self.wc_q.T))
        self.bc = dec.combine.params.get("bias")
        self.ctx = np.empty((M, N, Hs), dtype=dt)
        self.alpha = np.empty((M, N, S), dtype=dt)
        self.ht = np.empty((M, N, H), dtype=dt)
        self.t = np.empty((M, N, S, A), dtype=dt) if self.additive else None
        self.qp = np.empty((N, A), dtype=dt)  # additive: q W_q^T of a step
        self.tmp = np.empty((N, H), dtype=dt)

    def forward(self, t, q):
        """Step t for the queries q (N, H): writes ctx[t], alpha[t] (and t[t]), ht[t]."""
        from ..kernels import attention as katt

        if self.additive:
            np.matmul(q, self.wq_t, out=self.qp)
            katt.additive_fwd(self.qp, self.keys, self.v, self.lengths, self.memory, self.t[t],
                              self.alpha[t], self.ctx[t])
        else:
            katt.general_fwd(q, self.keys, self.lengths, self.memory, self.alpha[t], self.ctx[t])
        z = self.ht[t]
        np.matmul(self.ctx[t], self.wc_ctx_t, out=z)
        np.matmul(q, self.wc_q_t, out=self.tmp)
        z += self.tmp
        if self.bc is not None:
            z += self.bc
        np.tanh(z, out=z)


class _AttendBack:
    """Backward of the :class:`_Attend` steps ``f`` (read only), into the attention's
    accumulator ``acc``: dL/dmemory through the contexts and the key (and v) sums added in
    place per step, the query-side sums made after the loop."""

    def __init__(self, f: _Attend, acc, M):
        N, S, Hs = f.memory.shape
        dt = f.memory.dtype
        self.f, self.acc = f, acc
        acc.dmemory = np.zeros((N, S, Hs), dtype=dt)
        self.dscore = np.empty((N, S), dtype=dt)
        self.dqp = np.empty((M,) + f.qp.shape, dtype=dt) if f.additive else None
        self.de = None if f.additive else np.empty((M, N, S), dtype=dt)
        self.dctx = np.empty((N, Hs), dtype=dt)
        self.tmp = np.empty_like(f.tmp)

    def step(self, t, q, dz, dq):
        """Step t: dz = dL/d(W_c [ctx, q] + b_c) (N, H) -> dq (N, H) = dL/dq_t, written."""
        from ..kernels import attention as katt

        f, acc = self.f, self.acc
        np.matmul(dz, f.wc_ctx, out=self.dctx)
        np.matmul(dz, f.wc_q, out=dq)
        if f.additive:
            katt.additive_bwd(self.dctx, f.alpha[t], f.t[t], f.memory, f.v, f.lengths,
                              self.dscore, acc.dmemory, acc.dkeys, acc.dv, self.dqp[t])
            np.matmul(self.dqp[t], f.wq, out=self.tmp)
        else:
            katt.general_bwd(self.dctx, f.alpha[t], q, f.keys, f.memory, f.lengths, self.de[t],
                             acc.dmemory, self.tmp)
        dq += self.tmp

    def finish(self, q_all, dz_all):
        """After the loop: the query-side sums into the accumulator (one product each) and
        the combine layer's gradients."""
        f = self.f
        M, N, H = q_all.shape
        MN = M * N
        if f.additive:
            self.acc.dquery = self.dqp.reshape(MN, -1).T @ q_all.reshape(MN, H)
        else:
            self.acc.dkeys = np.matmul(self.de.transpose(1, 2, 0), q_all.transpose(1, 0, 2))
        dz2 = dz_all.reshape(MN, H)
        cq = np.concatenate([f.ctx.reshape(MN, -1), q_all.reshape(MN, H)], axis=1)
        gcomb = {"weight": dz2.T @ cq}
        if f.bc is not None:
            gcomb["bias"] = dz2.sum(axis=0)
        return gcomb


def _stack(dec, fcell, y, state):
    """One FusedWork per layer over the M steps (layer 0's projection buffer already holding
    the hoisted embedding part + bias) and the input weights ``[(W_ih^T, b_ih)]`` of layers
    1..L-1 (None for layer 0)."""
    N, M, E = y.shape
    hs0, cs0, _ = dec.start(state, N)
    w_ih0, b_ih0, _, _ = dec._w(0)
    G = w_ih0.shape[0]
    x0 = y.transpose(1, 0, 2).reshape(M * N, E) @ w_ih0[:, :E].T
    if b_ih0 is not None:
        x0 += b_ih0
    works, inw = [], [None]
    for layer in range(dec.L):
        xsrc = x0 if layer == 0 else np.empty((M * N, G), dtype=dec.rnn.dtype)
        works.append(_layer_work(fcell, dec, layer, M, N, hs0[layer],
                                 None if cs0 is None else cs0[layer], xsrc))
        if layer:
            w_ih, b_ih, _, _ = dec._w(layer)
            inw.append((np.ascontiguousarray(w_ih.T), b_ih))
    return works, inw


def forward(dec, y, prep, state, drop):
    """:meth:`AttentionDecoder.forward` (dropout masks ``drop`` already drawn) on the fused
    kernels -> ``((h~ (N, M, H), alpha (N, M, S)), FusedDecoderCache)``."""
    fcell = dec.rnn.fused_cell
    N, M, E = y.shape
    L, dt = dec.L, dec.rnn.dtype
    works, inw = _stack(dec, fcell, y, state)
    G = works[0].w_hh.shape[0]
    w_feed_t = np.ascontiguousarray(dec._w(0)[0][:, E:].T)
    # Inputs of layers 1..L-1: the layer below's outputs themselves without dropout.
    inputs = [None] + [works[i].hh[1:] if drop is None else np.empty_like(works[i].hh[1:])
                       for i in range(L - 1)]
    step = _Attend(dec, prep, M)
    gproj = np.empty((N, G), dtype=dt)
    for t in range(M):
        if t:  # input feeding: layer 0's projection of this step gets h~_{t-1} W_feed^T
            np.matmul(step.ht[t - 1], w_feed_t, out=gproj)
            works[0].xsrc.reshape(M, N, G)[t] += gproj
        for layer, w in enumerate(works):
            if layer:
                if drop is not None:
                    np.multiply(works[layer - 1].hh[t + 1], drop[layer - 1][t],
                                out=inputs[layer][t])
                xr = w.xsrc.reshape(M, N, G)[t]
                np.matmul(inputs[layer][t], inw[layer][0], out=xr)
                if inw[layer][1] is not None:
                    xr += inw[layer][1]
            fcell.forward_step(w, t, t, t + 1, 0, N)
        step.forward(t, works[-1].hh[t + 1])
    cache = FusedDecoderCache(y, prep, step, works, inputs, drop)
    return (step.ht.transpose(1, 0, 2), step.alpha.transpose(1, 0, 2)), cache


def backward(dec, dht_out, c: FusedDecoderCache):
    """:meth:`AttentionDecoder.backward` for a :func:`forward` cache: same results."""
    fcell = dec.rnn.fused_cell
    N, M, E = c.y.shape
    H, L, dt = dec.H, dec.L, dec.rnn.dtype
    step = c.step
    acc = dec.attention.new_accumulator(c.prep, work=False)
    back = _AttendBack(step, acc, M)
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
    q_all = c.works[-1].hh[1:]  # (M, N, H) the queries
    dz_all = np.empty((M, N, H), dtype=dt)
    dy = np.empty((M, N, E), dtype=dt)
    dq, tmp = np.empty((N, H), dtype=dt), np.empty((N, H), dtype=dt)
    dx0 = np.empty((N, E + H), dtype=dt)
    dfeed = np.zeros((N, H), dtype=dt)
    for t in range(M - 1, -1, -1):
        dz = dz_all[t]  # dL/d(pre-tanh of h~_t)
        np.add(dout_tm[t], dfeed, out=dz)
        np.multiply(step.ht[t], step.ht[t], out=tmp)
        np.subtract(1.0, tmp, out=tmp)
        dz *= tmp
        back.step(t, q_all[t], dz, dq)
        works[-1].dhd += dq
        for layer in range(L - 1, -1, -1):
            w = works[layer]
            fcell.backward_step(w, t, 0, N)
            if layer:
                np.matmul(w.dG[t], w_ih[layer], out=tmp)
                if c.drop is not None:
                    tmp *= c.drop[layer - 1][t]
                works[layer - 1].dhd += tmp
            else:
                np.matmul(w.dG[t], w_ih[0], out=dx0)
                dy[t] = dx0[:, :E]
                dfeed[...] = dx0[:, E:]
    gcomb = back.finish(q_all, dz_all)
    grads = _stack_grads(dec, fcell, works, c)
    dh0 = np.stack([w.dhrec + w.dhd for w in works])
    dstate0 = (dh0, np.stack([w.dc for w in works])) if fcell.has_cell else dh0
    return dy.transpose(1, 0, 2), acc, dstate0, grads, gcomb


def _stack_grads(dec, fcell, works, c):
    """Every layer's weight gradients, one product each over all M*N rows."""
    N, M, E = c.y.shape
    MN, H = M * N, dec.H
    # h~ entering each step: 0, then the previous step's.
    ht_prev = np.concatenate([np.zeros((1, N, H), dtype=c.step.ht.dtype), c.step.ht[:-1]])
    grads = {}
    for layer, w in enumerate(works):
        s = f"l{layer}"
        dG, dw_hh, db_hh, db_ih = fcell.grads(w)
        d2 = dG.reshape(MN, -1)
        if layer == 0:
            x2 = np.concatenate([c.y.transpose(1, 0, 2).reshape(MN, E), ht_prev.reshape(MN, H)],
                                axis=1)
        else:
            x2 = c.inputs[layer].reshape(MN, H)
        grads[f"weight_ih_{s}"] = d2.T @ x2
        grads[f"weight_hh_{s}"] = dw_hh
        if f"bias_ih_{s}" in dec.rnn.params:
            grads[f"bias_ih_{s}"] = db_ih
        if f"bias_hh_{s}" in dec.rnn.params:
            grads[f"bias_hh_{s}"] = db_hh
    return {k: grads[k] for k in dec.rnn.params}
