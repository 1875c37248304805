"""Many-to-one with a temporal convolution instead of a recurrence: the notes' open question.

ids (N, T) -> Embedding (N, T, E) -> L x [Conv1D ("same" padding, dilation b**l) -> ReLU]
-> pooled over the valid steps (N, C) -> Dropout -> Linear -> logits (N, K classes).

Padding never leaks: every layer's input is zeroed past each sequence's length, so with
"same" padding a padded sequence sees exactly the zeros it would see alone, and pooling
(``max``, or ``mean``) reads only valid steps.  The receptive field is
1 + (kernel_size - 1) * sum(b**l): a dependency longer than that is out of its reach, which
is what the long-range example measures against the recurrent classifier.

Same interface as :class:`rnnkit.models.SequenceClassifier` (``batch_loss``, ``predict``,
``predict_proba``, flat ``params`` with dotted names, ``param_shapes(config)``), so the same
training loop, ``rnnkit classify train --model conv`` and the same model files serve it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import _checks
from ..layers.basic import Dropout, Embedding, Linear
from ..layers.conv import Conv1D
from .base import Config, Model
from .classifier import ClassOutputs

POOLINGS = ("max", "mean")


@dataclass
class ConvClassifierConfig(Config):
    vocab_size: int
    num_classes: int
    embed_dim: int = 32
    hidden_size: int = 64  # channels of every convolution
    num_layers: int = 2
    kernel_size: int = 5
    dilation_base: int = 2  # layer l has dilation dilation_base ** l
    pooling: str = "max"
    dropout: float = 0.0
    dtype: str = "float32"
    seed: int | None = 0
    architecture: str = "conv"  # tells a model file's reader which classifier this is

    positive = ("vocab_size", "num_classes", "embed_dim", "hidden_size", "num_layers",
                "kernel_size", "dilation_base")

    def check(self) -> None:
        if self.num_layers > 16:  # dilations grow as base ** layer
            raise ValueError(f"num_layers must be at most 16, got {self.num_layers}")
        _checks.check_choice(self.pooling, "pooling", POOLINGS)
        _checks.check_choice(self.architecture, "architecture", ("conv",))

    @property
    def receptive_field(self) -> int:
        """Steps one pooled feature can see: 1 + (K - 1) * sum of the dilations."""
        return 1 + (self.kernel_size - 1) * sum(self.dilation_base ** i
                                                for i in range(self.num_layers))


class ConvClassifier(ClassOutputs, Model):
    """Sequence -> one label by convolution.  params: ``embed.weight``, ``conv{l}.weight``
    (C, D, K), ``conv{l}.bias``, ``out.weight`` (classes, C), ``out.bias``."""

    config_class = ConvClassifierConfig
    kind = "classifier"

    def __init__(self, config: ConvClassifierConfig):
        super().__init__()
        self.config = c = config.validate()
        rng = np.random.default_rng(c.seed)
        dt = np.dtype(c.dtype)
        self.embed = Embedding(c.vocab_size, c.embed_dim, dtype=dt, seed=rng)
        self.convs = [Conv1D(c.embed_dim if i == 0 else c.hidden_size, c.hidden_size,
                             c.kernel_size, dilation=c.dilation_base ** i, padding="same",
                             dtype=dt, seed=rng) for i in range(c.num_layers)]
        self.drop = Dropout(c.dropout)
        self.out = Linear(c.hidden_size, c.num_classes, dtype=dt, seed=rng)
        self.blocks = {"embed": self.embed, **{f"conv{i}": m for i, m in enumerate(self.convs)},
                       "out": self.out}

    @staticmethod
    def param_shapes(c: ConvClassifierConfig) -> dict:
        shapes = {"embed.weight": (c.vocab_size, c.embed_dim)}
        for i in range(c.num_layers):
            D = c.embed_dim if i == 0 else c.hidden_size
            shapes[f"conv{i}.weight"] = (c.hidden_size, D, c.kernel_size)
            shapes[f"conv{i}.bias"] = (c.hidden_size,)
        shapes.update({"out.weight": (c.num_classes, c.hidden_size), "out.bias": (c.num_classes,)})
        return shapes

    # ---- graph -----------------------------------------------------------------------
    def forward(self, ids, lengths=None, *, training=False, rng=None):
        """ids (N, T) ints, lengths (N,) or None -> ``(logits (N, classes), cache)``."""
        ids = np.asarray(ids)
        if ids.ndim != 2 or ids.dtype.kind not in "iu":
            raise ValueError(f"ids must be a 2-D integer array (N, T), got {ids.dtype.name} "
                             f"of shape {ids.shape}")
        N, T = ids.shape
        if lengths is None:
            lengths = np.full(N, T, dtype=np.int64)
        lengths = np.asarray(lengths)
        if lengths.shape != (N,) or lengths.dtype.kind not in "iu" or \
                (N and (lengths.min() < 1 or lengths.max() > T)):
            raise ValueError(f"lengths must be (N,) integers in [1, {T}]")
        mask = (np.arange(T)[None, :] < lengths[:, None]).astype(self.dtype)[..., None]
        x, ecache = self.embed.forward(ids)
        x = x * mask
        ccaches = []
        for conv in self.convs:
            y, cc = conv.forward(x)
            x = np.maximum(y, 0) * mask  # ReLU; padding stays zero for the next layer
            ccaches.append((cc, x))
        if self.config.pooling == "max":
            masked = np.where(mask > 0, x, -np.inf)
            arg = masked.argmax(axis=1)  # (N, C): valid steps only
            pooled = np.take_along_axis(x, arg[:, None, :], axis=1)[:, 0]
        else:
            arg = None
            pooled = x.sum(axis=1) / lengths[:, None].astype(self.dtype)
        dropped, dcache = self.drop.forward(pooled, training=training, rng=rng)
        logits, ocache = self.out.forward(dropped)
        return logits, (ecache, mask, ccaches, arg, lengths, x.shape, dcache, ocache)

    def backward(self, dlogits, cache) -> dict:
        """Gradients of every parameter given dL/dlogits (N, classes); keys like ``params``."""
        ecache, mask, ccaches, arg, lengths, shape, dcache, ocache = cache
        ddrop, g_out = self.out.backward(dlogits, ocache)
        dpooled, _ = self.drop.backward(ddrop, dcache)
        if arg is not None:
            dx = np.zeros(shape, dtype=self.dtype)
            np.put_along_axis(dx, arg[:, None, :], dpooled[:, None, :], axis=1)
        else:
            dx = (dpooled / lengths[:, None].astype(self.dtype))[:, None, :] * mask
        grads = {}
        for i in range(len(self.convs) - 1, -1, -1):
            cc, y = ccaches[i]
            dy = dx * (y > 0)  # through the mask and the ReLU (y is zero wherever either cut)
            dx, g = self.convs[i].backward(dy, cc)
            grads.update({f"conv{i}.{k}": v for k, v in g.items()})
        _, g_emb = self.embed.backward(dx * mask, ecache)
        out = {"embed.weight": g_emb["weight"]}
        out.update({k: grads[k] for k in self.params if k.startswith("conv")})
        out.update({f"out.{k}": v for k, v in g_out.items()})
        return out
