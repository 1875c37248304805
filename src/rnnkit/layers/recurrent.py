"""Stacked (deep), optionally bidirectional recurrent layers: ``RNN``, ``GRU``, ``LSTM``.

Shapes: N batch, T time, D input, H hidden, L layers, K = 2 if bidirectional else 1.
Parameters are kept under PyTorch's ``state_dict`` names and shapes (``weight_ih_l0``,
``bias_hh_l1_reverse``, ...) in PyTorch's gate order, so converting to and from
``torch.nn.RNN/GRU/LSTM`` is a copy.  Unlike PyTorch, rnnkit is always batch-major:
``x`` is (N, T, D).
"""

from __future__ import annotations

import numpy as np

from .. import _checks
from .. import kernels
from ..cells import check_cell, make_cell
from ..recurrent import DRIVERS

BACKENDS = ("auto", "numpy", "numba")


def resolve_backend(backend: str) -> str:
    """'auto' -> 'numba' when Numba imports, else 'numpy'; checks the name."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "numba" if kernels.available() else "numpy"
    if backend == "numba" and not kernels.available():
        raise ValueError("backend='numba' needs the numba package installed")
    return backend

MERGE_MODES = {"concat": "concat", "sum": "sum", "mean": "mean", "ave": "mean",
               "product": "product", "mul": "product"}


class RecurrentCache:
    """Everything :meth:`RecurrentLayer.backward` needs; never mutated by backward."""

    __slots__ = ("N", "T", "lengths", "dirs", "outs", "drop_masks", "final_h",
                 "backend", "ids", "embedding", "tables")

    def __init__(self, N, T, lengths, backend="numpy"):
        self.N, self.T, self.lengths = N, T, lengths
        self.backend = backend  # the driver that made it (backward uses the same one)
        self.ids = None  # (T, N) token ids when forward was given an embedding
        self.embedding = None  # that embedding matrix (V, D)
        self.tables = False  # True if layer 0's input product was a table lookup
        self.dirs = []  # per layer: list of DirectionCache
        self.outs = []  # per layer: list of per-direction outputs (T, N, H), for product merge
        self.drop_masks = []  # per layer: dropout mask applied to its output, or None
        self.final_h = None  # last layer's final state per direction (N, H)


class RecurrentLayer:
    """A deep, optionally bidirectional recurrent layer over any cell.

    Args:
        mode: 'rnn', 'gru' or 'lstm'.
        input_size: D.  hidden_size: H.  num_layers: L.
        bias: learn ``b_ih`` and ``b_hh`` (PyTorch's two-bias layout).
        bidirectional: run a reverse direction too; each sequence is reversed within its
            own length.
        dropout: rate applied to every layer's output except the last, in training only.
        merge_mode: how the two directions combine: 'concat' (PyTorch), 'sum', 'mean' or
            'product' (Keras' 'ave' and 'mul' are accepted).
        return_sequences: if False, ``forward`` returns (N, K*H or H) — the merged final
            states of the last layer (for the forward direction, the output at each
            sequence's last valid step; for the reverse one, after reading the whole
            sequence) — the many-to-one output.
        nonlinearity: 'tanh' or 'relu' (mode 'rnn').
        reset_after: GRU form; True is PyTorch/cuDNN's, False the notes' (Cho 2014).
        forget_bias: added to the LSTM forget-gate bias at initialisation (1.0 is common).
        dtype: float32 (default) or float64.
        seed: int or ``numpy.random.Generator`` for initialisation and dropout.
        backend: 'numba' runs the fused kernels of :mod:`rnnkit.kernels`, 'numpy' the
            reference cells of :mod:`rnnkit.cells`; 'auto' (default) picks numba when it is
            installed.  Both give the same results to rounding (tests/test_kernels.py); the
            attribute may be changed between calls.
    """

    mode = "rnn"

    def __init__(self, input_size, hidden_size, num_layers=1, *, bias=True,
                 bidirectional=False, dropout=0.0, merge_mode="concat",
                 return_sequences=True, nonlinearity="tanh", reset_after=True,
                 forget_bias=0.0, dtype=np.float32, seed=None, mode=None, backend="auto"):
        if mode is not None:
            self.mode = mode
        check_cell(self.mode)
        self.input_size = _checks.check_positive_int(input_size, "input_size")
        self.hidden_size = _checks.check_positive_int(hidden_size, "hidden_size")
        self.num_layers = _checks.check_positive_int(num_layers, "num_layers")
        self.dropout = _checks.check_probability(dropout, "dropout")
        if merge_mode not in MERGE_MODES:
            raise ValueError(f"merge_mode must be one of {sorted(MERGE_MODES)}, got {merge_mode!r}")
        self.merge_mode = MERGE_MODES[merge_mode]
        self.bidirectional = bool(bidirectional)
        self.bias = bool(bias)
        self.return_sequences = bool(return_sequences)
        self.nonlinearity = nonlinearity
        self.reset_after = bool(reset_after)
        self.forget_bias = float(forget_bias)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype.name}")
        self.cell = make_cell(self.mode, nonlinearity=nonlinearity, reset_after=reset_after)
        self._fused = None
        self.backend = backend  # picks the driver (property setter)
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self.params = self._init_params()

    # ---- structure -------------------------------------------------------------------
    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        """Features per step of the output: K*H for concat, H otherwise."""
        H = self.hidden_size
        return H * self.num_directions if self.merge_mode == "concat" else H

    def layer_input_size(self, layer: int) -> int:
        return self.input_size if layer == 0 else self.output_size

    @staticmethod
    def suffix(layer: int, direction: int) -> str:
        return f"l{layer}" + ("_reverse" if direction else "")

    def _init_params(self) -> dict:
        H, G = self.hidden_size, self.cell.gates
        k = 1.0 / np.sqrt(H)  # PyTorch's U(-1/sqrt(H), 1/sqrt(H))
        params = {}
        for layer in range(self.num_layers):
            for d in range(self.num_directions):
                s = self.suffix(layer, d)
                D = self.layer_input_size(layer)
                shapes = {f"weight_ih_{s}": (G * H, D), f"weight_hh_{s}": (G * H, H)}
                if self.bias:
                    shapes.update({f"bias_ih_{s}": (G * H,), f"bias_hh_{s}": (G * H,)})
                for name, shape in shapes.items():
                    params[name] = self.rng.uniform(-k, k, size=shape).astype(self.dtype)
                if self.bias and self.mode == "lstm" and self.forget_bias:
                    params[f"bias_ih_{s}"][H : 2 * H] += self.dtype.type(self.forget_bias)
        return params

    def _weights(self, layer, d):
        s = self.suffix(layer, d)
        p = self.params
        return (p[f"weight_ih_{s}"], p.get(f"bias_ih_{s}"), p[f"weight_hh_{s}"], p.get(f"bias_hh_{s}"))

    def state_shape(self, N: int) -> tuple:
        return (self.num_layers * self.num_directions, N, self.hidden_size)

    def zero_state(self, N: int):
        h = np.zeros(self.state_shape(N), dtype=self.dtype)
        return (h, h.copy()) if self.mode == "lstm" else h

    def num_parameters(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    def __repr__(self) -> str:
        extra = ""
        if self.mode == "rnn":
            extra = f", nonlinearity={self.nonlinearity!r}"
        elif self.mode == "gru":
            extra = f", reset_after={self.reset_after}"
        return (f"{type(self).__name__}({self.input_size}, {self.hidden_size}, "
                f"num_layers={self.num_layers}, bidirectional={self.bidirectional}, "
                f"dropout={self.dropout}{extra}, dtype={self.dtype.name})")

    # ---- validation ------------------------------------------------------------------
    def _check_state(self, state, N):
        shape = self.state_shape(N)
        letters = "L*K, N, H"
        if self.mode == "lstm":
            if not isinstance(state, (tuple, list)) or len(state) != 2:
                raise ValueError("LSTM state must be a pair (h, c) of arrays shaped "
                                 f"{shape} ({letters})")
            return tuple(_checks.check_shape(s, n, shape, letters, self.dtype)
                         for s, n in zip(state, ("state h", "state c")))
        return (_checks.check_shape(state, "state", shape, letters, self.dtype), None)

    # ---- the one switch point between the reference and the fused path --------------------
    @property
    def backend(self) -> str:
        """'numpy' or 'numba'; setting it (any of :data:`BACKENDS`) picks the driver once."""
        return self._backend

    @backend.setter
    def backend(self, value: str) -> None:
        self._backend = resolve_backend(value)
        self._driver = None  # (cell, forward, backward), made on first use
        if self._backend == "numba":
            from ..kernels import blas

            blas.check_env()  # a bad RNNKIT_STEP_THREADS fails here, before any run starts

    def _driver_for(self, backend: str):
        """(cell, run_forward, run_backward) of a backend: the same contract either way."""
        if backend != self._backend:  # a cache made before the backend was changed
            cell = self.fused_cell if backend == "numba" else self.cell
            return (cell, *DRIVERS[backend])
        if self._driver is None:
            cell = self.fused_cell if backend == "numba" else self.cell
            self._driver = (cell, *DRIVERS[backend])
        return self._driver

    # ---- forward ---------------------------------------------------------------------
    @property
    def fused_cell(self):
        """The cell's fused (Numba) counterpart, built on first use."""
        if self._fused is None:
            self._fused = kernels.make_fused_cell(self.mode, nonlinearity=self.nonlinearity,
                                                  reset_after=self.reset_after)
        return self._fused

    def input_tables(self, embedding) -> list:
        """Layer 0's input product applied to every row of an embedding matrix.

        embedding (V, D) -> K arrays (V, G*H): ``embedding @ W_ih_l0.T + b_ih_l0`` per
        direction.  An embedding followed by this product is a lookup into these tables.
        """
        emb = _checks.as_float_array(embedding, "embedding", 2, self.dtype, "V, D")
        if emb.shape[1] != self.input_size:
            raise ValueError(f"embedding must have shape (V, {self.input_size}) (V, D), "
                             f"got {emb.shape}")
        tables = []
        for d in range(self.num_directions):
            w_ih, b_ih, _, _ = self._weights(0, d)
            tab = emb @ w_ih.T
            if b_ih is not None:
                tab += b_ih
            tables.append(tab)
        return tables

    def _check_ids(self, ids, V, ndim, letters):
        ids = np.asarray(ids)
        if ids.dtype.kind not in "iu":
            raise ValueError(f"token ids must be integers, got dtype {ids.dtype.name}")
        if ids.ndim != ndim:
            raise ValueError(f"token ids must have shape ({letters}), got {ids.shape}")
        if ids.size and (ids.min() < 0 or ids.max() >= V):
            raise ValueError(f"token ids must lie in [0, {V})")
        return ids

    def forward(self, x, lengths=None, state=None, *, training=False, rng=None,
                embedding=None, keep_cache=True, time_major=False):
        """Run the layer.

        x (N, T, D); lengths (N,) ints in [1, T] or None; state like ``zero_state(N)``:
        (L*K, N, H), or a pair (h, c) for LSTM — PyTorch's h_n / (h_n, c_n) layout.

        ``embedding`` (V, D), if given, makes x token ids (N, T) and layer 0's input
        ``embedding[x]``.  When V < N*T the embedding and layer 0's input product are fused
        into a lookup of :meth:`input_tables` (the V rows are projected once instead of the
        N*T inputs); :meth:`backward` then returns dL/dembedding (V, D) in place of dx.
        ``keep_cache=False`` (inference) saves nothing for backward and returns cache None.
        ``time_major=True`` returns out as (T, N, F) — for a unidirectional fused layer a view
        of the last layer's state history, no copy (the caller must not write into it while
        the cache is in use).

        Returns ``(out, state, cache)``: out (N, T, F) with F = ``output_size`` and zeros at
        padded steps (or (N, F) if ``return_sequences`` is False); the final state in the
        same layout as ``state``; and the cache for :meth:`backward`.
        """
        x, emb = self._check_input(x, embedding)
        N, T = x.shape[:2]
        lengths = _checks.check_lengths(lengths, N, T)
        if state is None:
            h0 = c0 = None
        else:
            h0, c0 = self._check_state(state, N)
        cell, run_forward, _ = self._driver_for(self.backend)
        cache = RecurrentCache(N, T, lengths, self.backend)
        use_dropout = training and self.dropout > 0.0 and self.num_layers > 1
        if use_dropout:
            rng = rng if rng is not None else self.rng
        H = self.hidden_size
        hn = np.empty(self.state_shape(N), dtype=self.dtype)
        cn = np.empty(self.state_shape(N), dtype=self.dtype) if self.mode == "lstm" else None
        zeros = np.zeros((N, H), dtype=self.dtype)
        inp, tables, ids_tm = self._first_input(x, emb, cache)
        for layer in range(self.num_layers):
            outs, dcs = [], []
            for d in range(self.num_directions):
                i = layer * self.num_directions + d
                h_init = zeros if h0 is None else h0[i]
                c_init = None if self.mode != "lstm" else (zeros if c0 is None else c0[i])
                lookup = layer == 0 and tables is not None
                out_d, h_T, c_T, dc = run_forward(
                    cell, None if lookup else inp, *self._weights(layer, d), h_init, c_init,
                    lengths, reverse=d == 1, table=tables[d] if lookup else None,
                    ids=ids_tm if lookup else None, store=keep_cache)
                hn[i] = h_T
                if cn is not None:
                    cn[i] = c_T
                outs.append(out_d)
                dcs.append(dc)
            merged = self._merge(outs)
            drop = None
            if use_dropout and layer < self.num_layers - 1:
                drop = self._drop_mask(merged.shape, rng)
                merged = merged * drop
            cache.dirs.append(dcs)
            cache.outs.append(outs if self.merge_mode == "product" else None)
            cache.drop_masks.append(drop)
            inp = merged
        last = (self.num_layers - 1) * self.num_directions
        cache.final_h = [hn[last + d] for d in range(self.num_directions)]
        if self.return_sequences:
            out = inp if time_major else np.ascontiguousarray(inp.transpose(1, 0, 2))
        else:
            out = self._merge(cache.final_h)
        new_state = (hn, cn) if self.mode == "lstm" else hn
        return out, new_state, (cache if keep_cache else None)

    def _check_input(self, x, embedding):
        """-> (x (N, T, D) floats, None), or (ids (N, T), embedding (V, D)); ValueError when
        a shape does not fit the layer or a side is empty."""
        emb = None
        if embedding is not None:
            emb = _checks.as_float_array(embedding, "embedding", 2, self.dtype, "V, D")
            if emb.shape[1] != self.input_size:
                raise ValueError(f"embedding must have shape (V, {self.input_size}) (V, D), "
                                 f"got {emb.shape}")
            x = self._check_ids(x, emb.shape[0], 2, "N, T")
        else:
            x = _checks.as_float_array(x, "x", 3, self.dtype, "N, T, D")
            if x.shape[2] != self.input_size:
                raise ValueError(f"x must have shape (N, T, {self.input_size}) (N, T, D), "
                                 f"got {x.shape}")
        N, T = x.shape[:2]
        if T == 0 or N == 0:
            raise ValueError(f"x must have at least one sequence and one step, got {N} x {T}")
        return x, emb

    def _first_input(self, x, emb, cache):
        """Layer 0's input, time-major: ``(inp (T, N, D) or None, tables or None, ids (T, N)
        or None)`` — with an embedding, its rows gathered, or (when V < N*T) a lookup into
        the embedding-projection tables instead."""
        if emb is None:
            return np.ascontiguousarray(x.transpose(1, 0, 2)), None, None
        N, T = x.shape
        ids_tm = np.ascontiguousarray(x.T, dtype=np.int64)  # (T, N)
        cache.ids, cache.embedding = ids_tm, emb
        if emb.shape[0] < N * T:
            cache.tables = True
            return None, self.input_tables(emb), ids_tm
        return emb[ids_tm], None, ids_tm

    def _drop_mask(self, shape, rng):
        """Inverted-dropout mask (T, N, F) between stacked layers."""
        keep = 1.0 - self.dropout
        # Time-major (T, N, H): a per-example generator (the training loop's ExampleRNG) is
        # told which axis holds the examples.
        draw = getattr(rng, "random_batch", None)
        u = draw(shape, 1) if draw is not None else rng.random(shape)
        return (u < keep).astype(self.dtype) / self.dtype.type(keep)

    def step(self, x_t, state=None, *, input_tables=None):
        """One time step through all layers without building a cache (generation).

        x_t (N, D), or token ids (N,) into ``input_tables`` (from :meth:`input_tables`);
        state like ``zero_state(N)`` or None.  Unidirectional layers only.
        Returns ``(out_t (N, H), new_state)``.  Dropout is off, as in inference.
        """
        if self.bidirectional:
            raise ValueError("step() needs a unidirectional layer: a reverse direction "
                             "reads the whole sequence")
        if input_tables is not None:
            ids = self._check_ids(x_t, input_tables[0].shape[0], 1, "N")
            N = ids.shape[0]
        else:
            x_t = _checks.as_float_array(x_t, "x_t", 2, self.dtype, "N, D")
            N = x_t.shape[0]
            if x_t.shape[1] != self.input_size:
                raise ValueError(f"x_t must have shape (N, {self.input_size}) (N, D), "
                                 f"got {x_t.shape}")
        if state is None:
            h0 = c0 = None
        else:
            h0, c0 = self._check_state(state, N)
        H = self.hidden_size
        hn = np.empty(self.state_shape(N), dtype=self.dtype)
        cn = np.empty(self.state_shape(N), dtype=self.dtype) if self.mode == "lstm" else None
        zeros = None
        if h0 is None:
            zeros = np.zeros((N, H), dtype=self.dtype)
        cell, run_forward, _ = self._driver_for(self.backend)
        row_ids = np.arange(N, dtype=np.int64)[None, :]  # (1, N): row n reads table row n
        inp = x_t
        for layer in range(self.num_layers):
            w_ih, b_ih, w_hh, b_hh = self._weights(layer, 0)
            if layer == 0 and input_tables is not None:
                xp = input_tables[0][ids]
            else:
                xp = inp @ w_ih.T
                if b_ih is not None:
                    xp += b_ih
            h = zeros if h0 is None else h0[layer]
            c = None if cn is None else (zeros if c0 is None else c0[layer])
            _, h_new, c_new, _ = run_forward(cell, None, w_ih, b_ih, w_hh, b_hh, h, c, None,
                                             table=xp, ids=row_ids, store=False)
            hn[layer] = h_new
            if cn is not None:
                cn[layer] = c_new
            inp = hn[layer]
        return inp.copy(), ((hn, cn) if self.mode == "lstm" else hn)

    __call__ = forward

    def _merge(self, outs):
        if len(outs) == 1:
            return outs[0]
        a, b = outs
        if self.merge_mode == "concat":
            return np.concatenate([a, b], axis=-1)
        if self.merge_mode == "sum":
            return a + b
        if self.merge_mode == "mean":
            return (a + b) * self.dtype.type(0.5)
        return a * b

    def _split_merge_grad(self, g, outs):
        """Gradient of the merge w.r.t. each direction's output."""
        if self.num_directions == 1:
            return [g]
        H = self.hidden_size
        if self.merge_mode == "concat":
            return [g[..., :H], g[..., H:]]
        if self.merge_mode == "sum":
            return [g, g]
        if self.merge_mode == "mean":
            half = g * self.dtype.type(0.5)
            return [half, half]
        return [g * outs[1], g * outs[0]]

    # ---- backward --------------------------------------------------------------------
    def backward(self, dout, cache: RecurrentCache, dstate=None, *, release=False,
                 time_major=False):
        """Exact gradients of the forward pass that produced ``cache``.

        dout: like ``out`` (or None); dstate: like the returned state (or None).
        Returns ``(dx (N, T, D), dstate0, grads)``: dstate0 in the state layout (gradient
        w.r.t. the initial state, zeros-derived even if none was passed), grads keyed like
        ``params``.

        By default backward is reentrant: it never changes ``cache`` or ``dout``.
        ``release=True`` (a training step that is done with the graph) consumes both: gate
        gradients are written over the saved gates (forward directions of the fused path)
        and each layer's part of the cache is dropped as soon as it has been used, so peak
        memory falls by about one layer's cache plus the gate-gradient buffers.  The
        gradients are the same.  ``time_major=True``: dout is (T, N, F) and dx (T, N, D).
        """
        N = cache.N
        if release and cache.dirs and cache.dirs[0] is None:
            raise ValueError("this cache was consumed by a backward(release=True)")
        K, L = self.num_directions, self.num_layers
        g, dh_final, dc_final = self._backward_start(dout, cache, dstate, time_major)
        cell, _, run_backward = self._driver_for(cache.backend)
        grads = {}
        dh0 = np.zeros(self.state_shape(N), dtype=self.dtype)
        dc0 = np.zeros(self.state_shape(N), dtype=self.dtype) if self.mode == "lstm" else None
        dx = None
        for layer in range(L - 1, -1, -1):
            if g is not None and cache.drop_masks[layer] is not None:
                g = g * cache.drop_masks[layer]
            parts = self._split_merge_grad(g, cache.outs[layer]) if g is not None else [None] * K
            dinp = None
            lookup = layer == 0 and cache.tables
            for d in range(K):
                i = layer * K + d
                gd = parts[d]
                dxd, dh, dc, (dwi, dbi, dwh, dbh) = run_backward(
                    cell, gd, dh_final[i], dc_final[i], cache.dirs[layer][d], release=release)
                if lookup:
                    dwi, dbi, dxd = self._table_backward(dxd, cache, d)
                dinp = dxd if dinp is None else dinp + dxd
                dh0[i] = dh
                if dc0 is not None:
                    dc0[i] = dc
                s = self.suffix(layer, d)
                grads[f"weight_ih_{s}"] = dwi
                grads[f"weight_hh_{s}"] = dwh
                if self.bias:
                    grads[f"bias_ih_{s}"] = dbi
                    grads[f"bias_hh_{s}"] = dbh
            if release:  # this layer's saved values are spent; let them go now
                parts = gd = None
                cache.dirs[layer] = cache.outs[layer] = cache.drop_masks[layer] = None
            g = dinp
            dx = dinp
        grads = {k: grads[k] for k in self.params}
        dstate0 = (dh0, dc0) if self.mode == "lstm" else dh0
        if cache.embedding is not None:
            if not cache.tables:  # dx is dL/d embedding[ids]: scatter it into the matrix
                dx = self._scatter(np.zeros_like(cache.embedding), cache.ids, dx, cache.backend)
            return dx, dstate0, grads
        if time_major:
            return dx, dstate0, grads
        return np.ascontiguousarray(dx.transpose(1, 0, 2)), dstate0, grads

    def _backward_start(self, dout, cache, dstate, time_major):
        """Checked outside gradients -> ``(g, dh_final, dc_final)``: g the top layer's output
        gradient time-major (T, N, F) or None, and per layer-direction the gradient of its
        final h (and c), or None — dstate's, plus dout's for a last-step-only output."""
        N, T = cache.N, cache.T
        K, L = self.num_directions, self.num_layers
        if dout is not None:
            if self.return_sequences and time_major:
                _checks.check_shape(dout, "dout", (T, N, self.output_size), "T, N, F", self.dtype)
            elif self.return_sequences:
                _checks.check_shape(dout, "dout", (N, T, self.output_size), "N, T, F", self.dtype)
            else:
                _checks.check_shape(dout, "dout", (N, self.output_size), "N, F", self.dtype)
        dh_final = [None] * (L * K)
        dc_final = [None] * (L * K)
        if dstate is not None:
            dhn, dcn = self._check_state(dstate, N)
            for i in range(L * K):
                dh_final[i] = dhn[i]
                if dcn is not None:
                    dc_final[i] = dcn[i]
        g = None
        if dout is not None:
            if self.return_sequences:
                g = np.ascontiguousarray(dout if time_major else dout.transpose(1, 0, 2))
            else:
                for d, gd in enumerate(self._split_merge_grad(dout, cache.final_h)):
                    i = (L - 1) * K + d
                    dh_final[i] = gd if dh_final[i] is None else dh_final[i] + gd
        return g, dh_final, dc_final

    @staticmethod
    def _scatter(dst, ids, src, backend):
        """dst[ids[t, n]] += src[t, n]."""
        if backend == "numba":
            kernels.scatter_rows(dst, ids, np.ascontiguousarray(src))
        else:
            np.add.at(dst, ids.reshape(-1), src.reshape(-1, dst.shape[1]))
        return dst

    def _table_backward(self, dxp, cache, d):
        """From dL/d(table rows) (T, N, G*H) of direction d to dW_ih_l0, db_ih_l0, dL/dembedding."""
        w_ih, b_ih, _, _ = self._weights(0, d)
        dtab = self._scatter(np.zeros((cache.embedding.shape[0], w_ih.shape[0]), self.dtype),
                             cache.ids, dxp, cache.backend)
        dbi = dtab.sum(axis=0) if b_ih is not None else None
        return dtab.T @ cache.embedding, dbi, dtab @ w_ih

    # ---- PyTorch interop -------------------------------------------------------------
    def torch_state_dict(self, arrays=None) -> dict:
        """``arrays`` (default: the parameters), or any params-shaped dict such as grads,
        under ``torch.nn`` state_dict names and shapes, as NumPy arrays (copies)."""
        arrays = self.params if arrays is None else arrays
        missing = set(self.params) - set(arrays)
        if missing:
            raise ValueError(f"missing entries {sorted(missing)}")
        return {k: np.array(arrays[k], copy=True) for k in self.params}

    def load_torch_state_dict(self, state_dict) -> None:
        """Copy weights from a ``torch.nn`` state_dict (tensors or arrays) into ``params``."""
        new = {}
        for name, p in self.params.items():
            if name not in state_dict:
                raise ValueError(f"state_dict lacks {name!r}")
            v = state_dict[name]
            v = v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)
            if v.shape != p.shape:
                raise ValueError(f"{name} must have shape {p.shape}, got {tuple(v.shape)}")
            new[name] = v.astype(self.dtype, copy=True)
        extra = set(state_dict) - set(self.params)
        if extra:
            raise ValueError(f"state_dict has unexpected entries {sorted(extra)}")
        self.params = new

    def to_torch(self):
        """A ``torch.nn.RNN/GRU/LSTM`` (batch_first=True) holding a copy of these weights."""
        import torch

        if self.mode == "gru" and not self.reset_after:
            raise ValueError("torch.nn.GRU only has the reset_after=True form")
        if self.bidirectional and self.merge_mode != "concat":
            raise ValueError("torch.nn modules only concatenate directions (merge_mode='concat')")
        kwargs = dict(num_layers=self.num_layers, bias=self.bias, batch_first=True,
                      dropout=self.dropout, bidirectional=self.bidirectional)
        cls = {"rnn": torch.nn.RNN, "gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[self.mode]
        if self.mode == "rnn":
            kwargs["nonlinearity"] = self.nonlinearity
        tdtype = torch.float64 if self.dtype == np.float64 else torch.float32
        module = cls(self.input_size, self.hidden_size, dtype=tdtype, **kwargs)
        with torch.no_grad():
            module.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in self.params.items()})
        return module


