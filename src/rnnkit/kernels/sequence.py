"""Whole-sequence loops: one compiled call runs a direction's T steps over rows [n0, n1).

Each step is exactly the per-step path of :mod:`.cells` — the recurrent product, then the
cell's gate kernel — with the product done by :func:`.packed.packed_gemm` on the weight
packed once for the sequence (names ending in ``_p``: :func:`.packed.pack` of the matrix the
per-step path multiplies by) instead of ``np.matmul`` from Python.  The loops release the
GIL for the whole sequence, so the driver's row workers (:func:`rnnkit.recurrent._on_rows`)
run side by side with no Python and no synchronisation between steps.  Arguments are those
of the step kernels (layouts in :mod:`.lstm`); ``store`` False runs the forward on two
history slots.
"""

from __future__ import annotations

from numba import njit

from ._math import JIT, STEP_JIT
from .gru import (gru_reset_after_bwd, gru_reset_after_fwd, gru_reset_before_bwd_candidate,
                  gru_reset_before_bwd_reset, gru_reset_before_fwd_gates,
                  gru_reset_before_fwd_state)
from .lstm import lstm_bwd, lstm_fwd
from .packed import packed_gemm
from .rnn import rnn_bwd, rnn_fwd


@njit(**STEP_JIT)
def _slots(t, store):
    """History slots (entering, leaving) of step t: t, t+1, or alternating without store."""
    if store:
        return t, t + 1
    return t & 1, (t + 1) & 1


@njit(**JIT)
def lstm_fwd_seq(n0, n1, pos, lens, xsrc, xidx, gh, b, hh, ch, out, act, store, w_hh_t_p):
    for t in range(pos.shape[0]):
        ti, to = _slots(t, store)
        packed_gemm(hh[ti, n0:n1], w_hh_t_p, gh[n0:n1])
        lstm_fwd(t, ti, to, n0, n1, pos, lens, xsrc, xidx, gh, b, hh, ch, out, act, store)


@njit(**JIT)
def lstm_bwd_seq(n0, n1, pos, lens, dhrec, dhd, dout, has_dout, dc, act, ch, dG, scratch, w_hh_p):
    for t in range(pos.shape[0] - 1, -1, -1):
        lstm_bwd(t, n0, n1, pos, lens, dhrec, dhd, dout, has_dout, dc, act, ch, dG, scratch)
        packed_gemm(dG[t, n0:n1], w_hh_p, dhrec[n0:n1])


@njit(**JIT)
def rnn_fwd_seq(n0, n1, pos, lens, xsrc, xidx, gh, b, relu, hh, out, store, w_hh_t_p):
    for t in range(pos.shape[0]):
        ti, to = _slots(t, store)
        packed_gemm(hh[ti, n0:n1], w_hh_t_p, gh[n0:n1])
        rnn_fwd(t, ti, to, n0, n1, pos, lens, xsrc, xidx, gh, b, relu, hh, out)


@njit(**JIT)
def rnn_bwd_seq(n0, n1, pos, lens, dhrec, dhd, dout, has_dout, relu, hh, dG, w_hh_p):
    for t in range(pos.shape[0] - 1, -1, -1):
        rnn_bwd(t, n0, n1, pos, lens, dhrec, dhd, dout, has_dout, relu, hh, dG)
        packed_gemm(dG[t, n0:n1], w_hh_p, dhrec[n0:n1])


@njit(**JIT)
def gru_reset_after_fwd_seq(n0, n1, pos, lens, xsrc, xidx, gh, b, bxn, hh, out, act, ghns,
                            xbuf, store, w_hh_t_p):
    for t in range(pos.shape[0]):
        ti, to = _slots(t, store)
        packed_gemm(hh[ti, n0:n1], w_hh_t_p, gh[n0:n1])
        gru_reset_after_fwd(t, ti, to, n0, n1, pos, lens, xsrc, xidx, gh, b, bxn, hh, out, act,
                            ghns, xbuf, store)


@njit(**JIT)
def gru_reset_after_bwd_seq(n0, n1, pos, lens, dhrec, dhd, dout, has_dout, act, ghns, hh, dG,
                            dGHn, dGs, scratch, w_hh_p):
    for t in range(pos.shape[0] - 1, -1, -1):
        gru_reset_after_bwd(t, n0, n1, pos, lens, dhrec, dhd, dout, has_dout, act, ghns, hh, dG,
                            dGHn, dGs, scratch)
        packed_gemm(dGs[n0:n1], w_hh_p, dhrec[n0:n1])


@njit(**JIT)
def gru_reset_before_fwd_seq(n0, n1, pos, lens, xsrc, xidx, grz, ghn, b, hh, xbuf, rz, rh, out,
                             act, rhs, store, w_rz_t_p, w_n_t_p):
    for t in range(pos.shape[0]):
        ti, to = _slots(t, store)
        packed_gemm(hh[ti, n0:n1], w_rz_t_p, grz[n0:n1])
        gru_reset_before_fwd_gates(t, ti, n0, n1, pos, lens, xsrc, xidx, grz, b, hh, xbuf, rz,
                                   rh, act, rhs, store)
        packed_gemm(rh[n0:n1], w_n_t_p, ghn[n0:n1])
        gru_reset_before_fwd_state(t, ti, to, n0, n1, pos, lens, ghn, b, hh, xbuf, rz, out, act,
                                   store)


@njit(**JIT)
def gru_reset_before_bwd_seq(n0, n1, pos, lens, dhrec, dhd, dout, has_dout, act, hh, dG, dn_s,
                             drh, drz, w_n_p, w_rz_p):
    for t in range(pos.shape[0] - 1, -1, -1):
        gru_reset_before_bwd_candidate(t, n0, n1, pos, lens, dhrec, dhd, dout, has_dout, act,
                                       hh, dG, dn_s)
        packed_gemm(dn_s[n0:n1], w_n_p, drh[n0:n1])
        gru_reset_before_bwd_reset(t, n0, n1, pos, lens, drh, dhd, act, hh, dG, drz)
        packed_gemm(drz[n0:n1], w_rz_p, dhrec[n0:n1])
