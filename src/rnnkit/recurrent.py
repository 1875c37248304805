"""The time-loop drivers: any cell over a batch, in either direction, with masks.

Two drivers with one contract: :func:`run_forward` / :func:`run_backward` (the readable NumPy
reference, one :class:`rnnkit.cells.base.Cell` step per time step) and
:func:`run_forward_fused` / :func:`run_backward_fused` (the fast path over the fused cells of
:mod:`rnnkit.kernels`).  Both take the same arguments and return the same things, so a layer
picks one pair once (:data:`DRIVERS`) and never branches on it again.

Everything here is time-major (T, N, ...) so each step reads a contiguous slab, and inputs and
outputs are in *original* time order for both directions; the public layers in
:mod:`rnnkit.layers.recurrent` are batch-major.

Masks (DESIGN principle 6) live only here: past a sequence's end its state is carried
unchanged and its output is zero, so a padded batch gives every sequence exactly the result
it would have alone.  The reverse direction reverses each sequence within its own length
(:func:`reverse_index`), so padding never leaks into the first backward step.
"""

from __future__ import annotations

import dataclasses
import os
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

    x: np.ndarray | None  # (T, N, D) the input in step order; None if the input was a table
    hs: np.ndarray  # (T, N, H) state entering each step
    step_caches: list
    mask: np.ndarray | None  # (T, N, 1) in step order
    ridx: np.ndarray | None  # (T, N) the within-length reversal, if reverse
    w_ih: np.ndarray
    w_hh: np.ndarray
    has_bias: bool


def _loop_forward(cell: Cell, xp, w_hh, b_hh, h0, c0, mask):
    """The reference time loop over xp (T, N, G*H) in step order; returns out, h, c, hs, caches."""
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
    return out, h, c, hs, caches


def run_forward(cell: Cell, x, w_ih, b_ih, w_hh, b_hh, h0, c0, lengths, *, reverse=False,
                table=None, ids=None, store=True):
    """Run ``cell`` over x (T, N, D) (time-major, original order) from h0 (N, H) [and c0].

    lengths (N,) ints or None.  ``reverse`` runs each sequence backwards within its length
    (padding stays put).  With ``table`` (V, G*H) and ``ids`` (T, N) int64 instead of x, row
    (t, n)'s input projection ``x @ W_ih.T + b_ih`` is ``table[ids[t, n]]`` (an embedding fused
    with the input product); backward then returns dL/d(projection) in place of dx.
    ``store=False`` (inference) returns cache None.
    Returns ``(out (T, N, H) in original order, h_T, c_T, cache)``; out is zero at padding.
    """
    if table is None:
        T, N, _ = x.shape
        # Hoisted input projection (principle 4): one GEMM for all T steps.
        xp = (x.reshape(T * N, -1) @ w_ih.T).reshape(T, N, -1)
        if b_ih is not None:
            xp += b_ih
    else:
        T, N = ids.shape
        xp = table[ids]
    dtype = xp.dtype
    L = np.full(N, T) if lengths is None else np.asarray(lengths)
    ridx = reverse_index(L, T) if reverse else None
    if reverse:
        xp = gather_time(xp, ridx)
        if x is not None:
            x = gather_time(x, ridx)
    mask = time_mask(lengths, T, dtype)
    out, h, c, hs, caches = _loop_forward(cell, xp, w_hh, b_hh, h0, c0, mask)
    if reverse:
        out = gather_time(out, ridx)  # the map is its own inverse
    if not store:
        return out, h, c, None
    return out, h, c, DirectionCache(x if table is None else None, hs, caches, mask, ridx,
                                     w_ih, w_hh, b_ih is not None)


