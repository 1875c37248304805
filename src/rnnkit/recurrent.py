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

    x: np.ndarray  # (T, N, D) the input the direction saw (already reversed if reverse)
    hs: np.ndarray  # (T, N, H) state entering each step
    step_caches: list
    mask: np.ndarray | None  # (T, N, 1)
    w_ih: np.ndarray
    w_hh: np.ndarray
    has_bias: bool


def run_forward(cell: Cell, x, w_ih, b_ih, w_hh, b_hh, h0, c0, mask):
    """Run ``cell`` over x (T, N, D) from h0 (N, H) [and c0].

    Returns ``(out (T, N, H), h_T, c_T, cache)``; out is zero at masked steps.
    """
    T, N, _ = x.shape
    H = w_hh.shape[1]
    # Hoisted input projection (principle 4): one GEMM for all T steps.
    xp = (x.reshape(T * N, -1) @ w_ih.T).reshape(T, N, -1)
    if b_ih is not None:
        xp += b_ih
    out = np.empty((T, N, H), dtype=x.dtype)
    hs = np.empty((T, N, H), dtype=x.dtype)
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
    """
    x, hs, mask = cache.x, cache.hs, cache.mask
    T, N, _ = x.shape
    H = hs.shape[2]
    dtype = x.dtype
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
    dx = (dxp2 @ cache.w_ih).reshape(T, N, -1)
    dw_ih = dxp2.T @ x.reshape(T * N, -1)
    db_ih = dxp2.sum(axis=0) if cache.has_bias else None
    dw_hh, db_hh = cell.weight_grads(dgh, hs, cache.step_caches)
    if not cache.has_bias:
        db_hh = None
    return dx, dh, dc, (dw_ih, db_ih, dw_hh, db_hh)
