"""A language model's generation step in compiled code: one call per token
(:func:`rnnkit.kernels.lmstep.lm_token`), or a whole sampling run in one call
(:func:`rnnkit.kernels.lmstep.lm_sample`).

:meth:`rnnkit.models.language_model.LanguageModel.stepper` builds a :class:`LeanStep` for a
full-softmax model on the Numba backend with an embedding-projection table (a character
vocabulary).  At batch 1 a GRU or Elman token is a few tens of microseconds of arithmetic;
calling a kernel per token from Python and sampling in NumPy costs about as much again, so
:func:`rnnkit.decode.sample` hands the whole loop to :meth:`LeanStep.sample` where it can.

Shapes: L layers, N rows, H hidden units, G gates, V vocabulary.
"""

from __future__ import annotations

import numpy as np

# Up to this many rows a generation step runs the whole model in one compiled call
# (matrix-vector products in Numba); wider steps (many samples, wide beams) use BLAS.
MAX_ROWS = 8

_CELL_CODES = {"lstm": 3, "gru": 2}


class LeanStep:
    """The whole model for one token, or for a sampling run, in compiled calls.

    ``model`` a full-softmax :class:`LanguageModel` on the Numba backend (not the notes' GRU
    form); ``table`` (V, G*H) its layer-0 embedding-projection table; ``threads`` as in
    :meth:`LanguageModel.stepper`.  The weights are stacked per layer once: valid until they
    change."""

    max_rows = MAX_ROWS

    def __init__(self, model, table, threads=1):
        from ..kernels import blas
        from ..kernels.lmstep import block_edges

        rnn = model.rnn
        self.rnn = rnn
        self.code = _CELL_CODES.get(rnn.mode, 1 if rnn.nonlinearity == "relu" else 0)
        L, H, dt = rnn.num_layers, rnn.hidden_size, rnn.dtype
        GH = table.shape[1]
        w = [rnn._weights(layer, 0) for layer in range(L)]
        zeros = np.zeros(GH, dtype=dt)
        self.table = np.ascontiguousarray(table)
        self.wih = np.stack([w[i][0] for i in range(1, L)]) if L > 1 \
            else np.zeros((1, GH, H), dt)
        self.bih = np.stack([w[i][1] if w[i][1] is not None else zeros for i in range(1, L)]) \
            if L > 1 else np.zeros((1, GH), dt)
        self.whh = np.stack([w[i][2] for i in range(L)])
        self.bhh = np.stack([w[i][3] if w[i][3] is not None else zeros for i in range(L)])
        self.wout = np.ascontiguousarray(model.out.params["weight"])
        bout = model.out.params.get("bias")
        self.bout = np.zeros(self.wout.shape[0], dt) if bout is None \
            else np.ascontiguousarray(bout)
        self.lstm = rnn.mode == "lstm"
        self.V = self.table.shape[0]
        self.flip = False  # alternates the kernel's weight-read order from token to token
        weight_bytes = self.wih.nbytes * (L > 1) + self.whh.nbytes + self.wout.nbytes
        self.nthreads = blas.generation_threads(weight_bytes, threads)
        self.units, self.vocab = block_edges(H, self.nthreads), block_edges(self.V, self.nthreads)

    def weights(self):
        """The kernels' weight arguments: (table, wih, bih, whh, bhh, wout, bout)."""
        return self.table, self.wih, self.bih, self.whh, self.bhh, self.wout, self.bout

    def _state(self, state, N):
        """(h, c) (L, N, H), contiguous; c is h for the cells without a cell state."""
        rnn = self.rnn
        if state is None:
            h = np.zeros((rnn.num_layers, N, rnn.hidden_size), dtype=rnn.dtype)
            return h, (np.zeros_like(h) if self.lstm else h)
        h, c = rnn._check_state(state, N)
        h = np.ascontiguousarray(h)
        return h, (np.ascontiguousarray(c) if self.lstm else h)

    def __call__(self, ids, state):
        """ids (N,) -> (log-probabilities (N, V), state) for 0 < N <= max_rows."""
        from ..kernels.lmstep import lm_token, split_call

        if ids.dtype.kind not in "iu":
            raise ValueError(f"token ids must be integers, got dtype {ids.dtype.name}")
        h, c = self._state(state, ids.shape[0])
        ids = ids.astype(np.int64, copy=False)
        args = (self.code, ids, *self.weights(), h, c)
        got = split_call(self.nthreads, *args, self.units, self.vocab) \
            if self.nthreads > 1 else None
        if got is None:  # one thread: the weight-read order alternates instead
            self.flip = not self.flip
            got = lm_token(*args, self.flip)
        bad, h, c, lp = got
        if bad:
            raise ValueError(f"token ids must lie in [0, {self.V})")
        return lp, ((h, c) if self.lstm else h)

    def sample(self, logp, state, u, t0, max_len, eos, stop, temperature, top_k, top_p,
               records):
        """Draws for tokens t0, t0+1, ... of :func:`rnnkit.decode.sample`'s loop, one row of
        uniforms ``u`` (K, N) each, in one compiled call (one thread: the step of a sampling
        run is short, and a split step waits for its threads at every layer).

        ``records`` (out, ends, total, done) are the loop's, updated in place; ``top_k`` None
        or ``top_p`` None switch those filters off.  Returns (draws made, log-probabilities
        after them, state): fewer than K draws only when every row ended at ``eos``."""
        from ..kernels.lmstep import lm_sample

        N = logp.shape[0]
        h, c = self._state(state, N)
        lp = np.ascontiguousarray(logp, dtype=self.table.dtype)
        k = 0 if top_k is None or top_k >= self.V else int(top_k)
        p = 1.0 if top_p is None else float(top_p)
        used, h, c, lp, self.flip = lm_sample(
            self.code, *self.weights(), h, c, lp, u, int(t0), int(max_len), int(eos),
            bool(stop), float(temperature), k, p, self.flip, *records)
        return used, lp, ((h, c) if self.lstm else h)
