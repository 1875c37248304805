"""The training loop of the padded-batch tasks (classifier, tagger, seq2seq, generator, MLP).

Data flows one way: examples -> minibatch (``make_batch``) -> ``model.batch_loss`` (forward,
cache, loss, backward) -> grads -> clip -> Adam -> params, with the held-out loss measured
every ``eval_every`` steps and the best weights (by held-out loss) kept.

Minibatches are drawn epoch by epoch from one seeded ``numpy.random.Generator``.  With
``length_fn`` they are *bucketed*: each shuffled run of ``bucket`` batches is sorted by
length before it is cut into batches (whose order is then shuffled), so a batch holds
sequences of similar length and little padding — the recurrent loop costs T steps for the
longest sequence of a batch.  Same seed, same data -> same model, bit for bit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .optim import Adam, clip_grad_norm, grads_finite


@dataclass
class TrainResult:
    steps: int
    seconds: float
    train_loss: float | None
    val_loss: float | None
    best_step: int | None
    skipped: int = 0
    history: list = field(default_factory=list)


def batch_indices(n, batch_size, rng, length_fn=None, bucket=50):
    """Endless minibatch index arrays over ``range(n)``, reshuffled every epoch."""
    if n < 1:
        raise ValueError("no training examples")
    lengths = None if length_fn is None else np.array([length_fn(i) for i in range(n)])
    while True:
        order = rng.permutation(n)
        if lengths is None:
            for i in range(0, n, batch_size):
                yield order[i: i + batch_size]
            continue
        batches = []
        span = batch_size * bucket
        for i in range(0, n, span):
            chunk = order[i: i + span]
            chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
            batches.extend(chunk[j: j + batch_size] for j in range(0, len(chunk), batch_size))
        for k in rng.permutation(len(batches)):
            yield batches[k]


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
        keep_best=True, lr_decay=None) -> TrainResult:
    """Train ``model`` for ``steps`` minibatch steps; returns a :class:`TrainResult`.

    ``make_batch(indices) -> batch`` builds a training batch for ``model.batch_loss``;
    ``val`` is ``(make_val_batch, n_val)`` or None.  ``log(str)`` receives progress lines
    and ``reporter`` (a :class:`rnnkit.progress.ProgressReporter`) the step records.
    ``lr_decay``: multiply the learning rate by this factor at every evaluation whose
    held-out loss did not improve (a simple plateau schedule).
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch size must be a positive integer, got {batch_size!r}")
    rng = np.random.default_rng(seed)
    opt = Adam(lr=lr)
    eval_every = eval_every or max(1, min(steps, 200))
    batches = batch_indices(n_train, batch_size, rng, length_fn)
    t0 = time.perf_counter()
    best_val, best_step, best_params = None, None, None
    running, skipped, history, val_loss = [], 0, [], None
    for step in range(1, steps + 1):
        batch = make_batch(next(batches))
        loss, grads = model.batch_loss(batch, training=True, rng=rng)
        if not (np.isfinite(loss) and grads_finite(grads)):
            skipped += 1  # one bad batch must not wreck the weights
        else:
            if clip:
                clip_grad_norm(grads, clip)
            opt.step(model.params, grads)
            running.append(loss)
        if reporter is not None:
            reporter.update(step, loss)
        if step % eval_every == 0 or step == steps:
            train_loss = float(np.mean(running)) if running else None
            running = []
            record = {"step": step, "train_loss": train_loss,
                      "seconds": round(time.perf_counter() - t0, 2)}
            if val is not None:
                val_loss = evaluate_loss(model, val[0], val[1])
                record["val_loss"] = val_loss
                if best_val is None or val_loss < best_val:
                    best_val, best_step = val_loss, step
                    if keep_best:
                        best_params = {k: v.copy() for k, v in model.params.items()}
                elif lr_decay:
                    opt.lr = opt.lr * lr_decay
            history.append(record)
            if reporter is not None:
                reporter.log(step, train_loss, val_loss=record.get("val_loss"), lr=opt.lr)
            if log is not None:
                msg = f"step {step}/{steps}  train loss {_fmt(train_loss)}"
                if val is not None:
                    msg += f"  val loss {_fmt(val_loss)}"
                log(msg + f"  ({record['seconds']:.0f}s)")
    if best_params is not None:
        model.load_params(best_params)
    last = history[-1] if history else {}
    return TrainResult(steps, time.perf_counter() - t0, last.get("train_loss"),
                       best_val if best_val is not None else None, best_step, skipped, history)


def _fmt(x):
    return "n/a" if x is None else f"{x:.4f}"


# ---- metrics -----------------------------------------------------------------------------
def edit_distance(a, b) -> int:
    """Levenshtein distance between two sequences (insertions, deletions, substitutions)."""
    a, b = list(a), list(b)
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, y in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y))
        prev = cur
    return prev[-1]


def confusion_matrix(y_true, y_pred, num_classes) -> np.ndarray:
    """(C, C) counts: row = true class, column = predicted class."""
    m = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return m
