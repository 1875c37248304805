"""Basic (Elman) RNN cell: a<t> = g(W_ih x<t> + b_ih + W_hh a<t-1> + b_hh), g = tanh or relu."""

from __future__ import annotations

import numpy as np

from .base import Cell


class RNNCell(Cell):
    gates = 1
    has_cell = False

    def __init__(self, nonlinearity: str = "tanh"):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        self.name = f"rnn_{nonlinearity}"

    def step(self, xp, h, c, w_hh, b_hh):
        a = xp + h @ w_hh.T
        if b_hh is not None:
            a += b_hh
        if self.nonlinearity == "tanh":
            h_new = np.tanh(a)
        else:
            h_new = np.maximum(a, 0)
        return h_new, None, (h_new,)

    def step_backward(self, dh, dc, cache, w_hh):
        (h_new,) = cache
        # Derivatives from the output (principle 3): tanh' = 1 - y^2, relu' = [y > 0].
        if self.nonlinearity == "tanh":
            da = dh * (1.0 - h_new * h_new)
        else:
            da = dh * (h_new > 0)
        return da, da @ w_hh, None, da
