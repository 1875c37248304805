"""Output heads of a language model: hidden rows (M, H) -> a distribution over V words.

Three heads share one interface, so the model's training step, evaluation, scoring and
generation do not care which one they hold:

* :class:`FullSoftmax` — ``Linear(H -> V)`` and a softmax over the whole vocabulary;
* :class:`AdaptiveHead` — :class:`~rnnkit.layers.adaptive.AdaptiveSoftmax` (Grave et al.
  2017), work per token no longer proportional to V;
* :class:`TiedSoftmax` — the output weight *is* the input embedding (V, E) (Press & Wolf
  2017; Inan et al. 2017), reached through a projection ``proj`` (E, H) when E != H.  Its
  gradient with respect to the shared weight comes back under ``"shared"`` so the model adds
  it to the embedding's own gradient: one weight used twice, its gradient the sum of both.

Interface (M rows = N*T positions, time-major in the model):

    loss_and_grads(h, y, scale) -> (sum of nll * scale, dL/dh (M, H), grads)   training
    forward(h, y) -> (nll (M,), cache);  backward(dnll, cache) -> (dL/dh, grads)   general graph
    target_log_prob(h, y) -> (M,)        evaluation: no (M, V) table of log-probabilities
    log_prob(h) -> (M, V)                full normalised log-probabilities (sampling, beam)

Rows are processed in blocks where a (block, V) table is needed, so evaluation's memory does
not grow with M.
"""

from __future__ import annotations

import numpy as np

from .adaptive import AdaptiveSoftmax, _pick_log_softmax, _xent_inplace
from .basic import Linear, log_softmax

# Rows per block where a (rows, V) table is formed at inference: ~32 MB at V = 30k, float32.
_BLOCK_ELEMS = 8_000_000


def _blocks(M: int, V: int):
    step = max(1, _BLOCK_ELEMS // max(V, 1))
    for a in range(0, M, step):
        yield slice(a, min(M, a + step))


def _check_rows(h, y, V):
    y = np.asarray(y)
    if y.shape != (h.shape[0],):
        raise ValueError(f"targets must have shape ({h.shape[0]},) (M,), got {y.shape}")
    if y.dtype.kind not in "iu":
        raise ValueError(f"targets must be integers, got dtype {y.dtype.name}")
    if y.size and (y.min() < 0 or y.max() >= V):
        raise ValueError(f"targets must lie in [0, {V})")
    return np.ascontiguousarray(y, dtype=np.int64)


class _Softmax:
    """A softmax over all V words of logits z = u W^T + b, u = f(h); subclasses give u, W."""

    def _weight(self):
        raise NotImplementedError

    def _in(self, h):  # u and what backward needs of it
        return h

    def _in_backward(self, du, h, grads):
        return du

    def _logits(self, u, bias=True):
        """u W^T (+ b unless ``bias`` is False: a caller that adds it in a later pass)."""
        z = u @ self._weight().T
        b = self.params.get("bias")
        if bias and b is not None:
            z += b
        return z

    def loss_and_grads(self, h, y, scale):
        V = self.vocab_size
        y = _check_rows(h, y, V)
        u = self._in(h)
        z = self._logits(u)
        total = _xent_inplace(z, y, scale)  # z is now dL/dz
        W = self._weight()
        grads = {self._wname: z.T @ u}
        if "bias" in self.params:
            grads["bias"] = z.sum(axis=0)
        du = z @ W
        del z
        return total * scale, self._in_backward(du, h, grads), grads

    def forward(self, h, y):
        y = _check_rows(h, y, self.vocab_size)
        u = self._in(h)
        lp = log_softmax(self._logits(u))
        return -lp[np.arange(len(y)), y], (h, u, lp, y)

    def backward(self, dnll, cache):
        h, u, lp, y = cache
        dz = np.exp(lp)
        dz[np.arange(len(y)), y] -= 1.0
        dz *= np.asarray(dnll, dtype=dz.dtype)[:, None]
        grads = {self._wname: dz.T @ u}
        if "bias" in self.params:
            grads["bias"] = dz.sum(axis=0)
        return self._in_backward(dz @ self._weight(), h, grads), grads

    def target_log_prob(self, h, y):
        y = _check_rows(h, y, self.vocab_size)
        out = np.empty(h.shape[0], dtype=np.float64)
        b = self.params.get("bias")
        for s in _blocks(h.shape[0], self.vocab_size):
            # the bias is added inside the picking passes, row by row while it is in cache
            out[s] = _pick_log_softmax(self._logits(self._in(h[s]), bias=False), y[s], b)
        return out

    def log_prob(self, h):
        return log_softmax(self._logits(self._in(h)))


class FullSoftmax(_Softmax):
    """``Linear(H -> V)``: params ``weight`` (V, H), ``bias`` (V,)."""

    _wname = "weight"

    def __init__(self, hidden_size, vocab_size, *, dtype=np.float32, seed=None):
        self.linear = Linear(hidden_size, vocab_size, dtype=dtype, seed=seed)
        self.params = self.linear.params
        self.vocab_size = vocab_size

    @classmethod
    def of_linear(cls, linear: Linear) -> FullSoftmax:
        """The head over an existing Linear (V, H) block, sharing its arrays."""
        head = cls.__new__(cls)
        head.linear = linear
        head.params = linear.params
        head.vocab_size = linear.out_features
        return head

    def _weight(self):
        return self.params["weight"]


class TiedSoftmax(_Softmax):
    """Output weight shared with the embedding ``shared`` (V, E).

    params: ``bias`` (V,) and, when E != H, ``proj`` (E, H) (u = h proj^T).  The shared
    weight's gradient comes back under ``"shared"``.
    """

    _wname = "shared"

    def __init__(self, shared: np.ndarray, hidden_size, *, dtype=np.float32, seed=None):
        V, E = shared.shape
        self.shared = shared  # the embedding's array itself, never a copy
        self.vocab_size = V
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        k = 1.0 / np.sqrt(hidden_size)
        self.params = {}
        if E != hidden_size:
            self.params["proj"] = rng.uniform(-k, k, (E, hidden_size)).astype(dtype)
        self.params["bias"] = rng.uniform(-k, k, (V,)).astype(dtype)

    def _weight(self):
        return self.shared

    def _in(self, h):
        P = self.params.get("proj")
        return h if P is None else h @ P.T

    def _in_backward(self, du, h, grads):
        P = self.params.get("proj")
        if P is None:
            return du
        grads["proj"] = du.T @ h
        return du @ P


class AdaptiveHead:
    """:class:`AdaptiveSoftmax` under the head interface (params named as that layer's)."""

    def __init__(self, hidden_size, vocab_size, cutoffs, *, div_value=4.0, dtype=np.float32,
                 seed=None):
        self.layer = AdaptiveSoftmax(hidden_size, vocab_size, cutoffs, div_value=div_value,
                                     head_bias=True, dtype=dtype, seed=seed)
        self.params = self.layer.params
        self.vocab_size = vocab_size

    def loss_and_grads(self, h, y, scale):
        return self.layer.loss_and_grads(h, y, scale)

    def forward(self, h, y):
        return self.layer.forward(h, y)

    def backward(self, dnll, cache):
        return self.layer.backward(dnll, cache)

    def target_log_prob(self, h, y):
        return self.layer.target_log_prob(h, y).astype(np.float64)

    def log_prob(self, h):
        return self.layer.log_prob(h)
