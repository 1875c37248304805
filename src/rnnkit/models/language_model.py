"""Recurrent language model: Embedding -> stacked RNN/GRU/LSTM -> output head -> softmax.

P(y<1>, ..., y<T>) = prod_t P(y<t> | y<1..t-1>), trained with cross-entropy.  Shapes: N batch,
T time, E embedding, H hidden, L layers, V vocabulary.

Parameters form one flat dict with dotted names — ``embed.weight`` (V, E),
``rnn.weight_ih_l0`` ... (PyTorch's names under ``rnn.``), ``out.weight`` (V, H),
``out.bias`` (V,) — the keys :meth:`LanguageModel.backward` returns gradients under.
Dropout (Zaremba et al. 2014) acts on the non-recurrent connections only: the embeddings,
between layers, and the last layer's output, in training only.

Output heads (:mod:`rnnkit.layers.heads`), chosen by the config: ``softmax="full"`` (the
Linear above), ``softmax="adaptive"`` (Grave et al. 2017; ``out.head.weight``,
``out.head.bias``, ``out.tail.{i}.proj``, ``out.tail.{i}.out``) and ``tie_embeddings=True``
(the output weight is ``embed.weight`` itself, saved once; ``out.proj`` (E, H) when E != H,
``out.bias``).  Configs written before these fields existed load as the full softmax.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..layers.adaptive import check_cutoffs, default_cutoffs
from ..layers.basic import log_softmax, softmax_cross_entropy
from ..layers.decoder import Decoder
from ..layers.heads import AdaptiveHead, FullSoftmax, TiedSoftmax
from .. import _checks
from ..sparse_grad import RowSparse
from .base import Config, Model, recurrent_shapes
from .lean_step import LeanStep

SOFTMAXES = ("full", "adaptive")

# Generation projects the embedding through layer 0 once (a V x G*H table) only up to this V.
TABLE_MAX_V = 4096


def _xent_inplace(z, targets, bias=None):
    """Mean cross-entropy of rows z + bias (M, V) against targets (M,); z becomes dL/dz.
    Returns the loss, or ``(loss, dL/dbias)`` when a bias (V,) is given."""
    from .. import kernels

    M = z.shape[0]
    if kernels.available() and z.flags.c_contiguous:
        from ..kernels.loss import xent

        got = xent(z, targets, z.dtype.type(1.0 / M), bias)
        return got / M if bias is None else (got[0] / M, got[1])
    if bias is not None:
        z += bias
    loss, dz = softmax_cross_entropy(z, targets)
    z[...] = dz
    return loss if bias is None else (loss, z.sum(axis=0))


def _log_softmax_inplace(z) -> None:
    from .. import kernels

    if kernels.available() and z.flags.c_contiguous:
        from ..kernels.loss import log_softmax as _kernel

        _kernel(z, z)
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
    # Output layer; the defaults are the layer every older model file has.
    softmax: str = "full"
    cutoffs: list | None = None
    div_value: float = 4.0
    tie_embeddings: bool = False

    positive = ("vocab_size", "num_layers", "hidden_size", "embed_dim")

    def check(self) -> None:
        _checks.check_choice(self.softmax, "softmax", SOFTMAXES)
        if self.softmax == "adaptive":
            if self.cutoffs is not None:
                self.cutoffs = check_cutoffs(self.cutoffs, self.vocab_size)
            if isinstance(self.div_value, bool) or not isinstance(self.div_value, (int, float)) \
                    or not self.div_value >= 1.0:
                raise ValueError(f"div_value must be a number >= 1, got {self.div_value!r}")
            n = len(self.cutoffs) if self.cutoffs else 2
            if self.hidden_size // (self.div_value ** n) < 1:
                raise ValueError(f"adaptive softmax: hidden size {self.hidden_size} with "
                                 f"div_value {self.div_value} leaves a cluster projection of "
                                 f"size 0; use fewer cutoffs or a smaller div_value")
        elif self.cutoffs is not None:
            raise ValueError("cutoffs belong to the adaptive softmax (softmax='adaptive')")
        if not isinstance(self.tie_embeddings, bool):
            raise ValueError(f"tie_embeddings must be true or false, got {self.tie_embeddings!r}")
        if self.tie_embeddings and self.softmax != "full":
            raise ValueError("tied embeddings need the full softmax: the adaptive softmax's "
                             "clusters have no (V, E) weight to share with the embedding")

    def head_cutoffs(self) -> list:
        """The adaptive softmax's cutoffs: the config's, or chosen for Zipf-like frequencies
        (a Vocab's ids are frequency-sorted) when the config names none."""
        if self.cutoffs is not None:
            return list(self.cutoffs)
        zipf = 1.0 / np.arange(1, self.vocab_size + 1)
        return default_cutoffs(zipf, self.hidden_size, self.div_value)


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
        # The decoder drew its Linear first either way, so a full-softmax model's weights for
        # a seed are what they always were; another head replaces it.
        c = config
        if c.tie_embeddings:
            self.out = TiedSoftmax(self.embed.params["weight"], c.hidden_size, dtype=c.dtype,
                                   seed=rng)
        elif c.softmax == "adaptive":
            self.out = AdaptiveHead(c.hidden_size, c.vocab_size, c.head_cutoffs(),
                                    div_value=c.div_value, dtype=c.dtype, seed=rng)
        self.full = not (c.tie_embeddings or c.softmax == "adaptive")
        self.head = FullSoftmax.of_linear(self.out) if self.full else self.out
        if not self.full:
            self.blocks = {"embed": self.embed, "rnn": self.rnn, "out": self.out}
        # Word level: return the embedding's gradient as the batch's rows only (RowSparse),
        # which the optimizers update without walking all V rows.  Off by default: with Adam
        # that is torch.optim.SparseAdam's rule, not dense Adam's (see rnnkit.sparse_grad).
        self.sparse_embedding_grad = False

    @staticmethod
    def param_shapes(c: LMConfig) -> dict:
        """Name -> shape of every parameter, from the config alone (nothing is allocated)."""
        shapes = {"embed.weight": (c.vocab_size, c.embed_dim),
                  **recurrent_shapes("rnn", c.embed_dim, c.hidden_size, c.num_layers, c.cell,
                                     False)}
        V, E, H = c.vocab_size, c.embed_dim, c.hidden_size
        if c.tie_embeddings:
            if E != H:
                shapes["out.proj"] = (E, H)
            shapes["out.bias"] = (V,)
        elif c.softmax == "adaptive":
            cut = c.head_cutoffs()
            bounds = cut + [V]
            shapes["out.head.weight"] = (cut[0] + len(cut), H)
            shapes["out.head.bias"] = (cut[0] + len(cut),)
            for i in range(len(cut)):
                h = int(H // (c.div_value ** (i + 1)))
                shapes[f"out.tail.{i}.proj"] = (h, H)
                shapes[f"out.tail.{i}.out"] = (bounds[i + 1] - bounds[i], h)
        else:
            shapes.update({"out.weight": (V, H), "out.bias": (V,)})
        return shapes

    def zero_state(self, N: int):
        return self.rnn.zero_state(N)

    # ---- training graph --------------------------------------------------------------
    def forward(self, ids, state=None, *, training=False, rng=None, keep_cache=True):
        """ids (N, T) ints -> logits (N, T, V), final state, cache (the decoder's, with the
        embedding lookup fused into the first layer's input product when no dropout acts)."""
        ids = np.asarray(ids)
        if ids.ndim != 2:
            raise ValueError(f"ids must have 2 dimensions (N, T), got shape {ids.shape}")
        if not self.full:
            # Another head has no logits to return: its normalised log-probabilities stand in
            # (log_softmax of them is themselves); its training graph is loss_and_grads.
            if keep_cache:
                raise ValueError(f"forward/backward through (N, T, V) logits exist for the "
                                 f"full softmax; a model with the {self._head_name()} output "
                                 "trains with loss_and_grads")
            lp, state = self.log_probs(ids, state)
            return lp, state, None
        return self.decoder.forward(ids, None, state, training=training, rng=rng,
                                    keep_cache=keep_cache, lookup=True)

    def backward(self, dlogits, cache, dstate=None) -> dict:
        """Gradients keyed like ``params`` from dL/dlogits (N, T, V)."""
        return self.decoder.backward(dlogits, list(cache), dstate)[0]

    def _head_name(self) -> str:
        return "tied" if self.config.tie_embeddings else self.config.softmax

    def loss_and_grads(self, x, y, state=None, *, training=True, rng=None):
        """Mean cross-entropy (nats/token) of targets y (N, T) given inputs x (N, T).

        Returns ``(loss, grads, final_state)``; the final state is what a stateful trainer
        carries into the next chunk (truncated BPTT: no gradient flows back through it).
        """
        if not self.full or self.sparse_embedding_grad:
            return self._head_loss_and_grads(x, y, state, training=training, rng=rng)
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
        ids, y = self._check_xy(x, y)
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
        z = h2 @ W.T  # (T*N, V) logits without the bias, time-major
        yt = np.ascontiguousarray(y.T, dtype=np.int64).reshape(-1)
        db = None
        if b is None:
            loss = _xent_inplace(z, yt)  # z is now dL/dlogits
        else:  # the bias added and its gradient summed inside the loss's passes
            loss, db = _xent_inplace(z, yt, b)
        g_out = {"weight": z.T @ h2}
        if db is not None:
            g_out["bias"] = db
        del h2
        dh = (z @ W).reshape(T, N, H)
        del z
        de, _, g_rnn = self.rnn.backward(dh, rcache, release=True, time_major=True)
        return loss, self._grads(de, g_rnn, g_out), new_state

    @staticmethod
    def _grads(de, g_rnn, g_out) -> dict:
        """The flat gradient dict (keys like ``params``) of the embedding, stack and head."""
        grads = {"embed.weight": de}
        grads.update({f"rnn.{k}": v for k, v in g_rnn.items()})
        grads.update({f"out.{k}": v for k, v in g_out.items()})
        return grads

    def _check_ids(self, ids) -> np.ndarray:
        """Token ids (N, T) in [0, V), else a one-line ValueError."""
        ids = np.asarray(ids)
        if ids.ndim != 2:
            raise ValueError(f"ids must have 2 dimensions (N, T), got shape {ids.shape}")
        return self.embed.check_ids(ids)

    def _check_xy(self, x, y):
        ids = self._check_ids(x)
        y = np.asarray(y)
        if y.shape != ids.shape:
            raise ValueError(f"targets must have shape {ids.shape}, got {y.shape}")
        return ids, y

    def _head_loss_and_grads(self, x, y, state, *, training, rng):
        """The training step through any head (time-major rows M = T*N), with dropout if
        configured, the embedding's gradient dense or row-sparse, and a tied weight's two
        gradients summed."""
        ids, y = self._check_xy(x, y)
        N, T = ids.shape
        V = self.config.vocab_size
        W = self.embed.params["weight"]
        use_drop = training and self.config.dropout > 0
        if use_drop and rng is None:
            raise ValueError("training with dropout needs an explicit numpy Generator (rng=...)")
        ids_tm = np.ascontiguousarray(ids.T)
        # The embedding-projection table pays only when V < N*T rows would be projected
        # (character level); at word level the batch's rows are looked up instead.
        table = not use_drop and not self.sparse_embedding_grad and V < N * T
        d1 = None
        if table:
            h, new_state, rcache = self.rnn.forward(ids, None, state, embedding=W, time_major=True)
        else:
            e = W[ids]  # (N, T, E)
            if use_drop:
                e, d1 = self.drop.forward(e, training=True, rng=rng)
            h, new_state, rcache = self.rnn.forward(e, None, state, training=use_drop, rng=rng,
                                                    time_major=True)
        Tt, Nn, H = h.shape
        h2 = h.reshape(Tt * Nn, H)
        d2 = None
        if use_drop:
            h2, d2 = self.drop.forward(h2, training=True, rng=rng)
        yt = np.ascontiguousarray(y.T, dtype=np.int64).reshape(-1)
        M = yt.size
        loss, dh2, g_out = self.head.loss_and_grads(h2, yt, 1.0 / M)
        del h2, h
        if d2 is not None:
            dh2, _ = self.drop.backward(dh2, d2)
        de, _, g_rnn = self.rnn.backward(dh2.reshape(Tt, Nn, H), rcache, release=True,
                                         time_major=True)
        if not table:  # de is dL/de (T, N, E), time-major
            if d1 is not None:
                de, _ = self.drop.backward(de, d1.transpose(1, 0, 2))
            de = RowSparse.from_ids(ids_tm, de, V)
            if not self.sparse_embedding_grad:
                de = np.asarray(de)
        shared = g_out.pop("shared", None)
        if shared is not None:  # one weight used twice: its gradient is the sum of both uses
            if isinstance(de, RowSparse):
                shared[de.rows] += de.values
            else:
                shared += de
            de = shared
        return loss, self._grads(de, g_rnn, g_out), new_state

    # ---- inference -------------------------------------------------------------------
    def _hidden(self, ids, state):
        """Last layer's outputs as time-major rows (T*N, H), and the final state."""
        ids = self._check_ids(ids)
        N, T = ids.shape
        W = self.embed.params["weight"]
        if W.shape[0] < N * T:  # the table lookup pays (character level)
            h, state, _ = self.rnn.forward(ids, None, state, embedding=W, keep_cache=False,
                                           time_major=True)
        else:
            h, state, _ = self.rnn.forward(W[ids], None, state, keep_cache=False,
                                           time_major=True)
        return h.reshape(T * N, -1), state

    def target_log_probs(self, x, y, state=None):
        """log P(y | inputs) (N, T) float64 for inputs x (N, T), and the final state: what
        evaluation needs, without the (N, T, V) table of log-probabilities (the full
        softmax's normaliser is computed block by block, the adaptive one's per cluster)."""
        ids, y = self._check_xy(x, y)
        N, T = ids.shape
        h2, state = self._hidden(ids, state)
        yt = np.ascontiguousarray(y.T, dtype=np.int64).reshape(-1)
        lp = self.head.target_log_prob(h2, yt)
        return np.ascontiguousarray(lp.reshape(T, N).T), state

    def log_probs(self, ids, state=None):
        """Log-probabilities (N, T, V) of the next token after each input, and the final state."""
        if not self.full:
            N, T = np.shape(ids)
            h2, state = self._hidden(ids, state)
            lp = self.head.log_prob(h2)
            return np.ascontiguousarray(lp.reshape(T, N, -1).transpose(1, 0, 2)), state
        ids = self._check_ids(ids)
        h, state, _ = self.rnn.forward(ids, None, state, embedding=self.embed.params["weight"],
                                       keep_cache=False, time_major=True)
        T, N, H = h.shape
        z, _ = self.out.forward(h.reshape(T * N, H))  # (T*N, V), time-major
        _log_softmax_inplace(z)
        V = z.shape[1]
        return np.ascontiguousarray(z.reshape(T, N, V).transpose(1, 0, 2)), state

    def stepper(self, threads=1):
        """A function ``(ids_t (N,), state) -> (log-probabilities (N, V), state)`` for
        generation: one token at a time through every layer with nothing kept for backward,
        the embedding-projection tables made once where they pay (V <= TABLE_MAX_V: a
        character vocabulary; a word vocabulary's V x 4H table would cost more to build than
        a whole sample's lookups).  Valid until the weights change.

        ``threads``: 1 runs each token on one thread; n > 1 splits it over n threads, and
        "auto" lets :func:`rnnkit.kernels.blas.generation_threads` choose from the weights'
        size, the cores and the load (``RNNKIT_STEP_THREADS`` overrides both).  The split
        saves ~5-20 us a token at 2 x 256 (bench/RESULTS.md) but its kernel compiles once
        for ~6 s: worth it only in step-by-step loops of many thousands of tokens.

        Where the one-call kernel applies, ``step.compiled`` is its :class:`LeanStep` (else
        None): :func:`rnnkit.decode.sample` runs its whole loop there, on one thread, with
        no Python between tokens."""
        if self.rnn.bidirectional:
            raise ValueError("a language model generates left to right: unidirectional only")
        if threads != "auto":
            _checks.check_positive_int(threads, "threads")
        V = self.config.vocab_size
        W = self.embed.params["weight"]
        tables = self.rnn.input_tables(W) if V <= TABLE_MAX_V else None
        lean = self._lean_step(tables[0], threads) if self.full and tables is not None else None

        def step(ids_t, state=None):
            ids_t = np.asarray(ids_t).reshape(-1)
            if lean is not None and 0 < ids_t.size <= lean.max_rows:
                return lean(ids_t, state)
            if ids_t.size and (ids_t.min() < 0 or ids_t.max() >= V):
                raise ValueError(f"token ids must lie in [0, {V})")
            if tables is None:
                h, state = self.rnn.step(W[ids_t], state)
            else:
                h, state = self.rnn.step(ids_t, state, input_tables=tables)
            if not self.full:
                return self.head.log_prob(h), state  # full, normalised (sampling, beams)
            logits, _ = self.out.forward(h)
            return log_softmax(logits), state

        step.compiled = lean  # rnnkit.decode.sample runs its whole loop there where it can
        return step

    def _lean_step(self, table, threads=1):
        """The whole model for one token in one compiled call (:class:`LeanStep`), or None
        where that kernel does not apply (NumPy backend, the notes' GRU form)."""
        rnn = self.rnn
        if rnn.backend != "numba" or (rnn.mode == "gru" and not rnn.reset_after):
            return None
        return LeanStep(self, table, threads)

    def step(self, ids_t, state=None):
        """One step: ids_t (N,) -> log-probabilities (N, V), new state (see :meth:`stepper`)."""
        return self.stepper()(ids_t, state)
