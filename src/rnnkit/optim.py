"""Optimizers, gradient clipping and a plateau learning-rate schedule.

Parameters and gradients are dicts of arrays keyed alike (``"W_ih"``, ``"emb.W"``, ...), the
way layers return them.  ``opt.step(params, grads)`` updates the parameter arrays in place, so
a model holding those arrays sees the new values; gradients are never modified by a step.
The update rules are PyTorch's (``torch.optim.SGD``, ``torch.optim.Adam``) operation for
operation, so a run can be checked against PyTorch to rounding error.

Optimizer state is per parameter name; ``state_dict()`` is a flat dict of arrays and JSON
scalars so that arrays go into a checkpoint's tensors and scalars into its JSON.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from .sparse_grad import RowSparse, sparse_adam_rows


def _number(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def _check_lr(lr) -> float:
    lr = _number(lr, "lr")
    if lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    return lr


def _check_weight_decay(weight_decay) -> float:
    weight_decay = _number(weight_decay, "weight_decay")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    return weight_decay


class Optimizer:
    """Shared bookkeeping: the learning rate, argument checks and state (de)serialisation.

    Subclasses define ``_hyper`` (names of their JSON scalar hyper-parameters), ``_slots``
    (names of their per-parameter arrays) and ``_update(name, p, g, slots)``.
    """

    _hyper: tuple[str, ...] = ()
    _slots: tuple[str, ...] = ()

    def __init__(self, lr: float):
        self.lr = lr
        # name -> {"step": int, slot: array}
        self.state: dict[str, dict] = {}

    @property
    def lr(self) -> float:
        return self._lr

    @lr.setter
    def lr(self, value) -> None:
        self._lr = _check_lr(value)

    def step(self, params: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray]) -> None:
        """Update every parameter that has a gradient, in place.

        ``grads`` must be keyed like ``params`` with arrays of the same shapes; parameters
        without a gradient are left alone (like a PyTorch parameter whose ``.grad`` is None).
        """
        for name in grads:
            if name not in params:
                raise ValueError(f"gradient {name!r} has no parameter of that name")
        for name, g in grads.items():
            p = params[name]
            if not isinstance(p, np.ndarray) or p.dtype.kind != "f":
                raise TypeError(f"parameter {name!r} must be a floating numpy array")
            sparse = isinstance(g, RowSparse)  # an embedding's touched rows only
            g = g if sparse else np.asarray(g)
            if g.shape != p.shape:
                raise ValueError(f"gradient {name!r} has shape {g.shape}, its parameter {p.shape}")
            slots = self.state.get(name)
            if slots is None:
                slots = self.state[name] = {"step": 0}
            else:
                for s in self._slots:
                    if s in slots and slots[s].shape != p.shape:
                        raise ValueError(f"optimizer state {s}/{name} has shape {slots[s].shape}, "
                                         f"the parameter {p.shape}")
            slots["step"] += 1
            if sparse:
                self._sparse_update(name, p, g, slots)
            else:
                self._update(name, p, g.astype(p.dtype, copy=False), slots)

    def _update(self, name: str, p: np.ndarray, g: np.ndarray, slots: dict) -> None:
        raise NotImplementedError

    def _sparse_update(self, name: str, p: np.ndarray, g: RowSparse, slots: dict) -> None:
        """A row-sparse gradient: by default the dense update (exact, walks every row)."""
        self._update(name, p, np.asarray(g).astype(p.dtype, copy=False), slots)

    def state_dict(self) -> dict:
        """Flat dict: ``type``, ``lr`` and the hyper-parameters (JSON scalars), then per
        parameter ``step/NAME`` (int) and ``SLOT/NAME`` arrays (copies)."""
        out: dict = {"type": type(self).__name__, "lr": self.lr}
        for h in self._hyper:
            value = getattr(self, h)
            out[h] = list(value) if isinstance(value, tuple) else value
        for name, slots in self.state.items():
            out[f"step/{name}"] = int(slots["step"])
            for s in self._slots:
                if s in slots:
                    out[f"{s}/{name}"] = slots[s].copy()
        return out

    def load_state_dict(self, state: Mapping) -> None:
        """Restore from :meth:`state_dict`'s output (hyper-parameters included).

        ValueError on a state of another optimizer type, a missing or unknown key, or a
        malformed value; on error the optimizer is left unchanged.
        """
        if not isinstance(state, Mapping):
            raise ValueError(f"optimizer state must be a dict, got {type(state).__name__}")
        if state.get("type") != type(self).__name__:
            raise ValueError(f"optimizer state is for {state.get('type')!r}, "
                             f"not {type(self).__name__}")
        missing = [k for k in ("lr", *self._hyper) if k not in state]
        if missing:
            raise ValueError(f"optimizer state lacks {', '.join(missing)}")
        new_state: dict[str, dict] = {}
        for key, value in state.items():
            if key in ("type", "lr", *self._hyper):
                continue
            kind, sep, name = key.partition("/")
            if not sep or not name or kind not in ("step", *self._slots):
                raise ValueError(f"unknown optimizer state key {key!r}")
            slots = new_state.setdefault(name, {})
            if kind == "step":
                if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                    raise ValueError(f"optimizer state {key!r} must be an integer >= 1")
                slots["step"] = int(value)
            else:
                if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
                    raise ValueError(f"optimizer state {key!r} must be a floating array")
                slots[kind] = np.array(value)  # a copy: the optimizer owns its state
        for name, slots in new_state.items():
            if "step" not in slots:
                raise ValueError(f"optimizer state lacks step/{name}")
            shapes = {slots[s].shape for s in self._slots if s in slots}
            if len(shapes) > 1:
                raise ValueError(f"optimizer state arrays of {name!r} differ in shape")
        # Build a fresh optimizer first, so that bad hyper-parameters raise before any change.
        try:
            fresh = type(self)(lr=state["lr"], **{h: state[h] for h in self._hyper})
        except TypeError as e:
            raise ValueError(f"bad optimizer state: {e}") from None
        self.__dict__.update(fresh.__dict__)
        self.state = new_state


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay.

    With ``g = grad + weight_decay * p``: without momentum ``p -= lr * g``; with momentum
    ``b = momentum * b + g`` (``b = g`` on a parameter's first step) and ``p -= lr * b``
    (Nesterov: ``p -= lr * (g + momentum * b)``), as ``torch.optim.SGD`` with dampening 0.
    """

    _hyper = ("momentum", "weight_decay", "nesterov")
    _slots = ("momentum_buffer",)

    def __init__(self, lr: float, momentum: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False):
        super().__init__(lr)
        momentum = _number(momentum, "momentum")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if not isinstance(nesterov, bool):
            raise TypeError(f"nesterov must be a bool, got {type(nesterov).__name__}")
        if nesterov and momentum == 0.0:
            raise ValueError("nesterov momentum needs momentum > 0")
        self.momentum = momentum
        self.weight_decay = _check_weight_decay(weight_decay)
        self.nesterov = nesterov

    def _update(self, name, p, g, slots):
        if self.weight_decay:
            g = g + self.weight_decay * p
        if self.momentum:
            buf = slots.get("momentum_buffer")
            if buf is None:
                buf = slots["momentum_buffer"] = g.copy()
            else:
                buf *= self.momentum
                buf += g
            g = g + self.momentum * buf if self.nesterov else buf
        p -= self.lr * g

    def _sparse_update(self, name, p, g, slots):
        if self.momentum or self.weight_decay:  # untouched rows move too: the dense rule
            return super()._sparse_update(name, p, g, slots)
        p[g.rows] -= (self.lr * g.values).astype(p.dtype, copy=False)  # exact: others get 0


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) exactly as ``torch.optim.Adam`` (``amsgrad=False``).

    Per parameter, at its step t, with ``g = grad + weight_decay * p`` (L2 decay, not AdamW):
    ``m += (1 - beta1) * (g - m)``; ``v = beta2 * v + (1 - beta2) * g * g``;
    ``p -= lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)``.
    """

    _hyper = ("betas", "eps", "weight_decay")
    _slots = ("exp_avg", "exp_avg_sq")

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(lr)
        try:
            b1, b2 = betas
        except (TypeError, ValueError):
            raise TypeError(f"betas must be a pair of numbers, got {betas!r}") from None
        b1, b2 = _number(b1, "betas[0]"), _number(b2, "betas[1]")
        for i, b in enumerate((b1, b2)):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"betas[{i}] must be in [0, 1), got {b}")
        eps = _number(eps, "eps")
        if eps <= 0:
            raise ValueError(f"eps must be > 0 (it keeps the update finite), got {eps}")
        self.betas = (b1, b2)
        self.eps = eps
        self.weight_decay = _check_weight_decay(weight_decay)

    def _update(self, name, p, g, slots):
        b1, b2 = self.betas
        m = slots.get("exp_avg")
        if m is None:
            m = slots["exp_avg"] = np.zeros_like(p)
            slots["exp_avg_sq"] = np.zeros_like(p)
        v = slots["exp_avg_sq"]
        t = slots["step"]
        if _fused_adam(p, g, m, v, b1, b2, self.lr / (1.0 - b1 ** t),
                       math.sqrt(1.0 - b2 ** t), self.eps, self.weight_decay):
            return
        if self.weight_decay:
            g = g + self.weight_decay * p
        # torch updates m with lerp(m, g, 1 - beta1), which is m + (1 - beta1) * (g - m).
        m += (1.0 - b1) * (g - m)
        v *= b2
        v += (1.0 - b2) * (g * g)
        step_size = self.lr / (1.0 - b1 ** t)
        denom = np.sqrt(v)
        denom /= math.sqrt(1.0 - b2 ** t)
        denom += self.eps
        p -= step_size * (m / denom)

    def _sparse_update(self, name, p, g, slots):
        """Touched rows only, with ``torch.optim.SparseAdam``'s rule (lazy Adam: the moments
        of rows outside the batch are not decayed, so this is not dense Adam's trajectory).
        With weight decay every row changes, so the dense rule runs instead."""
        if self.weight_decay:
            return super()._sparse_update(name, p, g, slots)
        if slots.get("exp_avg") is None:
            slots["exp_avg"] = np.zeros_like(p)
            slots["exp_avg_sq"] = np.zeros_like(p)
        sparse_adam_rows(p, slots["exp_avg"], slots["exp_avg_sq"], g, self.lr, self.betas,
                         self.eps, slots["step"])


FUSED_ADAM = True  # False: the NumPy formula (tests compare the two)


def _fused_adam(p, g, m, v, b1, b2, step_size, bc2, eps, weight_decay) -> bool:
    """Adam's update in one compiled pass (:mod:`rnnkit.kernels.adam`), bit-identical to the
    NumPy formula; False (nothing done) when Numba is missing or an array is not contiguous."""
    from . import kernels

    if not FUSED_ADAM or not kernels.available() or p.dtype not in (np.float32, np.float64):
        return False
    arrays = (p, g, m, v)
    if any(a.dtype != p.dtype or not a.flags.c_contiguous for a in arrays):
        return False
    from .kernels import warm
    from .kernels.adam import adam_update

    warm.wait_for("adam")
    c = p.dtype.type
    adam_update(p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1), c(1.0 - b1), c(b2),
                c(1.0 - b2), c(step_size), c(bc2), c(eps), c(weight_decay))
    return True


def clip_grad_norm(grads: Mapping[str, np.ndarray], max_norm: float) -> float:
    """Scale all gradients in place so their global L2 norm is at most ``max_norm``.

    Returns the norm before clipping, as ``torch.nn.utils.clip_grad_norm_`` does, with the
    same scale ``max_norm / (norm + 1e-6)`` when ``norm > max_norm``.  The norm is summed in
    float64, so float32 gradients near overflow still give the right norm.  A non-finite norm
    is returned with the gradients left unchanged, so the caller can skip the step.
    """
    max_norm = _number(max_norm, "max_norm")
    if max_norm <= 0:
        raise ValueError(f"max_norm must be > 0, got {max_norm}")
    total = math.sqrt(grad_square_sum(grads)[0])
    scale_to_norm(grads, max_norm, total)
    return total


def scale_to_norm(grads: Mapping[str, np.ndarray], max_norm: float, total: float) -> None:
    """The scaling step of :func:`clip_grad_norm` for a norm ``total`` already known."""
    if math.isfinite(total):
        coef = max_norm / (total + 1e-6)
        if coef < 1.0:
            for g in grads.values():
                g *= coef


def grad_square_sum(grads: Mapping[str, np.ndarray]) -> tuple[float, bool]:
    """(sum of the squares of every gradient in float64, whether all are finite) in one pass
    over each — what the NaN check and the clip norm of a training step both need."""
    total, finite = 0.0, True
    for g in grads.values():
        if isinstance(g, RowSparse):
            total += g.square_sum()
            finite = finite and g.all_finite()
        else:
            sq, bad = _sq_sum(g)
            total += sq
            finite = finite and bad == 0.0
    return total, finite


def grads_finite(grads: Mapping[str, np.ndarray]) -> bool:
    """True if no gradient holds a NaN or an infinity."""
    return grad_square_sum(grads)[1]


def _sq_sum(g):
    """(float64 sum of squares of g, 0.0 if g is all finite else NaN): one compiled pass
    where it can (:func:`rnnkit.kernels.adam.sq_sum`), NumPy otherwise."""
    from . import kernels

    if (kernels.available() and g.dtype in (np.float32, np.float64) and g.flags.c_contiguous
            and FUSED_ADAM):
        from .kernels import warm
        from .kernels.adam import sq_sum

        warm.wait_for("adam")
        return sq_sum(g.reshape(-1))
    s = float(np.square(g, dtype=np.float64).sum())
    return s, 0.0 if bool(np.isfinite(g).all()) else math.nan


class ReduceLROnPlateau:
    """Multiply the optimizer's lr by ``factor`` when a metric stops improving.

    Call ``step(metric)`` once per evaluation (lower is better, e.g. validation loss).  A
    metric improves if it is below ``best * (1 - threshold)``; after more than ``patience``
    evaluations without improvement the lr becomes ``max(lr * factor, min_lr)``, then
    ``cooldown`` evaluations pass before counting again.  This is ``torch.optim.lr_scheduler.
    ReduceLROnPlateau`` with ``mode="min"``, ``threshold_mode="rel"``; a NaN metric never
    improves.
    """

    def __init__(self, optimizer: Optimizer, factor: float = 0.1, patience: int = 10,
                 min_lr: float = 0.0, threshold: float = 1e-4, cooldown: int = 0):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be an rnnkit Optimizer, got {type(optimizer).__name__}")
        factor = _number(factor, "factor")
        if not 0.0 < factor < 1.0:
            raise ValueError(f"factor must be in (0, 1), got {factor}")
        min_lr = _number(min_lr, "min_lr")
        if min_lr < 0:
            raise ValueError(f"min_lr must be >= 0, got {min_lr}")
        threshold = _number(threshold, "threshold")
        if threshold < 0:
            raise ValueError(f"threshold must be >= 0, got {threshold}")
        for value, name in ((patience, "patience"), (cooldown, "cooldown")):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        self.optimizer = optimizer
        self.factor, self.min_lr, self.threshold = factor, min_lr, threshold
        self.patience, self.cooldown = int(patience), int(cooldown)
        self.best = math.inf
        self.num_bad = 0
        self.cooldown_left = 0

    def step(self, metric: float) -> bool:
        """Record one evaluation; True if the learning rate was reduced."""
        metric = float(metric)
        if metric < self.best * (1.0 - self.threshold):
            self.best = metric
            self.num_bad = 0
        else:
            self.num_bad += 1
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.num_bad = 0
        if self.num_bad > self.patience:
            self.cooldown_left = self.cooldown
            self.num_bad = 0
            old = self.optimizer.lr
            new = max(old * self.factor, self.min_lr)
            # torch ignores reductions below 1e-8 so lr stops at min_lr instead of jittering.
            if old - new > 1e-8:
                self.optimizer.lr = new
                return True
        return False

    def state_dict(self) -> dict:
        """JSON scalars; ``best`` is None until a finite metric has been seen."""
        return {"best": self.best if math.isfinite(self.best) else None,
                "num_bad": self.num_bad, "cooldown_left": self.cooldown_left}

    def load_state_dict(self, state: Mapping) -> None:
        try:
            best = math.inf if state["best"] is None else _number(state["best"], "best")
            num_bad, cooldown_left = state["num_bad"], state["cooldown_left"]
        except (KeyError, TypeError) as e:
            raise ValueError(f"bad scheduler state: {e}") from None
        for value, name in ((num_bad, "num_bad"), (cooldown_left, "cooldown_left")):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"scheduler state {name} must be an integer >= 0, got {value!r}")
        self.best, self.num_bad, self.cooldown_left = best, num_bad, cooldown_left
