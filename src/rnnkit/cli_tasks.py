"""``rnnkit classify | tag | seq2seq  train | predict``: sequence tasks on users' TSV data.

Argument parsing and glue only: the data formats are :mod:`rnnkit.tasks.data`, the model
files :mod:`rnnkit.tasks.bundle`, what differs between the tasks :mod:`rnnkit.tasks.spec`,
and training :mod:`rnnkit.training.task_cli`.

``train DATA --out DIR`` writes ``DIR/model.safetensors`` — weights, the model config, the
vocabularies and the label set, written atomically, so the directory rebuilds the model by
itself — and ``DIR/metrics.jsonl``; ``DIR/checkpoint.safetensors`` holds the whole training
state for ``--resume``.

``predict DIR [FILE]`` reads one input per line (FILE or standard input; on a line holding a
TAB only the part before it is read, so a training file can be given as it is) and prints
``input<TAB>prediction`` per line, in input order; a blank line gets an empty prediction.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

from .training.options import add_options, from_args, option

MODEL_FILE = "model.safetensors"
CHECKPOINT_FILE = "checkpoint.safetensors"
LEVELS = ("char", "word")
TASKS = ("classify", "tag", "seq2seq")


@dataclass
class PredictOptions:
    """Everything ``rnnkit TASK predict`` takes (each field is also its option)."""

    model: str = option(help="model directory written by train", positional=True, metavar="DIR")
    input: str | None = option(None, "inputs, one per line (default: standard input)",
                               positional=True, nargs="?", metavar="FILE")
    batch: int = option(256, "inputs per batch", type=int)
    beam: int = option(1, "beam width (1: greedy)", type=int, metavar="K", tasks=("seq2seq",))
    length_penalty: float = option(0.0, "rank beams by logp / len**this", type=float,
                                   tasks=("seq2seq",))
    max_len: int | None = option(None, "longest output (none: the model's own bound)",
                                 type=int, tasks=("seq2seq",))
    alignments: str | None = option(None, "also write each input's attention weights to this "
                                          "JSON file (a model with attention)",
                                    metavar="OUT.json", tasks=("seq2seq",))
    plot: str | None = option(None, "also draw the attention weights of the first "
                                    "--plot-count inputs into this PNG file",
                              metavar="OUT.png", tasks=("seq2seq",))
    plot_count: int = option(4, "inputs drawn by --plot", type=int, metavar="N",
                             tasks=("seq2seq",))
    force: bool = option(False, "replace the --alignments / --plot files if they exist",
                         type=bool, tasks=("seq2seq",))
    ensemble: list = option([], "decode with this model too (repeat for more; the mean of "
                                "the models' probabilities, same vocabularies)",
                            metavar="DIR", tasks=("seq2seq",))

    def validate(self) -> None:
        for name in ("batch", "beam"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be a positive integer, got {getattr(self, name)}")
        if not math.isfinite(self.length_penalty):
            raise ValueError(f"--length-penalty must be a finite number, got {self.length_penalty}")
        if self.max_len is not None and self.max_len < 1:
            raise ValueError(f"--max-len must be a positive integer, got {self.max_len}")
        if self.plot_count < 1:
            raise ValueError(f"--plot-count must be a positive integer, got {self.plot_count}")
        for flag, name in (("--alignments", self.alignments), ("--plot", self.plot)):
            if name is None:
                continue
            p = Path(name)
            if p.is_dir():
                raise ValueError(f"{flag} {name}: is a directory")
            if p.exists() and not self.force:
                raise ValueError(f"{flag} {name}: the file exists; add --force to replace it")
            if not p.parent.is_dir():
                raise ValueError(f"{flag} {name}: no such directory {str(p.parent)!r}")


# ---- options: rnnkit.training.task_cli (train) -------------------------------------------
def register(sub) -> None:
    from .training.task_cli import add_train_parser

    helps = {"classify": "sequence classification (text<TAB>label)",
             "tag": "sequence tagging (tokens<TAB>tags)",
             "seq2seq": "sequence-to-sequence (source<TAB>target)"}
    for task in TASKS:
        p = sub.add_parser(task, help=helps[task], description=helps[task])
        actions = p.add_subparsers(dest="action", metavar="ACTION")
        add_train_parser(actions, task)
        if task != "seq2seq":
            _refuse_attention(actions.choices["train"], task)
        q = actions.add_parser("predict", help="predict one line of input at a time")
        add_options(q, PredictOptions, task=task)
        q.set_defaults(func=lambda a, task=task: cmd_predict(a, task))
        p.set_defaults(func=lambda a, task=task: _no_action(task))


def _refuse_attention(train_parser, task) -> None:
    """``--attention`` for a task without a decoder: its own one-line error, rather than
    argparse's "unrecognized arguments" (the option is not shown in the task's help)."""
    import argparse

    train_parser.add_argument("--attention", dest="attention_given", help=argparse.SUPPRESS)
    run = train_parser.get_default("func")

    def refuse(args):
        if getattr(args, "attention_given", None) is not None:
            raise ValueError(f"--attention: {task} has no decoder to attend with (only seq2seq "
                             "models have one)")
        return run(args)
    train_parser.set_defaults(func=refuse)


def _no_action(task) -> int:
    print(f"rnnkit {task}: error: choose an action: train or predict", file=sys.stderr)
    return 2


# ---- train: rnnkit.training.task_cli.cmd_train ----------------------------------------
def cmd_train(args, task) -> int:
    from .training.task_cli import cmd_train as run

    return run(args, task)


# ---- predict -----------------------------------------------------------------------------
def cmd_predict(args, task) -> int:
    from .tasks import get_task, load_bundle, predict_lines, read_inputs

    opts = from_args(PredictOptions, args)
    opts.validate()
    spec = get_task(task)
    model, meta = load_bundle(opts.model, spec)
    if opts.ensemble:
        model = _ensemble(model, meta, opts, spec)
    lines = read_inputs(opts.input)
    decode = {k: getattr(opts, k) for k in spec.decode_options}
    if opts.alignments is None and opts.plot is None:
        text = predict_lines(model, spec, meta, lines, opts.batch, **decode)
    else:
        from . import alignments

        flag = "--alignments" if opts.alignments is not None else "--plot"
        if not getattr(model, "has_attention", False):
            raise ValueError(f"{flag}: this model has no attention (trained with --attention "
                             "none), so there are no alignments")
        text, recs = alignments.collect(model, spec, meta, lines, opts.batch, **decode)
        if opts.plot is not None:  # first: it is the one that can refuse (no input at all)
            alignments.plot(opts.plot, recs[: opts.plot_count],
                            title=f"attention of {Path(opts.model).name}")
        if opts.alignments is not None:
            alignments.write_json(opts.alignments, recs)
    out = sys.stdout
    for line, pred in zip(lines, text):
        out.write(f"{line}\t{pred}\n")
    out.flush()
    return 0


def _ensemble(model, meta, opts, spec):
    """``model`` and the ``--ensemble`` models as one :class:`Seq2SeqEnsemble`; each must read
    and write the same symbols (vocabularies and levels equal), else a one-line ValueError."""
    from .models.ensemble import Seq2SeqEnsemble
    from .tasks import load_bundle

    if opts.alignments is not None or opts.plot is not None:
        flag = "--alignments" if opts.alignments is not None else "--plot"
        raise ValueError(f"{flag}: an --ensemble has no single attention matrix; draw one "
                         "model's alignments at a time")
    members = [model]
    for path in opts.ensemble:
        other, other_meta = load_bundle(path, spec)
        for key in ("src_vocab", "tgt_vocab", "source_level", "target_level"):
            if other_meta[key] != meta[key]:
                raise ValueError(f"--ensemble {path}: its {key.replace('_', ' ')} differs from "
                                 f"{opts.model}'s; ensemble members must share it")
        members.append(other)
    return Seq2SeqEnsemble(members)


# The API of this module before rnnkit.tasks (examples and the training command use them).
def __getattr__(name):
    from . import tasks
    from .tasks import spec

    moved = {"read_tsv": tasks.read_tsv, "read_inputs": tasks.read_inputs,
             "split_tokens": tasks.split_tokens, "join_tokens": tasks.join_tokens,
             "save_bundle": tasks.save_bundle, "load_bundle": tasks.load_bundle,
             "predict_ids": tasks.predict_ids, "evaluate": tasks.evaluate,
             "_lookup": spec._lookup}
    if name in moved:
        return moved[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
