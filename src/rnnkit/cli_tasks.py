"""``rnnkit classify | tag | seq2seq  train | predict``: sequence tasks on users' TSV data.

Data files are UTF-8 text, one example per line, two fields separated by one TAB:

- classify: ``text<TAB>label`` (text read per ``--level``: ``char`` (default) or ``word``)
- tag:      ``tokens<TAB>tags``, both space-separated, as many tags as tokens
- seq2seq:  ``source<TAB>target``, each read per ``--source-level`` / ``--target-level``

Blank lines are skipped; any other line that does not fit is refused with its line number.

``train DATA --out DIR`` writes ``DIR/model.safetensors`` — weights, the model config, the
vocabularies and the label set, written atomically (:mod:`rnnkit.checkpoint`), so the
directory rebuilds the model by itself — and ``DIR/metrics.jsonl``.  Everything the user
gave is checked before ``DIR`` is touched.  With ``--val FILE`` the held-out loss is measured
as training goes and the best weights are the ones kept.

As for language models (:mod:`rnnkit.lm.train`), ``DIR/checkpoint.safetensors`` holds the
whole training state, written every ``--checkpoint-every`` steps, at the end and on Ctrl-C
(which stops between two steps, saves, and exits 130); ``--resume`` continues it to exactly
the weights of a run never interrupted, and refuses other options or other data.  A NaN/Inf
loss or gradient stops training with one line and exit 1 (``--on-nonfinite skip`` drops such
steps instead); the last good checkpoint is kept.  Model files are checked before use: a
config that does not fit the stored arrays is refused before anything is allocated, and
NaN/Inf weights are refused.

``predict DIR [FILE]`` reads one input per line (FILE or standard input; on a line holding a
TAB only the part before it is read, so a training file can be given as it is) and prints
``input<TAB>prediction`` per line, in input order; a blank line gets an empty prediction.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .data.corpus import read_text
from .data.tokenize import split_lines
from .data.vocab import Vocab
from .models import (ClassifierConfig, Seq2Seq, Seq2SeqConfig, SequenceClassifier,
                     SequenceTagger, TaggerConfig)
from .models._blocks import CELLS, check_stored_params, config_from_json, pad_batch
from .training.metrics import edit_distance

MODEL_FILE = "model.safetensors"
CHECKPOINT_FILE = "checkpoint.safetensors"
LEVELS = ("char", "word")
TASKS = ("classify", "tag", "seq2seq")
MODEL_CLASSES = {"classify": SequenceClassifier, "tag": SequenceTagger, "seq2seq": Seq2Seq}


# ---- reading data -------------------------------------------------------------------------
def split_tokens(text: str, level: str) -> list:
    return list(text) if level == "char" else text.split()


def join_tokens(tokens, level: str) -> str:
    return "".join(tokens) if level == "char" else " ".join(tokens)


def read_tsv(path, task: str, levels=("char", "char")) -> list:
    """Examples ``(line_no, input_tokens, output)`` of a task's TSV file.

    output: a label (classify), a list of tags (tag) or a list of target tokens (seq2seq).
    ValueError naming the file and line for the first line that does not fit.
    """
    text = read_text(path)
    examples = []
    for no, line in enumerate(split_lines(text), start=1):
        if not line.strip():
            continue
        where = f"{path}: line {no}"
        if line.count("\t") != 1:
            raise ValueError(f"{where}: expected two fields separated by one TAB, found "
                             f"{line.count(chr(9)) + 1} field(s)")
        left, right = line.split("\t")
        if task == "classify":
            src, out = split_tokens(left, levels[0]), right.strip()
            if not out:
                raise ValueError(f"{where}: empty label")
        elif task == "tag":
            src, out = left.split(), right.split()
            if len(src) != len(out):
                raise ValueError(f"{where}: {len(src)} token(s) but {len(out)} tag(s); "
                                 "each token needs exactly one tag")
        else:
            src, out = split_tokens(left, levels[0]), split_tokens(right, levels[1])
            if not out:
                raise ValueError(f"{where}: empty target")
        if not src:
            raise ValueError(f"{where}: empty input")
        examples.append((no, src, out))
    if not examples:
        raise ValueError(f"{path}: no examples (every line is blank)")
    return examples


def read_inputs(path):
    """The input lines of ``predict`` (FILE or stdin), each cut at its first TAB."""
    if path is None or path == "-":
        data = sys.stdin.buffer.read()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"standard input: not valid UTF-8 (byte offset {e.start})") from None
        text = text[1:] if text.startswith("\ufeff") else text
    else:
        p = Path(path)
        if p.exists() and p.is_file() and p.stat().st_size == 0:
            return []
        text = read_text(p)
    return [line.split("\t", 1)[0] for line in split_lines(text)]


# ---- model bundles -----------------------------------------------------------------------
def save_bundle(out_dir: Path, task: str, model, meta_extra: dict) -> Path:
    arrays = {k: np.ascontiguousarray(v) for k, v in model.params.items()}
    meta = {"kind": f"rnnkit.{task}", "config": model.to_json()["config"], **meta_extra}
    return save_checkpoint(out_dir / MODEL_FILE, arrays, meta)


def load_bundle(path, task: str):
    """``(model, meta)`` from a model directory (or file) that ``task train`` wrote.

    The checksum proves only that the file is as written, not that a hand-made one makes
    sense, so the description is checked piece by piece: the config, the vocabularies and
    labels against it, and the stored arrays' shapes against the config *before* the model
    is built (a forged ``hidden_size`` cannot make it allocate gigabytes), then NaN/Inf.
    CheckpointError (a ValueError) with one line naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such model directory")
    file = path / MODEL_FILE if path.is_dir() else path
    if not file.exists():
        raise ValueError(f"{path}: no {MODEL_FILE} in this directory (train a model into it first)")
    arrays, meta = load_checkpoint(file)
    kind = meta.get("kind")
    if kind != f"rnnkit.{task}":
        shown = repr(kind) if len(repr(kind)) <= 40 else repr(kind)[:37] + "..."
        raise CheckpointError(f"{file}: holds a {shown} model, not a {task} model")
    cls = MODEL_CLASSES[task]
    try:
        config = config_from_json(cls.config_class, meta["config"]).validate()
        _check_description(task, config, meta)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{file}: bad model description ({_one_line(e)})") from None
    try:
        check_stored_params(cls.param_shapes(config), arrays)
    except ValueError as e:
        raise CheckpointError(f"{file}: {_one_line(e)}") from None
    try:
        model = cls(config)
        model.load_params(arrays)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{file}: {_one_line(e)}") from None
    return model, meta


