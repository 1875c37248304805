"""Fused cells: the per-step sequence (recurrent GEMM via BLAS, then one Numba gate kernel)
behind the small interface the fused driver in :mod:`rnnkit.recurrent` calls.

A fused cell keeps no state; everything of one run lives in a work object ``w`` that the
driver fills (T, N, H, dtype, pos, lens, xsrc, xidx, act, h, c, out, w_hh, b, store, ...).
``begin_forward`` / ``begin_backward`` allocate the cell's buffers once per run — no per-step
temporaries; ``forward_step`` / ``backward_step`` do one time step; ``grads`` turns the
gate gradients of all steps into (dX (T, N, G*H) = dL/d input projection, dW_hh, db_hh)
with one product each.
"""

from __future__ import annotations

import numpy as np

from .gru import grub_bwd_a, grub_bwd_b, grub_fwd_a, grub_fwd_b, gru_bwd, gru_fwd
from .lstm import lstm_bwd, lstm_fwd
from .rnn import rnn_bwd, rnn_fwd


def _dummy(dtype, ndim):
    return np.zeros((1,) * ndim, dtype=dtype)


def _step_rows(w, gate_grads, step_buf, t):
    """The (N, G*H) gate-gradient slab of step t as a contiguous BLAS operand."""
    return gate_grads[w.prow[t]] if w.uniform else step_buf


class FusedCell:
    gates = 1
    has_cell = False
    name = "fused"

    def _store_bufs(self, w, *names):
        for nm in names:
            setattr(w, nm, np.empty((w.T, w.N, w.H), dtype=w.dtype) if w.store
                    else _dummy(w.dtype, 3))

    def _dgs(self, w, cols):
        return _dummy(w.dtype, 2) if w.uniform else np.empty((w.N, cols), dtype=w.dtype)


class FusedLSTM(FusedCell):
    name = "lstm"
    gates = 4
    has_cell = True
    shared_bias_grad = True  # dL/db_ih == dL/db_hh

    def begin_forward(self, w):
        w.gh = np.empty((w.N, 4 * w.H), dtype=w.dtype)
        self._store_bufs(w, "hs", "cs", "tcs")

    def forward_step(self, w, t):
        np.matmul(w.h, w.w_hh_t, out=w.gh)
        lstm_fwd(t, w.pos, w.lens, w.xsrc, w.xidx, w.gh, w.b, w.h, w.c, w.h2, w.out, w.act,
                 w.hs, w.cs, w.tcs, w.store)
        w.h, w.h2 = w.h2, w.h

    def begin_backward(self, w):
        w.dX = np.empty((w.T, w.N, 4 * w.H), dtype=w.dtype)
        w.dGs = self._dgs(w, 4 * w.H)

    def backward_step(self, w, t):
        lstm_bwd(t, w.pos, w.lens, w.dhrec, w.dhd, w.dout, w.has_dout, w.dc, w.act, w.cs,
                 w.tcs, w.dX, w.dGs, not w.uniform)
        np.matmul(_step_rows(w, w.dX, w.dGs, t), w.w_hh, out=w.dhrec)

    def grads(self, w):
        d2 = w.dX.reshape(-1, 4 * w.H)
        return w.dX, d2.T @ w.hs.reshape(-1, w.H), d2.sum(axis=0)


class FusedRNN(FusedCell):
    gates = 1
    shared_bias_grad = True

    def __init__(self, nonlinearity="tanh"):
        self.relu = nonlinearity == "relu"
        self.name = f"rnn_{nonlinearity}"

    def begin_forward(self, w):
        w.gh = np.empty((w.N, w.H), dtype=w.dtype)
        self._store_bufs(w, "hs")

    def forward_step(self, w, t):
        np.matmul(w.h, w.w_hh_t, out=w.gh)
        rnn_fwd(t, w.pos, w.lens, w.xsrc, w.xidx, w.gh, w.b, self.relu, w.h, w.h2, w.out,
                w.hs, w.store)
        w.h, w.h2 = w.h2, w.h

    def begin_backward(self, w):
        w.dX = np.empty((w.T, w.N, w.H), dtype=w.dtype)
        w.dGs = self._dgs(w, w.H)

    def backward_step(self, w, t):
        rnn_bwd(t, w.pos, w.lens, w.dhrec, w.dhd, w.dout, w.has_dout, self.relu, w.out, w.dX,
                w.dGs, not w.uniform)
        np.matmul(_step_rows(w, w.dX, w.dGs, t), w.w_hh, out=w.dhrec)

    def grads(self, w):
        d2 = w.dX.reshape(-1, w.H)
        return w.dX, d2.T @ w.hs.reshape(-1, w.H), d2.sum(axis=0)


