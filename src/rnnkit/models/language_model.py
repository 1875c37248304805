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

import dataclasses
from dataclasses import dataclass

import numpy as np

from .. import _checks
from ..layers.basic import Dropout, Embedding, Linear, log_softmax, softmax_cross_entropy
from ..layers.recurrent import RecurrentLayer

CELLS = ("rnn", "gru", "lstm")
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
class LMConfig:
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

    def __post_init__(self):
        if self.cell not in CELLS:
            raise ValueError(f"unknown cell {self.cell!r}: expected one of {', '.join(CELLS)}")
        for name in ("vocab_size", "num_layers", "hidden_size", "embed_dim"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        _checks.check_probability(self.dropout, "dropout")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, obj) -> LMConfig:
        if not isinstance(obj, dict):
            raise ValueError(f"model config must be a JSON object, got {type(obj).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(obj) - names)
        if unknown:
            raise ValueError(f"model config has unknown keys {unknown}")
        try:
            return cls(**obj)
        except TypeError as e:
            raise ValueError(f"model config is incomplete: {e}") from None


class LanguageModel:
    """A recurrent language model over a vocabulary of V token ids.

    ``seed`` (int or Generator) draws the initial weights.
    """

    def __init__(self, config: LMConfig, seed=None):
        self.config = config
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        dtype = np.dtype(config.dtype)
        self.dtype = dtype
        self.embed = Embedding(config.vocab_size, config.embed_dim, dtype=dtype, seed=rng)
        # Embeddings N(0, 1) as torch.nn.Embedding: with W_ih ~ U(+-1/sqrt(H)) the first layer's
        # pre-activations start with std ~ sqrt(E / 3H), unsaturated; smaller embeddings only
        # slow the start of training (measured against PyTorch on the same recipe).
        self.rnn = RecurrentLayer(
            config.embed_dim, config.hidden_size, config.num_layers, mode=config.cell,
            dropout=config.dropout, nonlinearity=config.nonlinearity,
            reset_after=config.reset_after, dtype=dtype, seed=rng)
        self.out = Linear(config.hidden_size, config.vocab_size, dtype=dtype, seed=rng)
        self.drop = Dropout(config.dropout)

    # ---- parameters ------------------------------------------------------------------
    @property
    def params(self) -> dict:
        """Flat view of every parameter array (the arrays themselves, not copies)."""
        p = {f"embed.{k}": v for k, v in self.embed.params.items()}
        p.update({f"rnn.{k}": v for k, v in self.rnn.params.items()})
        p.update({f"out.{k}": v for k, v in self.out.params.items()})
        return p

    def load_params(self, arrays: dict) -> None:
        """Copy ``arrays`` (keyed like ``params``) into the model; shapes must match."""
        current = self.params
        missing = sorted(set(current) - set(arrays))
        extra = sorted(set(arrays) - set(current))
        if missing or extra:
            raise ValueError(f"parameters do not fit the model: missing {missing}, unexpected {extra}")
        for name, p in current.items():
            a = np.asarray(arrays[name])
            if a.shape != p.shape:
                raise ValueError(f"parameter {name} must have shape {p.shape}, got {a.shape}")
            p[...] = a

    def zero_state(self, N: int):
        return self.rnn.zero_state(N)

    def num_parameters(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    # ---- training graph --------------------------------------------------------------
    def forward(self, ids, state=None, *, training=False, rng=None, keep_cache=True):
        """ids (N, T) ints -> logits (N, T, V), final state, cache.

        Without embedding dropout the embedding and the first layer's input product are one
        table lookup (the recurrent layer's ``embedding=`` path): the V embedding rows are
        projected once instead of the N*T inputs.
        """
        ids = np.asarray(ids)
        if ids.ndim != 2:
            raise ValueError(f"ids must have 2 dimensions (N, T), got shape {ids.shape}")
        use_drop = training and self.config.dropout > 0
        if use_drop and rng is None:
            raise ValueError("training with dropout needs an explicit numpy Generator (rng=...)")
        if use_drop:
            e, ecache = self.embed.forward(ids)
            e, d1 = self.drop.forward(e, training=True, rng=rng)
            h, state, rcache = self.rnn.forward(e, None, state, training=True, rng=rng)
        else:
            ids = self.embed.check_ids(ids)
            ecache = d1 = None
            h, state, rcache = self.rnn.forward(ids, None, state, embedding=self.embed.params["weight"],
                                                keep_cache=keep_cache)
        h, d2 = self.drop.forward(h, training=use_drop, rng=rng)
        logits, ocache = self.out.forward(h)
        if not keep_cache:
            return logits, state, None
        return logits, state, (ecache, d1, rcache, d2, ocache)

    def backward(self, dlogits, cache, dstate=None) -> dict:
        """Gradients keyed like ``params`` from dL/dlogits (N, T, V)."""
        return self._backward(dlogits, list(cache), dstate)

    def loss_and_grads(self, x, y, state=None, *, training=True, rng=None):
        """Mean cross-entropy (nats/token) of targets y (N, T) given inputs x (N, T).

        Returns ``(loss, grads, final_state)``; the final state is what a stateful trainer
        carries into the next chunk (truncated BPTT: no gradient flows back through it).
        """
        if training and self.config.dropout > 0:
            logits, new_state, cache = self.forward(x, state, training=training, rng=rng)
            loss, dlogits = softmax_cross_entropy(logits, y)
            del logits
            return loss, self._backward(dlogits, list(cache), release=True), new_state
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

    def _backward(self, dlogits, cache: list, dstate=None, *, release=False) -> dict:
        ecache, d1, rcache, d2, ocache = cache
        if release:
            cache.clear()
        dh, g_out = self.out.backward(dlogits, ocache)
        del dlogits, ocache
        dh, _ = self.drop.backward(dh, d2)
        de, _, g_rnn = self.rnn.backward(dh, rcache, dstate, release=release)
        if ecache is None:  # the fused lookup: the layer returned dL/d(embedding matrix)
            g_emb = {"weight": de}
        else:
            de, _ = self.drop.backward(de, d1)
            _, g_emb = self.embed.backward(de, ecache)
        grads = {f"embed.{k}": v for k, v in g_emb.items()}
        grads.update({f"rnn.{k}": v for k, v in g_rnn.items()})
        grads.update({f"out.{k}": v for k, v in g_out.items()})
        return grads

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
