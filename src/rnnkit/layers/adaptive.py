"""Adaptive softmax (Grave et al. 2017): a cheap output layer for large vocabularies.

Word ids are sorted by frequency (rnnkit's :class:`~rnnkit.data.Vocab` already is: specials,
then the most frequent words first), and ``cutoffs`` c_0 < c_1 < ... < c_{K-1} < V split them
into a *head* [0, c_0) and K tail clusters [c_{i-1}, c_i) (with c_K = V).  The head is a
softmax over the c_0 frequent words plus one token per cluster; cluster i is a softmax of its
own over its words, reached through a reduced projection of size H // div_value**(i+1):

    log p(w) = log softmax(W_h x)[w]                                   w in the head
    log p(w) = log softmax(W_h x)[c_0 + i] + log softmax(O_i P_i x)[w - c_i]   w in cluster i

Most tokens are head words, so a training step only pays for the head (c_0 + K rows) and, for
the few rows whose target lies in a cluster, that cluster: the work no longer grows with V.
The layout matches ``torch.nn.AdaptiveLogSoftmaxWithLoss`` (``head.weight`` (c_0+K, H),
optional ``head.bias``, ``tail.{i}.proj`` = torch's ``tail[i][0].weight`` (h_i, H),
``tail.{i}.out`` = ``tail[i][1].weight`` (c_{i+1}-c_i, h_i)).  Shapes: M rows (N*T positions),
H input features, V vocabulary, K clusters.
"""

from __future__ import annotations

import numpy as np

from .. import _checks


def _rng(seed):
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def check_cutoffs(cutoffs, n_classes: int) -> list[int]:
    """``cutoffs`` as a sorted list of ints in [1, V-1], strictly increasing; ValueError else."""
    if isinstance(cutoffs, (str, bytes)) or not hasattr(cutoffs, "__iter__"):
        raise TypeError(f"cutoffs must be a list of integers, got {type(cutoffs).__name__}")
    out = []
    for c in cutoffs:
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)):
            raise TypeError(f"cutoffs must be integers, got {c!r}")
        out.append(int(c))
    if not out:
        raise ValueError("cutoffs must hold at least one value")
    if any(b <= a for a, b in zip(out, out[1:])):
        raise ValueError(f"cutoffs must be strictly increasing, got {out}")
    if out[0] < 1 or out[-1] > n_classes - 1:
        raise ValueError(f"cutoffs must lie in [1, {n_classes - 1}] for a vocabulary of "
                         f"{n_classes} words, got {out}")
    return out


