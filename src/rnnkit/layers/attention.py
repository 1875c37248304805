"""Attention over a source sequence: additive (Bahdanau et al. 2015) and general (Luong et
al. 2015) scoring, with an exact hand-written backward.

For a query q (the decoder's state, size Hq) and the encoder's outputs m_1..m_S (the memory,
size Hs each)::

    additive:  e_s = v . tanh(W_k m_s + W_q q)        params key_weight (A, Hs),
                                                       query_weight (A, Hq), v (A,)
    general:   e_s = q . (W_a m_s)                    params weight (Hq, Hs)
    alpha = softmax(e) over the valid positions s < length   (padding gets exactly 0)
    context = sum_s alpha_s m_s                                 (Hs,)

The part that depends only on the memory (``W_k m_s`` or ``W_a m_s``: the "keys") is one
matrix product for all N*S positions in :meth:`Attention.prepare`, made once per source
batch; a decoder step then scores all S positions of all N rows with one batched product
(DESIGN principle 4).  Padded positions get a score of -inf, so exp() gives them exactly 0
weight and they receive no gradient.

Contract (cs231n style, like the cells): ``prepare(memory, lengths) -> prep``;
``step(q, prep) -> (context, alpha, cache)``; ``step_backward(dcontext, cache, acc) -> dq``
adds the memory-side gradients into an accumulator ``acc`` (from :meth:`new_accumulator`),
and ``prepare_backward(acc, prep)`` turns it into ``(dmemory, grads)`` keyed like
``params`` after the time loop.  ``forward``/``backward`` run every query of a sequence
(no input feeding) through the same steps.

Shapes: N batch, S source time, M query (target) time, Hq query size, Hs memory size,
A attention size (additive).
"""

from __future__ import annotations

import numpy as np

from .. import _checks

KINDS = ("additive", "general")


def check_kind(kind) -> str:
    """The attention kind, checked: 'additive' or 'general' (ValueError otherwise)."""
    if not isinstance(kind, str) or kind not in KINDS:
        raise ValueError(f"unknown attention {str(kind)[:40]!r}: expected one of {', '.join(KINDS)}")
    return kind


def attention_shapes(kind, query_size, memory_size, attn_size) -> dict:
    """Parameter name -> shape, from the sizes alone (nothing is allocated)."""
    if check_kind(kind) == "additive":
        return {"key_weight": (attn_size, memory_size), "query_weight": (attn_size, query_size),
                "v": (attn_size,)}
    return {"weight": (query_size, memory_size)}


class Prepared:
    """A source batch made ready for attention: memory (N, S, Hs), keys (N, S, A or Hq), the
    additive score mask (N, S) (0 at valid positions, -inf at padding), lengths (N,)."""

    __slots__ = ("memory", "keys", "neg", "lengths")

    def __init__(self, memory, keys, neg, lengths):
        self.memory, self.keys, self.neg, self.lengths = memory, keys, neg, lengths

    def take(self, rows):
        """The rows ``rows`` (beam search: a hypothesis per row follows its sentence)."""
        return Prepared(self.memory[rows], self.keys[rows], self.neg[rows], self.lengths[rows])


class Accumulator:
    """What a decoder's backward steps leave for :meth:`Attention.prepare_backward`.

    Sums that are products over the steps are not added step by step: each step leaves its
    factors (alpha, dcontext, score gradients, queries) and ``prepare_backward`` makes each
    sum one batched product over all steps.  Only the additive score's key gradient, an
    elementwise (N, S, A) term, is added in place.

    The fused decoder loop (:mod:`rnnkit.layers.attention_fused`) makes the sums itself and
    leaves them finished: ``dmemory`` (the part through the contexts), ``dkeys`` (both kinds)
    and ``dquery`` (additive: dL/dW_q); the step lists then stay empty.
    """

    __slots__ = ("dkeys", "dv", "work", "alpha", "dcontext", "de", "q", "dqp", "dmemory",
                 "dquery")

    def __init__(self, prep: Prepared, kind: str, *, work=True):
        additive = kind == "additive"
        self.dkeys = np.zeros_like(prep.keys) if additive else None
        # a step's (N, S, A) term
        self.work = np.empty_like(prep.keys) if additive and work else None
        self.dv = np.zeros(prep.keys.shape[2], dtype=prep.keys.dtype) if additive else None
        self.alpha, self.dcontext, self.de, self.q, self.dqp = [], [], [], [], []
        self.dmemory = self.dquery = None


