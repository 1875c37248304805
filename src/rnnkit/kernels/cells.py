"""Fused cells: the per-step sequence (recurrent product, then one Numba gate kernel)
behind the small interface the fused driver in :mod:`rnnkit.recurrent` calls.

A fused cell keeps no state; everything of one run lives in a
:class:`rnnkit.recurrent.FusedWork` ``w`` (its fields state their shapes; layouts in
:mod:`.lstm`).  ``begin_forward`` / ``begin_backward`` allocate the cell's buffers once per
run — no per-step temporaries; ``forward_step(w, t, ti, to, n0, n1)`` /
``backward_step(w, t, n0, n1)`` do one time step for batch rows [n0, n1) (threads over
disjoint row ranges run whole sequences side by side); ``grads`` turns the gate gradients of
all steps (step order) into (dX (T, N, G*H) = dL/d input projection, dW_hh, db_hh, db_ih),
one product each (db_ih is the sum of dX, the same vector as db_hh except in the n block of
PyTorch's GRU).
"""

from __future__ import annotations

import numpy as np

from .gru import (gru_reset_after_bwd, gru_reset_after_fwd, gru_reset_before_bwd_candidate,
                  gru_reset_before_bwd_reset, gru_reset_before_fwd_gates,
                  gru_reset_before_fwd_state)
from .lstm import lstm_bwd, lstm_fwd
from .rnn import rnn_bwd, rnn_fwd


def seq():
    """The whole-sequence loops (:mod:`.sequence`), imported when first used: they pull in
    the packed product of :mod:`.packed`."""
    from . import sequence

    return sequence


def column_sums(a2):
    """The sum over the rows of a (M, C) matrix — a bias gradient — as one BLAS
    matrix-vector product with ones: it reads the (just written, mostly uncached) gate
    gradients with both cores, and sums each column in the BLAS's vector lanes rather than
    row after row as ``a2.sum(axis=0)`` does.  3,200 x 768 float32: 0.62-0.65 against
    1.37-1.51 ms, and 3x closer to the float64 sum (bench/RESULTS.md, session 8)."""
    return np.ones(a2.shape[0], dtype=a2.dtype) @ a2


def _dummy(dtype, ndim):
    return np.zeros((1,) * ndim, dtype=dtype)


class FusedCell:
    gates = 1
    has_cell = False
    keeps_gates = True  # backward reads the activated gates ``act``
    name = "fused"
    # b_ih is added inside the loop, not in a pass over the (T*N, G*H) projection (which cost
    # as much as a third of the projection's product): with b_hh as one vector for every gate
    # whose pre-activation is x W_ih + b_ih + h W_hh + b_hh; the GRU's reset-after candidate,
    # tanh(x W_in + b_in + r * (h W_hn + b_hn)), adds its b_in apart (``bx``).
    bias_blocks_in_loop = None  # all of them

    def loop_bias(self, b_ih, b_hh, H):
        """(b, bx): the bias the loop adds to each step's ``x W_ih + h W_hh`` (b_hh plus what
        of b_ih it can take) and the rest of b_ih, which the loop adds to the projection's
        last gate blocks as it reads them (None when there is none)."""
        if b_ih is None:
            return b_hh, None
        k = b_ih.shape[0] if self.bias_blocks_in_loop is None else self.bias_blocks_in_loop * H
        b = np.zeros_like(b_ih) if b_hh is None else b_hh.copy()
        b[:k] += b_ih[:k]
        return b, (b_ih[k:] if k < b_ih.shape[0] else None)

    # The matrices of the step products, packed for the compiled loop (kernels.packed):
    # (packed field, field) of FusedWork, forward and backward.
    packs_forward = (("w_hh_t_p", "w_hh_t"),)
    packs_backward = (("w_hh_p", "w_hh"),)

    @staticmethod
    def pack(w, pairs):
        """Pack the step products' matrices for the compiled loop, once per run."""
        from .packed import pack

        for dst, src in pairs:
            setattr(w, dst, pack(getattr(w, src)))

    def _stored(self, w, name, shape):
        setattr(w, name, np.empty(shape, dtype=w.dtype) if w.store else _dummy(w.dtype, 3))

    @staticmethod
    def _reuse(w, name, shape):
        """In release mode (forward direction only, see run_backward_fused) the saved buffer
        ``name`` when it has ``shape``: each backward step reads its row before writing it."""
        if w.release:
            a = getattr(w, name)
            if a is not None and a.shape == shape and a.flags.c_contiguous:
                return a
        return np.empty(shape, dtype=w.dtype)