def run_backward(cell: Cell, dout, dh_T, dc_T, cache: DirectionCache, *, release=False):
    """Exact BPTT through :func:`run_forward`.

    dout (T, N, H) in original order or None, dh_T (N, H) or None, dc_T (N, H) or None.
    Returns ``(dx (T, N, D), dh0, dc0, (dW_ih, db_ih, dW_hh, db_hh))``; biases None if absent.
    If the forward pass read a table, dx is dL/d(projection) (T, N, G*H) in original order and
    dW_ih, db_ih are None.  ``release`` is accepted for the fused driver's contract; this
    driver never changes the cache or dout either way.
    """
    x, hs, mask, ridx = cache.x, cache.hs, cache.mask, cache.ridx
    T, N, H = hs.shape
    dtype = hs.dtype
    G = cache.w_hh.shape[0]
    if dout is not None and ridx is not None:
        dout = gather_time(dout, ridx)  # to step order
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
        return (gather_time(dxp, ridx) if ridx is not None else dxp), dh, dc, \
            (None, None, dw_hh, db_hh)
    dx = (dxp2 @ cache.w_ih).reshape(T, N, -1)
    if ridx is not None:
        dx = gather_time(dx, ridx)
    dw_ih = dxp2.T @ x.reshape(T * N, -1)
    db_ih = dxp2.sum(axis=0) if cache.has_bias else None
    return dx, dh, dc, (dw_ih, db_ih, dw_hh, db_hh)


# ---- fused fast path ----------------------------------------------------------------------
# The same time loop for the fused cells of :mod:`rnnkit.kernels`: per step one recurrent
# product into a preallocated buffer and one compiled gate kernel — the whole loop one
# compiled call (kernels.sequence, its product on the weight packed once per run,
# kernels.packed) for T > 1 (:func:`sequence_loop`), else a Python loop over the same two
# calls with the product on NumPy's BLAS.  Instead of
# gathering reversed copies, each row's time position comes from ``pos`` (T, N) — ``t`` for
# the forward direction, :func:`reverse_index` for the reverse one — so outputs and gradients
# land in the original order directly.  Padding is handled per row inside the kernels with
# the same semantics as above (state carried, output zero, gradient passed through).
#
# Rows of a batch never interact in the recurrence, so the loop runs as ``plan.workers``
# threads, each over its own rows for the whole sequence (kernels.blas.plan): both cores busy
# and no synchronisation per time step.  The compiled loop releases the GIL for the whole
# sequence (the per-step fallback releases it in each product and kernel).


def _blas():
    from .kernels import blas as mod

    return mod


# The compiled whole-sequence loop (kernels.sequence) when NumPy's BLAS can be called from
# compiled code; tests set this False to hold the per-step Python loop to the same results.
SEQUENCE_LOOP = True


def sequence_loop(T: int) -> bool:
    """Whether a run of T steps takes the compiled whole-sequence loop (T > 1: a single step,
    as in generation, has no loop to compile and keeps its transposed-view product)."""
    return SEQUENCE_LOOP and T >= 2


