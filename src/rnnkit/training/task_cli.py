"""``rnnkit classify | tag | seq2seq train``: the options and the command, over the one loop.

The options are a dataclass (:class:`TaskTrainOptions`) whose fields are the command-line
options (:mod:`rnnkit.training.options`); the command reads the TSV on rank 0, builds the
vocabularies and the model, and runs :func:`rnnkit.training.train` with an
:class:`~rnnkit.training.sources.ExampleSource` — under ``mpiexec -n K`` on K processes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from ..lm.options import CELL_NAMES
from .options import option

LEVELS = ("char", "word")
# Options a resumed run may change; every other one must be what the run started with.  The
# data files may be named differently (another working directory, a copy): what must match
# is their content, checked by digest.
RESUMABLE_CHANGES = frozenset({"out", "data", "val", "steps", "eval_every", "checkpoint_every",
                               "on_nonfinite", "quiet"})


@dataclass
class TaskTrainOptions:
    """Everything ``rnnkit TASK train`` takes; saved in the checkpoint for ``--resume``."""

    data: str = option(help="training data, one example per line", positional=True,
                       metavar="DATA.tsv")
    out: str = option(None, "model directory to write", metavar="DIR", required=True)
    val: str | None = option(None, "held-out data in the same format", metavar="FILE")
    cell: str = option("lstm", "recurrent cell", choices=CELL_NAMES)
    layers: int = option(1, "stacked recurrent layers", type=int)
    hidden: int = option(128, "hidden units per direction", type=int)
    embed: int = option(64, "embedding size", type=int)
    bidirectional: bool = option(False, "read each input both ways (the encoder, for seq2seq)",
                                 type=bool)
    dropout: float = option(0.0, "dropout rate", type=float)
    steps: int = option(1000, "training steps", type=int)
    batch: int = option(32, "examples per step, the global batch over all MPI ranks", type=int)
    optimizer: str = option("adam", "optimizer", choices=("adam", "sgd"))
    lr: float = option(2e-3, "learning rate", type=float)
    clip: float = option(5.0, "global gradient-norm clip (0: off)", type=float)
    lr_decay: float = option(1.0, "lr factor when the held-out loss stops improving (1: off)",
                             type=float)
    patience: int = option(0, "evaluations without improvement before decaying", type=int)
    seed: int = option(0, "random seed", type=int)
    eval_every: int | None = option(None, "steps between held-out evaluations "
                                          "(none: min(steps, 200))", type=int, metavar="N")
    checkpoint_every: int = option(500, "steps between saves of the training state", type=int,
                                   metavar="N")
    on_nonfinite: str = option("stop", "at a NaN/Inf loss or gradient: stop, or skip the step",
                               choices=("stop", "skip"))
    quiet: bool = option(False, "no progress lines", type=bool)
    level: str = option("char", "read text as char or word tokens", choices=LEVELS,
                        tasks=("classify",))
    pooling: str = option("last", "how the outputs become one vector",
                          choices=("last", "mean", "max"), tasks=("classify",))
    model: str = option("rnn", "rnn (the recurrent classifier) or conv (--layers dilated "
                        "Conv1D layers of --hidden channels; --pooling last means max)",
                        choices=("rnn", "conv"), tasks=("classify",))
    kernel: int = option(5, "conv: kernel size (layer l has dilation 2**l)", type=int,
                         tasks=("classify",))
    source_level: str = option("char", "source tokens", choices=LEVELS, tasks=("seq2seq",))
    target_level: str = option("char", "target tokens", choices=LEVELS, tasks=("seq2seq",))
    attention: str = option("additive", "how the decoder reads the encoder's outputs at each "
                            "step: additive (Bahdanau), general (Luong) or none (the plain "
                            "encoder-decoder)", choices=("additive", "general", "none"),
                            tasks=("seq2seq",))

    def validate(self) -> None:
        from ..cells import check_cell

        check_cell(self.cell)
        for name in ("layers", "hidden", "embed", "steps", "batch", "checkpoint_every"):
            _positive(getattr(self, name), name)
        if self.eval_every is not None:
            _positive(self.eval_every, "eval_every")
        if self.patience < 0:
            raise ValueError(f"--patience must be >= 0, got {self.patience}")
        if self.on_nonfinite not in ("stop", "skip"):
            raise ValueError(f"--on-nonfinite must be stop or skip, got {self.on_nonfinite!r}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"--optimizer must be adam or sgd, got {self.optimizer!r}")
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise ValueError(f"--lr must be a positive number, got {self.lr}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"--dropout must lie in [0, 1), got {self.dropout}")
        if not (self.clip >= 0 and math.isfinite(self.clip)):
            raise ValueError(f"--clip must be >= 0 (0: off), got {self.clip}")
        if not 0.0 < self.lr_decay <= 1.0:
            raise ValueError(f"--lr-decay must lie in (0, 1], got {self.lr_decay}")
        for name in ("level", "source_level", "target_level"):
            if getattr(self, name) not in LEVELS:
                flag = "--" + name.replace("_", "-")
                raise ValueError(f"{flag} must be 'char' or 'word', got {getattr(self, name)!r}")
        if self.attention not in ("additive", "general", "none"):
            raise ValueError("--attention must be additive, general or none, got "
                             f"{str(self.attention)[:40]!r}")
        if self.pooling not in ("last", "mean", "max"):
            raise ValueError(f"--pooling must be last, mean or max, got {self.pooling!r}")
        if self.model not in ("rnn", "conv"):
            raise ValueError(f"--model must be rnn or conv, got {str(self.model)[:40]!r}")
        _positive(self.kernel, "kernel")


def _positive(v, name):
    if v < 1:
        raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {v}")


def add_train_parser(actions, task) -> None:
    """``rnnkit TASK train``'s parser under ``actions`` (the task's sub-commands)."""
    from .options import add_options

    t = actions.add_parser("train", help="train a model on DATA.tsv into DIR",
                           description=f"Train a {task} model (mpiexec -n K: on K processes).")
    add_options(t, TaskTrainOptions, task=task)
    t.add_argument("--resume", action="store_true",
                   help="continue the run whose checkpoint is in --out")
    t.add_argument("--force", action="store_true",
                   help="start over, replacing the model, training state and metrics in --out")
    t.set_defaults(func=lambda a, task=task: cmd_train(a, task))


def _digest(examples) -> str | None:
    """SHA-256 of parsed examples (not of the file: blank lines and the path do not count)."""
    if examples is None:
        return None
    text = json.dumps([[src, out] for _, src, out in examples], ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _prepare(opts, spec, resume, force, world) -> dict:
    """Rank 0: options, directory and data checked; what every rank needs to train.

    Everything that depends on the kind of task comes from its spec
    (:mod:`rnnkit.tasks.spec`): levels, the description (vocabularies, labels), targets.
    """
    from ..tasks import read_tsv
    from .rundir import CHECKPOINT_FILE, TASK_FILES, check_out, check_utf8
    from .state import check_resume, check_resume_data, load_training_state

    out = check_out(opts.out, resume=resume, force=force, own=TASK_FILES)
    options = dataclasses.asdict(opts)
    check_utf8(options, "a file name in the options")
    ckpt = out / CHECKPOINT_FILE
    resumed = None
    if resume:
        resumed = load_training_state(ckpt)
        check_resume(ckpt, resumed[1], task=spec.name, options=options,
                     resumable=RESUMABLE_CHANGES, world_size=world.size, steps=opts.steps)
    levels = spec.levels(opts)
    train = read_tsv(opts.data, spec, levels)
    val = read_tsv(opts.val, spec, levels) if opts.val else None
    digests = {"data_sha256": _digest(train), "val_sha256": _digest(val)}
    if resumed is not None:
        check_resume_data(resumed[1], digests)
    meta = spec.describe(train, levels, opts.data)
    xs, ys = spec.encode(meta, train, opts.data)
    vxs, vys = spec.encode(meta, val, opts.val) if val else ([], [])
    return {"meta": meta, "extra": spec.data_extra(train), "digests": digests,
            "resumed": resumed, "data": {"xs": xs, "ys": ys, "vxs": vxs, "vys": vys},
            "has_val": val is not None, "options": options}


def _bcast_sequences(world, seqs):
    """A list of 1-D int arrays from rank 0 on every rank (two buffer broadcasts)."""
    import numpy as np

    if world.is_root:
        lengths = np.array([len(s) for s in seqs], dtype=np.int64)
        flat = np.concatenate(seqs).astype(np.int64) if seqs else np.zeros(0, np.int64)
    else:
        lengths = flat = None
    lengths = world.bcast_array(lengths)
    flat = world.bcast_array(flat)
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    return [flat[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def cmd_train(args, task) -> int:
    from . import dist
    from .options import from_args

    opts = from_args(TaskTrainOptions, args)
    opts.validate()
    world = dist.world()
    if world.is_root:
        return _train(opts, args, task, world)
    try:
        return _train(opts, args, task, world)
    except (ValueError, TypeError):  # rank 0 says it, once
        return 2


def _broadcast_setup(world, setup: dict) -> dict:
    """Rank 0's task data, vocabularies, digests and resume state, on every rank."""
    from . import dist

    for key in ("meta", "extra", "digests", "has_val", "options"):
        setup[key] = world.bcast_json(setup.get(key))
    data = setup.get("data") or {}
    setup["data"] = {k: _bcast_sequences(world, data.get(k)) for k in ("xs", "ys", "vxs", "vys")}
    has_resume = world.bcast_json(setup.get("resumed") is not None)
    setup["resumed"] = dist.bcast_state(world, *setup["resumed"]) if has_resume else None
    return setup


