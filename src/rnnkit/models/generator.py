"""One-to-many: a conditional generator.

One input — a class id or a vector (N, Dc) — sets the decoder's initial state; the decoder
then writes a sequence one token at a time, each output fed back as the next input::

    cond -> one-hot (classes) or as is (vectors) (N, Dc)
         -> h0 = tanh(W_h cond + b_h) reshaped to (L, N, H)   [c0 = W_c cond + b_c for LSTM]
    [<bos>, y1 .. yM] -> Embedding -> RNN (from h0) -> Linear -> logits (N, M+1, V)
    targets [y1 .. yM, <eos>]

As in :mod:`.seq2seq`, ``<eos>`` doubles as the start symbol; the bridge is seq2seq's
(:class:`~rnnkit.layers.decoder.StateBridge`).  Shapes: N batch, M time,
Dc condition, E embedding, H hidden, L layers, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import decode
from ..layers.decoder import StateBridge
from .base import EOS, Config, recurrent_shapes
from .target import TargetDecoderModel


@dataclass
class GeneratorConfig(Config):
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

    positive = ("embed_dim", "hidden_size", "num_layers", "vocab_size", "max_len")
    file_limits = {"max_len": 100_000}

    def check(self):
        if (self.num_classes > 0) == (self.cond_dim > 0):
            raise ValueError("give exactly one of num_classes (class conditions) or cond_dim "
                             "(vector conditions)")

    @property
    def input_dim(self) -> int:
        return self.num_classes or self.cond_dim


class ConditionalGenerator(TargetDecoderModel):
    """Condition -> sequence.  params: ``cond_h.*`` (``cond_c.*``), ``embed.*``, ``rnn.*``,
    ``out.*``."""

    config_class = GeneratorConfig
    kind = "generator"

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.config = c = config.validate()
        rng = np.random.default_rng(c.seed)
        self.bridge = StateBridge(c.input_dim, c.num_layers * c.hidden_size, lstm=self.is_lstm,
                                  rng=rng, dtype=c.dtype, names=("cond_h", "cond_c"))
        self.dec = self._decoder(c, rng, c.vocab_size, ("embed", "rnn", "out"))
        self.embed, self.rnn, self.out = self.dec.embed, self.dec.rnn, self.dec.out
        self.blocks = {**self.bridge.blocks, **self.dec.blocks}

    @staticmethod
    def param_shapes(c: GeneratorConfig) -> dict:
        """Name -> shape of every parameter, from the config alone (nothing is allocated)."""
        LH = c.num_layers * c.hidden_size
        shapes = {}
        for b in ("cond_h", "cond_c") if c.cell == "lstm" else ("cond_h",):
            shapes.update({f"{b}.weight": (LH, c.input_dim), f"{b}.bias": (LH,)})
        return {**shapes, "embed.weight": (c.vocab_size, c.embed_dim),
                **recurrent_shapes("rnn", c.embed_dim, c.hidden_size, c.num_layers, c.cell, False),
                "out.weight": (c.vocab_size, c.hidden_size), "out.bias": (c.vocab_size,)}

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
        """cond -> ``(state (L, N, H) or (h, c), cache)``: the bridge's (N, L*H) outputs
        laid out per layer."""
        v = self.condition_vectors(cond)
        N, L, H = len(v), self.config.num_layers, self.config.hidden_size
        outs, cache = self.bridge.forward((v, v))
        states = tuple(np.ascontiguousarray(a.reshape(N, L, H).transpose(1, 0, 2)) for a in outs)
        return (states if self.is_lstm else states[0]), cache

    def forward(self, cond, tgt_in, lengths=None, *, training=False, rng=None):
        """Teacher-forced logits (N, M, V) for inputs tgt_in (N, M) (starting with ``<eos>``)."""
        state, scache = self.initial_state(cond)
        logits, dcache = self._teacher_forced(state, tgt_in, lengths, training, rng)
        return logits, (scache, dcache)

    def backward(self, dlogits, cache) -> dict:
        scache, dcache = cache
        grads, dstate = self.dec.backward(dlogits, list(dcache))
        ds = dstate if self.is_lstm else (dstate,)
        N = ds[0].shape[1]
        _, gbridge = self.bridge.backward([d.transpose(1, 0, 2).reshape(N, -1) for d in ds],
                                          scache)
        grads.update(gbridge)
        return {k: grads[k] for k in self.params}

    def loss(self, cond, targets, *, training=False, rng=None):
        """Mean token cross-entropy -> ``(loss, grads)``; targets: N id sequences without
        ``<eos>``."""
        return self._loss(lambda tin, tlen: self.forward(cond, tin, tlen, training=training,
                                                         rng=rng), targets)

    def batch_loss(self, batch, *, training=False, rng=None):
        return self.loss(batch["cond"], batch["targets"], training=training, rng=rng)

    def generate(self, cond, rng=None, *, temperature=1.0, max_len=None, greedy=False) -> list:
        """One sequence per condition, each token sampled (or, with ``greedy``, the most
        probable one) and fed back: a list of N id lists without ``<eos>``.

        Sampling needs an explicit ``numpy.random.Generator`` ``rng``; it draws through
        :func:`rnnkit.decode.sample`, like a language model's.
        """
        if not greedy:
            if not isinstance(rng, np.random.Generator):
                raise ValueError("sampling needs an explicit numpy Generator (rng=...)")
            if not temperature > 0:
                raise ValueError(f"temperature must be > 0, got {temperature}")
        state, _ = self.initial_state(cond)
        logp, state = self._start(state, len(np.asarray(cond)))
        max_len = int(max_len or self.config.max_len)
        if greedy:
            hyps = decode.greedy(self.dec.step, logp, state, EOS, max_len)
        else:
            hyps = decode.sample(self.dec.step, logp, state, rng, EOS, max_len,
                                 temperature=temperature)
        return [h.tokens for h in hyps]