def default_cutoffs(counts, hidden_size: int, div_value: float = 4.0,
                    max_clusters: int = 2, head_share: float = 0.8) -> list[int]:
    """Cutoffs for word counts (V,) in id order (most frequent first), chosen by cost.

    The expected multiply-adds per training token are H * (c_0 + K) for the head plus, for
    each cluster i, the fraction p_i of tokens it holds times h_i * (H + |cluster i|); the
    cutoffs minimising that on a geometric grid of head sizes (1 or ``max_clusters``
    clusters) are returned.  The head is kept large enough to hold >= ``head_share`` of the
    tokens (and >= 1/32 of V, >= 64 words), a second cluster starts at >= twice the head's
    size: pushing frequent words through the narrow
    projections costs perplexity, which the cost model does not see.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size < 3:
        raise ValueError(f"counts must be a 1-D array of at least 3 word counts, got shape {counts.shape}")
    H = _checks.check_positive_int(hidden_size, "hidden_size")
    V = counts.size
    total = counts.sum()
    if total <= 0:
        raise ValueError("counts must not all be zero")
    cum = np.concatenate([[0.0], np.cumsum(counts)]) / total  # cum[k] = share of ids < k
    covering = int(np.searchsorted(cum, head_share, side="left"))  # ids needed for the share
    lo = min(V - 1, max(64, V // 32, covering))
    grid = np.unique(np.geomspace(lo, V - 1, 48).astype(np.int64))
    grid = grid[(grid >= 1) & (grid <= V - 1)]
    best = (float(H * V), [])  # the full softmax, to beat

    def tail_cost(i, a, b):
        h = max(1, int(H // (div_value ** (i + 1))))
        return (cum[b] - cum[a]) * h * (H + (b - a))

    for c0 in grid:
        one = H * (c0 + 1) + tail_cost(0, c0, V)
        if one < best[0]:
            best = (one, [int(c0)])
        if max_clusters >= 2:
            for c1 in grid[grid >= 2 * c0]:  # a second cluster worth its own projection
                two = H * (c0 + 2) + tail_cost(0, c0, c1) + tail_cost(1, c1, V)
                if two < best[0]:
                    best = (two, [int(c0), int(c1)])
    if not best[1]:  # V so small that nothing beats the full softmax: one cluster anyway
        return [int(max(1, min(V - 1, V // 2)))]
    return best[1]


def _kernel_rows(z) -> bool:
    """Whether the compiled float32 row kernels (:mod:`rnnkit.kernels.loss`) take z."""
    from .. import kernels

    return z.dtype == np.float32 and z.flags.c_contiguous and kernels.available()


def _log_softmax_rows(z):
    """log softmax over the last axis, in place on a float array z (M, C); returns z."""
    if _kernel_rows(z):
        from ..kernels.loss import log_softmax

        log_softmax(z, z)
        return z
    z -= z.max(axis=1, keepdims=True)
    z -= np.log(np.exp(z).sum(axis=1, keepdims=True))
    return z


class AdaptiveSoftmax:
    """Adaptive softmax output layer over V classes from H features.

    params: ``head.weight`` (c_0+K, H), ``head.bias`` (c_0+K,) if ``head_bias``, and per
    cluster i ``tail.{i}.proj`` (h_i, H), ``tail.{i}.out`` (c_{i+1}-c_i, h_i), with
    h_i = H // div_value**(i+1) (as PyTorch).  Initialised like ``torch.nn.Linear``.
    """

    def __init__(self, in_features, n_classes, cutoffs, *, div_value=4.0, head_bias=False,
                 dtype=np.float32, seed=None):
        self.in_features = _checks.check_positive_int(in_features, "in_features")
        self.n_classes = _checks.check_positive_int(n_classes, "n_classes", minimum=2)
        self.cutoffs = check_cutoffs(cutoffs, self.n_classes)
        try:
            self.div_value = float(div_value)
        except (TypeError, ValueError):
            raise TypeError(f"div_value must be a number, got {div_value!r}") from None
        if not self.div_value >= 1.0:
            raise ValueError(f"div_value must be >= 1, got {div_value}")
        self.dtype = np.dtype(dtype)
        self.shortlist = self.cutoffs[0]
        self.n_clusters = len(self.cutoffs)
        self.bounds = self.cutoffs + [self.n_classes]  # cluster i covers [bounds[i], bounds[i+1])
        self.head_size = self.shortlist + self.n_clusters
        H = self.in_features
        self.hidden = [int(H // (self.div_value ** (i + 1))) for i in range(self.n_clusters)]
        if min(self.hidden) < 1:
            raise ValueError(f"div_value {div_value} leaves cluster projections of size 0 for "
                             f"{H} input features: use a smaller div_value or fewer cutoffs")
        rng = _rng(seed)

        def uniform(shape, fan_in):
            k = 1.0 / np.sqrt(fan_in)
            return rng.uniform(-k, k, shape).astype(self.dtype)

        self.params = {"head.weight": uniform((self.head_size, H), H)}
        if head_bias:
            self.params["head.bias"] = uniform((self.head_size,), H)
        for i, h in enumerate(self.hidden):
            size = self.bounds[i + 1] - self.bounds[i]
            self.params[f"tail.{i}.proj"] = uniform((h, H), H)
            self.params[f"tail.{i}.out"] = uniform((size, h), h)

    # ---- helpers ---------------------------------------------------------------------
    def _check_x(self, x):
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"adaptive softmax input must have shape (M, {self.in_features}) "
                             f"(M, H), got {x.shape}")
        return x

    def _check_targets(self, targets, M):
        t = np.asarray(targets)
        if t.shape != (M,):
            raise ValueError(f"targets must have shape ({M},) (M,), got {t.shape}")
        if t.dtype.kind not in "iu":
            raise ValueError(f"targets must be integers, got dtype {t.dtype.name}")
        if t.size and (t.min() < 0 or t.max() >= self.n_classes):
            raise ValueError(f"targets must lie in [0, {self.n_classes})")
        return t.astype(np.int64, copy=False)

    def _head_logits(self, x, bias=True):
        """x W_head^T (+ the head's bias unless ``bias`` is False: added in a later pass)."""
        z = x @ self.params["head.weight"].T
        if bias and "head.bias" in self.params:
            z += self.params["head.bias"]
        return z

    def _clusters(self, targets):
        """Per cluster i: the rows whose target lies in it (int64 index arrays)."""
        which = np.searchsorted(np.asarray(self.cutoffs), targets, side="right")  # 0: head
        return which, [np.flatnonzero(which == i + 1) for i in range(self.n_clusters)]

    # ---- training graph --------------------------------------------------------------
    def forward(self, x, targets):
        """x (M, H), targets (M,) -> (nll (M,), cache): each row's negative log-likelihood.

        Only the head and, for the rows whose target lies in a cluster, that cluster are
        computed: the (M, V) log-probabilities are never formed.
        """
        x = self._check_x(x)
        t = self._check_targets(targets, x.shape[0])
        M = x.shape[0]
        which, rows = self._clusters(t)
        head_target = np.where(which == 0, t, self.shortlist + which - 1)
        hz = _log_softmax_rows(self._head_logits(x))  # log-probabilities (M, c_0+K)
        nll = -hz[np.arange(M), head_target]
        tails = []
        for i, r in enumerate(rows):
            if r.size == 0:
                tails.append(None)
                continue
            p = x[r] @ self.params[f"tail.{i}.proj"].T  # (m_i, h_i)
            z = _log_softmax_rows(p @ self.params[f"tail.{i}.out"].T)  # (m_i, |cluster i|)
            local = t[r] - self.bounds[i]
            nll[r] -= z[np.arange(r.size), local]
            tails.append((r, p, z, local))
        return nll, (x, hz, head_target, tails)

    def backward(self, dnll, cache):
        """dL/dnll (M,) -> (dL/dx (M, H), grads keyed like ``params``)."""
        x, hz, head_target, tails = cache
        g = np.asarray(dnll, dtype=hz.dtype)
        M = x.shape[0]
        if g.shape != (M,):
            raise ValueError(f"dnll must have shape ({M},) (M,), got {g.shape}")
        # d(-log softmax(z)[y])/dz = softmax(z) - onehot(y)
        dz = np.exp(hz)
        dz[np.arange(M), head_target] -= 1.0
        dz *= g[:, None]
        grads = {"head.weight": dz.T @ x}
        if "head.bias" in self.params:
            grads["head.bias"] = dz.sum(axis=0)
        dx = dz @ self.params["head.weight"]
        for i, tail in enumerate(tails):
            P, O = self.params[f"tail.{i}.proj"], self.params[f"tail.{i}.out"]
            if tail is None:
                grads[f"tail.{i}.proj"] = np.zeros_like(P)
                grads[f"tail.{i}.out"] = np.zeros_like(O)
                continue
            r, p, z, local = tail
            dzt = np.exp(z)
            dzt[np.arange(r.size), local] -= 1.0
            dzt *= g[r][:, None]
            grads[f"tail.{i}.out"] = dzt.T @ p
            dp = dzt @ O
            grads[f"tail.{i}.proj"] = dp.T @ x[r]
            dx[r] += dp @ P
        return dx, grads

    def loss_and_grads(self, x, targets, scale=None):
        """Mean (or ``scale`` * summed) nll of targets (M,) given x (M, H), in one pass.

        Returns ``(loss, dL/dx (M, H), grads)``.  The training step's path: no cache is
        kept, and the head's log-softmax becomes its gradient in place (a compiled kernel
        where Numba is available).
        """
        x = self._check_x(x)
        t = self._check_targets(targets, x.shape[0])
        M = x.shape[0]
        s = (1.0 / max(M, 1)) if scale is None else float(scale)
        which, rows = self._clusters(t)
        head_target = np.where(which == 0, t, self.shortlist + which - 1)
        z = self._head_logits(x)
        total = _xent_inplace(z, head_target, s)  # z is now dL/dz
        grads = {"head.weight": z.T @ x}
        if "head.bias" in self.params:
            grads["head.bias"] = z.sum(axis=0)
        dx = z @ self.params["head.weight"]
        del z
        for i, r in enumerate(rows):
            P, O = self.params[f"tail.{i}.proj"], self.params[f"tail.{i}.out"]
            if r.size == 0:
                grads[f"tail.{i}.proj"] = np.zeros_like(P)
                grads[f"tail.{i}.out"] = np.zeros_like(O)
                continue
            xr = x[r]
            p = xr @ P.T
            zt = p @ O.T
            total += _xent_inplace(zt, t[r] - self.bounds[i], s)
            grads[f"tail.{i}.out"] = zt.T @ p
            dp = zt @ O
            grads[f"tail.{i}.proj"] = dp.T @ xr
            dx[r] += dp @ P
        return total * s, dx, grads

    # ---- inference -------------------------------------------------------------------
    def target_log_prob(self, x, targets):
        """log p(target) (M,) for x (M, H): what evaluation needs, without the (M, V) table."""
        x = self._check_x(x)
        t = self._check_targets(targets, x.shape[0])
        M = x.shape[0]
        which, rows = self._clusters(t)
        head_target = np.where(which == 0, t, self.shortlist + which - 1)
        z = self._head_logits(x, bias=False)  # the bias is added inside the picking passes
        out = _pick_log_softmax(z, head_target, self.params.get("head.bias"))
        for i, r in enumerate(rows):
            if r.size:
                zt = (x[r] @ self.params[f"tail.{i}.proj"].T) @ self.params[f"tail.{i}.out"].T
                out[r] += _pick_log_softmax(zt, t[r] - self.bounds[i])
        return out

    def log_prob(self, x):
        """Full normalised log-probabilities (M, V) of every class, for sampling and search."""
        x = self._check_x(x)
        M = x.shape[0]
        out = np.empty((M, self.n_classes), dtype=np.result_type(x.dtype, self.dtype))
        hz = _log_softmax_rows(self._head_logits(x))
        c0 = self.shortlist
        out[:, :c0] = hz[:, :c0]
        for i in range(self.n_clusters):
            a, b = self.bounds[i], self.bounds[i + 1]
            zt = (x @ self.params[f"tail.{i}.proj"].T) @ self.params[f"tail.{i}.out"].T
            out[:, a:b] = _log_softmax_rows(zt) + hz[:, c0 + i : c0 + i + 1]
        return out


_ROWS = 64  # rows per block: a block's temporaries stay in cache


def _xent_inplace(z, targets, scale) -> float:
    """Summed nll of rows z (M, C) against targets (M,); z becomes scale * dnll/dz.

    float32: the compiled vectorised kernel (:func:`rnnkit.kernels.loss.xent`); otherwise
    NumPy's vectorised exp over blocks of rows (~2x faster than a compiled scalar loop, whose
    libm exp does not vectorise, at C = 1k..30k).
    """
    targets = np.asarray(targets, dtype=np.int64)
    if _kernel_rows(z):
        from ..kernels.loss import xent

        return xent(z, np.ascontiguousarray(targets), z.dtype.type(scale))
    total = 0.0
    for a in range(0, z.shape[0], _ROWS):
        zz = z[a : a + _ROWS]
        t = targets[a : a + _ROWS]
        r = np.arange(t.size)
        zz -= zz.max(axis=1, keepdims=True)
        zt = zz[r, t].astype(np.float64)
        np.exp(zz, out=zz)
        s = zz.sum(axis=1, dtype=np.float64)
        total += float((np.log(s) - zt).sum())
        zz *= (scale / s).astype(zz.dtype)[:, None]
        zz[r, t] -= zz.dtype.type(scale)
    return total


def _pick_log_softmax(z, targets, bias=None):
    """log softmax(z + bias)[m, targets[m]] (M,) float64, without writing the (M, C)
    log-probabilities: per block of rows, its max, then the sum of exponentials in float64.
    With a ``bias`` (C,) z is overwritten with z + bias."""
    t = np.ascontiguousarray(targets, dtype=np.int64)
    if _kernel_rows(z):
        from ..kernels.loss import pick_log_softmax

        return pick_log_softmax(z, t, bias)
    if bias is not None:
        z += bias
    out = np.empty(t.size, dtype=np.float64)
    for a in range(0, z.shape[0], _ROWS):
        zz = z[a : a + _ROWS]
        tt = t[a : a + _ROWS]
        mx = zz.max(axis=1)
        e = zz - mx[:, None]
        np.exp(e, out=e)
        s = e.sum(axis=1, dtype=np.float64)
        out[a : a + _ROWS] = zz[np.arange(tt.size), tt].astype(np.float64) - mx - np.log(s)
    return out
