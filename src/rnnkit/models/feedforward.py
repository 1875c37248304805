"""One-to-one: a plain feed-forward network on the same building blocks.

x (N, D) -> [Linear -> activation -> Dropout] * len(hidden_sizes) -> Linear -> logits (N, C).
It is the degenerate topology of the notes' list (T = 1, no recurrence) and shares the
``Linear`` / ``Dropout`` / loss blocks and the training loop with the recurrent models.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..layers.basic import Dropout, Linear, softmax, softmax_cross_entropy
from .. import _checks
from .base import Config, Model

ACTIVATIONS = ("tanh", "relu")


@dataclass
class FeedForwardConfig(Config):
    input_dim: int
    num_classes: int
    hidden_sizes: list = field(default_factory=lambda: [64])
    activation: str = "relu"
    dropout: float = 0.0
    dtype: str = "float32"
    seed: int | None = 0

    positive = ("input_dim", "num_classes")

    def check(self):
        _checks.check_choice(self.activation, "activation", ACTIVATIONS)
        if not isinstance(self.hidden_sizes, (list, tuple)):
            raise ValueError(f"hidden_sizes must be a list of sizes, got {self.hidden_sizes!r}")
        for v in self.hidden_sizes:
            try:
                _checks.check_positive_int(v, "hidden size")
            except (TypeError, ValueError):
                raise ValueError(f"layer sizes must be positive integers, got {v!r}") from None

    @property
    def sizes(self) -> list:
        return [self.input_dim, *self.hidden_sizes, self.num_classes]


class FeedForward(Model):
    """MLP classifier.  params: ``fc0.*`` .. ``fc{k}.*`` (the last one is the output)."""

    config_class = FeedForwardConfig
    kind = "feedforward"

    def __init__(self, config: FeedForwardConfig):
        super().__init__()
        self.config = config.validate()
        c = config
        rng = np.random.default_rng(c.seed)
        sizes = c.sizes
        self.layers = [Linear(a, b, dtype=np.dtype(c.dtype), seed=rng)
                       for a, b in zip(sizes[:-1], sizes[1:])]
        self.drop = Dropout(c.dropout)
        self.blocks = {f"fc{i}": layer for i, layer in enumerate(self.layers)}

    @staticmethod
    def param_shapes(c: FeedForwardConfig) -> dict:
        """Name -> shape of every parameter, from the config alone (nothing is allocated)."""
        shapes = {}
        for i, (a, b) in enumerate(zip(c.sizes[:-1], c.sizes[1:])):
            shapes.update({f"fc{i}.weight": (b, a), f"fc{i}.bias": (b,)})
        return shapes

    def forward(self, x, *, training=False, rng=None):
        """x (N, D) -> ``(logits (N, C), cache)``."""
        x = np.asarray(x, dtype=self.dtype)
        caches = []
        for i, layer in enumerate(self.layers):
            x, lc = layer.forward(x)
            if i == len(self.layers) - 1:
                caches.append((lc, None, None))
                break
            x = np.tanh(x) if self.config.activation == "tanh" else np.maximum(x, 0)
            act = x
            x, dc = self.drop.forward(x, training=training, rng=rng)
            caches.append((lc, act, dc))
        return x, caches

    def backward(self, dlogits, cache) -> dict:
        grads = {}
        d = dlogits
        for i in range(len(self.layers) - 1, -1, -1):
            lc, act, dc = cache[i]
            if act is not None:
                d, _ = self.drop.backward(d, dc)
                d = d * (1.0 - act * act) if self.config.activation == "tanh" else d * (act > 0)
            d, g = self.layers[i].backward(d, lc)
            grads.update(self.prefixed(f"fc{i}", g))
        return {k: grads[k] for k in self.params}

    def loss(self, x, labels, *, training=False, rng=None):
        logits, cache = self.forward(x, training=training, rng=rng)
        loss, dlogits = softmax_cross_entropy(logits, np.asarray(labels))
        return loss, self.backward(dlogits, cache)

    def batch_loss(self, batch, *, training=False, rng=None):
        return self.loss(batch["x"], batch["labels"], training=training, rng=rng)

    def predict_proba(self, x) -> np.ndarray:
        return softmax(self.forward(x)[0])

    def predict(self, x) -> np.ndarray:
        return self.forward(x)[0].argmax(axis=-1)
