"""Many-to-one: a sequence classifier.

ids (N, T) -> Embedding (N, T, E) -> deep, optionally bidirectional RNN -> pooled (N, F)
-> Dropout -> Linear -> logits (N, C).  Pooling is ``last`` (the last layer's final states:
the forward direction's state at each sequence's last valid step, the reverse direction's
after reading the whole sequence, concatenated), ``mean`` (mean of the outputs over the valid
steps) or ``max`` (their element-wise maximum).  F = K*H.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import _checks
from ..layers.basic import softmax, softmax_cross_entropy
from ._blocks import StackModel, length_mask
from .base import Config

POOLINGS = ("last", "mean", "max")


@dataclass
class ClassifierConfig(Config):
    vocab_size: int
    num_classes: int
    embed_dim: int = 32
    hidden_size: int = 64
    num_layers: int = 1
    cell: str = "lstm"
    bidirectional: bool = False
    pooling: str = "last"
    dropout: float = 0.0
    dtype: str = "float32"
    seed: int | None = 0

    positive = ("embed_dim", "hidden_size", "num_layers", "vocab_size", "num_classes")

    def check(self):
        _checks.check_choice(self.pooling, "pooling", POOLINGS)


class ClassOutputs:
    """Loss and predictions of a model whose ``forward(ids, lengths)`` gives (N, C) logits:
    shared by the recurrent and the convolutional classifier."""

    def loss(self, ids, lengths, labels, *, training=False, rng=None):
        """Mean cross-entropy over the batch -> ``(loss, grads)``."""
        logits, cache = self.forward(ids, lengths, training=training, rng=rng)
        loss, dlogits = softmax_cross_entropy(logits, np.asarray(labels))
        return loss, self.backward(dlogits, cache)

    def batch_loss(self, batch, *, training=False, rng=None):
        return self.loss(batch["ids"], batch["lengths"], batch["labels"], training=training, rng=rng)

    def predict_proba(self, ids, lengths=None) -> np.ndarray:
        """(N, C) class probabilities."""
        return softmax(self.forward(ids, lengths)[0])

    def predict(self, ids, lengths=None) -> np.ndarray:
        """(N,) most probable class ids."""
        return self.forward(ids, lengths)[0].argmax(axis=-1)


class SequenceClassifier(ClassOutputs, StackModel):
    """Sequence -> one label.  params: ``embed.weight``, ``rnn.*`` (torch names), ``out.*``."""

    config_class = ClassifierConfig
    kind = "classifier"

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = config.validate()
        self._build(config.num_classes, return_sequences=config.pooling != "last")

    @staticmethod
    def param_shapes(c: ClassifierConfig) -> dict:
        """Name -> shape of every parameter, from the config alone (nothing is allocated)."""
        return StackModel.stack_shapes(c, c.num_classes)

    def forward(self, ids, lengths=None, *, training=False, rng=None):
        """ids (N, T) ints, lengths (N,) or None -> ``(logits (N, C), cache)``."""
        rnn_out, lengths, rcache = self._read(ids, lengths, training, rng)
        pcache = None
        if self.config.pooling == "last":
            pooled = rnn_out
        elif self.config.pooling == "mean":
            pooled = rnn_out.sum(axis=1) / lengths[:, None].astype(self.dtype)
        else:
            m = length_mask(lengths, rnn_out.shape[1], bool)[..., None]
            masked = np.where(m, rnn_out, -np.inf)
            arg = masked.argmax(axis=1)  # (N, F)
            pooled = np.take_along_axis(rnn_out, arg[:, None, :], axis=1)[:, 0]
            pcache = arg
        logits, ocache = self._output(pooled, training, rng)
        return logits, (rcache, pcache, ocache, lengths, rnn_out.shape)

    def backward(self, dlogits, cache) -> dict:
        """Gradients of every parameter given dL/dlogits (N, C); keys like ``params``."""
        rcache, pcache, ocache, lengths, rshape = cache
        dpooled, gout = self._output_backward(dlogits, ocache)
        if self.config.pooling == "last":
            drnn = dpooled
        elif self.config.pooling == "mean":
            N, T, _ = rshape
            m = length_mask(lengths, T, self.dtype)[..., None]
            drnn = (dpooled / lengths[:, None].astype(self.dtype))[:, None, :] * m
        else:
            drnn = np.zeros(rshape, dtype=self.dtype)
            np.put_along_axis(drnn, pcache[:, None, :], dpooled[:, None, :], axis=1)
        return self._read_backward(drnn, rcache, gout)