class Attention:
    """Attention of a query (N, Hq) over a memory (N, S, Hs).

    Args:
        kind: 'additive' (Bahdanau) or 'general' (Luong's multiplicative form).
        query_size: Hq.  memory_size: Hs.  attn_size: A (additive only; default Hq).
        dtype, seed: as the other layers (uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) init).
    """

    def __init__(self, kind, query_size, memory_size, attn_size=None, *, dtype=np.float32,
                 seed=None):
        self.kind = check_kind(kind)
        self.query_size = _checks.check_positive_int(query_size, "query_size")
        self.memory_size = _checks.check_positive_int(memory_size, "memory_size")
        self.attn_size = _checks.check_positive_int(attn_size or query_size, "attn_size")
        self.dtype = np.dtype(dtype)
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        fan_in = {"key_weight": memory_size, "query_weight": query_size, "v": self.attn_size,
                  "weight": memory_size}
        self.params = {}
        for name, shape in attention_shapes(kind, query_size, memory_size, self.attn_size).items():
            k = 1.0 / np.sqrt(fan_in[name])
            self.params[name] = rng.uniform(-k, k, shape).astype(self.dtype)

    # ---- the memory side, once per source batch -----------------------------------------
    def prepare(self, memory, lengths=None) -> Prepared:
        """memory (N, S, Hs), lengths (N,) in [1, S] or None -> :class:`Prepared`."""
        memory = _checks.as_float_array(memory, "memory", 3, self.dtype, "N, S, Hs")
        N, S, Hs = memory.shape
        if Hs != self.memory_size:
            raise ValueError(f"memory must have shape (N, S, {self.memory_size}) (N, S, Hs), "
                             f"got {memory.shape}")
        lengths = (np.full(N, S, dtype=np.int64) if lengths is None
                   else _checks.check_lengths(lengths, N, S))
        w = self.params["key_weight" if self.kind == "additive" else "weight"]
        keys = (memory.reshape(N * S, Hs) @ w.T).reshape(N, S, -1)
        neg = np.where(np.arange(S)[None, :] < lengths[:, None], 0.0, -np.inf).astype(self.dtype)
        return Prepared(memory, keys, neg, lengths)

    def new_accumulator(self, prep: Prepared, *, work=True) -> Accumulator:
        """``work=False``: no per-step (N, S, A) scratch (the fused loop has its own)."""
        return Accumulator(prep, self.kind, work=work)

    def prepare_backward(self, acc: Accumulator, prep: Prepared):
        """-> ``(dmemory (N, S, Hs), grads)`` from what the backward steps left in ``acc``."""
        N, S, Hs = prep.memory.shape
        grads = {}
        # context_t = alpha_t @ memory for every step t: dmemory = sum_t alpha_t^T dcontext_t,
        # one batched product over the M steps (N, S, M) @ (N, M, Hs).
        if acc.dmemory is not None:
            dmemory = acc.dmemory
        elif acc.alpha:
            alpha = np.stack(acc.alpha, axis=2)
            dmemory = np.matmul(alpha, np.stack(acc.dcontext, axis=1))
        else:
            dmemory = np.zeros_like(prep.memory)
        if self.kind == "additive":
            name, dkeys = "key_weight", acc.dkeys
            grads["v"] = acc.dv
            if acc.dquery is not None:
                grads["query_weight"] = acc.dquery
            elif acc.q:  # qp_t = q_t W_q^T for every step: one product over all N*M rows
                grads["query_weight"] = np.concatenate(acc.dqp).T @ np.concatenate(acc.q)
            else:
                grads["query_weight"] = np.zeros_like(self.params["query_weight"])
        else:
            name = "weight"
            # e_t = keys q_t: dkeys = sum_t de_t^T q_t, (N, S, M) @ (N, M, Hq).
            if acc.dkeys is not None:
                dkeys = acc.dkeys
            elif acc.de:
                dkeys = np.matmul(np.stack(acc.de, axis=2), np.stack(acc.q, axis=1))
            else:
                dkeys = np.zeros_like(prep.keys)
        dk = dkeys.reshape(N * S, -1)
        grads[name] = dk.T @ prep.memory.reshape(N * S, Hs)
        dmemory += (dk @ self.params[name]).reshape(N, S, Hs)
        return dmemory, {k: grads[k] for k in self.params}

    # ---- one query step ------------------------------------------------------------------
    def workspace(self, prep: Prepared, M: int):
        """Buffers for M steps over ``prep`` (a decoder's time loop allocates them once):
        ``(t (M, N, S, A) or None, alpha (M, N, S), context (M, N, Hs))``."""
        N, S, _ = prep.memory.shape
        dt = prep.memory.dtype
        t = np.empty((M, N, S, self.attn_size), dtype=dt) if self.kind == "additive" else None
        return t, np.empty((M, N, S), dtype=dt), np.empty((M, N, self.memory_size), dtype=dt)

    def step(self, q, prep: Prepared, out=None):
        """q (N, Hq) -> ``(context (N, Hs), alpha (N, S), cache)``.

        ``out``: ``(t, alpha, context)`` buffers of this step (slices of :meth:`workspace`),
        written in place; without it the step allocates its own.
        """
        N, S, _ = prep.keys.shape
        if out is None:
            out = (np.empty((N, S, self.attn_size), dtype=prep.keys.dtype)
                   if self.kind == "additive" else None,
                   np.empty((N, S), dtype=prep.keys.dtype),
                   np.empty((N, self.memory_size), dtype=prep.keys.dtype))
        t, alpha, context = out
        if self.kind == "additive":
            qp = q @ self.params["query_weight"].T  # (N, A)
            np.add(prep.keys, qp[:, None, :], out=t)
            np.tanh(t, out=t)  # (N, S, A)
            np.matmul(t, self.params["v"], out=alpha)  # (N, S): all positions in one product
        else:
            np.matmul(prep.keys, q[:, :, None], out=alpha[:, :, None])
        e = alpha  # the scores, turned into the weights in place
        e += prep.neg
        e -= e.max(axis=1, keepdims=True)
        np.exp(e, out=e)
        e /= e.sum(axis=1, keepdims=True)
        np.matmul(alpha[:, None, :], prep.memory, out=context[:, None, :])
        return context, alpha, (q, t, alpha, prep)

    def step_backward(self, dcontext, cache, acc: Accumulator):
        """dL/dcontext (N, Hs) -> dL/dq (N, Hq); memory-side gradients go into ``acc``."""
        q, t, alpha, prep = cache
        dalpha = np.matmul(prep.memory, dcontext[:, :, None])[:, :, 0]  # (N, S)
        acc.alpha.append(alpha)
        acc.dcontext.append(dcontext)
        # Softmax backward; padded positions have alpha = 0 and so get de = 0.
        de = alpha * (dalpha - (alpha * dalpha).sum(axis=1, keepdims=True))
        acc.q.append(q)
        if self.kind == "additive":
            N, S, A = t.shape
            acc.dv += de.reshape(N * S) @ t.reshape(N * S, A)
            dpre = acc.work
            np.multiply(t, t, out=dpre)
            np.subtract(1.0, dpre, out=dpre)
            dpre *= self.params["v"]
            dpre *= de[:, :, None]  # (N, S, A): d score / d (keys + qp)
            acc.dkeys += dpre
            dqp = dpre.sum(axis=1)  # (N, A)
            acc.dqp.append(dqp)
            return dqp @ self.params["query_weight"]
        acc.de.append(de)
        return np.matmul(de[:, None, :], prep.keys)[:, 0]

    # ---- a whole query sequence (no input feeding) ---------------------------------------
    def forward(self, queries, memory, lengths=None):
        """queries (N, M, Hq), memory (N, S, Hs) -> ``((context (N, M, Hs), alpha (N, M, S)),
        cache)``."""
        queries = _checks.as_float_array(queries, "queries", 3, self.dtype, "N, M, Hq")
        prep = self.prepare(memory, lengths)
        N, M, _ = queries.shape
        if queries.shape[0] != prep.memory.shape[0] or queries.shape[2] != self.query_size:
            raise ValueError(f"queries must have shape ({prep.memory.shape[0]}, M, "
                             f"{self.query_size}) (N, M, Hq), got {queries.shape}")
        S = prep.memory.shape[1]
        context = np.empty((N, M, self.memory_size), dtype=self.dtype)
        alpha = np.empty((N, M, S), dtype=self.dtype)
        caches = []
        for m in range(M):
            context[:, m], alpha[:, m], c = self.step(queries[:, m], prep)
            caches.append(c)
        return (context, alpha), (prep, caches)

    def backward(self, dcontext, cache):
        """dcontext (N, M, Hs) -> ``(dqueries (N, M, Hq), dmemory (N, S, Hs), grads)``."""
        prep, caches = cache
        acc = self.new_accumulator(prep)
        N, M = dcontext.shape[:2]
        dq = np.empty((N, M, self.query_size), dtype=self.dtype)
        for m in range(M - 1, -1, -1):
            dq[:, m] = self.step_backward(dcontext[:, m], caches[m], acc)
        dmemory, grads = self.prepare_backward(acc, prep)
        return dq, dmemory, grads
