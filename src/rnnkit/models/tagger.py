"""Many-to-many, same length: a sequence tagger (one label per step).

ids (N, T) -> Embedding (N, T, E) -> deep RNN, bidirectional by choice -> (N, T, F)
-> Dropout -> Linear -> logits (N, T, C).  Padded steps are masked out of the loss.
A bidirectional tagger sees the whole sentence before labelling a step; a unidirectional
one only its left context (so it can tag a stream as it arrives).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..layers.basic import softmax_cross_entropy
from ._blocks import StackModel, check_ids, full_lengths, length_mask
from .base import Config


@dataclass
class TaggerConfig(Config):
    vocab_size: int
    num_tags: int
    embed_dim: int = 32
    hidden_size: int = 64
    num_layers: int = 1
    cell: str = "lstm"
    bidirectional: bool = True
    dropout: float = 0.0
    dtype: str = "float32"
    seed: int | None = 0

    positive = ("embed_dim", "hidden_size", "num_layers", "vocab_size", "num_tags")


class SequenceTagger(StackModel):
    """Sequence -> one tag per step.  params: ``embed.weight``, ``rnn.*``, ``out.*``."""

    config_class = TaggerConfig
    kind = "tagger"

    def __init__(self, config: TaggerConfig):
        super().__init__()
        self.config = config.validate()
        self._build(config.num_tags)

    @staticmethod
    def param_shapes(c: TaggerConfig) -> dict:
        """Name -> shape of every parameter, from the config alone (nothing is allocated)."""
        return StackModel.stack_shapes(c, c.num_tags)

    def forward(self, ids, lengths=None, *, training=False, rng=None):
        """ids (N, T), lengths (N,) -> ``(logits (N, T, C), cache)``."""
        h, _, rcache = self._read(ids, lengths, training, rng)
        logits, ocache = self._output(h, training, rng)
        return logits, (rcache, ocache)

    def backward(self, dlogits, cache) -> dict:
        rcache, ocache = cache
        dh, gout = self._output_backward(dlogits, ocache)
        return self._read_backward(dh, rcache, gout)

    def loss(self, ids, lengths, tags, *, training=False, rng=None):
        """Mean cross-entropy over the valid steps -> ``(loss, grads)``; tags (N, T) ints."""
        ids = check_ids(ids)
        lengths = full_lengths(ids, lengths)
        logits, cache = self.forward(ids, lengths, training=training, rng=rng)
        mask = length_mask(lengths, ids.shape[1], self.dtype)
        loss, dlogits = softmax_cross_entropy(logits, np.asarray(tags), mask)
        return loss, self.backward(dlogits, cache)

    def batch_loss(self, batch, *, training=False, rng=None):
        return self.loss(batch["ids"], batch["lengths"], batch["tags"], training=training, rng=rng)

    def predict(self, ids, lengths=None) -> list:
        """Most probable tag ids per sequence: a list of N int arrays of each one's length."""
        ids = check_ids(ids)
        lengths = full_lengths(ids, lengths)
        best = self.forward(ids, lengths)[0].argmax(axis=-1)
        return [best[i, : lengths[i]] for i in range(len(lengths))]
