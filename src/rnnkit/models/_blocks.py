"""Shared plumbing of the task models (classifier, tagger, seq2seq, generator, feed-forward).

Every task model is a handful of blocks (``Embedding``, ``RecurrentLayer``, ``Linear``) whose
parameters are exposed as one flat dict with dotted names ("encoder.weight_ih_l0",
"out.bias"), the keys its ``backward`` returns gradients under.  The config is a dataclass
that goes into the checkpoint as JSON, so a model directory rebuilds itself.

Shapes: N batch, T time, D input, E embedding, H hidden, L layers, K directions, C classes,
V vocabulary.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .. import _checks
from ..layers.basic import Linear, log_softmax, softmax_cross_entropy
from ..layers.recurrent import RecurrentLayer

CELLS = ("rnn", "gru", "lstm")
DTYPES = ("float32", "float64")


def check_common(cfg) -> None:
    """Validate the fields every task config shares; one-line ValueErrors."""
    if cfg.cell not in CELLS:
        raise ValueError(f"unknown cell {cfg.cell!r}: expected one of {', '.join(CELLS)}")
    if cfg.dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {cfg.dtype!r}")
    for name in ("embed_dim", "hidden_size", "num_layers"):
        if hasattr(cfg, name):
            v = getattr(cfg, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
    _checks.check_probability(getattr(cfg, "dropout", 0.0), "dropout")


def config_to_json(cfg) -> dict:
    return dataclasses.asdict(cfg)


def config_from_json(cls, obj):
    """Rebuild a config dataclass from its JSON dict; unknown or missing keys are errors."""
    if not isinstance(obj, dict):
        raise ValueError(f"{cls.__name__}: expected a JSON object, got {type(obj).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    extra = sorted(set(obj) - names)
    if extra:
        raise ValueError(f"{cls.__name__}: unexpected keys {extra}")
    try:
        return cls(**obj)
    except TypeError as e:
        raise ValueError(f"{cls.__name__}: {e}") from None


def make_rnn(cfg, input_size, rng, *, bidirectional=False, return_sequences=True,
             hidden_size=None, num_layers=None):
    return RecurrentLayer(input_size, hidden_size or cfg.hidden_size,
                          num_layers or cfg.num_layers, mode=cfg.cell,
                          bidirectional=bidirectional, dropout=cfg.dropout,
                          return_sequences=return_sequences, dtype=np.dtype(cfg.dtype), seed=rng,
                          forget_bias=1.0 if cfg.cell == "lstm" else 0.0)


_GATES = {"rnn": 1, "gru": 3, "lstm": 4}


def recurrent_shapes(prefix, input_size, hidden_size, num_layers, cell, bidirectional) -> dict:
    """The parameter shapes :func:`make_rnn` gives a ``RecurrentLayer``, computed without
    building it (PyTorch's names and layout, biases on): ``{"PREFIX.weight_ih_l0": (G*H, D), ...}``.
    """
    G, H, K = _GATES[cell], hidden_size, 2 if bidirectional else 1
    shapes = {}
    for layer in range(num_layers):
        D = input_size if layer == 0 else K * H
        for d in range(K):
            s = f"l{layer}" + ("_reverse" if d else "")
            shapes.update({f"{prefix}.weight_ih_{s}": (G * H, D),
                           f"{prefix}.weight_hh_{s}": (G * H, H),
                           f"{prefix}.bias_ih_{s}": (G * H,), f"{prefix}.bias_hh_{s}": (G * H,)})
    return shapes


def check_stored_params(expected: dict, arrays: dict) -> None:
    """Refuse stored arrays that do not fit the shapes a config implies, or hold NaN/Inf.

    ``expected`` comes from a model class's ``param_shapes(config)``: plain arithmetic on the
    config, so a forged config asking for ``hidden_size`` 10**9 is refused here, before the
    model would allocate anything.  ValueError with a one-line message.
    """
    missing = sorted(set(expected) - set(arrays))
    extra = sorted(set(arrays) - set(expected))
    if missing or extra:
        raise ValueError(f"parameters do not match the model config: missing {missing[:3]}, "
                         f"unexpected {extra[:3]}")
    for name, shape in expected.items():
        a = arrays[name]
        if tuple(a.shape) != tuple(shape):
            raise ValueError(f"parameter {name} must have shape {tuple(shape)} by the model "
                             f"config, the file holds {tuple(a.shape)}")
        if a.dtype.kind != "f":
            raise ValueError(f"parameter {name} must hold floats, the file holds {a.dtype.name}")
    bad = sorted(k for k, a in arrays.items() if not np.isfinite(a).all())
    if bad:
        raise ValueError(f"weights hold NaN or Inf ({', '.join(bad[:3])}"
                         f"{', ...' if len(bad) > 3 else ''}); the model is unusable")


class TaskModel:
    """Base: a model is named blocks; ``params`` is their flat dotted view.

    Subclasses fill ``self.blocks`` (name -> object with a ``params`` dict) in ``__init__``.
    """

    config_class = None
    kind = "model"

    def __init__(self):
        self.blocks = {}

    @property
    def dtype(self):
        return np.dtype(self.config.dtype)

    @property
    def params(self) -> dict:
        """Flat dict ``"block.name" -> array`` sharing memory with the blocks."""
        return {f"{b}.{k}": v for b, blk in self.blocks.items() for k, v in blk.params.items()}

    def load_params(self, flat: dict) -> None:
        """Put arrays (e.g. an optimizer's updated ones, or a checkpoint's) into the blocks.

        Every key must be present with the right shape; arrays are cast to the model dtype.
        """
        mine = self.params
        missing = sorted(set(mine) - set(flat))
        extra = sorted(set(flat) - set(mine))
        if missing or extra:
            raise ValueError(f"parameters do not match the model: missing {missing[:3]}, "
                             f"unexpected {extra[:3]}")
        for name, cur in mine.items():
            v = np.asarray(flat[name])
            if v.shape != cur.shape:
                raise ValueError(f"parameter {name} must have shape {cur.shape}, got {v.shape}")
            b, k = name.split(".", 1)
            self.blocks[b].params[k] = v.astype(self.dtype, copy=False)

    def num_parameters(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    @staticmethod
    def prefixed(name: str, grads: dict) -> dict:
        return {f"{name}.{k}": v for k, v in grads.items()}

    def to_json(self) -> dict:
        return {"kind": self.kind, "config": config_to_json(self.config)}


def check_ids(ids, name="ids") -> np.ndarray:
    ids = np.asarray(ids)
    if ids.ndim != 2 or ids.dtype.kind not in "iu":
        raise ValueError(f"{name} must be a 2-D integer array (N, T), got {ids.dtype.name} "
                         f"of shape {ids.shape}")
    return ids


def full_lengths(ids, lengths) -> np.ndarray:
    N, T = ids.shape
    if lengths is None:
        return np.full(N, T, dtype=np.int64)
    return _checks.check_lengths(lengths, N, T)


def length_mask(lengths, T, dtype) -> np.ndarray:
    """(N, T) 1.0 at valid steps, 0.0 at padding."""
    return (np.arange(T)[None, :] < np.asarray(lengths)[:, None]).astype(dtype)


def pad_batch(seqs, pad_id=0, dtype=np.int64):
    """A list of 1-D id sequences -> ``(ids (N, T), lengths (N,))`` padded with ``pad_id``.

    Every sequence needs at least one element (recurrent layers require lengths >= 1).
    """
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    if len(seqs) == 0:
        raise ValueError("cannot pad an empty batch")
    if lengths.min() < 1:
        raise ValueError("every sequence in a batch needs at least one token")
    out = np.full((len(seqs), int(lengths.max())), pad_id, dtype=dtype)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out, lengths


__all__ = ["TaskModel", "check_common", "check_stored_params", "recurrent_shapes",
           "config_from_json", "config_to_json", "make_rnn", "check_ids", "full_lengths",
           "length_mask", "pad_batch", "Linear", "log_softmax", "softmax_cross_entropy"]
