"""The contract every recurrent cell honours.

A cell holds the step equations of one time step and nothing else (DESIGN principle 1):
the time loop, masks, reversal and stacking live in :mod:`rnnkit.recurrent` and
:mod:`rnnkit.layers`.  Shapes: N batch, D input, H hidden, G gates (rows of the weight
matrices are G*H, PyTorch's layout and gate order).

The input projection ``xp = x @ W_ih.T + b_ih`` of every time step is computed by the
driver in one matrix product before the loop, so a step only sees ``xp`` (N, G*H).  The
backward step returns ``dgh``, the gradient with respect to the recurrent pre-activation
``h @ W_hh.T + b_hh``; the driver turns all of them into ``dW_hh`` with one product after
the loop (:meth:`Cell.weight_grads`).
"""

from __future__ import annotations

import numpy as np


def sigmoid(x: np.ndarray) -> np.ndarray:
    # The tanh form never overflows, unlike 1 / (1 + exp(-x)) for large negative x.
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class Cell:
    """Base class. Subclasses set ``gates``, ``has_cell`` and ``name``."""

    name = "cell"
    gates = 1
    has_cell = False

    def step(self, xp, h, c, w_hh, b_hh):
        """One step. xp (N, G*H), h (N, H), c (N, H) or None, w_hh (G*H, H), b_hh (G*H,) or None.

        Returns ``(h_new, c_new, cache)``; ``cache`` is a tuple the backward step needs.
        """
        raise NotImplementedError

    def step_backward(self, dh, dc, cache, w_hh):
        """Backward of one step given dL/dh_new (N, H) and dL/dc_new (N, H) or None.

        Returns ``(dxp, dh_prev, dc_prev, dgh)``; ``dxp`` and ``dgh`` are (N, G*H).
        Never mutates its arguments.
        """
        raise NotImplementedError

    def weight_grads(self, dgh, h_prev, caches):
        """dW_hh (G*H, H) and db_hh (G*H,) from dgh (T, N, G*H) and h_prev (T, N, H).

        The default suits cells whose recurrent product is ``h_prev @ W_hh.T`` for all gates.
        """
        gh = dgh.shape[-1]
        dgh2 = dgh.reshape(-1, gh)
        return dgh2.T @ h_prev.reshape(-1, h_prev.shape[-1]), dgh2.sum(axis=0)