class FusedGRU(FusedCell):
    """reset_after=True (PyTorch's form)."""

    name = "gru"
    gates = 3

    def begin_forward(self, w):
        w.gh = np.empty((w.N, 3 * w.H), dtype=w.dtype)
        w.xbuf = np.empty(3 * w.H, dtype=w.dtype)
        self._store_bufs(w, "ghns", "hs")

    def forward_step(self, w, t):
        np.matmul(w.h, w.w_hh_t, out=w.gh)
        gru_fwd(t, w.pos, w.lens, w.xsrc, w.xidx, w.gh, w.b, w.h, w.h2, w.out, w.act, w.ghns,
                w.hs, w.xbuf, w.store)
        w.h, w.h2 = w.h2, w.h

    def begin_backward(self, w):
        w.dX = np.empty((w.T, w.N, 3 * w.H), dtype=w.dtype)
        w.dGH = np.empty((w.T, w.N, 3 * w.H), dtype=w.dtype)
        w.dGs = self._dgs(w, 3 * w.H)

    def backward_step(self, w, t):
        gru_bwd(t, w.pos, w.lens, w.dhrec, w.dhd, w.dout, w.has_dout, w.act, w.ghns, w.hs,
                w.dX, w.dGH, w.dGs, not w.uniform)
        np.matmul(_step_rows(w, w.dGH, w.dGs, t), w.w_hh, out=w.dhrec)

    def grads(self, w):
        d2 = w.dGH.reshape(-1, 3 * w.H)
        dW = d2.T @ w.hs.reshape(-1, w.H)
        db = d2.sum(axis=0)
        w.dGH = None  # free it before the caller's input-gradient products
        return w.dX, dW, db


class FusedGRUResetBefore(FusedCell):
    """reset_after=False (the notes' form): two recurrent products per step."""

    name = "gru_reset_before"
    gates = 3
    shared_bias_grad = True

    def begin_forward(self, w):
        N, H, dt = w.N, w.H, w.dtype
        w.w_rz_t = w.w_hh[: 2 * H].T
        w.w_n_t = w.w_hh[2 * H:].T
        w.grz = np.empty((N, 2 * H), dtype=dt)
        w.ghn = np.empty((N, H), dtype=dt)
        w.xbuf = np.empty((N, 3 * H), dtype=dt)
        w.rz = np.empty((N, 2 * H), dtype=dt)
        w.rh = np.empty((N, H), dtype=dt)
        self._store_bufs(w, "hs", "rhs")

    def forward_step(self, w, t):
        np.matmul(w.h, w.w_rz_t, out=w.grz)
        grub_fwd_a(t, w.pos, w.lens, w.xsrc, w.xidx, w.grz, w.b, w.h, w.xbuf, w.rz, w.rh,
                   w.act, w.rhs, w.store)
        np.matmul(w.rh, w.w_n_t, out=w.ghn)
        grub_fwd_b(t, w.pos, w.lens, w.ghn, w.b, w.h, w.xbuf, w.rz, w.h2, w.out, w.act, w.hs,
                   w.store)
        w.h, w.h2 = w.h2, w.h

    def begin_backward(self, w):
        N, H, dt = w.N, w.H, w.dtype
        w.dX = np.empty((w.T, N, 3 * H), dtype=dt)
        w.dn_s = np.empty((N, H), dtype=dt)
        w.drh = np.empty((N, H), dtype=dt)
        w.drz = np.empty((N, 2 * H), dtype=dt)
        w.w_rz = w.w_hh[: 2 * H]
        w.w_n = w.w_hh[2 * H:]

    def backward_step(self, w, t):
        grub_bwd_a(t, w.pos, w.lens, w.dhrec, w.dhd, w.dout, w.has_dout, w.act, w.hs, w.dX,
                   w.dn_s)
        np.matmul(w.dn_s, w.w_n, out=w.drh)
        grub_bwd_b(t, w.pos, w.lens, w.drh, w.dhd, w.act, w.hs, w.dX, w.drz)
        np.matmul(w.drz, w.w_rz, out=w.dhrec)

    def grads(self, w):
        H = w.H
        d2 = w.dX.reshape(-1, 3 * H)
        dW = np.concatenate([d2[:, : 2 * H].T @ w.hs.reshape(-1, H),
                             d2[:, 2 * H:].T @ w.rhs.reshape(-1, H)], axis=0)
        return w.dX, dW, d2.sum(axis=0)


def make_fused_cell(mode: str, *, nonlinearity: str = "tanh", reset_after: bool = True):
    if mode == "lstm":
        return FusedLSTM()
    if mode == "gru":
        return FusedGRU() if reset_after else FusedGRUResetBefore()
    if mode == "rnn":
        return FusedRNN(nonlinearity)
    raise ValueError(f"unknown cell {mode!r}: expected 'rnn', 'gru' or 'lstm'")
