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
from ..optim import clip_grad_norm, grads_finite
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
    root = world.rank == 0
    if on_nonfinite not in NONFINITE_MODES:
        raise ValueError(f"on_nonfinite must be stop or skip, got {on_nonfinite!r}")
    eval_every = eval_every or max(1, min(steps, 200))
    reduce = _Reducer(model.params) if world.size > 1 else None
    if world.size > 1 and resume is None:
        # Every rank starts from rank 0's weights (they are built from one seed anyway).
        for k, v in model.params.items():
            v[...] = world.bcast_array(v)

    step, skipped, elapsed = 0, 0, 0.0
    best_val, best_step, best_params = None, None, None
    running, history, val_loss = [], [], None
    saved_step = None  # the step of the checkpoint now on disk, for the stop message
    if resume is not None:
        arrays, meta = resume
        try:
            step = check_step(meta["step"])
            if step > steps:
                raise ValueError(f"it is at step {step}, past the {steps} steps asked for")
            params = {k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")}
            check_arrays_like(params, model.params, "weights")
            model.load_params(params)
            opt_state = dict(meta["optimizer"])
            opt_state.update({k[len("opt/"):]: v for k, v in arrays.items()
                              if k.startswith("opt/")})
            optimizer.load_state_dict(opt_state)
            if scheduler is not None:
                scheduler.load_state_dict(meta["scheduler"])
            source.load_state_dict(arrays, meta["source"], model)
            best = {k[len("best/"):]: v for k, v in arrays.items() if k.startswith("best/")}
            if best:
                check_arrays_like(best, model.params, "best weights")
                best_params = best
            best_val = optional_float(meta["best_val"], "best_val")
            best_step = None if meta["best_step"] is None else check_step(meta["best_step"],
                                                                           "best_step")
            val_loss = optional_float(meta["val_loss"], "val_loss")
            running = [optional_float(x, "running loss") for x in meta["running"]]
            if any(x is None for x in running):
                raise ValueError("running losses hold a null")
            history = list(meta["history"])
            if not all(isinstance(r, dict) for r in history):
                raise ValueError("history must be a list of records")
            skipped = check_step(meta["skipped"], "skipped")
            elapsed = optional_float(meta["seconds"], "seconds") or 0.0
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
            raise ValueError(f"--resume: {checkpoint}: the training state does not fit this "
                             f"run ({_one_line(e)})") from None
        saved_step = step
    start_step = step
    t0 = time.perf_counter()

    def save_state():
        nonlocal saved_step
        src_arrays, src_meta = source.state_dict()  # collective: every rank takes part
        saved_step = step
        if not root:
            return
        arrays = {f"param/{k}": np.ascontiguousarray(v) for k, v in model.params.items()}
        opt_state = optimizer.state_dict()
        arrays.update({f"opt/{k}": v for k, v in opt_state.items() if isinstance(v, np.ndarray)})
        if best_params is not None:
            arrays.update({f"best/{k}": np.ascontiguousarray(v) for k, v in best_params.items()})
        arrays.update(src_arrays)
        meta = {"kind": STATE_KIND, "step": step, "steps": steps, "world_size": world.size,
                # How each global batch was split over the ranks (rnnkit.training.dist.share).
                "data_split": "contiguous shares of each global batch; the first "
                              "(batch % world_size) ranks take one more",
                "optimizer": {k: v for k, v in opt_state.items() if not isinstance(v, np.ndarray)},
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "source": src_meta, "best_val": best_val, "best_step": best_step,
                "val_loss": val_loss, "running": running, "history": history,
                "skipped": skipped, "seconds": round(elapsed + time.perf_counter() - t0, 3),
                "run": run or {}}
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(checkpoint, arrays, meta)

    def stopped(what: str) -> TrainingError:
        if checkpoint is None:
            kept = "stopped"
        elif saved_step is None:
            kept = "stopped before the first checkpoint was written"
        else:
            kept = f"stopped; the last good checkpoint (step {saved_step}) in {checkpoint} is kept"
        return TrainingError(f"{what}; {kept} (try a lower --lr or --clip"
                             + (", or --on-nonfinite skip)" if "update" not in what else ")"))

    def record(is_eval):
        nonlocal running
        train_loss = float(np.mean(running)) if running else None
        running = []
        rec = {"step": step, "train_loss": train_loss,
               "seconds": round(elapsed + time.perf_counter() - t0, 2)}
        if is_eval and evaluate is not None:
            rec["val_loss"] = val_loss
        if skipped:
            rec["skipped"] = skipped
        history.append(rec)
        if not root:
            return
        if reporter is not None:
            reporter.log(step, train_loss, val_loss=rec.get("val_loss"), lr=optimizer.lr)
        if log is not None:
            msg = f"step {step}/{steps}  train loss {_fmt(train_loss)}"
            if evaluate is not None and is_eval:
                msg += f"  val loss {_fmt(val_loss)}"
            if skipped:
                msg += f"  ({skipped} skipped)"
            log(msg + f"  ({rec['seconds']:.0f}s)")

    interrupted, last_val, exit_code = False, None, 0
    if catch_signals is None:
        catch_signals = checkpoint is not None
    flag = StopFlag() if catch_signals else contextlib.nullcontext()
    # Overflow is expected when a run diverges; it is detected below and reported in one
    # line, so numpy's warnings would only be noise on the terminal.
    with flag as stop, np.errstate(over="ignore", invalid="ignore", divide="ignore",
                                   under="ignore"):
        while step < steps:
            batch = source.next(step)
            loss, grads, count, carry = source.loss_and_grads(model, batch, step)
            want_stop = stop is not None and stop.requested
            if reduce is not None:
                grads, loss, count, want_stop = reduce(world, grads, loss, count, want_stop)
            step += 1
            finite = math.isfinite(loss) and grads_finite(grads)
            if finite:
                if clip:
                    clip_grad_norm(grads, clip)
                optimizer.step(model.params, grads)
                if not grads_finite(model.params):
                    # No way back from here: nothing of this state is saved.
                    raise stopped(f"the update at step {step} made the weights NaN or Inf")
                source.accept(carry)
                running.append(float(loss))
                if reporter is not None and root:
                    reporter.update(step, loss, tokens=int(count))
            elif on_nonfinite == "stop":
                raise stopped(f"non-finite loss or gradients at step {step} (loss {loss})")
            else:
                # Skipped: no update, and a carried state stays that of the last good step.
                skipped += 1
            is_eval = step % eval_every == 0 or step == steps
            if is_eval and evaluate is not None:
                value = world.root_value(lambda: float(evaluate(model)))
                last_val = value
                val_loss = _finite_or_none(value)
                if scheduler is not None:
                    scheduler.step(value)
                if val_loss is not None and (best_val is None or val_loss < best_val):
                    best_val, best_step = val_loss, step
                    if keep_best:
                        best_params = {k: v.copy() for k, v in model.params.items()}
                    if on_best is not None and root:
                        on_best(step, val_loss)
            if is_eval or (log_every and step % log_every == 0):
                record(is_eval)
            if checkpoint is not None and (step % checkpoint_every == 0 or step == steps):
                save_state()
            if want_stop:
                interrupted = True
                exit_code = stop.exit_code if stop is not None and stop.requested else 130
                break
    if interrupted and saved_step != step and checkpoint is not None:
        save_state()
    if keep_best and best_params is not None:
        model.load_params(best_params)
    last = history[-1] if history else {}
    return TrainResult(step, elapsed + time.perf_counter() - t0, last.get("train_loss"),
                       best_val, best_step, skipped, history, interrupted, start_step,
                       last_val, exit_code)


def _fmt(x):
    return "n/a" if x is None else f"{x:.4f}"