class FusedLSTM(FusedCell):
    name = "lstm"
    gates = 4
    has_cell = True

    def begin_forward(self, w):
        w.gh = np.empty((w.N, 4 * w.H), dtype=w.dtype)

    def forward_step(self, w, t, ti, to, n0, n1):
        np.matmul(w.hh[ti, n0:n1], w.w_hh_t, out=w.gh[n0:n1])
        lstm_fwd(t, ti, to, n0, n1, w.pos, w.lens, w.xsrc, w.xidx, w.gh, w.b, w.hh, w.ch, w.out,
                 w.act, w.store)

    def forward_seq(self, w, n0, n1):
        seq().lstm_fwd_seq(n0, n1, w.pos, w.lens, w.xsrc, w.xidx, w.gh, w.b, w.hh, w.ch, w.out,
                           w.act, w.store, w.w_hh_t_p)

    def backward_seq(self, w, n0, n1):
        seq().lstm_bwd_seq(n0, n1, w.pos, w.lens, w.dhrec, w.dhd, w.dout, w.has_dout, w.dc,
                           w.act, w.ch, w.dG, w.scratch, w.w_hh_p)

    def begin_backward(self, w):
        w.dG = self._reuse(w, "act", (w.T, w.N, 4 * w.H))
        w.scratch = np.empty((w.N, 4 * w.H), dtype=w.dtype)

    def backward_step(self, w, t, n0, n1):
        lstm_bwd(t, n0, n1, w.pos, w.lens, w.dhrec, w.dhd, w.dout, w.has_dout, w.dc, w.act, w.ch,
                 w.dG, w.scratch)
        np.matmul(w.dG[t, n0:n1], w.w_hh, out=w.dhrec[n0:n1])

    def grads(self, w):
        d2 = w.dG.reshape(-1, 4 * w.H)
        db = column_sums(d2)
        return w.dG, d2.T @ w.hh[:-1].reshape(-1, w.H), db, db.copy()


class FusedRNN(FusedCell):
    gates = 1
    keeps_gates = False

    def __init__(self, nonlinearity="tanh"):
        self.relu = nonlinearity == "relu"
        self.name = f"rnn_{nonlinearity}"

    def begin_forward(self, w):
        w.gh = np.empty((w.N, w.H), dtype=w.dtype)

    def forward_step(self, w, t, ti, to, n0, n1):
        np.matmul(w.hh[ti, n0:n1], w.w_hh_t, out=w.gh[n0:n1])
        rnn_fwd(t, ti, to, n0, n1, w.pos, w.lens, w.xsrc, w.xidx, w.gh, w.b, self.relu, w.hh,
                w.out)

    def forward_seq(self, w, n0, n1):
        seq().rnn_fwd_seq(n0, n1, w.pos, w.lens, w.xsrc, w.xidx, w.gh, w.b, self.relu, w.hh,
                          w.out, w.store, w.w_hh_t_p)

    def backward_seq(self, w, n0, n1):
        seq().rnn_bwd_seq(n0, n1, w.pos, w.lens, w.dhrec, w.dhd, w.dout, w.has_dout, self.relu,
                          w.hh, w.dG, w.w_hh_p)

    def begin_backward(self, w):
        # Nothing but the history is saved, so in release mode dG goes over dout.
        w.dG = self._reuse(w, "dout", (w.T, w.N, w.H)) if w.has_dout else \
            np.empty((w.T, w.N, w.H), dtype=w.dtype)

    def backward_step(self, w, t, n0, n1):
        rnn_bwd(t, n0, n1, w.pos, w.lens, w.dhrec, w.dhd, w.dout, w.has_dout, self.relu, w.hh,
                w.dG)
        np.matmul(w.dG[t, n0:n1], w.w_hh, out=w.dhrec[n0:n1])

    def grads(self, w):
        d2 = w.dG.reshape(-1, w.H)
        db = column_sums(d2)
        return w.dG, d2.T @ w.hh[:-1].reshape(-1, w.H), db, db.copy()


