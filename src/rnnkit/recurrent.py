"""The one time-loop driver: any cell over a batch, in either direction, with masks.

Everything here is time-major internally (T, N, ...) so each step reads a contiguous slab;
the public layers in :mod:`rnnkit.layers.recurrent` are batch-major.

Masks (DESIGN principle 6) live only here: past a sequence's end its state is carried
unchanged and its output is zero, so a padded batch gives every sequence exactly the result
it would have alone.  The reverse direction reverses each sequence within its own length
(:func:`reverse_index`), so padding never leaks into the first backward step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cells.base import Cell


def reverse_index(lengths: np.ndarray, T: int) -> np.ndarray:
    """(T, N) time indices that reverse each sequence within its length; padding stays put.

    The map is its own inverse, so the same gather undoes it.
    """
    t = np.arange(T)[:, None]
    L = np.asarray(lengths)[None, :]
    return np.where(t < L, L - 1 - t, t)


def gather_time(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """a (T, N, ...) gathered along time per sequence: out[t, n] = a[idx[t, n], n]."""
    return a[idx, np.arange(a.shape[1])[None, :]]


def time_mask(lengths: np.ndarray | None, T: int, dtype) -> np.ndarray | None:
    """(T, N, 1) mask of valid steps, or None when every sequence fills all T steps."""
    if lengths is None or np.all(lengths == T):
        return None
    return (np.arange(T)[:, None] < np.asarray(lengths)[None, :]).astype(dtype)[..., None]


@dataclass
class DirectionCache:
    """What :func:`run_backward` needs; read-only after the forward pass."""

    x: np.ndarray | None  # (T, N, D) the input it saw (reversed if reverse); None if given xp
    hs: np.ndarray  # (T, N, H) state entering each step
    step_caches: list
    mask: np.ndarray | None  # (T, N, 1)
    w_ih: np.ndarray
    w_hh: np.ndarray
    has_bias: bool


def run_forward(cell: Cell, x, w_ih, b_ih, w_hh, b_hh, h0, c0, mask, xp=None):
    """Run ``cell`` over x (T, N, D) from h0 (N, H) [and c0].

    ``xp`` (T, N, G*H), if given, is the input projection ``x @ W_ih.T + b_ih`` already made
    (e.g. an embedding-projection lookup); x is then None and backward returns dL/dxp.
    Returns ``(out (T, N, H), h_T, c_T, cache)``; out is zero at masked steps.
    """
    if xp is None:
        T, N, _ = x.shape
        # Hoisted input projection (principle 4): one GEMM for all T steps.
        xp = (x.reshape(T * N, -1) @ w_ih.T).reshape(T, N, -1)
        if b_ih is not None:
            xp += b_ih
    T, N, _ = xp.shape
    H = w_hh.shape[1]
    out = np.empty((T, N, H), dtype=xp.dtype)
    hs = np.empty((T, N, H), dtype=xp.dtype)
    caches = []
    h, c = h0, c0
    for t in range(T):
        hs[t] = h
        h_new, c_new, cache = cell.step(xp[t], h, c, w_hh, b_hh)
        caches.append(cache)
        if mask is not None:
            m = mask[t]
            h_new = h + m * (h_new - h)
            if c_new is not None:
                c_new = c + m * (c_new - c)
            out[t] = m * h_new
        else:
            out[t] = h_new
        h, c = h_new, c_new
    return out, h, c, DirectionCache(x, hs, caches, mask, w_ih, w_hh, b_ih is not None)


def run_backward(cell: Cell, dout, dh_T, dc_T, cache: DirectionCache):
    """Exact BPTT through :func:`run_forward`.

    dout (T, N, H) or None, dh_T (N, H) or None, dc_T (N, H) or None.
    Returns ``(dx (T, N, D), dh0, dc0, (dW_ih, db_ih, dW_hh, db_hh))``; biases None if absent.
    If the forward pass was given ``xp``, dx is dL/dxp (T, N, G*H) and dW_ih, db_ih are None.
    """
    x, hs, mask = cache.x, cache.hs, cache.mask
    T, N, H = hs.shape
    dtype = hs.dtype
    G = cache.w_hh.shape[0]
    dxp = np.empty((T, N, G), dtype=dtype)
    dgh = np.empty((T, N, G), dtype=dtype)
    dh = np.zeros((N, H), dtype=dtype) if dh_T is None else dh_T
    dc = None
    if cell.has_cell:
        dc = np.zeros((N, H), dtype=dtype) if dc_T is None else dc_T
    for t in range(T - 1, -1, -1):
        if mask is not None:
            m = mask[t]
            # out_t = m * h_t, so padded steps' output gradients are dropped.
            dh_t = dh if dout is None else dh + m * dout[t]
            # h_t = m * h_new + (1 - m) * h_{t-1}: only the valid part reaches the cell.
            dxp_t, dh_prev, dc_prev, dgh_t = cell.step_backward(
                m * dh_t, None if dc is None else m * dc, cache.step_caches[t], cache.w_hh
            )
            dh = dh_prev + (1.0 - m) * dh_t
            if dc is not None:
                dc = dc_prev + (1.0 - m) * dc
        else:
            dh_t = dh if dout is None else dh + dout[t]
            dxp_t, dh, dc, dgh_t = cell.step_backward(dh_t, dc, cache.step_caches[t], cache.w_hh)
        dxp[t] = dxp_t
        dgh[t] = dgh_t
    # Weight gradients after the loop (principle 4): one product each.
    dxp2 = dxp.reshape(T * N, G)
    dw_hh, db_hh = cell.weight_grads(dgh, hs, cache.step_caches)
    if not cache.has_bias:
        db_hh = None
    if x is None:
        return dxp, dh, dc, (None, None, dw_hh, db_hh)
    dx = (dxp2 @ cache.w_ih).reshape(T, N, -1)
    dw_ih = dxp2.T @ x.reshape(T * N, -1)
    db_ih = dxp2.sum(axis=0) if cache.has_bias else None
    return dx, dh, dc, (dw_ih, db_ih, dw_hh, db_hh)


# ---- fused fast path ----------------------------------------------------------------------
# The same time loop for the fused cells of :mod:`rnnkit.kernels`: per step one recurrent
# product on BLAS into a preallocated buffer and one compiled gate kernel.  Instead of
# gathering reversed copies, each row's time position comes from ``pos`` (T, N) — ``t`` for
# the forward direction, :func:`reverse_index` for the reverse one — so outputs and gradients
# land in the original order directly.  Padding is handled per row inside the kernels with
# the same semantics as above (state carried, output zero, gradient passed through).


def _blas():
    from .kernels import blas as mod

    return mod


class _Work:
    """Buffers and views of one fused run (a namespace; see :mod:`rnnkit.kernels.cells`)."""


@dataclass
class FusedDirectionCache:
    """What :func:`run_backward_fused` needs; read-only after the forward pass."""

    work: _Work
    x: np.ndarray | None  # (T, N, D) in original order, or None if the input was a table lookup
    ids: np.ndarray | None  # (T, N) rows of the table, if it was
    w_ih: np.ndarray
    has_bias: bool


def _positions(T, N, lengths, reverse):
    if not reverse:
        return np.repeat(np.arange(T, dtype=np.int64)[:, None], N, axis=1)
    L = np.full(N, T, dtype=np.int64) if lengths is None else lengths
    return np.ascontiguousarray(reverse_index(L, T), dtype=np.int64)


def run_forward_fused(cell, x, w_ih, b_ih, w_hh, b_hh, h0, c0, lengths, *, reverse=False,
                      table=None, ids=None, store=True):
    """Run fused ``cell`` over x (T, N, D) (time-major, original order) from h0 [and c0].

    lengths (N,) int64 or None.  ``reverse`` runs each sequence backwards within its length.
    With ``table`` (V, G*H) and ``ids`` (T, N) int64 instead of x, row (t, n)'s input
    projection is ``table[ids[t, n]]`` (embedding fused with the input product).
    ``store=False`` keeps nothing for backward (inference) and returns cache None.
    Returns ``(out (T, N, H) in original order, h_T, c_T, cache)``.
    """
    blas = _blas()
    w = _Work()
    GH, H = w_hh.shape
    if table is None:
        T, N, D = x.shape
        xp = x.reshape(T * N, D) @ w_ih.T
        if b_ih is not None:
            xp += b_ih
        dtype = xp.dtype
        w.xsrc = xp
        w.xidx = np.arange(T * N, dtype=np.int64).reshape(T, N)
        w.act = xp.reshape(T, N, GH)  # gates overwrite the projection they came from
    else:
        T, N = ids.shape
        dtype = table.dtype
        w.xsrc, w.xidx = table, ids
        keep = store and cell.keeps_gates
        w.act = np.empty((T, N, GH if keep else 1), dtype=dtype)
    if lengths is not None and np.all(lengths == T):
        lengths = None
    w.T, w.N, w.H, w.dtype, w.store = T, N, H, dtype, bool(store)
    w.reverse = bool(reverse)
    w.lens = np.full(N, T, dtype=np.int64) if lengths is None else lengths.astype(np.int64)
    w.pos = _positions(T, N, lengths, reverse)
    w.w_hh, w.w_hh_t = w_hh, w_hh.T
    w.b = b_hh if b_hh is not None else np.zeros(GH, dtype=dtype)
    # State histories in step order (T+1 slots: entering state of every step and the last);
    # two alternating slots when nothing is kept for backward.
    w.hh = np.empty((T + 1 if store else 2, N, H), dtype=dtype)
    w.hh[0] = h0
    if cell.has_cell:
        w.ch = np.empty_like(w.hh)
        w.ch[0] = c0
    else:
        w.ch = None
    if store and not reverse and lengths is None:
        w.out = w.hh[1:]  # the forward direction's output is its state history
    else:
        w.out = np.empty((T, N, H), dtype=dtype)
    cell.begin_forward(w)
    step = cell.forward_step
    with blas.threads(blas.step_threads(N * GH * H)):
        if store:
            for t in range(T):
                step(w, t, t, t + 1)
        else:
            for t in range(T):
                step(w, t, t & 1, (t + 1) & 1)
    last = T if store else T & 1
    h_T = w.hh[last]
    c_T = w.ch[last] if cell.has_cell else None
    if not store:
        return w.out, h_T, c_T, None
    for name in ("gh", "grz", "ghn", "rz", "rh", "xbuf"):  # forward-only scratch
        w.__dict__.pop(name, None)
    if not cell.keeps_gates:
        w.act = w.xsrc = None
    return w.out, h_T, c_T, FusedDirectionCache(w, x, ids, w_ih, b_ih is not None)


def run_backward_fused(cell, dout, dh_T, dc_T, cache: FusedDirectionCache, *, release=False):
    """Exact BPTT through :func:`run_forward_fused`; dout (T, N, H) in original order or None.

    Returns ``(dx, dh0, dc0, (dW_ih, db_ih, dW_hh, db_hh))`` like :func:`run_backward`; if the
    input was a table lookup, dx is dL/d(projection) (T, N, G*H) and dW_ih, db_ih are None.

    ``release=True`` lets backward write the gate gradients over the saved gates (and, for
    the Elman cell, over ``dout``) instead of new (T, N, G*H) buffers: the cache (and dout)
    are consumed and must not be used again.  Only the forward direction does it — there
    step t reads and writes only its own row; a reverse step t reads rows other steps write.
    """
    blas = _blas()
    w = _Work()
    w.__dict__.update(cache.work.__dict__)  # a fresh namespace: the cache is never mutated
    N, H, dtype = w.N, w.H, w.dtype
    w.has_dout = dout is not None
    w.dout = np.ascontiguousarray(dout) if dout is not None else np.zeros((1, 1, 1), dtype)
    w.release = bool(release) and not w.reverse
    w.dhrec = np.zeros((N, H), dtype=dtype)
    w.dhd = np.zeros((N, H), dtype=dtype) if dh_T is None else np.array(dh_T, dtype, order="C")
    if cell.has_cell:
        w.dc = np.zeros((N, H), dtype=dtype) if dc_T is None else np.array(dc_T, dtype, order="C")
    cell.begin_backward(w)
    step = cell.backward_step
    with blas.threads(blas.step_threads(N * w.w_hh.shape[0] * H)):
        for t in range(w.T - 1, -1, -1):
            step(w, t)
    dh0 = w.dhrec + w.dhd
    dc0 = w.dc if cell.has_cell else None
    dG, dw_hh, db_hh = cell.grads(w)  # dG in step order
    if not cache.has_bias:
        db_hh = None
    if cache.x is None:  # table lookup: dL/d(projection) back in time order
        return (gather_time(dG, w.pos) if w.reverse else dG), dh0, dc0, \
            (None, None, dw_hh, db_hh)
    T = w.T
    x = gather_time(cache.x, w.pos) if w.reverse else cache.x  # x in step order
    dG2 = dG.reshape(T * N, -1)
    dw_ih = dG2.T @ x.reshape(T * N, -1)
    dx = (dG2 @ cache.w_ih).reshape(T, N, -1)
    if w.reverse:
        dx = gather_time(dx, w.pos)  # the map is its own inverse
    db_ih = None
    if cache.has_bias:
        db_ih = db_hh.copy() if cell.shared_bias_grad else dG2.sum(axis=0)
    return dx, dh0, dc0, (dw_ih, db_ih, dw_hh, db_hh)
