"""Helper for the task-model tests: a whole-model float64 centred-difference gradient check."""

import numpy as np


def max_rel_error(model, loss_fn, eps=1e-5):
    """Worst relative error over the parameter tensors of ``model``: ``(err, name)``.

    ``loss_fn()`` -> (loss, grads) at the current parameters.  A tensor's relative error is
    max|analytic - numeric| / max(max|analytic|, max|numeric|) — the measure the core's
    gradient checks use (``rnnkit.gradcheck.rel_error``); per entry, gradients of 1e-8 next
    to the loss's rounding noise would dominate without telling anything about the backward.
    """
    _, grads = loss_fn()
    worst, where = 0.0, None
    for name, p in model.params.items():
        a = np.asarray(grads[name], dtype=np.float64)
        num = np.zeros_like(a)
        flat, nflat = p.reshape(-1), num.reshape(-1)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + eps
            fp = loss_fn()[0]
            flat[i] = old - eps
            fm = loss_fn()[0]
            flat[i] = old
            nflat[i] = (fp - fm) / (2 * eps)
        scale = max(np.abs(a).max(initial=0.0), np.abs(num).max(initial=0.0))
        err = 0.0 if scale == 0.0 else float(np.abs(a - num).max() / scale)
        if err > worst:
            worst, where = err, name
    return worst, where