class RNN(RecurrentLayer):
    """Basic (Elman) RNN, tanh or relu — ``torch.nn.RNN`` with batch-major input."""

    mode = "rnn"

    def __init__(self, input_size, hidden_size, num_layers=1, **kwargs):
        kwargs.pop("mode", None)
        super().__init__(input_size, hidden_size, num_layers, **kwargs)


class GRU(RecurrentLayer):
    """GRU; ``reset_after=True`` is ``torch.nn.GRU``, False is the notes' (Cho 2014) form."""

    mode = "gru"

    def __init__(self, input_size, hidden_size, num_layers=1, **kwargs):
        kwargs.pop("mode", None)
        super().__init__(input_size, hidden_size, num_layers, **kwargs)


class LSTM(RecurrentLayer):
    """LSTM — ``torch.nn.LSTM`` (no projections) with batch-major input."""

    mode = "lstm"

    def __init__(self, input_size, hidden_size, num_layers=1, **kwargs):
        kwargs.pop("mode", None)
        super().__init__(input_size, hidden_size, num_layers, **kwargs)


def from_torch(module) -> RecurrentLayer:
    """An exact rnnkit copy of a ``torch.nn.RNN/GRU/LSTM`` (same dtype and weights).

    rnnkit layers are batch-major whatever the module's ``batch_first``.
    """
    try:
        import torch
    except ImportError as e:  # pragma: no cover - torch is a test dependency
        raise ImportError("from_torch needs PyTorch installed") from e
    if not isinstance(module, torch.nn.RNNBase):
        raise TypeError(f"from_torch expects torch.nn.RNN, GRU or LSTM, got {type(module).__name__}")
    if getattr(module, "proj_size", 0):
        raise ValueError("LSTM projections (proj_size > 0) are not supported")
    mode_map = {"RNN_TANH": ("rnn", "tanh"), "RNN_RELU": ("rnn", "relu"),
                "GRU": ("gru", "tanh"), "LSTM": ("lstm", "tanh")}
    if module.mode not in mode_map:
        raise ValueError(f"unsupported torch RNN mode {module.mode!r}")
    mode, nonlin = mode_map[module.mode]
    w = next(module.parameters())
    dtype = {torch.float32: np.float32, torch.float64: np.float64}.get(w.dtype)
    if dtype is None:
        raise ValueError(f"torch module dtype must be float32 or float64, got {w.dtype}")
    cls = {"rnn": RNN, "gru": GRU, "lstm": LSTM}[mode]
    layer = cls(module.input_size, module.hidden_size, module.num_layers, bias=module.bias,
                bidirectional=module.bidirectional, dropout=module.dropout, dtype=dtype,
                **({"nonlinearity": nonlin} if mode == "rnn" else {}))
    layer.load_torch_state_dict(module.state_dict())
    return layer
