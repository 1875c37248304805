"""One-to-many: a conditional generator.

One input — a class id or a vector (N, Dc) — sets the decoder's initial state; the decoder
then writes a sequence one token at a time, each output fed back as the next input::

    cond -> one-hot (classes) or as is (vectors) (N, Dc)
         -> h0 = tanh(W_h cond + b_h) reshaped to (L, N, H)   [c0 = W_c cond + b_c for LSTM]
    [<bos>, y1 .. yM] -> Embedding -> RNN (from h0) -> Linear -> logits (N, M+1, V)
    targets [y1 .. yM, <eos>]

As in :mod:`.seq2seq`, ``<eos>`` doubles as the start symbol.  Shapes: N batch, M time,
Dc condition, E embedding, H hidden, L layers, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..layers.basic import Dropout, Embedding, Linear, log_softmax, softmax_cross_entropy
from ._blocks import TaskModel, check_common, check_ids, full_lengths, length_mask, make_rnn

# The ids rnnkit.data.Vocab gives its specials: <pad> = 0, <unk> = 1, <eos> = 2.
EOS = 2
PAD = 0


@dataclass
class GeneratorConfig:
    vocab_size: int
    num_classes: int = 0
    cond_dim: int = 0
    embed_dim: int = 32
    hidden_size: int = 64
    num_layers: int = 1
    cell: str = "lstm"
    dropout: float = 0.0
    max_len: int = 50
    dtype: str = "float32"
    seed: int | None = 0

    def validate(self):
        check_common(self)
        if (self.num_classes > 0) == (self.cond_dim > 0):
            raise ValueError("give exactly one of num_classes (class conditions) or cond_dim "
                             "(vector conditions)")
        for name in ("vocab_size", "max_len"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        return self

    @property
    def input_dim(self) -> int:
        return self.num_classes or self.cond_dim


class ConditionalGenerator(TaskModel):
    """Condition -> sequence.  params: ``cond_h.*`` (``cond_c.*``), ``embed.*``, ``rnn.*``,
    ``out.*``."""

    config_class = GeneratorConfig
    kind = "generator"

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.config = config.validate()
        c = config
        rng = np.random.default_rng(c.seed)
        dt = np.dtype(c.dtype)
        LH = c.num_layers * c.hidden_size
        self.cond_h = Linear(c.input_dim, LH, dtype=dt, seed=rng)
        self.blocks = {"cond_h": self.cond_h}
        if c.cell == "lstm":
            self.cond_c = Linear(c.input_dim, LH, dtype=dt, seed=rng)
            self.blocks["cond_c"] = self.cond_c
        self.embed = Embedding(c.vocab_size, c.embed_dim, dtype=dt, seed=rng)
        self.rnn = make_rnn(c, c.embed_dim, rng)
        self.drop = Dropout(c.dropout)
        self.out = Linear(c.hidden_size, c.vocab_size, dtype=dt, seed=rng)
        self.blocks.update({"embed": self.embed, "rnn": self.rnn, "out": self.out})

    @property
    def is_lstm(self) -> bool:
        return self.config.cell == "lstm"

    def condition_vectors(self, cond) -> np.ndarray:
        """Class ids (N,) -> one-hot (N, C); vectors (N, Dc) pass through (cast)."""
        cond = np.asarray(cond)
        c = self.config
        if c.num_classes:
            if cond.ndim != 1 or cond.dtype.kind not in "iu":
                raise ValueError(f"class conditions must be integer ids (N,), got "
                                 f"{cond.dtype.name} of shape {cond.shape}")
            if cond.size and (cond.min() < 0 or cond.max() >= c.num_classes):
                raise ValueError(f"class ids must lie in [0, {c.num_classes})")
            onehot = np.zeros((len(cond), c.num_classes), dtype=self.dtype)
            onehot[np.arange(len(cond)), cond] = 1
            return onehot
        if cond.ndim != 2 or cond.shape[1] != c.cond_dim:
            raise ValueError(f"vector conditions must have shape (N, {c.cond_dim}), got {cond.shape}")
        return cond.astype(self.dtype)

    def initial_state(self, cond):
        """cond -> ``(state (L, N, H) or (h, c), cache)``."""
        v = self.condition_vectors(cond)
        N, L, H = len(v), self.config.num_layers, self.config.hidden_size
        zh, hcache = self.cond_h.forward(v)
        h0 = np.tanh(zh)
        to_state = lambda a: np.ascontiguousarray(a.reshape(N, L, H).transpose(1, 0, 2))
        if self.is_lstm:
            zc, ccache = self.cond_c.forward(v)
            return (to_state(h0), to_state(zc)), (hcache, h0, ccache)
        return to_state(h0), (hcache, h0, None)

    def _initial_backward(self, dstate, cache) -> dict:
        hcache, h0, ccache = cache
        N = h0.shape[0]
        from_state = lambda d: d.transpose(1, 0, 2).reshape(N, -1)
        dh = dstate[0] if self.is_lstm else dstate
        _, gh = self.cond_h.backward(from_state(dh) * (1.0 - h0 * h0), hcache)
        grads = self.prefixed("cond_h", gh)
        if self.is_lstm:
            _, gc = self.cond_c.backward(from_state(dstate[1]), ccache)
            grads.update(self.prefixed("cond_c", gc))
        return grads

    def forward(self, cond, tgt_in, lengths=None, *, training=False, rng=None):
        """Teacher-forced logits (N, M, V) for inputs tgt_in (N, M) (starting with ``<eos>``)."""
        state, scache = self.initial_state(cond)
        tgt_in = check_ids(tgt_in, "tgt_in")
        lengths = full_lengths(tgt_in, lengths)
        y, ecache = self.embed.forward(tgt_in)
        h, _, rcache = self.rnn.forward(y, lengths, state, training=training, rng=rng)
        hd, dcache = self.drop.forward(h, training=training, rng=rng)
        logits, ocache = self.out.forward(hd)
        return logits, (scache, ecache, rcache, dcache, ocache)

    def backward(self, dlogits, cache) -> dict:
        scache, ecache, rcache, dcache, ocache = cache
        dhd, gout = self.out.backward(dlogits, ocache)
        dh, _ = self.drop.backward(dhd, dcache)
        dy, dstate, grnn = self.rnn.backward(dh, rcache)
        _, gemb = self.embed.backward(dy, ecache)
        grads = self._initial_backward(dstate, scache)
        grads.update(self.prefixed("embed", gemb))
        grads.update(self.prefixed("rnn", grnn))
        grads.update(self.prefixed("out", gout))
        return {k: grads[k] for k in self.params}

    def loss(self, cond, targets, *, training=False, rng=None):
        """Mean token cross-entropy -> ``(loss, grads)``; targets: N id sequences without
        ``<eos>``."""
        from .seq2seq import Seq2Seq

        tin, tout, tlen = Seq2Seq.decoder_io(targets)
        logits, cache = self.forward(cond, tin, tlen, training=training, rng=rng)
        mask = length_mask(tlen, tin.shape[1], self.dtype)
        loss, dlogits = softmax_cross_entropy(logits, tout, mask)
        return loss, self.backward(dlogits, cache)

    def batch_loss(self, batch, *, training=False, rng=None):
        return self.loss(batch["cond"], batch["targets"], training=training, rng=rng)

    def generate(self, cond, rng=None, *, temperature=1.0, max_len=None, greedy=False) -> list:
        """One sequence per condition, each token sampled (or, with ``greedy``, the most
        probable one) and fed back: a list of N id lists without ``<eos>``.

        Sampling needs an explicit ``numpy.random.Generator`` ``rng``.
        """
        if not greedy:
            if not isinstance(rng, np.random.Generator):
                raise ValueError("sampling needs an explicit numpy Generator (rng=...)")
            if not temperature > 0:
                raise ValueError(f"temperature must be > 0, got {temperature}")
        state, _ = self.initial_state(cond)
        N = len(np.asarray(cond))
        prev = np.full(N, EOS, dtype=np.int64)
        out = [[] for _ in range(N)]
        done = np.zeros(N, dtype=bool)
        for _ in range(int(max_len or self.config.max_len)):
            y, _ = self.embed.forward(prev[:, None])
            h, state, _ = self.rnn.forward(y, None, state)
            logits, _ = self.out.forward(h[:, 0])
            logits = logits.astype(np.float64)
            if greedy:
                prev = logits.argmax(axis=-1)
            else:
                p = np.exp(log_softmax(logits / temperature))
                # Inverse-CDF sampling: one uniform draw per row from the given generator.
                u = rng.random(N)[:, None]
                prev = np.minimum((np.cumsum(p, axis=-1) < u).sum(axis=-1), p.shape[1] - 1)
            for i in np.flatnonzero(~done):
                if prev[i] == EOS:
                    done[i] = True
                else:
                    out[i].append(int(prev[i]))
            if done.all():
                break
        return out