class FusedGRU(FusedCell):
    """reset_after=True (PyTorch's form)."""

    bias_blocks_in_loop = 2  # r and z; the candidate's b_in sits outside r * (h W_hn + b_hn)
    name = "gru"
    gates = 3

    def begin_forward(self, w):
        w.gh = np.empty((w.N, 3 * w.H), dtype=w.dtype)
        w.xbuf = np.empty((w.N, 3 * w.H), dtype=w.dtype)
        if w.bx is None:  # a table holds b_in already, or there is no bias
            w.bx = np.zeros(w.H, dtype=w.dtype)
        self._stored(w, "ghns", (w.T, w.N, w.H))

    def forward_step(self, w, t, ti, to, n0, n1):
        np.matmul(w.hh[ti, n0:n1], w.w_hh_t, out=w.gh[n0:n1])
        gru_reset_after_fwd(t, ti, to, n0, n1, w.pos, w.lens, w.xsrc, w.xidx, w.gh, w.b, w.bx,
                            w.hh, w.out, w.act, w.ghns, w.xbuf, w.store)

    def forward_seq(self, w, n0, n1):
        seq().gru_reset_after_fwd_seq(n0, n1, w.pos, w.lens, w.xsrc, w.xidx, w.gh, w.b, w.bx,
                                      w.hh, w.out, w.act, w.ghns, w.xbuf, w.store,
                                      w.w_hh_t_p)

    def backward_seq(self, w, n0, n1):
        seq().gru_reset_after_bwd_seq(n0, n1, w.pos, w.lens, w.dhrec, w.dhd, w.dout, w.has_dout,
                                      w.act, w.ghns, w.hh, w.dG, w.dGHn, w.dGs, w.scratch,
                                      w.w_hh_p)

    def begin_backward(self, w):
        w.dG = self._reuse(w, "act", (w.T, w.N, 3 * w.H))
        w.dGHn = self._reuse(w, "ghns", (w.T, w.N, w.H))
        w.scratch = np.empty((w.N, 3 * w.H), dtype=w.dtype)
        w.dGs = np.empty((w.N, 3 * w.H), dtype=w.dtype)

    def backward_step(self, w, t, n0, n1):
        gru_reset_after_bwd(t, n0, n1, w.pos, w.lens, w.dhrec, w.dhd, w.dout, w.has_dout, w.act,
                            w.ghns, w.hh, w.dG, w.dGHn, w.dGs, w.scratch)
        np.matmul(w.dGs[n0:n1], w.w_hh, out=w.dhrec[n0:n1])

    def grads(self, w):
        H = w.H
        d2 = w.dG.reshape(-1, 3 * H)
        dn2 = w.dGHn.reshape(-1, H)
        hp = w.hh[:-1].reshape(-1, H)
        dW = np.empty((3 * H, H), dtype=w.dtype)
        np.matmul(d2[:, : 2 * H].T, hp, out=dW[: 2 * H])
        np.matmul(dn2.T, hp, out=dW[2 * H:])
        # One contiguous pass over dG: dL/db_ih, whose r, z part is also dL/db_hh's.
        db_ih = column_sums(d2)
        db = np.concatenate([db_ih[: 2 * H], column_sums(dn2)])
        return w.dG, dW, db, db_ih