@dataclass(eq=False)
class FusedWork:
    """Buffers and views of one fused run over one direction.  T steps, N rows, H hidden,
    G = gates * H.  "step order": index t is the t-th step of the loop (for the reverse
    direction row n's time position is pos[t, n]); "time order": the sequence's own order."""

    T: int
    N: int
    H: int
    dtype: np.dtype
    store: bool  # keep what backward needs (T + 1 history slots) or run on two slots
    reverse: bool
    lens: np.ndarray  # (N,) int64 valid steps per row (T for every row if no lengths)
    pos: np.ndarray  # (T, N) int64 time position of row n at step t
    xsrc: np.ndarray | None  # (T*N, G) hoisted input projection, or (V, G) embedding table
    xidx: np.ndarray  # (T, N) int64 row of xsrc for (time position, n)
    act: np.ndarray | None  # (T, N, G) time order: activated gates (over xsrc when not a table)
    w_hh: np.ndarray  # (G, H)
    w_hh_t: np.ndarray  # (H, G) w_hh.T, C-contiguous for T > 1 (dropped after the loop)
    b: np.ndarray  # (G,) b_hh, plus b_ih where the loop adds it (FusedCell.loop_bias), or zeros
    hh: np.ndarray  # (T+1, N, H) step order: state entering step t (2 slots when not store)
    ch: np.ndarray | None  # like hh, LSTM cell state
    out: np.ndarray  # (T, N, H) time order (a view of hh[1:] when it can be)
    bx: np.ndarray | None = None  # the rest of b_ih, added to the projection rows as read
    # -- forward scratch of the cells (begin_forward), dropped after the loop --
    gh: np.ndarray | None = None  # (N, G) recurrent product h @ W_hh.T
    xbuf: np.ndarray | None = None  # (N, 3H) GRU: copy of a row's input projection
    w_rz_t: np.ndarray | None = None  # (H, 2H) GRU reset-before: W_hh[:2H].T
    w_n_t: np.ndarray | None = None  # (H, H) GRU reset-before: W_hh[2H:].T
    grz: np.ndarray | None = None  # (N, 2H) GRU reset-before: h @ W_hh[:2H].T
    ghn: np.ndarray | None = None  # (N, H) GRU reset-before: (r*h) @ W_hn.T
    rz: np.ndarray | None = None  # (N, 2H) GRU reset-before: r, z of the step
    rh: np.ndarray | None = None  # (N, H) GRU reset-before: r * h of the step
    # -- saved for backward by some cells --
    ghns: np.ndarray | None = None  # (T, N, H) step order, GRU: W_hn h + b_hn
    rhs: np.ndarray | None = None  # (T, N, H) step order, GRU reset-before: r * h
    # -- backward (run_backward_fused / begin_backward) --
    release: bool = False  # dG may overwrite act (and dout) — forward direction only
    has_dout: bool = False
    dout: np.ndarray | None = None  # (T, N, H) time order, or a (1, 1, 1) dummy
    dhrec: np.ndarray | None = None  # (N, H) dL/dh through the recurrent product of step t+1
    dhd: np.ndarray | None = None  # (N, H) the rest of dL/dh (direct paths)
    dc: np.ndarray | None = None  # (N, H) LSTM: dL/dc
    dG: np.ndarray | None = None  # (T, N, G) step order: gate gradients = dL/d projection
    dGHn: np.ndarray | None = None  # (T, N, H) step order, GRU: dL/d(W_hn h + b_hn)
    dGs: np.ndarray | None = None  # (N, G) GRU: the step's dL/d(recurrent product)
    scratch: np.ndarray | None = None  # (N, G) per-row scratch of the backward kernels
    dn_s: np.ndarray | None = None  # (N, H) GRU reset-before: dn of the step
    drh: np.ndarray | None = None  # (N, H) GRU reset-before: dn @ W_hn
    drz: np.ndarray | None = None  # (N, 2H) GRU reset-before: (dr, dz) of the step
    w_rz: np.ndarray | None = None  # (2H, H) GRU reset-before: W_hh[:2H]
    w_n: np.ndarray | None = None  # (H, H) GRU reset-before: W_hh[2H:]
    # -- the step products' matrices packed for the compiled loop (kernels.packed.pack:
    #    (panels, K, W)); forward ones dropped after the loop --
    w_hh_t_p: np.ndarray | None = None  # w_hh_t
    w_rz_t_p: np.ndarray | None = None  # w_rz_t
    w_n_t_p: np.ndarray | None = None  # w_n_t
    w_hh_p: np.ndarray | None = None  # w_hh (backward)
    w_rz_p: np.ndarray | None = None  # w_rz (backward)
    w_n_p: np.ndarray | None = None  # w_n (backward)


_FORWARD_SCRATCH = ("gh", "xbuf", "grz", "ghn", "rz", "rh", "w_hh_t", "w_rz_t", "w_n_t",
                    "w_hh_t_p", "w_rz_t_p", "w_n_t_p")


@dataclass
class FusedDirectionCache:
    """What :func:`run_backward_fused` needs; read-only after the forward pass."""

    work: FusedWork
    x: np.ndarray | None  # (T, N, D) in original order, or None if the input was a table lookup
    ids: np.ndarray | None  # (T, N) rows of the table, if it was
    w_ih: np.ndarray
    has_bias: bool


def _positions(T, N, lengths, reverse):
    if not reverse:
        return np.repeat(np.arange(T, dtype=np.int64)[:, None], N, axis=1)
    L = np.full(N, T, dtype=np.int64) if lengths is None else lengths
    return np.ascontiguousarray(reverse_index(L, T), dtype=np.int64)


_pool = None  # (executor, its number of threads, pid), made on first use, grown when asked


