"""The decoder block — embedding -> recurrent stack -> dropout -> output — and the state
bridge that gives it its initial state.

One block serves the language model, seq2seq's decoder and the conditional generator: each
reads token ids (N, T), predicts the next token's logits (N, T, V), and generates one token
at a time through :meth:`Decoder.step`.  The models name the three parameter blocks their
own way ("embed"/"rnn"/"out" for the LM and the generator, "tgt_embed"/"decoder"/"out" for
seq2seq), so model files keep their parameter names.

Shapes: N batch, T time, E embedding, H hidden, L layers, V vocabulary, D bridge input.
"""

from __future__ import annotations

import numpy as np

from .basic import Dropout, Embedding, Linear, log_softmax
from .recurrent import RecurrentLayer


class Decoder:
    """Embedding (V, E) -> unidirectional RecurrentLayer (L layers of H) -> Dropout ->
    Linear (H -> V).

    ``names`` are the prefixes of the three parameter blocks (embedding, stack, output).
    ``embed_dropout``: dropout also acts on the embeddings (the language model, after
    Zaremba et al. 2014); it always acts between layers and on the last layer's output, in
    training only.  The parameters are drawn from ``rng`` in the order embedding, stack,
    output.
    """

    def __init__(self, vocab_size, embed_dim, hidden_size, num_layers, *, cell, rng,
                 dropout=0.0, embed_dropout=False, nonlinearity="tanh", reset_after=True,
                 forget_bias=0.0, dtype=np.float32, names=("embed", "rnn", "out")):
        dtype = np.dtype(dtype)
        self.embed = Embedding(vocab_size, embed_dim, dtype=dtype, seed=rng)
        self.rnn = RecurrentLayer(embed_dim, hidden_size, num_layers, mode=cell, dropout=dropout,
                                  nonlinearity=nonlinearity, reset_after=reset_after,
                                  forget_bias=forget_bias, dtype=dtype, seed=rng)
        self.out = Linear(hidden_size, vocab_size, dtype=dtype, seed=rng)
        self.drop = Dropout(dropout)
        self.embed_dropout = embed_dropout
        self.names = tuple(names)

    @property
    def blocks(self) -> dict:
        """Prefix -> block, for a model's ``blocks`` (and so its flat ``params``)."""
        return dict(zip(self.names, (self.embed, self.rnn, self.out)))

    def forward(self, ids, lengths=None, state=None, *, training=False, rng=None,
                keep_cache=True, lookup=False):
        """ids (N, T) ints -> ``(logits (N, T, V), final state, cache)``.

        ``lookup``: without embedding dropout, the embedding and the first layer's input
        product become one table lookup (the recurrent layer's ``embedding=`` path): the V
        embedding rows are projected once instead of the N*T inputs.  The models that have
        always run the plain product keep it, so their numbers stay what they were.
        """
        use_drop = training and self.drop.p > 0
        if use_drop and rng is None:
            raise ValueError("training with dropout needs an explicit numpy Generator (rng=...)")
        d1 = None
        if lookup and not (use_drop and self.embed_dropout):
            ids = self.embed.check_ids(ids)
            ecache = None
            h, state, rcache = self.rnn.forward(ids, lengths, state,
                                                embedding=self.embed.params["weight"],
                                                keep_cache=keep_cache)
        else:
            e, ecache = self.embed.forward(ids)
            if self.embed_dropout:
                e, d1 = self.drop.forward(e, training=use_drop, rng=rng)
            h, state, rcache = self.rnn.forward(e, lengths, state, training=training, rng=rng)
        h, d2 = self.drop.forward(h, training=use_drop, rng=rng)
        logits, ocache = self.out.forward(h)
        if not keep_cache:
            return logits, state, None
        return logits, state, [ecache, d1, rcache, d2, ocache]

    def backward(self, dlogits, cache: list, dstate=None, *, release=False):
        """dL/dlogits (N, T, V) (and dL/d final state) -> ``(grads, dL/d initial state)``;
        grads keyed ``"PREFIX.name"`` like the model's params.  ``release`` empties ``cache``
        as it goes, so memory is returned layer by layer."""
        ecache, d1, rcache, d2, ocache = cache
        if release:
            cache.clear()
        dh, g_out = self.out.backward(dlogits, ocache)
        del dlogits, ocache
        dh, _ = self.drop.backward(dh, d2)
        de, dstate0, g_rnn = self.rnn.backward(dh, rcache, dstate, release=release)
        if ecache is None:  # the table lookup: the layer returned dL/d(embedding matrix)
            g_emb = {"weight": de}
        else:
            de, _ = self.drop.backward(de, d1)
            _, g_emb = self.embed.backward(de, ecache)
        e, r, o = self.names
        grads = {f"{e}.{k}": v for k, v in g_emb.items()}
        grads.update({f"{r}.{k}": v for k, v in g_rnn.items()})
        grads.update({f"{o}.{k}": v for k, v in g_out.items()})
        return grads, dstate0

    def step(self, ids, state):
        """One token per row: ids (N,) -> ``(log-probabilities (N, V) float64, state)``;
        nothing is kept for backward."""
        y, _ = self.embed.forward(np.asarray(ids)[:, None])
        h, state, _ = self.rnn.forward(y, None, state)
        logits, _ = self.out.forward(h[:, 0])
        return log_softmax(logits.astype(np.float64)), state


class StateBridge:
    """Vectors -> a recurrent stack's initial state: ``h0 = tanh(W_h x_h + b_h)`` and, for an
    LSTM, ``c0 = W_c x_c + b_c`` (no squashing: a memory cell is unbounded).

    Seq2seq feeds it the encoder's final states (directions side by side), the generator its
    condition; each model lays the (..., H) result out as (L, N, H) itself.
    ``names``: the prefixes of the two linear maps, drawn from ``rng`` in that order.
    """

    def __init__(self, in_dim, out_dim, *, lstm, rng, dtype=np.float32, names=("h", "c")):
        dtype = np.dtype(dtype)
        self.names = tuple(names[: 2 if lstm else 1])
        self.maps = [Linear(in_dim, out_dim, dtype=dtype, seed=rng) for _ in self.names]

    @property
    def blocks(self) -> dict:
        return dict(zip(self.names, self.maps))

    def forward(self, xs):
        """xs: (x_h,) or (x_h, x_c), each (..., D) -> ``(outputs, cache)``, outputs a tuple of
        (..., out_dim) arrays like xs."""
        outs, cache = [], []
        for i, (lin, x) in enumerate(zip(self.maps, xs)):
            z, lcache = lin.forward(x)
            if i == 0:
                z = np.tanh(z)
            outs.append(z)
            cache.append((lcache, z))
        return tuple(outs), cache

    def backward(self, douts, cache):
        """Gradients of the outputs -> ``(gradients of xs (tuple), grads keyed PREFIX.name)``."""
        dxs, grads = [], {}
        for i, (lin, name, d, (lcache, z)) in enumerate(zip(self.maps, self.names, douts, cache)):
            if i == 0:
                d = d * (1.0 - z * z)
            dx, g = lin.backward(d, lcache)
            dxs.append(dx)
            grads.update({f"{name}.{k}": v for k, v in g.items()})
        return tuple(dxs), grads