class FusedGRUResetBefore(FusedCell):
    """reset_after=False (the notes' form): two recurrent products per step."""

    name = "gru_reset_before"
    gates = 3
    packs_forward = (("w_rz_t_p", "w_rz_t"), ("w_n_t_p", "w_n_t"))
    packs_backward = (("w_n_p", "w_n"), ("w_rz_p", "w_rz"))

    def begin_forward(self, w):
        N, H, dt = w.N, w.H, w.dtype
        w.w_rz_t = w.w_hh_t[:, : 2 * H]  # (H, 2H) and (H, H) column blocks of W_hh.T
        w.w_n_t = w.w_hh_t[:, 2 * H:]
        w.grz = np.empty((N, 2 * H), dtype=dt)
        w.ghn = np.empty((N, H), dtype=dt)
        w.xbuf = np.empty((N, 3 * H), dtype=dt)
        w.rz = np.empty((N, 2 * H), dtype=dt)
        w.rh = np.empty((N, H), dtype=dt)
        self._stored(w, "rhs", (w.T, N, H))

    def forward_step(self, w, t, ti, to, n0, n1):
        np.matmul(w.hh[ti, n0:n1], w.w_rz_t, out=w.grz[n0:n1])
        gru_reset_before_fwd_gates(t, ti, n0, n1, w.pos, w.lens, w.xsrc, w.xidx, w.grz, w.b,
                                   w.hh, w.xbuf, w.rz, w.rh, w.act, w.rhs, w.store)
        np.matmul(w.rh[n0:n1], w.w_n_t, out=w.ghn[n0:n1])
        gru_reset_before_fwd_state(t, ti, to, n0, n1, w.pos, w.lens, w.ghn, w.b, w.hh, w.xbuf,
                                   w.rz, w.out, w.act, w.store)

    def forward_seq(self, w, n0, n1):
        seq().gru_reset_before_fwd_seq(n0, n1, w.pos, w.lens, w.xsrc, w.xidx, w.grz, w.ghn,
                                       w.b, w.hh, w.xbuf, w.rz, w.rh, w.out, w.act, w.rhs,
                                       w.store, w.w_rz_t_p, w.w_n_t_p)

    def backward_seq(self, w, n0, n1):
        seq().gru_reset_before_bwd_seq(n0, n1, w.pos, w.lens, w.dhrec, w.dhd, w.dout,
                                       w.has_dout, w.act, w.hh, w.dG, w.dn_s, w.drh, w.drz,
                                       w.w_n_p, w.w_rz_p)

    def begin_backward(self, w):
        N, H, dt = w.N, w.H, w.dtype
        w.dG = self._reuse(w, "act", (w.T, N, 3 * H))
        w.dn_s = np.empty((N, H), dtype=dt)
        w.drh = np.empty((N, H), dtype=dt)
        w.drz = np.empty((N, 2 * H), dtype=dt)
        w.w_rz = w.w_hh[: 2 * H]
        w.w_n = w.w_hh[2 * H:]

    def backward_step(self, w, t, n0, n1):
        gru_reset_before_bwd_candidate(t, n0, n1, w.pos, w.lens, w.dhrec, w.dhd, w.dout,
                                       w.has_dout, w.act, w.hh, w.dG, w.dn_s)
        np.matmul(w.dn_s[n0:n1], w.w_n, out=w.drh[n0:n1])
        gru_reset_before_bwd_reset(t, n0, n1, w.pos, w.lens, w.drh, w.dhd, w.act, w.hh, w.dG,
                                   w.drz)
        np.matmul(w.drz[n0:n1], w.w_rz, out=w.dhrec[n0:n1])

    def grads(self, w):
        H = w.H
        d2 = w.dG.reshape(-1, 3 * H)
        dW = np.empty((3 * H, H), dtype=w.dtype)
        np.matmul(d2[:, : 2 * H].T, w.hh[:-1].reshape(-1, H), out=dW[: 2 * H])
        np.matmul(d2[:, 2 * H:].T, w.rhs.reshape(-1, H), out=dW[2 * H:])
        db = column_sums(d2)
        return w.dG, dW, db, db.copy()


def make_fused_cell(mode: str, *, nonlinearity: str = "tanh", reset_after: bool = True):
    from ..cells import check_cell

    check_cell(mode)  # one registry of cell names: rnnkit.cells.CELLS
    if mode == "lstm":
        return FusedLSTM()
    if mode == "gru":
        return FusedGRU() if reset_after else FusedGRUResetBefore()
    return FusedRNN(nonlinearity)