def _on_rows(plan, N, body):
    """body(n0, n1) for each worker's share of the N rows, side by side; errors re-raised."""
    shares = plan.shares(N)
    if len(shares) == 1:
        body(0, N)
        return
    global _pool
    # A forked child inherits the executor but not its threads: it makes its own.
    if _pool is None or _pool[1] < len(shares) - 1 or _pool[2] != os.getpid():
        from concurrent.futures import ThreadPoolExecutor

        _pool = (ThreadPoolExecutor(max_workers=len(shares) - 1,
                                    thread_name_prefix="rnnkit-rows"), len(shares) - 1,
                 os.getpid())
    futures = [_pool[0].submit(body, n0, n1) for n0, n1 in shares[1:]]
    try:
        body(*shares[0])  # the calling thread takes the first share
    finally:
        for f in futures:
            f.exception()  # wait for every share before anything is freed or re-raised
    for f in futures:
        f.result()


def run_forward_fused(cell, x, w_ih, b_ih, w_hh, b_hh, h0, c0, lengths, *, reverse=False,
                      table=None, ids=None, store=True):
    """:func:`run_forward` on the fused cell ``cell``: same arguments, same results."""
    blas = _blas()
    GH, H = w_hh.shape
    N, T = (ids.shape[1], ids.shape[0]) if table is not None else (x.shape[1], x.shape[0])
    plan = blas.plan(N, N * GH * H, compiled=sequence_loop(T))
    with blas.threads(plan.hoisted):
        return _forward_fused(plan, cell, x, w_ih, b_ih, w_hh, b_hh, h0, c0, lengths, reverse,
                              table, ids, store)


def _forward_fused(plan, cell, x, w_ih, b_ih, w_hh, b_hh, h0, c0, lengths, reverse, table, ids,
                   store):
    blas = _blas()
    GH, H = w_hh.shape
    if table is None:
        T, N, D = x.shape
        xp = x.reshape(T * N, D) @ w_ih.T
        b_hh, bx = cell.loop_bias(b_ih, b_hh, H)  # the loop adds b_ih
        dtype = xp.dtype
        xsrc, xidx = xp, np.arange(T * N, dtype=np.int64).reshape(T, N)
        act = xp.reshape(T, N, GH)  # gates overwrite the projection they came from
    else:
        T, N = ids.shape
        dtype = table.dtype
        bx = None  # the table holds b_ih
        xsrc, xidx = table, ids
        keep = store and cell.keeps_gates
        act = np.empty((T, N, GH if keep else 1), dtype=dtype)
    if lengths is not None and np.all(lengths == T):
        lengths = None
    # State histories in step order (T+1 slots: entering state of every step and the last);
    # two alternating slots when nothing is kept for backward.
    hh = np.empty((T + 1 if store else 2, N, H), dtype=dtype)
    hh[0] = h0
    ch = None
    if cell.has_cell:
        ch = np.empty_like(hh)
        ch[0] = c0
    if store and not reverse and lengths is None:
        out = hh[1:]  # the forward direction's output is its state history
    else:
        out = np.empty((T, N, H), dtype=dtype)
    w = FusedWork(
        T=T, N=N, H=H, dtype=dtype, store=bool(store), reverse=bool(reverse),
        lens=np.full(N, T, dtype=np.int64) if lengths is None else lengths.astype(np.int64),
        pos=_positions(T, N, lengths, reverse), xsrc=xsrc, xidx=xidx, act=act,
        # The per-step product h @ W_hh.T reads a C-contiguous copy of W_hh.T: OpenBLAS's
        # transposed-operand path was 1.4-1.9x slower at these small sizes (N 16-32, H
        # 256-1024; bench/RESULTS.md); the copy (G*H values) is made once per sequence.  The
        # compiled loop packs it instead (cell.pack below).
        w_hh=np.ascontiguousarray(w_hh),
        w_hh_t=np.ascontiguousarray(w_hh.T) if T > 1 and not plan.compiled else w_hh.T,
        b=b_hh if b_hh is not None else np.zeros(GH, dtype=dtype), bx=bx,
        hh=hh, ch=ch, out=out)
    cell.begin_forward(w)
    if plan.compiled:
        cell.pack(w, cell.packs_forward)
    step = cell.forward_step

    def loop(n0, n1):
        if plan.compiled:
            cell.forward_seq(w, n0, n1)
        elif store:
            for t in range(T):
                step(w, t, t, t + 1, n0, n1)
        else:
            for t in range(T):
                step(w, t, t & 1, (t + 1) & 1, n0, n1)

    with blas.threads(plan.blas):
        _on_rows(plan, N, loop)
    last = T if store else T & 1
    h_T = w.hh[last]
    c_T = w.ch[last] if cell.has_cell else None
    if not store:
        return w.out, h_T, c_T, None
    for name in _FORWARD_SCRATCH:
        setattr(w, name, None)
    if not cell.keeps_gates:
        w.act = w.xsrc = None
    return w.out, h_T, c_T, FusedDirectionCache(w, x, ids, w_ih, b_ih is not None)


