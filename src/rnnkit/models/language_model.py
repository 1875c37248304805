"""Recurrent language model: Embedding -> stacked RNN/GRU/LSTM -> Linear -> softmax.

P(y<1>, ..., y<T>) = prod_t P(y<t> | y<1..t-1>), trained with cross-entropy.  Shapes: N batch,
T time, E embedding, H hidden, L layers, V vocabulary.

Parameters form one flat dict with dotted names — ``embed.weight`` (V, E),
``rnn.weight_ih_l0`` ... (PyTorch's names under ``rnn.``), ``out.weight`` (V, H),
``out.bias`` (V,) — the keys :meth:`LanguageModel.backward` returns gradients under.
Dropout (Zaremba et al. 2014) acts on the non-recurrent connections only: the embeddings,
between layers, and the last layer's output, in training only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..layers.basic import log_softmax, softmax_cross_entropy
from ..layers.decoder import Decoder
from .base import Config, Model, recurrent_shapes

# Up to this many rows a generation step runs the whole model in one compiled call
# (matrix-vector products in Numba); wider steps (many samples, wide beams) use BLAS.
LEAN_STEP_MAX_N = 8


def _xent_inplace(z, targets) -> float:
    """Mean cross-entropy of rows z (M, V) against targets (M,); z becomes dL/dz."""
    from .. import kernels

    M = z.shape[0]
    if kernels.available() and z.flags.c_contiguous:
        from ..kernels.loss import xent_inplace

        return float(xent_inplace(z, targets, z.dtype.type(1.0 / M)) / M)
    loss, dz = softmax_cross_entropy(z, targets)
    z[...] = dz
    return loss


def _log_softmax_inplace(z) -> None:
    from .. import kernels

    if kernels.available() and z.flags.c_contiguous:
        from ..kernels.loss import log_softmax_rows

        log_softmax_rows(z, z)
    else:
        z[...] = log_softmax(z)


@dataclass
class LMConfig(Config):
    """Everything that rebuilds a :class:`LanguageModel`; saved as JSON in checkpoints."""

    vocab_size: int
    cell: str = "lstm"
    num_layers: int = 2
    hidden_size: int = 256
    embed_dim: int = 64
    dropout: float = 0.0
    nonlinearity: str = "tanh"
    reset_after: bool = True
    dtype: str = "float32"

    positive = ("vocab_size", "num_layers", "hidden_size", "embed_dim")


class LanguageModel(Model):
    """A recurrent language model over a vocabulary of V token ids: one
    :class:`~rnnkit.layers.decoder.Decoder` read from the zero state (or a carried one).

    ``seed`` (int or Generator) draws the initial weights.
    """

    config_class = LMConfig
    kind = "language_model"

    def __init__(self, config: LMConfig, seed=None):
        super().__init__()
        self.config = config.validate()
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        # Embeddings N(0, 1) as torch.nn.Embedding: with W_ih ~ U(+-1/sqrt(H)) the first layer's
        # pre-activations start with std ~ sqrt(E / 3H), unsaturated; smaller embeddings only
        # slow the start of training (measured against PyTorch on the same recipe).
        self.decoder = Decoder(config.vocab_size, config.embed_dim, config.hidden_size,
                               config.num_layers, cell=config.cell, rng=rng,
                               dropout=config.dropout, embed_dropout=True,
                               nonlinearity=config.nonlinearity, reset_after=config.reset_after,
                               dtype=config.dtype)
        d = self.decoder
        self.embed, self.rnn, self.out, self.drop = d.embed, d.rnn, d.out, d.drop
        self.blocks = d.blocks

    @staticmethod
    def param_shapes(c: LMConfig) -> dict:
        """Name -> shape of every parameter, from the config alone (nothing is allocated)."""
        return {"embed.weight": (c.vocab_size, c.embed_dim),
                **recurrent_shapes("rnn", c.embed_dim, c.hidden_size, c.num_layers, c.cell, False),
                "out.weight": (c.vocab_size, c.hidden_size), "out.bias": (c.vocab_size,)}

    def zero_state(self, N: int):
        return self.rnn.zero_state(N)

    # ---- training graph --------------------------------------------------------------
    def forward(self, ids, state=None, *, training=False, rng=None, keep_cache=True):
        """ids (N, T) ints -> logits (N, T, V), final state, cache (the decoder's, with the
        embedding lookup fused into the first layer's input product when no dropout acts)."""
        ids = np.asarray(ids)
        if ids.ndim != 2:
            raise ValueError(f"ids must have 2 dimensions (N, T), got shape {ids.shape}")
        return self.decoder.forward(ids, None, state, training=training, rng=rng,
                                    keep_cache=keep_cache, lookup=True)

    def backward(self, dlogits, cache, dstate=None) -> dict:
        """Gradients keyed like ``params`` from dL/dlogits (N, T, V)."""
        return self.decoder.backward(dlogits, list(cache), dstate)[0]

    def loss_and_grads(self, x, y, state=None, *, training=True, rng=None):
        """Mean cross-entropy (nats/token) of targets y (N, T) given inputs x (N, T).

        Returns ``(loss, grads, final_state)``; the final state is what a stateful trainer
        carries into the next chunk (truncated BPTT: no gradient flows back through it).
        """
        if training and self.config.dropout > 0:
            logits, new_state, cache = self.forward(x, state, training=training, rng=rng)
            loss, dlogits = softmax_cross_entropy(logits, y)
            del logits
            return loss, self.decoder.backward(dlogits, cache, release=True)[0], new_state
        return self._lean_loss_and_grads(x, y, state)

    def _lean_loss_and_grads(self, x, y, state):
        """The training step without dropout, built for memory and speed: the recurrent
        output stays time-major (a view of the last layer's state history, no copy), the
        logits (T*N, V) become dL/dlogits in place (one fused softmax-cross-entropy pass),
        and backward consumes the cache (``release=True``) layer by layer."""
        ids = np.asarray(x)
        if ids.ndim != 2:
            raise ValueError(f"ids must have 2 dimensions (N, T), got shape {ids.shape}")
        ids = self.embed.check_ids(ids)
        y = np.asarray(y)
        if y.shape != ids.shape:
            raise ValueError(f"targets must have shape {ids.shape}, got {y.shape}")
        V = self.config.vocab_size
        if y.dtype.kind not in "iu":
            raise ValueError(f"targets must be integers, got dtype {y.dtype.name}")
        if y.size and (y.min() < 0 or y.max() >= V):
            raise ValueError(f"targets must lie in [0, {V})")
        h, new_state, rcache = self.rnn.forward(ids, None, state,
                                                embedding=self.embed.params["weight"],
                                                time_major=True)
        T, N, H = h.shape
        h2 = h.reshape(T * N, H)
        del h
        W, b = self.out.params["weight"], self.out.params.get("bias")
        z = h2 @ W.T  # (T*N, V) logits, time-major
        if b is not None:
            z += b
        yt = np.ascontiguousarray(y.T, dtype=np.int64).reshape(-1)
        loss = _xent_inplace(z, yt)  # z is now dL/dlogits
        g_out = {"weight": z.T @ h2}
        if b is not None:
            g_out["bias"] = z.sum(axis=0)
        del h2
        dh = (z @ W).reshape(T, N, H)
        del z
        de, _, g_rnn = self.rnn.backward(dh, rcache, release=True, time_major=True)
        grads = {"embed.weight": de}
        grads.update({f"rnn.{k}": v for k, v in g_rnn.items()})
        grads.update({f"out.{k}": v for k, v in g_out.items()})
        return loss, grads, new_state

    # ---- inference -------------------------------------------------------------------
    def log_probs(self, ids, state=None):
        """Log-probabilities (N, T, V) of the next token after each input, and the final state."""
        ids = np.asarray(ids)
        if ids.ndim != 2:
            raise ValueError(f"ids must have 2 dimensions (N, T), got shape {ids.shape}")
        ids = self.embed.check_ids(ids)
        h, state, _ = self.rnn.forward(ids, None, state, embedding=self.embed.params["weight"],
                                       keep_cache=False, time_major=True)
        T, N, H = h.shape
        z, _ = self.out.forward(h.reshape(T * N, H))  # (T*N, V), time-major
        _log_softmax_inplace(z)
        V = z.shape[1]
        return np.ascontiguousarray(z.reshape(T, N, V).transpose(1, 0, 2)), state

    def stepper(self):
        """A function ``(ids_t (N,), state) -> (log-probabilities (N, V), state)`` for
        generation: one token at a time through every layer with nothing kept for backward,
        the embedding-projection tables made once.  Valid until the weights change."""
        if self.rnn.bidirectional:
            raise ValueError("a language model generates left to right: unidirectional only")
        tables = self.rnn.input_tables(self.embed.params["weight"])
        V = self.config.vocab_size
        lean = self._lean_stepper(tables[0])

        def step(ids_t, state=None):
            ids_t = np.asarray(ids_t).reshape(-1)
            if lean is not None and 0 < ids_t.size <= LEAN_STEP_MAX_N:
                return lean(ids_t, state)
            if ids_t.size and (ids_t.min() < 0 or ids_t.max() >= V):
                raise ValueError(f"token ids must lie in [0, {V})")
            h, state = self.rnn.step(ids_t, state, input_tables=tables)
            logits, _ = self.out.forward(h)
            return log_softmax(logits), state

        return step

    def _lean_stepper(self, table):
        """The whole model for one token in one compiled call (:mod:`rnnkit.kernels.lmstep`),
        or None where that kernel does not apply (NumPy backend, the notes' GRU form)."""
        rnn = self.rnn
        if rnn.backend != "numba" or (rnn.mode == "gru" and not rnn.reset_after):
            return None
        from ..kernels.lmstep import lm_token

        code = {"lstm": 3, "gru": 2}.get(rnn.mode, 1 if rnn.nonlinearity == "relu" else 0)
        L, H, dt = rnn.num_layers, rnn.hidden_size, rnn.dtype
        GH = table.shape[1]
        w = [rnn._weights(layer, 0) for layer in range(L)]
        zeros = np.zeros(GH, dtype=dt)
        wih = np.stack([w[i][0] for i in range(1, L)]) if L > 1 else np.zeros((1, GH, H), dt)
        bih = np.stack([w[i][1] if w[i][1] is not None else zeros for i in range(1, L)]) \
            if L > 1 else np.zeros((1, GH), dt)
        whh = np.stack([w[i][2] for i in range(L)])
        bhh = np.stack([w[i][3] if w[i][3] is not None else zeros for i in range(L)])
        wout = np.ascontiguousarray(self.out.params["weight"])
        bout = self.out.params.get("bias")
        bout = np.zeros(wout.shape[0], dt) if bout is None else np.ascontiguousarray(bout)
        table = np.ascontiguousarray(table)
        lstm = rnn.mode == "lstm"
        V = self.config.vocab_size

        def lean(ids, state):
            if ids.dtype.kind not in "iu":
                raise ValueError(f"token ids must be integers, got dtype {ids.dtype.name}")
            N = ids.shape[0]
            if state is None:
                h = np.zeros((L, N, H), dtype=dt)
                c = np.zeros((L, N, H), dtype=dt) if lstm else h
            else:
                h, c = rnn._check_state(state, N)
                h = np.ascontiguousarray(h)
                c = np.ascontiguousarray(c) if lstm else h
            bad, h, c, lp = lm_token(code, ids.astype(np.int64, copy=False), table, wih, bih,
                                     whh, bhh, wout, bout, h, c)
            if bad:
                raise ValueError(f"token ids must lie in [0, {V})")
            return lp, ((h, c) if lstm else h)

        return lean

    def step(self, ids_t, state=None):
        """One step: ids_t (N,) -> log-probabilities (N, V), new state (see :meth:`stepper`)."""
        return self.stepper()(ids_t, state)
