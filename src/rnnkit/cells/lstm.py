"""LSTM cell, PyTorch gate order (i, f, g, o).

    i, f, o = sigma(pre),  g = tanh(pre),  pre = W_ih x + b_ih + W_hh h + b_hh
    c' = f * c + i * g,    h' = o * tanh(c')

The notes' update gate Gamma_u is ``i``, Gamma_f is ``f``, Gamma_o is ``o`` and c~ is ``g``.
"""

from __future__ import annotations

import numpy as np

from .base import Cell, sigmoid


class LSTMCell(Cell):
    name = "lstm"
    gates = 4
    has_cell = True

    def step(self, xp, h, c, w_hh, b_hh):
        pre = xp + h @ w_hh.T
        if b_hh is not None:
            pre += b_hh
        H = h.shape[1]
        i = sigmoid(pre[:, :H])
        f = sigmoid(pre[:, H : 2 * H])
        g = np.tanh(pre[:, 2 * H : 3 * H])
        o = sigmoid(pre[:, 3 * H :])
        c_new = f * c + i * g
        tc = np.tanh(c_new)
        h_new = o * tc
        return h_new, c_new, (i, f, g, o, c, tc)

    def step_backward(self, dh, dc, cache, w_hh):
        i, f, g, o, c_prev, tc = cache
        dc_total = dh * o * (1.0 - tc * tc)
        if dc is not None:
            dc_total = dc_total + dc
        dpre = np.concatenate(
            [
                dc_total * g * i * (1.0 - i),
                dc_total * c_prev * f * (1.0 - f),
                dc_total * i * (1.0 - g * g),
                dh * tc * o * (1.0 - o),
            ],
            axis=1,
        )
        return dpre, dpre @ w_hh, dc_total * f, dpre