def _check_description(task, config, meta) -> None:
    """Vocabularies, labels and levels of a model file, each against the config.

    Replaces the vocabularies' JSON in ``meta`` by :class:`Vocab` objects.
    """
    if task == "seq2seq":
        for key, size in (("src_vocab", config.src_vocab_size),
                          ("tgt_vocab", config.tgt_vocab_size)):
            meta[key] = Vocab.from_json(meta[key])
            if len(meta[key]) != size:
                raise ValueError(f"{key} has {len(meta[key])} tokens, the model {size}")
        levels = [meta["source_level"], meta["target_level"]]
    else:
        meta["vocab"] = Vocab.from_json(meta["vocab"])
        if len(meta["vocab"]) != config.vocab_size:
            raise ValueError(f"vocab has {len(meta['vocab'])} tokens, the model "
                             f"{config.vocab_size}")
        labels = meta["labels"]
        n = config.num_classes if task == "classify" else config.num_tags
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise ValueError("labels must be a list of strings")
        if len(labels) != n:
            raise ValueError(f"{len(labels)} labels, the model predicts {n}")
        levels = [meta.get("level", "word")]
    for level in levels:
        if level not in LEVELS:
            raise ValueError(f"level must be 'char' or 'word', got {str(level)[:20]!r}")


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text[:200] + "..." if len(text) > 200 else text


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
        q = actions.add_parser("predict", help="predict one line of input at a time")
        q.add_argument("model", metavar="DIR", help="model directory written by train")
        q.add_argument("input", metavar="FILE", nargs="?", help="inputs, one per line (default stdin)")
        q.add_argument("--batch", type=int, default=256, help="inputs per batch (default 256)")
        if task == "seq2seq":
            q.add_argument("--beam", type=int, default=1, metavar="K",
                           help="beam width (default 1: greedy)")
            q.add_argument("--length-penalty", type=float, default=0.0,
                           help="rank beams by logp / len**this (default 0)")
            q.add_argument("--max-len", type=int, default=None, help="longest output")
        q.set_defaults(func=lambda a, task=task: cmd_predict(a, task))
        p.set_defaults(func=lambda a, task=task: _no_action(task))


