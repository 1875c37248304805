"""Non-recurrent blocks with hand-written backward: Embedding, Linear, Dropout, losses.

Each follows the cs231n contract: ``forward(...) -> (out, cache)``, ``backward(dout, cache)
-> (dinput, grads)`` with grads keyed like ``params``; backward never mutates its inputs.
"""

from __future__ import annotations

import numpy as np

from .. import _checks


def _rng(seed):
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


class Embedding:
    """Token ids (...,) -> vectors (..., E).  params: ``weight`` (V, E), N(0, 1) like torch."""

    def __init__(self, num_embeddings, embedding_dim, *, dtype=np.float32, seed=None):
        self.num_embeddings = _checks.check_positive_int(num_embeddings, "num_embeddings")
        self.embedding_dim = _checks.check_positive_int(embedding_dim, "embedding_dim")
        self.dtype = np.dtype(dtype)
        rng = _rng(seed)
        self.params = {"weight": rng.standard_normal((num_embeddings, embedding_dim)).astype(self.dtype)}

    def check_ids(self, ids) -> np.ndarray:
        ids = np.asarray(ids)
        if ids.dtype.kind not in "iu":
            raise ValueError(f"token ids must be integers, got dtype {ids.dtype.name}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_embeddings):
            bad = ids[(ids < 0) | (ids >= self.num_embeddings)].flat[0]
            raise ValueError(f"token ids must lie in [0, {self.num_embeddings}), got {int(bad)}")
        return ids

    def forward(self, ids):
        ids = self.check_ids(ids)
        return self.params["weight"][ids], ids

    def backward(self, dout, ids):
        dw = np.zeros_like(self.params["weight"])
        np.add.at(dw, ids.reshape(-1), dout.reshape(-1, self.embedding_dim))
        return None, {"weight": dw}


class Linear:
    """Time-distributed affine map (..., D) -> (..., M).  params: ``weight`` (M, D), ``bias`` (M,)."""

    def __init__(self, in_features, out_features, *, bias=True, dtype=np.float32, seed=None):
        self.in_features = _checks.check_positive_int(in_features, "in_features")
        self.out_features = _checks.check_positive_int(out_features, "out_features")
        self.dtype = np.dtype(dtype)
        rng = _rng(seed)
        k = 1.0 / np.sqrt(in_features)
        self.params = {"weight": rng.uniform(-k, k, (out_features, in_features)).astype(self.dtype)}
        if bias:
            self.params["bias"] = rng.uniform(-k, k, (out_features,)).astype(self.dtype)

    def forward(self, x):
        if x.shape[-1] != self.in_features:
            raise ValueError(f"Linear input must have last dimension {self.in_features}, "
                             f"got shape {x.shape}")
        out = x @ self.params["weight"].T
        if "bias" in self.params:
            out += self.params["bias"]
        return out, x

    def backward(self, dout, x):
        d2 = dout.reshape(-1, self.out_features)
        grads = {"weight": d2.T @ x.reshape(-1, self.in_features)}
        if "bias" in self.params:
            grads["bias"] = d2.sum(axis=0)
        return dout @ self.params["weight"], grads


class Dropout:
    """Inverted dropout: scales kept units by 1/(1-p) in training, identity otherwise."""

    params: dict = {}

    def __init__(self, p=0.0):
        self.p = _checks.check_probability(p, "dropout")

    def forward(self, x, *, training=False, rng=None):
        if not training or self.p == 0.0:
            return x, None
        if rng is None:
            raise ValueError("Dropout in training needs an explicit numpy Generator (rng=...)")
        keep = 1.0 - self.p
        mask = (rng.random(x.shape) < keep).astype(x.dtype) / x.dtype.type(keep)
        return x * mask, mask

    def backward(self, dout, mask):
        return (dout if mask is None else dout * mask), {}


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable log-softmax over the last axis."""
    z = logits - logits.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def softmax_cross_entropy(logits, targets, mask=None, *, reduction="mean"):
    """Cross-entropy of logits (..., V) against integer targets (...).

    ``mask`` (...) of 0/1 (or bool) drops padded positions; ``reduction`` 'mean' averages over
    the unmasked positions, 'sum' adds them.  Returns ``(loss, dlogits)``: the gradient comes
    with the loss because it is cheaper together (softmax - onehot).
    """
    targets = np.asarray(targets)
    if targets.shape != logits.shape[:-1]:
        raise ValueError(f"targets must have shape {logits.shape[:-1]}, got {targets.shape}")
    if targets.dtype.kind not in "iu":
        raise ValueError(f"targets must be integers, got dtype {targets.dtype.name}")
    V = logits.shape[-1]
    if targets.size and (targets.min() < 0 or targets.max() >= V):
        raise ValueError(f"targets must lie in [0, {V}), got {int(targets.max()) if targets.max() >= V else int(targets.min())}")
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    logp = log_softmax(logits)
    nll = -np.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    if mask is None:
        w = np.ones(targets.shape, dtype=logits.dtype)
    else:
        mask = np.asarray(mask)
        if mask.shape != targets.shape:
            raise ValueError(f"mask must have shape {targets.shape}, got {mask.shape}")
        w = mask.astype(logits.dtype)
    count = w.sum()
    scale = (1.0 / max(count, 1.0)) if reduction == "mean" else 1.0
    loss = float((nll * w).sum() * scale)
    dlogits = np.exp(logp)
    np.put_along_axis(dlogits, targets[..., None],
                      np.take_along_axis(dlogits, targets[..., None], axis=-1) - 1.0, axis=-1)
    dlogits *= (w * logits.dtype.type(scale))[..., None]
    return loss, dlogits
