"""Small helpers of the task models: id checks, lengths, masks, the recurrent stack a config
describes.  The model base (params, shapes, checks, save/load) is :mod:`rnnkit.models.base`.

Shapes: N batch, T time, D input, H hidden, L layers.
"""

from __future__ import annotations

import numpy as np

from .. import _checks
from ..cells import CELLS  # noqa: F401  (old imports)
from ..data.batching import pad_sequences
from ..layers.basic import Dropout, Embedding, Linear
from ..layers.recurrent import RecurrentLayer
from .base import Model, check_stored_params, config_from_json, config_to_json, recurrent_shapes

TaskModel = Model  # the name the task models' base had before models.base


def make_rnn(cfg, input_size, rng, *, bidirectional=False, return_sequences=True):
    """The recurrent stack of a task config (LSTM forget-gate biases start at 1)."""
    return RecurrentLayer(input_size, cfg.hidden_size, cfg.num_layers, mode=cfg.cell,
                          bidirectional=bidirectional, dropout=cfg.dropout,
                          return_sequences=return_sequences, dtype=np.dtype(cfg.dtype), seed=rng,
                          forget_bias=1.0 if cfg.cell == "lstm" else 0.0)


class StackModel(Model):
    """Embedding -> (bidirectional) recurrent stack -> Dropout -> Linear to C outputs: the
    shape of the classifier and the tagger.  params: ``embed.weight``, ``rnn.*``, ``out.*``."""

    def _build(self, num_outputs, *, return_sequences=True):
        c = self.config
        rng = np.random.default_rng(c.seed)
        dt = np.dtype(c.dtype)
        self.embed = Embedding(c.vocab_size, c.embed_dim, dtype=dt, seed=rng)
        self.rnn = make_rnn(c, c.embed_dim, rng, bidirectional=c.bidirectional,
                            return_sequences=return_sequences)
        self.drop = Dropout(c.dropout)
        self.out = Linear(self.rnn.output_size, num_outputs, dtype=dt, seed=rng)
        self.blocks = {"embed": self.embed, "rnn": self.rnn, "out": self.out}

    def _read(self, ids, lengths, training, rng):
        """ids (N, T) -> ``(recurrent outputs, lengths (N,), cache)``."""
        ids = check_ids(ids)
        lengths = full_lengths(ids, lengths)
        x, ecache = self.embed.forward(ids)
        out, _, rcache = self.rnn.forward(x, lengths, training=training, rng=rng)
        return out, lengths, (ecache, rcache)

    def _output(self, h, training, rng):
        """Dropout then the output layer: features (..., F) -> ``(logits (..., C), cache)``."""
        hd, dcache = self.drop.forward(h, training=training, rng=rng)
        logits, ocache = self.out.forward(hd)
        return logits, (dcache, ocache)

    def _output_backward(self, dlogits, cache):
        dcache, ocache = cache
        dhd, gout = self.out.backward(dlogits, ocache)
        return self.drop.backward(dhd, dcache)[0], gout

    def _read_backward(self, dout, cache, gout) -> dict:
        """Every parameter's gradient from dL/d(recurrent outputs) and the output layer's."""
        ecache, rcache = cache
        dx, _, grnn = self.rnn.backward(dout, rcache)
        _, gemb = self.embed.backward(dx, ecache)
        return {**self.prefixed("embed", gemb), **self.prefixed("rnn", grnn),
                **self.prefixed("out", gout)}

    @staticmethod
    def stack_shapes(c, num_outputs) -> dict:
        """Name -> shape of every parameter, from the config alone (nothing is allocated)."""
        K = 2 if c.bidirectional else 1
        return {"embed.weight": (c.vocab_size, c.embed_dim),
                **recurrent_shapes("rnn", c.embed_dim, c.hidden_size, c.num_layers, c.cell,
                                   c.bidirectional),
                "out.weight": (num_outputs, K * c.hidden_size), "out.bias": (num_outputs,)}


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


def pad_batch(seqs, pad_id=0):
    """A list of 1-D id sequences -> ``(ids (N, T), lengths (N,))``: kept for old imports;
    it is :func:`rnnkit.data.pad_sequences`."""
    return pad_sequences(seqs, pad_id)


__all__ = ["TaskModel", "StackModel", "check_stored_params", "recurrent_shapes", "config_from_json",
           "config_to_json", "make_rnn", "check_ids", "full_lengths", "length_mask", "pad_batch"]