def _no_action(task) -> int:
    print(f"rnnkit {task}: error: choose an action: train or predict", file=sys.stderr)
    return 2


# ---- train: rnnkit.training.task_cli.cmd_train ----------------------------------------
def cmd_train(args, task) -> int:
    from .training.task_cli import cmd_train as run

    return run(args, task)


def _lookup(table, y, where, what):
    if y not in table:
        raise ValueError(f"{where}: {what} {y!r} does not occur in the training data")
    return table[y]


def evaluate(model, task, xs, ys, batch=256) -> dict:
    """Held-out accuracy (classify, tag) or greedy exact match and token error rate (seq2seq)."""
    preds = predict_ids(model, task, xs, batch)
    if task == "classify":
        return {"val_accuracy": float(np.mean(np.array(preds) == np.array(ys)))}
    if task == "tag":
        correct = sum(int((p == y).sum()) for p, y in zip(preds, ys))
        return {"val_token_accuracy": correct / sum(len(y) for y in ys)}
    exact = np.mean([list(p) == list(y) for p, y in zip(preds, ys)])
    errs = sum(edit_distance(p, list(y)) for p, y in zip(preds, ys))
    return {"val_exact_match": float(exact), "val_token_error_rate": errs / sum(len(y) for y in ys)}


def predict_ids(model, task, xs, batch=256, beam=1, length_penalty=0.0, max_len=None) -> list:
    """Predictions for id sequences ``xs`` (each non-empty), in their order; batches hold
    inputs of similar length."""
    order = sorted(range(len(xs)), key=lambda i: len(xs[i]))
    preds = [None] * len(xs)
    for start in range(0, len(order), batch):
        idx = order[start: start + batch]
        ids, lengths = pad_batch([xs[i] for i in idx])
        if task == "classify":
            out = list(model.predict(ids, lengths))
        elif task == "tag":
            out = model.predict(ids, lengths)
        elif beam == 1:
            out = model.greedy(ids, lengths, max_len=max_len)
        else:
            out = model.beam_search(ids, lengths, beam, max_len=max_len,
                                    length_penalty=length_penalty)
        for i, p in zip(idx, out):
            preds[i] = p
    return preds


# ---- predict -----------------------------------------------------------------------------
def cmd_predict(args, task) -> int:
    if args.batch < 1:
        raise ValueError(f"--batch must be a positive integer, got {args.batch}")
    if task == "seq2seq":
        if args.beam < 1:
            raise ValueError(f"--beam must be a positive integer, got {args.beam}")
        if not math.isfinite(args.length_penalty):
            raise ValueError(f"--length-penalty must be a finite number, got {args.length_penalty}")
        if args.max_len is not None and args.max_len < 1:
            raise ValueError(f"--max-len must be a positive integer, got {args.max_len}")
    model, meta = load_bundle(args.model, task)
    lines = read_inputs(args.input)
    if task == "seq2seq":
        vocab, level = meta["src_vocab"], meta["source_level"]
    else:
        vocab, level = meta["vocab"], meta.get("level", "word")
    toks = [split_tokens(line, level) for line in lines]
    keep = [i for i, t in enumerate(toks) if t]
    xs = [vocab.encode(toks[i]) for i in keep]
    kw = {}
    if task == "seq2seq":
        kw = dict(beam=args.beam, length_penalty=args.length_penalty, max_len=args.max_len)
    preds = predict_ids(model, task, xs, args.batch, **kw) if xs else []
    text = [""] * len(lines)
    for i, p in zip(keep, preds):
        if task == "classify":
            text[i] = meta["labels"][int(p)]
        elif task == "tag":
            text[i] = " ".join(meta["labels"][int(t)] for t in p)
        else:
            text[i] = join_tokens(meta["tgt_vocab"].decode(np.array(p, dtype=np.int64)),
                                  meta["target_level"])
    out = sys.stdout
    for line, pred in zip(lines, text):
        out.write(f"{line}\t{pred}\n")
    out.flush()
    return 0
