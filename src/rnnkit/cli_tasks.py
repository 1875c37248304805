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

import hashlib
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
from .training_tasks import (NONFINITE_MODES, TrainingError, edit_distance, fit,
                             load_training_state)

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


# ---- options -----------------------------------------------------------------------------
def _positive(args, name, flag):
    v = getattr(args, name)
    if v < 1:
        raise ValueError(f"{flag} must be a positive integer, got {v}")
    return v


def check_train_args(args):
    if args.cell not in CELLS:
        raise ValueError(f"unknown cell {args.cell!r}: choose one of {', '.join(CELLS)}")
    for name, flag in [("layers", "--layers"), ("hidden", "--hidden"), ("embed", "--embed"),
                       ("steps", "--steps"), ("batch", "--batch")]:
        _positive(args, name, flag)
    if args.eval_every is not None:
        _positive(args, "eval_every", "--eval-every")
    _positive(args, "checkpoint_every", "--checkpoint-every")
    if args.on_nonfinite not in NONFINITE_MODES:
        raise ValueError(f"--on-nonfinite must be stop or skip, got {args.on_nonfinite!r}")
    if not args.lr > 0 or not np.isfinite(args.lr):
        raise ValueError(f"--lr must be a positive number, got {args.lr}")
    if not 0.0 <= args.dropout < 1.0:
        raise ValueError(f"--dropout must lie in [0, 1), got {args.dropout}")
    if args.clip is not None and not (args.clip > 0 and math.isfinite(args.clip)):
        raise ValueError(f"--clip must be positive, got {args.clip}")
    for name in ("level", "source_level", "target_level"):
        v = getattr(args, name, None)
        if v is not None and v not in LEVELS:
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"{flag} must be 'char' or 'word', got {v!r}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a directory")
    has_model, has_state = (out / MODEL_FILE).exists(), (out / CHECKPOINT_FILE).exists()
    if args.resume:
        if not has_state:
            hint = (" (its training ended before a checkpoint was written: start over with "
                    "--force)" if has_model else "")
            raise ValueError(f"--resume: no {CHECKPOINT_FILE} in {out}{hint}")
    elif has_model and not args.force:
        raise ValueError(f"--out {out}: already holds a model; add --force to replace it"
                         + (" or --resume to continue its training" if has_state else ""))
    elif has_state and not args.force:
        raise ValueError(f"--out {out}: already holds a training run ({CHECKPOINT_FILE}); "
                         "--resume continues it, --force starts over")


def _add_train_options(p, task):
    p.add_argument("data", metavar="DATA.tsv", help="training data, one example per line")
    p.add_argument("--out", required=True, metavar="DIR", help="model directory to write")
    p.add_argument("--val", metavar="FILE", help="held-out data in the same format")
    p.add_argument("--cell", default="lstm", help="rnn, gru or lstm (default lstm)")
    p.add_argument("--layers", type=int, default=1, help="stacked recurrent layers (default 1)")
    p.add_argument("--hidden", type=int, default=128, help="hidden units per direction (default 128)")
    p.add_argument("--embed", type=int, default=64, help="embedding size (default 64)")
    p.add_argument("--bidirectional", action="store_true",
                   help="read each input both ways (the seq2seq encoder, for seq2seq)")
    p.add_argument("--dropout", type=float, default=0.0, help="dropout rate (default 0)")
    p.add_argument("--steps", type=int, default=1000, help="training steps (default 1000)")
    p.add_argument("--batch", type=int, default=32, help="examples per step (default 32)")
    p.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (default 2e-3)")
    p.add_argument("--clip", type=float, default=5.0, help="gradient-norm clip (default 5)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--eval-every", type=int, default=None, metavar="N",
                   help="steps between held-out evaluations (default min(steps, 200))")
    p.add_argument("--checkpoint-every", type=int, default=500, metavar="N",
                   help="steps between saves of the training state (default 500)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run whose checkpoint is in --out")
    p.add_argument("--on-nonfinite", default="stop", metavar="stop|skip",
                   help="at a NaN/Inf loss or gradient: stop (default) or skip the step")
    p.add_argument("--force", action="store_true", help="replace a model already in --out")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    if task == "classify":
        p.add_argument("--level", default="char", help="read text as 'char' (default) or 'word' tokens")
        p.add_argument("--pooling", default="last", help="last (default), mean or max")
    if task == "seq2seq":
        p.add_argument("--source-level", default="char", help="'char' (default) or 'word'")
        p.add_argument("--target-level", default="char", help="'char' (default) or 'word'")


