"""A recurrent decoder that attends to the encoder at every step, with input feeding
(Luong et al. 2015), and its exact backward through time.

One step t, for a stack of L cells (LSTM, GRU or RNN) over target embeddings y_t::

    x_t     = [y_t, h~_{t-1}]                 input feeding (h~_0 = 0)
    h_t     = stack(x_t, h_{t-1})             the top layer's state is the query
    ctx_t, alpha_t = attention(h_t, memory)   (rnnkit.layers.attention)
    h~_t    = tanh(W_c [ctx_t, h_t] + b_c)    the attentional vector; logits = W_out h~_t

Input feeding makes step t+1's input depend on step t's output, so the layers cannot each
run over the whole sequence as the plain decoder does: the stack is stepped layer by layer
inside one time loop.  What does not depend on the loop is hoisted out of it: the embedding
part of layer 0's input product (one GEMM for all steps), the attention keys (one GEMM for
all source positions), and every weight gradient (one GEMM each after the loop).  Padded
target steps need no mask: the loss masks them and nothing before them depends on them.

The blocks are the caller's (the model owns and names them): ``rnn`` a
:class:`~rnnkit.layers.recurrent.RecurrentLayer` (unidirectional; its layer-0 input size is
E + H), ``attention`` an :class:`~rnnkit.layers.attention.Attention`, ``combine`` a
:class:`~rnnkit.layers.basic.Linear` (Hs + H -> H).  Dropout, if the layer has it, is
applied between stacked layers in training, as :class:`RecurrentLayer` does.

Shapes: N batch, M target time, S source time, E embedding, H hidden, L layers, G*H gate
rows, Hs memory size (K*H for a K-direction encoder).
"""

from __future__ import annotations

import numpy as np


