"""The one training loop: language models and every task model, one process or K under MPI.

Per step: the batch source gives this rank's share of the global batch and computes its mean
loss and gradients; under MPI the gradients (scaled by the share's loss weight), the loss sum,
the weight and a stop flag travel in ONE ``Allreduce`` on one contiguous buffer, so every rank
holds the global batch's exact mean gradient; then NaN/Inf handling (stop or skip), clipping
by the global norm, the optimizer update, held-out evaluation (rank 0 evaluates, every rank
learns the value), the plateau schedule, best-weights keeping, records, and the training state
saved every ``checkpoint_every`` steps, at the end and on Ctrl-C/SIGTERM.  Only rank 0 writes
files and prints; every rank takes the same decisions from the same reduced numbers, so the
weights stay identical on all ranks.

A resumed run (``resume=(arrays, meta)`` of :func:`rnnkit.training.state.load_training_state`)
ends with exactly the weights of one never interrupted.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field

import numpy as np

from ..checkpoint import save_checkpoint
from ..optim import grad_square_sum, grads_finite, scale_to_norm
from .dist import Solo
from .signals import StopFlag, TrainingError
from .state import STATE_KIND, check_arrays_like, check_step, optional_float

NONFINITE_MODES = ("stop", "skip")


@dataclass
class TrainResult:
    steps: int
    seconds: float
    train_loss: float | None
    val_loss: float | None  # the best held-out loss
    best_step: int | None
    skipped: int = 0
    history: list = field(default_factory=list)
    interrupted: bool = False
    start_step: int = 0
    last_val: float | None = None
    exit_code: int = 0  # 130 after Ctrl-C, 143 after SIGTERM


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text[:200] + "..." if len(text) > 200 else text


def _finite_or_none(x):
    return float(x) if x is not None and math.isfinite(x) else None


class _Reducer:
    """One contiguous buffer: every gradient times the rank's loss weight, then the loss sum,
    the weight and the stop flag; summed over ranks by one Allreduce."""

    def __init__(self, params):
        self.names = sorted(params)
        self.sizes = [params[k].size for k in self.names]
        self.shapes = {k: params[k].shape for k in self.names}
        dtypes = {params[k].dtype for k in self.names}
        self.dtype = dtypes.pop() if len(dtypes) == 1 else np.dtype(np.float64)
        self.buf = np.empty(sum(self.sizes) + 3, dtype=self.dtype)

    def __call__(self, world, grads, loss, count, stop):
        buf, o = self.buf, 0
        w = self.dtype.type(count)
        sparse = set()
        for k, n in zip(self.names, self.sizes):
            g = grads[k]
            if hasattr(g, "rows"):  # a RowSparse embedding gradient: dense for the sum
                sparse.add(k)
            np.multiply(np.asarray(g).reshape(-1), w, out=buf[o:o + n])
            o += n
        buf[o:] = (float(loss) * count if count else 0.0, count, 1.0 if stop else 0.0)
        world.allreduce_sum(buf)
        total = float(buf[o + 1])
        out, o = {}, 0
        for k, n in zip(self.names, self.sizes):
            out[k] = (buf[o:o + n] / self.dtype.type(total)).reshape(self.shapes[k])
            if k in sparse:
                # Back to the rows some rank touched, so the optimizer's sparse rule still
                # applies (a row whose gradients summed to exactly zero counts as untouched).
                from ..sparse_grad import RowSparse

                rows = np.flatnonzero(out[k].reshape(out[k].shape[0], -1).any(axis=1))
                out[k] = RowSparse(rows, out[k][rows], out[k].shape)
            o += n
        return out, float(buf[o]) / total, total, bool(buf[o + 2] > 0)


def train(model, source, optimizer, *, steps, clip=0.0, on_nonfinite="stop", scheduler=None,
          evaluate=None, eval_every=200, log_every=None, keep_best=True, on_best=None,
          checkpoint=None, checkpoint_every=500, run=None, resume=None, reporter=None,
          log=None, world=None, catch_signals=None) -> TrainResult:
    """Train ``model`` (``model.params``) for ``steps`` steps of ``source``; a :class:`TrainResult`.

    ``optimizer``: an :mod:`rnnkit.optim` optimizer; ``clip``: global gradient-norm bound
    (0 or None: off); ``on_nonfinite``: ``"stop"`` raises :class:`TrainingError` at a NaN/Inf
    loss or gradient, ``"skip"`` drops that step (an update that makes the weights non-finite
    always stops).  ``evaluate(model) -> float`` (held-out loss) runs every ``eval_every``
    steps and at the end; ``scheduler.step(val)`` follows it; the best weights are kept
    (``keep_best``: loaded back at the end) and ``on_best(step, val)`` is called (rank 0).
    Records ``{"step", "train_loss", "seconds", "val_loss", "skipped"}`` go to
    ``reporter.log`` / ``log(str)`` at evaluations and every ``log_every`` steps.
    ``checkpoint``: the training-state file (:mod:`rnnkit.training.state`), written by rank 0
    every ``checkpoint_every`` steps, at the end and when Ctrl-C or SIGTERM asks the run to
    stop (``TrainResult.interrupted``, ``exit_code``); ``run``: the caller's JSON kept in it.
    """
    world = world or Solo()
    if on_nonfinite not in NONFINITE_MODES:
        raise ValueError(f"on_nonfinite must be stop or skip, got {on_nonfinite!r}")
    if clip and not clip > 0:
        raise ValueError(f"clip must be > 0 (0 or None: off), got {clip!r}")
    eval_every = eval_every or max(1, min(steps, 200))
    reduce = _Reducer(model.params) if world.size > 1 else None
    if world.size > 1 and resume is None:
        # Every rank starts from rank 0's weights (they are built from one seed anyway).
        for k, v in model.params.items():
            v[...] = world.bcast_array(v)
    r = _Run(model, source, optimizer, steps=steps, scheduler=scheduler, evaluate=evaluate,
             keep_best=keep_best, on_best=on_best, checkpoint=checkpoint, run=run,
             reporter=reporter, log=log, world=world)
    if resume is not None:
        r.restore(resume)
    start_step = r.step
    if catch_signals is None:
        catch_signals = checkpoint is not None
    flag = StopFlag() if catch_signals else contextlib.nullcontext()
    interrupted, exit_code = False, 0
    # Overflow is expected when a run diverges; it is detected below and reported in one
    # line, so numpy's warnings would only be noise on the terminal.
    with flag as stop, np.errstate(over="ignore", invalid="ignore", divide="ignore",
                                   under="ignore"):
        while r.step < steps:
            want_stop = r.update(stop, reduce, clip, on_nonfinite)
            is_eval = r.step % eval_every == 0 or r.step == steps
            if is_eval and evaluate is not None:
                r.evaluate_now()
            if is_eval or (log_every and r.step % log_every == 0):
                r.record(is_eval)
            if checkpoint is not None and (r.step % checkpoint_every == 0 or r.step == steps):
                r.save_state()
            if want_stop:
                interrupted = True
                exit_code = stop.exit_code if stop is not None and stop.requested else 130
                break
    if interrupted and r.saved_step != r.step and checkpoint is not None:
        r.save_state()
    if keep_best and r.best_params is not None:
        model.load_params(r.best_params)
    last = r.history[-1] if r.history else {}
    return TrainResult(r.step, r.seconds(), last.get("train_loss"), r.best_val, r.best_step,
                       r.skipped, r.history, interrupted, start_step, r.last_val, exit_code)


class _Run:
    """The state of one training run between steps: what a checkpoint holds and restores."""

    def __init__(self, model, source, optimizer, *, steps, scheduler, evaluate, keep_best,
                 on_best, checkpoint, run, reporter, log, world):
        self.model, self.source, self.optimizer, self.steps = model, source, optimizer, steps
        self.scheduler, self.evaluate, self.keep_best, self.on_best = (scheduler, evaluate,
                                                                       keep_best, on_best)
        self.checkpoint, self.run, self.reporter, self.log = checkpoint, run, reporter, log
        self.world, self.root = world, world.rank == 0
        self.step, self.skipped, self.elapsed = 0, 0, 0.0
        self.best_val, self.best_step, self.best_params = None, None, None
        self.running, self.history, self.val_loss, self.last_val = [], [], None, None
        self.saved_step = None  # the step of the checkpoint now on disk, for the stop message
        self.t0 = time.perf_counter()

    def seconds(self) -> float:
        return self.elapsed + time.perf_counter() - self.t0

    def restore(self, resume) -> None:
        """Weights, optimizer, schedule, source, best weights and records of a checkpoint."""
        arrays, meta = resume
        model = self.model
        try:
            self.step = check_step(meta["step"])
            if self.step > self.steps:
                raise ValueError(f"it is at step {self.step}, past the {self.steps} steps "
                                 f"asked for")
            params = {k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")}
            check_arrays_like(params, model.params, "weights")
            model.load_params(params)
            opt_state = dict(meta["optimizer"])
            opt_state.update({k[len("opt/"):]: v for k, v in arrays.items()
                              if k.startswith("opt/")})
            self.optimizer.load_state_dict(opt_state)
            if self.scheduler is not None:
                self.scheduler.load_state_dict(meta["scheduler"])
            self.source.load_state_dict(arrays, meta["source"], model)
            best = {k[len("best/"):]: v for k, v in arrays.items() if k.startswith("best/")}
            if best:
                check_arrays_like(best, model.params, "best weights")
                self.best_params = best
            self.best_val = optional_float(meta["best_val"], "best_val")
            self.best_step = (None if meta["best_step"] is None
                              else check_step(meta["best_step"], "best_step"))
            self.val_loss = optional_float(meta["val_loss"], "val_loss")
            self.running = [optional_float(x, "running loss") for x in meta["running"]]
            if any(x is None for x in self.running):
                raise ValueError("running losses hold a null")
            self.history = list(meta["history"])
            if not all(isinstance(r, dict) for r in self.history):
                raise ValueError("history must be a list of records")
            self.skipped = check_step(meta["skipped"], "skipped")
            self.elapsed = optional_float(meta["seconds"], "seconds") or 0.0
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
            raise ValueError(f"--resume: {self.checkpoint}: the training state does not fit "
                             f"this run ({_one_line(e)})") from None
        self.saved_step = self.step
        self.t0 = time.perf_counter()  # the run's clock starts once its state is restored

    def update(self, stop, reduce, clip, on_nonfinite) -> bool:
        """One step: batch, loss and gradients (reduced over ranks), the NaN/Inf policy, clip,
        update.  True when Ctrl-C/SIGTERM asked any rank to stop."""
        batch = self.source.next(self.step)
        loss, grads, count, carry = self.source.loss_and_grads(self.model, batch, self.step)
        want_stop = stop is not None and stop.requested
        if reduce is not None:
            grads, loss, count, want_stop = reduce(self.world, grads, loss, count, want_stop)
        self.step += 1
        sq, finite = grad_square_sum(grads)  # one pass: the NaN check and the clip norm
        if math.isfinite(loss) and finite:
            if clip:
                scale_to_norm(grads, clip, math.sqrt(sq))
            self.optimizer.step(self.model.params, grads)
            if not grads_finite(self.model.params):
                # No way back from here: nothing of this state is saved.
                raise self.stopped(f"the update at step {self.step} made the weights NaN or Inf")
            self.source.accept(carry)
            self.running.append(float(loss))
            if self.reporter is not None and self.root:
                self.reporter.update(self.step, loss, tokens=int(count))
        elif on_nonfinite == "stop":
            raise self.stopped(f"non-finite loss or gradients at step {self.step} (loss {loss})")
        else:
            # Skipped: no update, and a carried state stays that of the last good step.
            self.skipped += 1
        return want_stop

    def evaluate_now(self) -> None:
        """Held-out loss (rank 0 computes, every rank learns it), schedule, best weights."""
        value = self.world.root_value(lambda: float(self.evaluate(self.model)))
        self.last_val = value
        self.val_loss = _finite_or_none(value)
        if self.scheduler is not None:
            self.scheduler.step(value)
        if self.val_loss is not None and (self.best_val is None or self.val_loss < self.best_val):
            self.best_val, self.best_step = self.val_loss, self.step
            if self.keep_best:
                self.best_params = {k: v.copy() for k, v in self.model.params.items()}
            if self.on_best is not None and self.root:
                self.on_best(self.step, self.val_loss)

    def save_state(self) -> None:
        src_arrays, src_meta = self.source.state_dict()  # collective: every rank takes part
        self.saved_step = self.step
        if not self.root:
            return
        arrays = {f"param/{k}": np.ascontiguousarray(v) for k, v in self.model.params.items()}
        opt_state = self.optimizer.state_dict()
        arrays.update({f"opt/{k}": v for k, v in opt_state.items() if isinstance(v, np.ndarray)})
        if self.best_params is not None:
            arrays.update({f"best/{k}": np.ascontiguousarray(v)
                           for k, v in self.best_params.items()})
        arrays.update(src_arrays)
        meta = {"kind": STATE_KIND, "step": self.step, "steps": self.steps,
                "world_size": self.world.size,
                # How each global batch was split over the ranks (rnnkit.training.dist.share).
                "data_split": "contiguous shares of each global batch; the first "
                              "(batch % world_size) ranks take one more",
                "optimizer": {k: v for k, v in opt_state.items() if not isinstance(v, np.ndarray)},
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "source": src_meta, "best_val": self.best_val, "best_step": self.best_step,
                "val_loss": self.val_loss, "running": self.running, "history": self.history,
                "skipped": self.skipped, "seconds": round(self.seconds(), 3),
                "run": self.run or {}}
        self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(self.checkpoint, arrays, meta)

    def stopped(self, what: str) -> TrainingError:
        if self.checkpoint is None:
            kept = "stopped"
        elif self.saved_step is None:
            kept = "stopped before the first checkpoint was written"
        else:
            kept = (f"stopped; the last good checkpoint (step {self.saved_step}) in "
                    f"{self.checkpoint} is kept")
        return TrainingError(f"{what}; {kept} (try a lower --lr or --clip"
                             + (", or --on-nonfinite skip)" if "update" not in what else ")"))

    def record(self, is_eval) -> None:
        train_loss = float(np.mean(self.running)) if self.running else None
        self.running = []
        rec = {"step": self.step, "train_loss": train_loss,
               "seconds": round(self.seconds(), 2)}
        if is_eval and self.evaluate is not None:
            rec["val_loss"] = self.val_loss
        if self.skipped:
            rec["skipped"] = self.skipped
        self.history.append(rec)
        if not self.root:
            return
        if self.reporter is not None:
            self.reporter.log(self.step, train_loss, val_loss=rec.get("val_loss"),
                              lr=self.optimizer.lr)
        if self.log is not None:
            msg = f"step {self.step}/{self.steps}  train loss {_fmt(train_loss)}"
            if self.evaluate is not None and is_eval:
                msg += f"  val loss {_fmt(self.val_loss)}"
            if self.skipped:
                msg += f"  ({self.skipped} skipped)"
            self.log(msg + f"  ({rec['seconds']:.0f}s)")


def _fmt(x):
    return "n/a" if x is None else f"{x:.4f}"
