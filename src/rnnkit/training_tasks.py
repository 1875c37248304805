"""The training loop of the padded-batch tasks (classifier, tagger, seq2seq, generator, MLP).

Data flows one way: examples -> minibatch (``make_batch``) -> ``model.batch_loss`` (forward,
cache, loss, backward) -> grads -> clip -> Adam -> params, with the held-out loss measured
every ``eval_every`` steps and the best weights (by held-out loss) kept.

Minibatches are drawn epoch by epoch from one seeded ``numpy.random.Generator``.  With
``length_fn`` they are *bucketed*: each shuffled run of ``bucket`` batches is sorted by
length before it is cut into batches (whose order is then shuffled), so a batch holds
sequences of similar length and little padding — the recurrent loop costs T steps for the
longest sequence of a batch.  Same seed, same data -> same model, bit for bit.

The same generator draws the minibatch order and the dropout masks (one stream, as it always
was, so a seed gives the model it gave before).  Its exact state, the current epoch's batches
and the position in them are what a checkpoint needs to continue the order and the masks.

Reliability, as in :mod:`rnnkit.lm.train`:

- ``on_nonfinite="stop"`` (the default) ends training with a one-line :class:`TrainingError`
  naming the step whose loss or gradients are NaN/Inf; ``"skip"`` drops such a step (no
  update) and counts it in ``TrainResult.skipped``.  An update that makes the weights
  non-finite always stops: nothing of that state is saved.
- With ``checkpoint=PATH`` the whole training state — weights, Adam's moments and step
  counts, the generator's state, the epoch's batch order, the step, the best weights and
  their held-out loss, the metrics so far — is written atomically every ``checkpoint_every``
  steps, at the end, and when Ctrl-C is pressed (SIGINT becomes a request honoured between
  two steps; ``TrainResult.interrupted``).  ``resume_state=load_training_state(PATH)``
  continues such a run: it ends with exactly the weights of one never interrupted.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import _checks
from .checkpoint import (CheckpointError, load_checkpoint, rng_from_json, rng_to_json,
                         save_checkpoint)
from .training import StopFlag, TrainingError  # one Ctrl-C contract and one error for all training
from .optim import Adam, clip_grad_norm, grads_finite

STATE_KIND = "rnnkit.task_training"
NONFINITE_MODES = ("stop", "skip")
# fit() arguments a resumed run may change; every other one must be what the run started with.
RESUMABLE = ("steps", "eval_every", "checkpoint_every", "on_nonfinite")


@dataclass
class TrainResult:
    steps: int
    seconds: float
    train_loss: float | None
    val_loss: float | None
    best_step: int | None
    skipped: int = 0
    history: list = field(default_factory=list)
    interrupted: bool = False
    start_step: int = 0


class BatchOrder:
    """Endless minibatch index arrays over ``range(n)``, reshuffled every epoch.

    An iterator whose state (this epoch's batches and the position in them) goes into a
    checkpoint: :meth:`state` and :meth:`load_state`.  Draws from ``rng`` happen when an
    epoch starts, exactly where the generator function this replaces drew them.
    """

    def __init__(self, n, batch_size, rng, length_fn=None, bucket=50):
        if n < 1:
            raise ValueError("no training examples")
        self.n, self.batch_size, self.rng, self.bucket = int(n), int(batch_size), rng, bucket
        self.lengths = None if length_fn is None else np.array([length_fn(i) for i in range(n)])
        self._batches: list = []
        self._pos = 0

    def __iter__(self):
        return self

    def __next__(self) -> np.ndarray:
        if self._pos == len(self._batches):
            self._batches, self._pos = self._new_epoch(), 0
        batch = self._batches[self._pos]
        self._pos += 1
        return batch

    def _new_epoch(self) -> list:
        n, bs = self.n, self.batch_size
        order = self.rng.permutation(n)
        if self.lengths is None:
            return [order[i: i + bs] for i in range(0, n, bs)]
        batches = []
        span = bs * self.bucket
        for i in range(0, n, span):
            chunk = order[i: i + span]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches.extend(chunk[j: j + bs] for j in range(0, len(chunk), bs))
        return [batches[k] for k in self.rng.permutation(len(batches))]

    def state(self) -> tuple[np.ndarray, np.ndarray, int]:
        """``(indices, bounds, position)``: this epoch's batches concatenated, where each one
        starts (and the last ends), and how many of them were handed out."""
        sizes = [len(b) for b in self._batches]
        bounds = np.zeros(len(sizes) + 1, dtype=np.int64)
        np.cumsum(sizes, out=bounds[1:])
        flat = (np.concatenate(self._batches) if self._batches else np.zeros(0)).astype(np.int64)
        return flat, bounds, self._pos

    def load_state(self, indices, bounds, position) -> None:
        """Restore :meth:`state`'s output; ValueError if it cannot be this data's order."""
        indices, bounds = np.asarray(indices), np.asarray(bounds)
        if indices.ndim != 1 or bounds.ndim != 1 or indices.dtype.kind not in "iu" \
                or bounds.dtype.kind not in "iu" or bounds.size < 1:
            raise ValueError("batch order: malformed arrays")
        if bounds[0] != 0 or bounds[-1] != indices.size or (np.diff(bounds) < 1).any():
            raise ValueError("batch order: bad batch boundaries")
        if indices.size and (indices.min() < 0 or indices.max() >= self.n):
            raise ValueError(f"batch order: indices outside the {self.n} training examples")
        pos = _checks.check_positive_int(position, "batch order position", minimum=0)
        if pos > bounds.size - 1:
            raise ValueError("batch order: position past the epoch's end")
        self._batches = [indices[a:b].astype(np.int64) for a, b in zip(bounds[:-1], bounds[1:])]
        self._pos = pos


def batch_indices(n, batch_size, rng, length_fn=None, bucket=50):
    """Endless minibatch index arrays over ``range(n)``, reshuffled every epoch."""
    return BatchOrder(n, batch_size, rng, length_fn, bucket)


def evaluate_loss(model, make_batch, n, batch_size=256) -> float:
    """Mean of the per-batch losses weighted by batch size, over examples 0..n-1."""
    total, count = 0.0, 0
    for i in range(0, n, batch_size):
        idx = np.arange(i, min(i + batch_size, n))
        loss, _ = model.batch_loss(make_batch(idx))
        total += loss * len(idx)
        count += len(idx)
    return total / max(count, 1)


def load_training_state(path) -> tuple[dict, dict]:
    """``(arrays, meta)`` of a training checkpoint written by :func:`fit`.

    CheckpointError (a ValueError) for a file that is not one; whether it fits a run is
    checked by :func:`fit` when it resumes from it.
    """
    arrays, meta = load_checkpoint(path)
    if meta.get("kind") != STATE_KIND:
        raise CheckpointError(f"{path}: not a task training checkpoint "
                              f"(kind {str(meta.get('kind'))[:40]!r})")
    return arrays, meta


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text[:200] + "..." if len(text) > 200 else text


def _finite_or_none(x):
    return float(x) if x is not None and math.isfinite(x) else None


def fit(model, make_batch, n_train, *, steps, batch_size=32, lr=1e-3, clip=5.0, seed=0,
        val=None, eval_every=None, length_fn=None, log=None, reporter=None,
        keep_best=True, lr_decay=None, on_nonfinite="stop", checkpoint=None,
        checkpoint_every=500, checkpoint_meta=None, resume_state=None) -> TrainResult:
    """Train ``model`` for ``steps`` minibatch steps; returns a :class:`TrainResult`.

    ``make_batch(indices) -> batch`` builds a training batch for ``model.batch_loss``;
    ``val`` is ``(make_val_batch, n_val)`` or None.  ``log(str)`` receives progress lines
    and ``reporter`` (a :class:`rnnkit.progress.ProgressReporter`) the step records.
    ``lr_decay``: multiply the learning rate by this factor at every evaluation whose
    held-out loss did not improve (a simple plateau schedule).

    ``on_nonfinite``: ``"stop"`` raises :class:`TrainingError` at a NaN/Inf loss or gradient,
    ``"skip"`` drops that step.  ``checkpoint``: a file for the training state, written every
    ``checkpoint_every`` steps, at the end and on Ctrl-C, with the JSON dict
    ``checkpoint_meta`` stored beside it (``meta["run"]``).  ``resume_state``: ``(arrays,
    meta)`` of such a file (:func:`load_training_state`) to continue from; ValueError if it
    was not made by this run (other arguments, model or data size).
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch size must be a positive integer, got {batch_size!r}")
    if clip is not None and (isinstance(clip, bool)
                             or not isinstance(clip, (int, float, np.integer, np.floating))
                             or not clip >= 0 or not math.isfinite(clip)):
        raise ValueError(f"clip must be a finite number >= 0 (0 or None: off), got {clip!r}")
    if on_nonfinite not in NONFINITE_MODES:
        raise ValueError(f"on_nonfinite must be stop or skip, got {on_nonfinite!r}")
    if checkpoint is not None:
        _checks.check_positive_int(checkpoint_every, "checkpoint_every")
        checkpoint = Path(checkpoint)
    elif resume_state is not None:
        raise ValueError("resume_state needs the checkpoint path the run goes on writing")
    rng = np.random.default_rng(seed)
    opt = Adam(lr=lr)
    eval_every = eval_every or max(1, min(steps, 200))
    order = BatchOrder(n_train, batch_size, rng, length_fn)
    # What makes this run this run: a resumed state must have been made with the same.
    settings = json.loads(json.dumps({
        "model": model.to_json(), "n_train": int(n_train), "batch_size": int(batch_size),
        "lr": lr, "clip": clip, "seed": seed, "keep_best": bool(keep_best),
        "lr_decay": lr_decay, "bucketed": length_fn is not None, "validation": val is not None,
        "n_val": None if val is None else int(val[1])}, default=_json_default))

    step, skipped, elapsed = 0, 0, 0.0
    best_val, best_step, best_params = None, None, None
    running, history, val_loss = [], [], None
    saved_step = None  # the step of the checkpoint now on disk, for the stop message
    if resume_state is not None:
        arrays, meta = resume_state
        try:
            if not isinstance(meta, dict) or meta.get("kind") != STATE_KIND:
                raise ValueError("not a task training checkpoint")
            if not isinstance(meta.get("fit"), dict):
                raise ValueError("it holds no run settings")
            diff = sorted(k for k in settings if meta["fit"].get(k) != settings[k])
            if diff:
                raise ValueError("it was made with other settings: " + ", ".join(
                    f"{k} ({_short(meta['fit'].get(k))} -> {_short(settings[k])})" for k in diff))
            step = _checks.check_positive_int(meta["step"], "step", minimum=0)
            if step > steps:
                raise ValueError(f"it is at step {step}, past the {steps} steps asked for")
            params = {k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")}
            _check_arrays_like(params, model.params, "weights")
            model.load_params(params)
            opt_state = dict(meta["optimizer"])
            opt_state.update({k[len("opt/"):]: v for k, v in arrays.items()
                              if k.startswith("opt/")})
            opt.load_state_dict(opt_state)
            rng_from_json(meta["rng"], rng)  # in place: the batch order draws from it too
            order.load_state(arrays["order/indices"], arrays["order/bounds"], meta["order_pos"])
            best = {k[len("best/"):]: v for k, v in arrays.items() if k.startswith("best/")}
            if best:
                _check_arrays_like(best, model.params, "best weights")
                best_params = {k: v.astype(model.params[k].dtype) for k, v in best.items()}
            best_val = _optional_float(meta["best_val"], "best_val")
            best_step = None if meta["best_step"] is None else \
                _checks.check_positive_int(meta["best_step"], "best_step")
            val_loss = _optional_float(meta["val_loss"], "val_loss")
            running = [_optional_float(x, "running loss") for x in meta["running"]]
            if any(x is None for x in running):
                raise ValueError("running losses hold a null")
            history = list(meta["history"])
            if not all(isinstance(r, dict) for r in history):
                raise ValueError("history must be a list of records")
            skipped = _checks.check_positive_int(meta["skipped"], "skipped", minimum=0)
            elapsed = _optional_float(meta["seconds"], "seconds") or 0.0
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
            raise ValueError(f"--resume: {checkpoint}: the training state does not fit this "
                             f"run ({_one_line(e)})") from None
        saved_step = step
    start_step = step

    def save_state():
        nonlocal saved_step
        arrays = {f"param/{k}": np.ascontiguousarray(v) for k, v in model.params.items()}
        opt_state = opt.state_dict()
        scalars = {k: v for k, v in opt_state.items() if not isinstance(v, np.ndarray)}
        arrays.update({f"opt/{k}": v for k, v in opt_state.items() if isinstance(v, np.ndarray)})
        if best_params is not None:
            arrays.update({f"best/{k}": np.ascontiguousarray(v) for k, v in best_params.items()})
        indices, bounds, pos = order.state()
        arrays.update({"order/indices": indices, "order/bounds": bounds})
        meta = {"kind": STATE_KIND, "step": step, "steps": steps, "fit": settings,
                "optimizer": scalars, "rng": rng_to_json(rng), "order_pos": pos,
                "best_val": best_val, "best_step": best_step, "val_loss": val_loss,
                "running": running, "history": history, "skipped": skipped,
                "seconds": round(elapsed + time.perf_counter() - t0, 3),
                "run": checkpoint_meta or {}}
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(checkpoint, arrays, meta)
        saved_step = step

    def stopped(what: str) -> TrainingError:
        if checkpoint is None:
            kept = "stopped"
        elif saved_step is None:
            kept = "stopped before the first checkpoint was written"
        else:
            kept = f"stopped; the last good checkpoint (step {saved_step}) in {checkpoint} is kept"
        return TrainingError(f"{what}; {kept} (try a lower --lr or --clip"
                             + (", or --on-nonfinite skip)" if "update" not in what else ")"))

    t0 = time.perf_counter()
    interrupted = False
    stop_flag = StopFlag() if checkpoint is not None else contextlib.nullcontext()
    # Overflow is expected when a run diverges; it is detected below and reported in one
    # line, so numpy's warnings would only be noise on the terminal.
    with stop_flag as stop, np.errstate(over="ignore", invalid="ignore", divide="ignore",
                                        under="ignore"):
        while step < steps:
            batch = make_batch(next(order))
            loss, grads = model.batch_loss(batch, training=True, rng=rng)
            step += 1
            finite = math.isfinite(loss) and grads_finite(grads)
            if finite:
                if clip:
                    clip_grad_norm(grads, clip)
                opt.step(model.params, grads)
                if not grads_finite(model.params):
                    raise stopped(f"the update at step {step} made the weights NaN or Inf")
                running.append(float(loss))
                if reporter is not None:
                    reporter.update(step, loss)
            elif on_nonfinite == "stop":
                raise stopped(f"non-finite loss or gradients at step {step} (loss {loss})")
            else:
                skipped += 1  # no update: the weights stay those of the last good step
            if step % eval_every == 0 or step == steps:
                train_loss = float(np.mean(running)) if running else None
                running = []
                record = {"step": step, "train_loss": train_loss,
                          "seconds": round(elapsed + time.perf_counter() - t0, 2)}
                if val is not None:
                    val_loss = _finite_or_none(evaluate_loss(model, val[0], val[1]))
                    record["val_loss"] = val_loss
                    if val_loss is not None and (best_val is None or val_loss < best_val):
                        best_val, best_step = val_loss, step
                        if keep_best:
                            best_params = {k: v.copy() for k, v in model.params.items()}
                    elif lr_decay:
                        opt.lr = opt.lr * lr_decay
                if skipped:
                    record["skipped"] = skipped
                history.append(record)
                if reporter is not None:
                    reporter.log(step, train_loss, val_loss=record.get("val_loss"), lr=opt.lr)
                if log is not None:
                    msg = f"step {step}/{steps}  train loss {_fmt(train_loss)}"
                    if val is not None:
                        msg += f"  val loss {_fmt(val_loss)}"
                    if skipped:
                        msg += f"  ({skipped} skipped)"
                    log(msg + f"  ({record['seconds']:.0f}s)")
            if checkpoint is not None and (step % checkpoint_every == 0 or step == steps):
                save_state()
            if stop is not None and stop.requested:
                interrupted = True
                break
    if interrupted and saved_step != step:
        save_state()
    if best_params is not None:
        model.load_params(best_params)
    last = history[-1] if history else {}
    return TrainResult(step, elapsed + time.perf_counter() - t0, last.get("train_loss"),
                       best_val, best_step, skipped, history, interrupted, start_step)


def _check_arrays_like(arrays: dict, params: dict, what: str) -> None:
    missing = sorted(set(params) - set(arrays))
    extra = sorted(set(arrays) - set(params))
    if missing or extra:
        raise ValueError(f"{what}: missing {missing[:3]}, unexpected {extra[:3]}")
    for k, v in arrays.items():
        if v.shape != params[k].shape or v.dtype != params[k].dtype:
            raise ValueError(f"{what}: {k} is {v.dtype.name} {v.shape}, the model's "
                             f"{params[k].dtype.name} {params[k].shape}")
        if not np.isfinite(v).all():
            raise ValueError(f"{what}: {k} holds NaN or Inf")


def _optional_float(x, name):
    if x is None:
        return None
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        raise ValueError(f"{name} must be a finite number or null, got {_short(x)}")
    return float(x)


def _short(x, limit=40) -> str:
    s = repr(x)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _json_default(x):
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"{type(x).__name__} is not JSON")


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