class AttentionDecoder:
    def __init__(self, rnn, attention, combine):
        if rnn.bidirectional:
            raise ValueError("the attention decoder runs forward only")
        self.rnn, self.attention, self.combine = rnn, attention, combine
        self.H = rnn.hidden_size
        self.E = rnn.input_size - rnn.hidden_size
        self.L = rnn.num_layers
        self.cell = rnn.cell
        self.has_c = rnn.cell.has_cell
        if combine.in_features != attention.memory_size + self.H or combine.out_features != self.H:
            raise ValueError("combine must map (Hs + H) -> H")

    def _w(self, layer):
        p, s = self.rnn.params, f"l{layer}"
        return (p[f"weight_ih_{s}"], p.get(f"bias_ih_{s}"), p[f"weight_hh_{s}"],
                p.get(f"bias_hh_{s}"))

    # ---- state ---------------------------------------------------------------------------
    def start(self, state, N):
        """Decoder state from the bridged encoder state ((L, N, H) or (h, c)): a list of
        per-layer h, a list of c (or None) and h~_0 = 0."""
        if self.has_c:
            hs, cs = [s.copy() for s in state[0]], [s.copy() for s in state[1]]
        else:
            hs, cs = [s.copy() for s in state], None
        return hs, cs, np.zeros((N, self.H), dtype=self.rnn.dtype)

    @staticmethod
    def take(dstate, rows):
        """The decoder state of rows ``rows`` (beam search)."""
        hs, cs, ht = dstate
        return ([h[rows] for h in hs], None if cs is None else [c[rows] for c in cs], ht[rows])

    # ---- one step (decoding) -------------------------------------------------------------
    def step(self, y, dstate, prep):
        """y (N, E) embedded previous tokens -> ``(h~ (N, H), alpha (N, S), new state)``."""
        hs, cs, ht = dstate
        w_ih, b_ih, w_hh, b_hh = self._w(0)
        xp = y @ w_ih[:, : self.E].T + ht @ w_ih[:, self.E:].T
        if b_ih is not None:
            xp += b_ih
        hs, cs = list(hs), None if cs is None else list(cs)
        for layer in range(self.L):
            if layer:
                w_ih, b_ih, w_hh, b_hh = self._w(layer)
                xp = hs[layer - 1] @ w_ih.T
                if b_ih is not None:
                    xp += b_ih
            h, c, _ = self.cell.step(xp, hs[layer], None if cs is None else cs[layer], w_hh, b_hh)
            hs[layer] = h
            if cs is not None:
                cs[layer] = c
        q = hs[-1]
        ctx, alpha, _ = self.attention.step(q, prep)
        z, _ = self.combine.forward(np.concatenate([ctx, q], axis=1))
        ht = np.tanh(z)
        return ht, alpha, (hs, cs, ht)

    # ---- teacher forcing -----------------------------------------------------------------
    def forward(self, y, prep, state, *, training=False, rng=None):
        """y (N, M, E) embedded decoder inputs, prep from ``attention.prepare``, state the
        bridged initial state -> ``((h~ (N, M, H), alpha (N, M, S)), cache)``."""
        N, M, E = y.shape
        drop = self._drop_masks(M, N, training, rng)
        if self.rnn.backend == "numba":
            from . import attention_fused

            return attention_fused.forward(self, y, prep, state, drop)
        H, L, dt = self.H, self.L, self.rnn.dtype
        hs, cs, ht = self.start(state, N)
        w_ih0, b_ih0, _, _ = self._w(0)
        # Hoisted: the embedding half of layer 0's input product for every step at once.
        xp_y = (y.transpose(1, 0, 2).reshape(M * N, E) @ w_ih0[:, :E].T).reshape(M, N, -1)
        if b_ih0 is not None:
            xp_y += b_ih0
        w_feed = w_ih0[:, E:]
        h_prev = np.empty((L, M, N, H), dtype=dt)  # state entering each step, per layer
        inputs = [None] + [np.empty((M, N, H), dtype=dt) for _ in range(L - 1)]
        ht_prev = np.empty((M, N, H), dtype=dt)
        t_all, alpha_all, ctx_all = self.attention.workspace(prep, M)
        q_all = np.empty((M, N, H), dtype=dt)
        ht_all = np.empty((M, N, H), dtype=dt)
        step_caches = [[None] * M for _ in range(L)]
        att_caches = [None] * M
        wc = self.combine.params["weight"]
        bc = self.combine.params.get("bias")
        Hs = prep.memory.shape[2]
        for t in range(M):
            ht_prev[t] = ht
            xp = xp_y[t] + ht @ w_feed.T
            for layer in range(L):
                w_ih, b_ih, w_hh, b_hh = self._w(layer)
                if layer:
                    inp = hs[layer - 1] if drop is None else hs[layer - 1] * drop[layer - 1][t]
                    inputs[layer][t] = inp
                    xp = inp @ w_ih.T
                    if b_ih is not None:
                        xp += b_ih
                h_prev[layer, t] = hs[layer]
                h, c, sc = self.cell.step(xp, hs[layer], None if cs is None else cs[layer],
                                          w_hh, b_hh)
                step_caches[layer][t] = sc
                hs[layer] = h
                if cs is not None:
                    cs[layer] = c
            q = hs[-1]
            ctx, _, att_caches[t] = self.attention.step(
                q, prep, (None if t_all is None else t_all[t], alpha_all[t], ctx_all[t]))
            z = ctx @ wc[:, :Hs].T + q @ wc[:, Hs:].T
            if bc is not None:
                z += bc
            ht = np.tanh(z)
            q_all[t], ht_all[t] = q, ht
        cache = (y, prep, h_prev, inputs, ht_prev, ctx_all, q_all, ht_all, step_caches,
                 att_caches, drop)
        return (ht_all.transpose(1, 0, 2), alpha_all.transpose(1, 0, 2)), cache

    def _drop_masks(self, M, N, training, rng):
        """The dropout masks between stacked layers, (M, N, H) each, or None."""
        p, L, H, dt = self.rnn.dropout, self.L, self.H, self.rnn.dtype
        if not (training and p > 0.0 and L > 1):
            return None
        if rng is None:
            raise ValueError("dropout in training needs an explicit numpy Generator (rng=...)")
        keep = 1.0 - p
        # Time-major (M, N, H): a per-example generator (the training loop's ExampleRNG)
        # is told which axis holds the examples.
        draw = getattr(rng, "random_batch", None) or (lambda shape, axis: rng.random(shape))
        return [(draw((M, N, H), 1) < keep).astype(dt) / dt.type(keep) for _ in range(L - 1)]

    def backward(self, dht_out, cache):
        """dL/dh~ (N, M, H) -> ``(dy (N, M, E), acc, dstate0, grads_rnn, grads_combine)``.

        ``acc`` holds the attention's memory-side gradients: finish them with
        ``attention.prepare_backward(acc, prep)``.  dstate0 is in the state layout the
        forward pass was given.  Never mutates its arguments.
        """
        if not isinstance(cache, tuple):  # made by the fused loop
            from . import attention_fused

            return attention_fused.backward(self, dht_out, cache)
        (y, prep, h_prev, inputs, ht_prev, ctx_all, q_all, ht_all, step_caches, att_caches,
         drop) = cache
        N, M, E = y.shape
        H, L, dt = self.H, self.L, self.rnn.dtype
        Hs = prep.memory.shape[2]
        G = self._w(0)[2].shape[0]
        wc = self.combine.params["weight"]
        acc = self.attention.new_accumulator(prep)
        dxp = np.empty((L, M, N, G), dtype=dt)
        dgh = np.empty((L, M, N, G), dtype=dt)
        dz_all = np.empty((M, N, H), dtype=dt)
        dy = np.empty((M, N, E), dtype=dt)
        dh = [np.zeros((N, H), dtype=dt) for _ in range(L)]
        dc = [np.zeros((N, H), dtype=dt) for _ in range(L)] if self.has_c else None
        dfeed = np.zeros((N, H), dtype=dt)
        w_ih0 = self._w(0)[0]
        for t in range(M - 1, -1, -1):
            dht = dht_out[:, t] + dfeed
            dz = dht * (1.0 - ht_all[t] * ht_all[t])
            dz_all[t] = dz
            dcq = dz @ wc  # d[context, q] in one product
            dq = dcq[:, Hs:] + self.attention.step_backward(dcq[:, :Hs], att_caches[t], acc)
            dh[L - 1] = dh[L - 1] + dq
            for layer in range(L - 1, -1, -1):
                w_ih, _, w_hh, _ = self._w(layer)
                dxp_t, dh_p, dc_p, dgh_t = self.cell.step_backward(
                    dh[layer], None if dc is None else dc[layer], step_caches[layer][t], w_hh)
                dxp[layer, t], dgh[layer, t] = dxp_t, dgh_t
                dh[layer] = dh_p
                if dc is not None:
                    dc[layer] = dc_p
                if layer:
                    dinp = dxp_t @ w_ih
                    if drop is not None:
                        dinp = dinp * drop[layer - 1][t]
                    dh[layer - 1] = dh[layer - 1] + dinp
                else:
                    dx = dxp_t @ w_ih0
                    dy[t] = dx[:, :E]
                    dfeed = dx[:, E:]
        # Weight gradients: one product each over all M*N rows (principle 4).
        grads = {}
        MN = M * N
        for layer in range(L):
            s = f"l{layer}"
            d2 = dxp[layer].reshape(MN, G)
            if layer == 0:
                x2 = np.concatenate([y.transpose(1, 0, 2).reshape(MN, E),
                                     ht_prev.reshape(MN, H)], axis=1)
            else:
                x2 = inputs[layer].reshape(MN, H)
            grads[f"weight_ih_{s}"] = d2.T @ x2
            if f"bias_ih_{s}" in self.rnn.params:
                grads[f"bias_ih_{s}"] = d2.sum(axis=0)
            dw_hh, db_hh = self.cell.weight_grads(dgh[layer], h_prev[layer], step_caches[layer])
            grads[f"weight_hh_{s}"] = dw_hh
            if f"bias_hh_{s}" in self.rnn.params:
                grads[f"bias_hh_{s}"] = db_hh
        dz2 = dz_all.reshape(MN, H)
        gcomb = {"weight": dz2.T @ np.concatenate([ctx_all.reshape(MN, Hs), q_all.reshape(MN, H)],
                                                  axis=1)}
        if "bias" in self.combine.params:
            gcomb["bias"] = dz2.sum(axis=0)
        dh0 = np.stack(dh)
        dstate0 = (dh0, np.stack(dc)) if self.has_c else dh0
        grads = {k: grads[k] for k in self.rnn.params}
        return dy.transpose(1, 0, 2), acc, dstate0, grads, gcomb