def run_backward_fused(cell, dout, dh_T, dc_T, cache: FusedDirectionCache, *, release=False):
    """:func:`run_backward` through :func:`run_forward_fused`: same arguments, same results.

    ``release=True`` lets backward write the gate gradients over the saved gates (and, for
    the Elman cell, over ``dout``) instead of new (T, N, G*H) buffers: the cache (and dout)
    are consumed and must not be used again.  Only the forward direction does it — there
    step t reads and writes only its own row; a reverse step t reads rows other steps write.
    """
    blas = _blas()
    src = cache.work
    plan = blas.plan(src.N, src.N * src.w_hh.shape[0] * src.H, compiled=sequence_loop(src.T))
    with blas.threads(plan.hoisted):
        return _backward_fused(plan, cell, dout, dh_T, dc_T, cache, release)


def _backward_fused(plan, cell, dout, dh_T, dc_T, cache, release):
    blas = _blas()
    src = cache.work
    N, H, dtype = src.N, src.H, src.dtype
    has_cell = cell.has_cell
    # A fresh work object (shallow copy): the cache itself is never mutated.
    w = dataclasses.replace(
        src, has_dout=dout is not None,
        dout=np.ascontiguousarray(dout) if dout is not None else np.zeros((1, 1, 1), dtype),
        release=bool(release) and not src.reverse,
        dhrec=np.zeros((N, H), dtype=dtype),
        dhd=np.zeros((N, H), dtype=dtype) if dh_T is None else np.array(dh_T, dtype, order="C"),
        dc=(np.zeros((N, H), dtype=dtype) if dc_T is None else np.array(dc_T, dtype, order="C"))
        if has_cell else None)
    cell.begin_backward(w)
    step = cell.backward_step
    T = w.T
    if plan.compiled:
        from .kernels import warm

        cell.pack(w, cell.packs_backward)

        warm.wait_for("bwd")  # a cold start's helper may be compiling this loop right now

    def loop(n0, n1):
        if plan.compiled:
            cell.backward_seq(w, n0, n1)
            return
        for t in range(T - 1, -1, -1):
            step(w, t, n0, n1)

    with blas.threads(plan.blas):
        _on_rows(plan, N, loop)
    dh0 = w.dhrec + w.dhd
    dc0 = w.dc if has_cell else None
    dG, dw_hh, db_hh, db_ih = cell.grads(w)  # dG in step order
    if not cache.has_bias:
        db_hh = db_ih = None
    if cache.x is None:  # table lookup: dL/d(projection) back in time order
        return (gather_time(dG, w.pos) if w.reverse else dG), dh0, dc0, \
            (None, None, dw_hh, db_hh)
    x = gather_time(cache.x, w.pos) if w.reverse else cache.x  # x in step order
    dG2 = dG.reshape(T * N, -1)
    dw_ih = dG2.T @ x.reshape(T * N, -1)
    dx = (dG2 @ cache.w_ih).reshape(T, N, -1)
    if w.reverse:
        dx = gather_time(dx, w.pos)  # the map is its own inverse
    return dx, dh0, dc0, (dw_ih, db_ih, dw_hh, db_hh)


# backend name -> (forward, backward); a layer looks its pair up once.
DRIVERS = {"numpy": (run_forward, run_backward), "numba": (run_forward_fused, run_backward_fused)}
