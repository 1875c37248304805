"""GRU cell in both published forms, PyTorch gate order (r, z, n).

``reset_after=True`` (PyTorch / cuDNN, the default)::

    r = sigma(W_ir x + b_ir + W_hr h + b_hr)
    z = sigma(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    h' = (1 - z) * n + z * h

``reset_after=False`` (the course notes, Cho et al. 2014): the relevance gate is applied to
the previous state *before* its matrix product::

    n = tanh(W_in x + b_in + W_hn (r * h) + b_hn)

Mapping to the notes' symbols: Gamma_r = r, c~ = n, c<t> = h' and Gamma_u = 1 - z, i.e. the
notes' W_u, b_u are the negatives of the z block (sigma(-a) = 1 - sigma(a)), so
c<t> = Gamma_u * c~ + (1 - Gamma_u) * c<t-1> is exactly h' above.  Both forms share one
weight layout, so the same parameters run in either form.
"""

from __future__ import annotations

import numpy as np

from .base import Cell, sigmoid


class GRUCell(Cell):
    gates = 3
    has_cell = False

    def __init__(self, reset_after: bool = True):
        self.reset_after = bool(reset_after)
        self.name = "gru" if self.reset_after else "gru_reset_before"

    def step(self, xp, h, c, w_hh, b_hh):
        H = h.shape[1]
        if self.reset_after:
            gh = h @ w_hh.T
            if b_hh is not None:
                gh += b_hh
            r = sigmoid(xp[:, :H] + gh[:, :H])
            z = sigmoid(xp[:, H : 2 * H] + gh[:, H : 2 * H])
            ghn = gh[:, 2 * H :]
            n = np.tanh(xp[:, 2 * H :] + r * ghn)
        else:
            grz = h @ w_hh[: 2 * H].T
            if b_hh is not None:
                grz += b_hh[: 2 * H]
            r = sigmoid(xp[:, :H] + grz[:, :H])
            z = sigmoid(xp[:, H : 2 * H] + grz[:, H:])
            ghn = (r * h) @ w_hh[2 * H :].T
            if b_hh is not None:
                ghn += b_hh[2 * H :]
            n = np.tanh(xp[:, 2 * H :] + ghn)
        h_new = n + z * (h - n)
        return h_new, None, (r, z, n, ghn, h)

    def step_backward(self, dh, dc, cache, w_hh):
        r, z, n, ghn, h = cache
        H = h.shape[1]
        dn_pre = dh * (1.0 - z) * (1.0 - n * n)
        dz_pre = dh * (h - n) * z * (1.0 - z)
        dh_prev = dh * z
        if self.reset_after:
            dr_pre = dn_pre * ghn * r * (1.0 - r)
            dxp = np.concatenate([dr_pre, dz_pre, dn_pre], axis=1)
            dgh = np.concatenate([dr_pre, dz_pre, dn_pre * r], axis=1)
            dh_prev = dh_prev + dgh @ w_hh
        else:
            drh = dn_pre @ w_hh[2 * H :]
            dr_pre = drh * h * r * (1.0 - r)
            dxp = np.concatenate([dr_pre, dz_pre, dn_pre], axis=1)
            dgh = dxp
            dh_prev = dh_prev + drh * r + dxp[:, : 2 * H] @ w_hh[: 2 * H]
        return dxp, dh_prev, None, dgh

    def weight_grads(self, dgh, h_prev, caches):
        if self.reset_after:
            return super().weight_grads(dgh, h_prev, caches)
        # The n block's recurrent input is r * h, not h.
        H = h_prev.shape[-1]
        d2 = dgh.reshape(-1, dgh.shape[-1])
        hp = h_prev.reshape(-1, H)
        rh = np.stack([cache[0] * cache[4] for cache in caches]).reshape(-1, H)
        dw = np.concatenate([d2[:, : 2 * H].T @ hp, d2[:, 2 * H :].T @ rh], axis=0)
        return dw, d2.sum(axis=0)
