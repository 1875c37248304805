"""``fit``: the training loop (:func:`rnnkit.training.loop.train`) for padded-batch task models.

Data flows one way: examples -> minibatch (``make_batch``) -> ``model.batch_loss`` (forward,
cache, loss, backward) -> grads -> clip -> optimizer -> params, with the held-out loss measured
every ``eval_every`` steps and the best weights (by held-out loss) kept.  Minibatches come
from :class:`rnnkit.training.sources.ExampleSource` (epoch order from one seeded generator,
bucketed by length with ``length_fn``); same seed, same data -> same model, bit for bit.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import _checks
from ..optim import SGD, Adam, ReduceLROnPlateau
from .loop import NONFINITE_MODES, TrainResult, train
from .sources import ExampleSource
from .state import check_resume

__all__ = ["fit", "evaluate_loss", "make_optimizer", "make_scheduler", "NONFINITE_MODES"]


def make_optimizer(name: str, lr: float):
    """``adam`` or ``sgd`` (plain, as ``torch.optim.SGD``) with learning rate ``lr``."""
    if name == "adam":
        return Adam(lr=lr)
    if name == "sgd":
        return SGD(lr=lr)
    raise ValueError(f"unknown optimizer {name!r}: expected adam or sgd")


def make_scheduler(optimizer, lr_decay, patience=0):
    """The plateau schedule: lr *= ``lr_decay`` after more than ``patience`` evaluations
    without a better held-out loss (None or 1: no schedule)."""
    if lr_decay is None or lr_decay >= 1.0:
        return None
    return ReduceLROnPlateau(optimizer, factor=lr_decay, patience=patience, threshold=0.0)


def evaluate_loss(model, make_batch, n, batch_size=256) -> float:
    """Mean of the per-batch losses weighted by batch size, over examples 0..n-1."""
    total, count = 0.0, 0
    for i in range(0, n, batch_size):
        idx = np.arange(i, min(i + batch_size, n))
        loss, _ = model.batch_loss(make_batch(idx))
        total += loss * len(idx)
        count += len(idx)
    return total / max(count, 1)


def fit(model, make_batch, n_train, *, steps, batch_size=32, lr=1e-3, clip=5.0, seed=0,
        val=None, eval_every=None, length_fn=None, log=None, reporter=None,
        keep_best=True, lr_decay=None, on_nonfinite="stop", checkpoint=None,
        checkpoint_every=500, checkpoint_meta=None, resume_state=None, optimizer="adam",
        count_fn=None, world=None) -> TrainResult:
    """Train ``model`` for ``steps`` minibatch steps; returns a :class:`TrainResult`.

    ``make_batch(indices) -> batch`` builds a training batch for ``model.batch_loss``;
    ``val`` is ``(make_val_batch, n_val)`` or None.  ``log(str)`` receives progress lines
    and ``reporter`` (a :class:`rnnkit.progress.ProgressReporter`) the step records.
    ``lr_decay``: multiply the learning rate by this factor at every evaluation whose
    held-out loss did not improve (the plateau schedule with patience 0).

    ``on_nonfinite``: ``"stop"`` raises :class:`TrainingError` at a NaN/Inf loss or gradient,
    ``"skip"`` drops that step.  ``checkpoint``: a file for the training state, written every
    ``checkpoint_every`` steps, at the end and on Ctrl-C/SIGTERM, with the JSON dict
    ``checkpoint_meta`` stored beside it.  ``resume_state``: ``(arrays, meta)`` of such a file
    (:func:`rnnkit.training.load_training_state`) to continue from; ValueError if it was not
    made by this run (other arguments, model or data size).
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise ValueError(f"batch size must be a positive integer, got {batch_size!r}")
    if clip is not None and (isinstance(clip, bool)
                             or not isinstance(clip, (int, float, np.integer, np.floating))
                             or not clip >= 0 or not np.isfinite(clip)):
        raise ValueError(f"clip must be a finite number >= 0 (0 or None: off), got {clip!r}")
    if on_nonfinite not in NONFINITE_MODES:
        raise ValueError(f"on_nonfinite must be stop or skip, got {on_nonfinite!r}")
    if checkpoint is not None:
        _checks.check_positive_int(checkpoint_every, "checkpoint_every")
        checkpoint = Path(checkpoint)
    elif resume_state is not None:
        raise ValueError("resume_state needs the checkpoint path the run goes on writing")
    opt = make_optimizer(optimizer, lr)
    # What makes this run this run: a resumed state must have been made with the same.
    settings = json.loads(json.dumps({
        "model": model.to_json(), "n_train": int(n_train), "batch_size": int(batch_size),
        "lr": lr, "clip": clip, "seed": seed, "keep_best": bool(keep_best),
        "lr_decay": lr_decay, "bucketed": length_fn is not None, "validation": val is not None,
        "n_val": None if val is None else int(val[1]), "optimizer": optimizer},
        default=_json_default))
    run = dict(checkpoint_meta or {})
    run.setdefault("task", "fit")
    run.setdefault("options", settings)
    if resume_state is not None and run["options"] is settings:
        check_resume(checkpoint, resume_state[1], task=run["task"], options=settings,
                     world_size=(world.size if world else 1), steps=steps)
    source = ExampleSource(make_batch, n_train, batch_size, seed, length_fn=length_fn,
                           count_fn=count_fn, world=world)
    evaluate = None if val is None else (lambda m: evaluate_loss(m, val[0], val[1]))
    return train(model, source, opt, steps=steps, clip=clip, on_nonfinite=on_nonfinite,
                 scheduler=make_scheduler(opt, lr_decay), evaluate=evaluate,
                 eval_every=eval_every, keep_best=keep_best, checkpoint=checkpoint,
                 checkpoint_every=checkpoint_every, run=run, resume=resume_state,
                 reporter=reporter, log=log, world=world)


def _json_default(x):
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"{type(x).__name__} is not JSON")
