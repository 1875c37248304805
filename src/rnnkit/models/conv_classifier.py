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

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..layers.basic import Dropout, Embedding, Linear, softmax, softmax_cross_entropy
from ..layers.conv import Conv1D

POOLINGS = ("max", "mean")
DTYPES = ("float32", "float64")


@dataclass
class ConvClassifierConfig:
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

    def __post_init__(self):
        self.validate()

    def validate(self):
        for name in ("vocab_size", "num_classes", "embed_dim", "hidden_size", "num_layers",
                     "kernel_size", "dilation_base"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.num_layers > 16:
            raise ValueError(f"num_layers must be at most 16, got {self.num_layers}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) \
                or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout!r}")
        if self.architecture != "conv":
            raise ValueError(f"architecture must be 'conv', got {self.architecture!r}")
        return self

    @property
    def receptive_field(self) -> int:
        """Steps one pooled feature can see: 1 + (K - 1) * sum of the dilations."""
        return 1 + (self.kernel_size - 1) * sum(self.dilation_base ** i
                                                for i in range(self.num_layers))

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, obj) -> ConvClassifierConfig:
        if not isinstance(obj, dict):
            raise ValueError(f"{cls.__name__}: expected a JSON object, got {type(obj).__name__}")
        extra = sorted(set(obj) - {f.name for f in dataclasses.fields(cls)})
        if extra:
            raise ValueError(f"{cls.__name__}: unexpected keys {extra}")
        try:
            return cls(**obj)
        except TypeError as e:
            raise ValueError(f"{cls.__name__}: {e}") from None


class ConvClassifier:
    """Sequence -> one label by convolution.  params: ``embed.weight``, ``conv{l}.weight``
    (C, D, K), ``conv{l}.bias``, ``out.weight`` (classes, C), ``out.bias``."""

    config_class = ConvClassifierConfig
    kind = "classifier"

    def __init__(self, config: ConvClassifierConfig):
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

    # ---- parameters ------------------------------------------------------------------
    @property
    def dtype(self):
        return np.dtype(self.config.dtype)

    @property
    def params(self) -> dict:
        return {f"{b}.{k}": v for b, blk in self.blocks.items() for k, v in blk.params.items()}

    @staticmethod
    def param_shapes(c: ConvClassifierConfig) -> dict:
        shapes = {"embed.weight": (c.vocab_size, c.embed_dim)}
        for i in range(c.num_layers):
            D = c.embed_dim if i == 0 else c.hidden_size
            shapes[f"conv{i}.weight"] = (c.hidden_size, D, c.kernel_size)
            shapes[f"conv{i}.bias"] = (c.hidden_size,)
        shapes.update({"out.weight": (c.num_classes, c.hidden_size), "out.bias": (c.num_classes,)})
        return shapes

    def load_params(self, flat: dict) -> None:
        mine = self.params
        missing, extra = sorted(set(mine) - set(flat)), sorted(set(flat) - set(mine))
        if missing or extra:
            raise ValueError(f"parameters do not match the model: missing {missing[:3]}, "
                             f"unexpected {extra[:3]}")
        for name, cur in mine.items():
            v = np.asarray(flat[name])
            if v.shape != cur.shape:
                raise ValueError(f"parameter {name} must have shape {cur.shape}, got {v.shape}")
            cur[...] = v

    def num_parameters(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    def to_json(self) -> dict:
        return {"kind": self.kind, "config": self.config.to_json()}

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

    def loss(self, ids, lengths, labels, *, training=False, rng=None):
        """Mean cross-entropy over the batch -> ``(loss, grads)``."""
        logits, cache = self.forward(ids, lengths, training=training, rng=rng)
        loss, dlogits = softmax_cross_entropy(logits, np.asarray(labels))
        return loss, self.backward(dlogits, cache)

    def batch_loss(self, batch, *, training=False, rng=None):
        return self.loss(batch["ids"], batch["lengths"], batch["labels"], training=training, rng=rng)

    def predict_proba(self, ids, lengths=None) -> np.ndarray:
        """(N, classes) class probabilities."""
        return softmax(self.forward(ids, lengths)[0])

    def predict(self, ids, lengths=None) -> np.ndarray:
        """(N,) most probable class ids."""
        return self.forward(ids, lengths)[0].argmax(axis=-1)