def _opening_line(task, xs, vxs, has_val, model, world, resumed) -> str:
    return (f"{task}: {len(xs)} training examples"
            + (f", {len(vxs)} held out" if has_val else "")
            + f"; {model.num_parameters()} parameters"
            + (f"; {world.size} processes" if world.size > 1 else "")
            + (f"; resuming at step {resumed[1].get('step')}" if resumed else ""))


def _train(opts, args, task, world) -> int:
    from ..tasks import evaluate as held_out_metrics
    from ..tasks import get_task, save_bundle
    from . import dist
    from .fitting import evaluate_loss, make_optimizer, make_scheduler
    from .loop import train
    from .rundir import CHECKPOINT_FILE, RunLock, remove_stale_temporaries
    from .signals import TrainingError
    from .sources import ExampleSource

    root = world.is_root
    spec = get_task(task)
    setup = dist.on_root(world, lambda: _prepare(opts, spec, args.resume, args.force, world))
    if world.size > 1:
        setup = _broadcast_setup(world, setup or {})
    meta, d, resumed = setup["meta"], setup["data"], setup["resumed"]
    xs, ys, vxs, vys = d["xs"], d["ys"], d["vxs"], d["vys"]
    model = spec.build_model(meta, opts, setup["extra"])
    out = Path(opts.out)
    ckpt = out / CHECKPOINT_FILE
    log = None if (opts.quiet or not root) else (
        lambda msg: print(msg, file=sys.stderr, flush=True))
    source = ExampleSource(lambda idx: spec.batch(xs, ys, idx), len(xs), opts.batch, opts.seed,
                           length_fn=lambda i: len(xs[i]), count_fn=lambda idx: spec.count(ys, idx),
                           world=world)
    opt = make_optimizer(opts.optimizer, opts.lr)
    make_val = lambda idx: spec.batch(vxs, vys, idx)  # noqa: E731
    evaluate = (lambda m: evaluate_loss(m, make_val, len(vxs))) if setup["has_val"] else None
    run_meta = {"task": task, "options": setup["options"], **setup["digests"]}
    with (RunLock(out) if root else _nothing()):
        if root:
            remove_stale_temporaries(out)
            if resumed is None:
                # A run started over must never resume, nor show, the old one.
                for name in (CHECKPOINT_FILE, "metrics.jsonl"):
                    (out / name).unlink(missing_ok=True)
        if log:
            log(_opening_line(task, xs, vxs, setup["has_val"], model, world, resumed))
        try:
            result = train(model, source, opt, steps=opts.steps, clip=opts.clip,
                           on_nonfinite=opts.on_nonfinite,
                           scheduler=make_scheduler(opt, opts.lr_decay, opts.patience),
                           evaluate=evaluate, eval_every=opts.eval_every, keep_best=True,
                           checkpoint=ckpt, checkpoint_every=opts.checkpoint_every,
                           run=run_meta, resume=resumed, log=log, world=world)
        except TrainingError as e:
            if root:
                print(f"rnnkit {task}: error: {e}", file=sys.stderr)
            return 1
        if not root:
            return result.exit_code if result.interrupted else 0
        info = {"steps": result.steps, "seconds": round(result.seconds, 1),
                "train_loss": result.train_loss, "val_loss": result.val_loss,
                "best_step": result.best_step, "skipped_steps": result.skipped,
                "train_file": str(opts.data)}
        if world.size > 1:
            info["processes"] = world.size
        if result.interrupted:
            # The best weights so far (or the current ones), so the directory is usable as it
            # is; --resume goes on from the training state, not from this file.
            meta["info"] = {**info, "interrupted": True}
            save_bundle(out, task, model, meta)
            _write_metrics(out, result.history)
            print(f"interrupted; resume with --resume: step {result.steps} of {opts.steps}, "
                  f"training state in {ckpt}")
            return result.exit_code
        if setup["has_val"]:
            info.update(held_out_metrics(model, spec, vxs, vys))
        meta["info"] = info
        path = save_bundle(out, task, model, meta)
        _write_metrics(out, result.history)
    summary = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                        for k, v in info.items()
                        if k not in ("train_file", "skipped_steps") and v is not None)
    note = (f"; {result.skipped} step(s) skipped for a NaN/Inf loss or gradient"
            if result.skipped else "")
    print(f"saved {path} ({summary}){note}")
    return 0


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _write_metrics(out, history):
    from ..checkpoint import atomic_write_text

    atomic_write_text(out / "metrics.jsonl",
                      "".join(json.dumps(r, allow_nan=False) + "\n" for r in history))