def register(sub) -> None:
    helps = {"classify": "sequence classification (text<TAB>label)",
             "tag": "sequence tagging (tokens<TAB>tags)",
             "seq2seq": "sequence-to-sequence (source<TAB>target)"}
    for task in TASKS:
        p = sub.add_parser(task, help=helps[task], description=helps[task])
        actions = p.add_subparsers(dest="action", metavar="ACTION")
        t = actions.add_parser("train", help="train a model on DATA.tsv into DIR")
        _add_train_options(t, task)
        t.set_defaults(func=lambda a, task=task: cmd_train(a, task))
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


# ---- train -------------------------------------------------------------------------------
# Options a resumed run may change; every other one must be what the run started with.  The
# data files may be named differently (another working directory, a copy): what must match
# is their content, checked by digest.
RESUMABLE_CHANGES = frozenset({"out", "data", "val", "steps", "eval_every", "checkpoint_every",
                               "on_nonfinite", "quiet", "force", "resume"})


def _log(args):
    return None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))


def _run_options(args) -> dict:
    """The train options as JSON, as saved in the checkpoint for ``--resume`` to compare."""
    return {k: v for k, v in sorted(vars(args).items())
            if k not in ("func", "command", "action") and not callable(v)}


def _digest(examples) -> str | None:
    """SHA-256 of parsed examples (not of the file: blank lines and the path do not count)."""
    if examples is None:
        return None
    text = json.dumps([[src, out] for _, src, out in examples], ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _check_resume(path, meta, task, options, digests) -> None:
    run = meta.get("run")
    if not isinstance(run, dict) or run.get("task") != task:
        raise ValueError(f"--resume: {path} is not the training state of a {task} model")
    saved = run.get("options")
    if not isinstance(saved, dict):
        raise ValueError(f"--resume: {path} holds no run options")
    diff = sorted(k for k in options if k not in RESUMABLE_CHANGES and saved.get(k) != options[k])
    if diff:
        shown = ", ".join(f"--{k.replace('_', '-')} ({saved.get(k)!r} -> {options[k]!r})"
                          for k in diff)
        raise ValueError(f"--resume: options differ from the checkpoint's: {shown}")
    if run.get("data_sha256") != digests["data_sha256"]:
        raise ValueError("--resume: the training data differs from the data this run started on")
    if run.get("val_sha256") != digests["val_sha256"]:
        raise ValueError("--resume: the validation data differs from the data this run "
                         "started on" + ("" if digests["val_sha256"] else " (give the same --val)"))


def _remove_stale_temporaries(out: Path) -> None:
    """The ``.NAME.XXXX.tmp`` files an atomic write leaves when the process is killed midway."""
    for name in (MODEL_FILE, CHECKPOINT_FILE, "metrics.jsonl"):
        for tmp in out.glob(f".{name}.*.tmp"):
            try:
                tmp.unlink()
            except OSError:
                pass


def cmd_train(args, task) -> int:
    check_train_args(args)
    levels = ((getattr(args, "level", None) or "word") if task != "seq2seq" else args.source_level,
              getattr(args, "target_level", None) or "word")
    if task == "tag":
        levels = ("word", "word")
    train = read_tsv(args.data, task, levels)
    val = read_tsv(args.val, task, levels) if args.val else None
    out = Path(args.out)
    ckpt = out / CHECKPOINT_FILE
    options = _run_options(args)
    digests = {"data_sha256": _digest(train), "val_sha256": _digest(val)}
    resume_state = None
    if args.resume:
        resume_state = load_training_state(ckpt)
        _check_resume(ckpt, resume_state[1], task, options, digests)
    src_vocab = Vocab.build(t for _, s, _ in train for t in s)
    dtype = "float32"
    common = dict(embed_dim=args.embed, hidden_size=args.hidden, num_layers=args.layers,
                  cell=args.cell, bidirectional=args.bidirectional, dropout=args.dropout,
                  dtype=dtype, seed=args.seed)
    meta = {"vocab": src_vocab.to_json()}
    if task == "classify":
        labels = sorted({y for _, _, y in train})
        lid = {y: i for i, y in enumerate(labels)}
        model = SequenceClassifier(ClassifierConfig(len(src_vocab), len(labels), pooling=args.pooling,
                                                    **common))
        meta.update(labels=labels, level=levels[0])
        encode_out = lambda ex, where: _lookup(lid, ex[2], where, "label")
    elif task == "tag":
        labels = sorted({y for _, _, ys in train for y in ys})
        lid = {y: i for i, y in enumerate(labels)}
        model = SequenceTagger(TaggerConfig(len(src_vocab), len(labels), **common))
        meta.update(labels=labels)
        encode_out = lambda ex, where: np.array([_lookup(lid, y, where, "tag") for y in ex[2]])
    else:
        tgt_vocab = Vocab.build(t for _, _, y in train for t in y)
        max_len = max(len(y) for _, _, y in train)
        model = Seq2Seq(Seq2SeqConfig(len(src_vocab), len(tgt_vocab),
                                      max_target_len=2 * max_len + 10, **common))
        meta = {"src_vocab": src_vocab.to_json(), "tgt_vocab": tgt_vocab.to_json(),
                "source_level": levels[0], "target_level": levels[1]}
        encode_out = lambda ex, where: tgt_vocab.encode(ex[2])

    def encode(examples, path):
        xs = [src_vocab.encode(s) for _, s, _ in examples]
        ys = [encode_out(ex, f"{path}: line {ex[0]}") for ex in examples]
        return xs, ys

    xs, ys = encode(train, args.data)
    vxs, vys = encode(val, args.val) if val else (None, None)
    out.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(out)
    if not args.resume:
        ckpt.unlink(missing_ok=True)  # a run started over must never resume the old one
    log = _log(args)
    if log:
        log(f"{task}: {len(train)} training examples"
            + (f", {len(val)} held out" if val else "")
            + f"; {model.num_parameters()} parameters"
            + (f"; resuming at step {resume_state[1].get('step')}" if resume_state else ""))

    def batcher(X, Y):
        def make(idx):
            ids, lengths = pad_batch([X[i] for i in idx])
            if task == "classify":
                return {"ids": ids, "lengths": lengths, "labels": np.array([Y[i] for i in idx])}
            if task == "tag":
                tags, _ = pad_batch([Y[i] for i in idx])
                return {"ids": ids, "lengths": lengths, "tags": tags}
            return {"src": ids, "src_lengths": lengths, "targets": [Y[i] for i in idx]}
        return make

    try:
        result = fit(model, batcher(xs, ys), len(xs), steps=args.steps, batch_size=args.batch,
                     lr=args.lr, clip=args.clip, seed=args.seed,
                     val=(batcher(vxs, vys), len(vxs)) if val else None,
                     eval_every=args.eval_every, length_fn=lambda i: len(xs[i]), log=log,
                     on_nonfinite=args.on_nonfinite, checkpoint=ckpt,
                     checkpoint_every=args.checkpoint_every,
                     checkpoint_meta={"task": task, "options": options, **digests},
                     resume_state=resume_state)
    except TrainingError as e:
        print(f"rnnkit {task}: error: {e}", file=sys.stderr)
        return 1
    info = {"steps": result.steps, "seconds": round(result.seconds, 1),
            "train_loss": result.train_loss, "val_loss": result.val_loss,
            "best_step": result.best_step, "skipped_steps": result.skipped,
            "train_file": str(args.data)}
    if result.interrupted:
        # The best weights so far (or the current ones), so the directory is usable as it
        # is; --resume goes on from the training state, not from this file.
        meta["info"] = {**info, "interrupted": True}
        save_bundle(out, task, model, meta)
        _write_metrics(out, result.history)
        print(f"interrupted; resume with --resume: step {result.steps} of {args.steps}, "
              f"training state in {ckpt}")
        return 130
    if val:
        info.update(evaluate(model, task, vxs, vys))
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


def _lookup(table, y, where, what):
    if y not in table:
        raise ValueError(f"{where}: {what} {y!r} does not occur in the training data")
    return table[y]


def _write_metrics(out, history):
    import json

    from .checkpoint import atomic_write_text
    atomic_write_text(out / "metrics.jsonl",
                      "".join(json.dumps(r, allow_nan=False) + "\n" for r in history))


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
