"""Training a language model: stateful truncated BPTT over N parallel streams of a corpus.

As in char-rnn and Zaremba et al. (2014): the corpus is cut into N contiguous streams read
T tokens at a time; the hidden state at the end of a chunk starts the next chunk of the same
stream (no gradient flows back through it) and is reset at the start of each epoch.  Adam or
SGD, global-norm clipping, learning-rate decay when the validation loss stops improving, the
best model kept in ``DIR/model.safetensors``, the whole training state in
``DIR/checkpoint.safetensors`` every ``checkpoint_every`` steps, at the end and on Ctrl-C.
A run resumed from a checkpoint ends with exactly the weights of one never interrupted:
parameters, optimizer moments, the carried hidden state, the dropout RNG, the scheduler and
the step are all saved.  Everything random comes from ``seed``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import _checks
from ..checkpoint import load_checkpoint, rng_from_json, rng_to_json, save_checkpoint
from ..data.batching import StreamBatcher
from ..data.corpus import default_corpus, default_corpus_info, read_text, split_validation
from ..data.tokenize import get_tokenizer
from ..data.vocab import Vocab
from ..models.language_model import LanguageModel, LMConfig
from ..optim import SGD, Adam, ReduceLROnPlateau, clip_grad_norm, grads_finite
from ..progress import ProgressReporter, plot_metrics
from ..training import StopFlag, TrainingError  # noqa: F401  (TrainingError is re-exported)
from .bundle import CHECKPOINT_FILE, MODEL_FILE, bundle_meta, save_model
from .score import evaluate_ids

STATE_KIND = "language_model_training"


@dataclass
class TrainOptions:
    """Everything ``rnnkit train`` takes; saved in the checkpoint so ``--resume`` can check."""

    out: str
    corpus: list = field(default_factory=list)  # files; empty = the built-in default corpus
    val: str | None = None  # held-out file; else the last ``val_fraction`` of the corpus
    val_fraction: float = 0.05
    cell: str = "lstm"
    layers: int = 2
    hidden: int = 256
    embed: int = 64
    level: str = "char"
    min_count: int = 1
    max_vocab: int | None = None
    seq_len: int = 100
    batch: int = 32
    steps: int = 2000
    optimizer: str = "adam"
    lr: float = 2e-3
    clip: float = 5.0
    dropout: float = 0.0
    lr_decay: float = 0.5  # factor applied on a validation plateau
    patience: int = 2  # evaluations without improvement before decaying
    seed: int = 0
    checkpoint_every: int = 500
    eval_every: int = 200
    log_every: int = 50
    val_tokens: int = 200_000  # cap on held-out tokens evaluated at each check
    on_nonfinite: str = "stop"  # or "skip": drop a step whose loss/gradients are NaN/Inf
    dtype: str = "float32"

    def validate(self) -> None:
        if not isinstance(self.out, (str, os.PathLike)) or not str(self.out):
            raise TypeError(f"out must be a directory path, got {self.out!r}")
        if isinstance(self.corpus, (str, bytes, os.PathLike)) \
                or not isinstance(self.corpus, (list, tuple)) \
                or not all(isinstance(p, (str, os.PathLike)) for p in self.corpus):
            raise TypeError("corpus must be a list of file paths (empty: the built-in corpus), "
                            f"got {self.corpus!r}")
        if self.val is not None and not isinstance(self.val, (str, os.PathLike)):
            raise TypeError(f"val must be a file path or None, got {self.val!r}")
        for name in ("lr", "clip", "dropout", "val_fraction", "lr_decay"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise TypeError(f"{name.replace('_', '-')} must be a number, got {v!r}")
        _checks.check_positive_int(self.seed, "seed", minimum=0)
        _checks.check_positive_int(self.patience, "patience", minimum=0)
        for name in ("layers", "hidden", "embed", "seq_len", "batch", "steps", "checkpoint_every",
                     "eval_every", "log_every", "min_count", "val_tokens"):
            _checks.check_positive_int(getattr(self, name), name.replace("_", "-"))
        if self.max_vocab is not None:
            _checks.check_positive_int(self.max_vocab, "max-vocab", minimum=4)
        if self.cell not in ("rnn", "gru", "lstm"):
            raise ValueError(f"unknown cell {self.cell!r}: expected rnn, gru or lstm")
        if self.level not in ("char", "word"):
            raise ValueError(f"unknown level {self.level!r}: expected char or word")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"unknown optimizer {self.optimizer!r}: expected adam or sgd")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not (self.clip >= 0 and math.isfinite(self.clip)):
            raise ValueError(f"clip must be >= 0 (0 disables clipping), got {self.clip}")
        _checks.check_probability(self.dropout, "dropout")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val-fraction must lie in (0, 1), got {self.val_fraction}")
        if not 0.0 < self.lr_decay <= 1.0:
            raise ValueError(f"lr-decay must lie in (0, 1], got {self.lr_decay}")
        if self.on_nonfinite not in ("stop", "skip"):
            raise ValueError(f"on-nonfinite must be stop or skip, got {self.on_nonfinite!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


# Options that may change between a run and its resumption (everything else must match).
# The corpus and validation files may be named differently (another working directory, say):
# what must match is their content, checked by digest.
RESUMABLE_CHANGES = {"out", "steps", "checkpoint_every", "eval_every", "log_every", "on_nonfinite",
                     "corpus", "val"}


def load_corpus(opts: TrainOptions) -> tuple[str, str, dict]:
    """(training text, validation text, description)."""
    if opts.corpus:
        texts = [read_text(p) for p in opts.corpus]
        text = "".join(t if t.endswith("\n") else t + "\n" for t in texts)
        source = {"files": [str(p) for p in opts.corpus]}
    else:
        text = default_corpus()
        source = {"default_corpus": default_corpus_info()}
    if opts.val:
        return text, read_text(opts.val), {**source, "val": str(opts.val)}
    train, val = split_validation(text, opts.val_fraction)
    return train, val, {**source, "val_fraction": opts.val_fraction}


def _state_arrays(state) -> dict:
    if isinstance(state, tuple):
        return {"state/h": state[0], "state/c": state[1]}
    return {"state/h": state}


def _check_state(model, state, N: int) -> None:
    """A carried hidden state read from a checkpoint must fit the model and the batch."""
    expected = model.zero_state(N)
    got = state if isinstance(state, tuple) else (state,)
    want = expected if isinstance(expected, tuple) else (expected,)
    for g, w in zip(got, want):
        if g.shape != w.shape:
            raise ValueError(f"carried state has shape {g.shape}, expected {w.shape}")
        if not np.isfinite(g).all():
            raise ValueError("carried state holds NaN or Inf")


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text[:200] + "..." if len(text) > 200 else text


def _remove_stale_temporaries(directory: Path) -> None:
    """Delete the temporary files a killed run left behind (``.NAME.XXXX.tmp``).

    :func:`rnnkit.checkpoint.atomic_write_bytes` writes each file under a temporary name and
    renames it; a SIGKILL between the two leaves the temporary.  The run directory belongs to
    one run at a time, so the leftovers of our own files are safe to remove.
    """
    for name in (CHECKPOINT_FILE, MODEL_FILE, "loss.png"):
        for tmp in directory.glob(f".{name}.*.tmp"):
            try:
                tmp.unlink()
            except OSError:
                pass


def _drop_partial_line(path: Path) -> None:
    """Cut a metrics file back to its last complete line (a kill can stop an append midway)."""
    try:
        data = path.read_bytes()
    except OSError:
        return
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


def _digest(ids: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(ids, dtype=np.int64).tobytes()).hexdigest()


class Trainer:
    """One training run into ``opts.out``; :meth:`run` returns a summary dict."""

    def __init__(self, opts: TrainOptions, *, resume: bool = False, force: bool = False,
                 stream=None, tty=None):
        opts.validate()
        self.opts = opts
        self.out = Path(opts.out)
        self.resume = resume
        self.force = force
        self.stream = stream
        self.tty = tty

    def _vocab_and_data(self, train_text, val_text, vocab=None):
        tok = get_tokenizer(self.opts.level)
        train_tokens = tok.tokenize(train_text)
        if vocab is None:
            vocab = Vocab.build(train_tokens, self.opts.min_count, self.opts.max_vocab)
        train_ids = vocab.encode(train_tokens)
        val_ids = vocab.encode(tok.tokenize(val_text))
        return vocab, train_ids, val_ids

    def run(self) -> dict:
        o = self.opts
        ckpt_path = self.out / CHECKPOINT_FILE
        resumed = None
        if self.out.exists() and not self.out.is_dir():
            raise ValueError(f"--out {self.out}: exists and is not a directory")
        if self.resume:
            if not ckpt_path.exists():
                hint = (" (a run killed before its first checkpoint: start over with --force)"
                        if (self.out / MODEL_FILE).exists() else "")
                raise ValueError(f"--resume: no {CHECKPOINT_FILE} in {self.out}{hint}")
            resumed = load_checkpoint(ckpt_path)
            self._check_resume(resumed[1])
        elif (ckpt_path.exists() or (self.out / MODEL_FILE).exists()) and not self.force:
            raise ValueError(f"{self.out} already holds a model: --resume continues it, "
                             "--force starts over and replaces it")
        train_text, val_text, source = load_corpus(o)
        vocab = None
        if resumed is not None:
            try:
                vocab = Vocab.from_json(resumed[1]["model"]["vocab"])
            except (KeyError, TypeError, ValueError) as e:
                raise ValueError(f"--resume: {ckpt_path}: bad vocabulary ({e})") from None
        vocab, train_ids, val_ids = self._vocab_and_data(train_text, val_text, vocab)
        if val_ids.size < 2:
            raise ValueError("the validation text holds fewer than 2 tokens")
        batcher = StreamBatcher(train_ids, o.batch, o.seq_len)
        val_ids = val_ids[: o.val_tokens]
        data_digest = _digest(train_ids)
        val_digest = _digest(val_ids)

        config = LMConfig(vocab_size=len(vocab), cell=o.cell, num_layers=o.layers,
                          hidden_size=o.hidden, embed_dim=o.embed, dropout=o.dropout,
                          dtype=o.dtype)
        init_rng, drop_rng = (np.random.default_rng(s)
                              for s in np.random.SeedSequence(o.seed).spawn(2))
        model = LanguageModel(config, seed=init_rng)
        opt = Adam(o.lr) if o.optimizer == "adam" else SGD(o.lr)
        sched = ReduceLROnPlateau(opt, factor=o.lr_decay, patience=o.patience, min_lr=o.lr * 1e-3) \
            if o.lr_decay < 1.0 else None
        state = None
        step = 0
        best_val = math.inf
        skipped = 0
        if resumed is not None:
            arrays, meta = resumed
            if meta.get("data_sha256") != data_digest:
                raise ValueError("--resume: the corpus differs from the one this run started on")
            if meta.get("val_sha256", val_digest) != val_digest:
                raise ValueError("--resume: the validation text differs from the one this run "
                                 "started on")
            # The checksum only proves the file is as written; a hand-made one is still
            # checked piece by piece, so a bad field is one clear error, not a traceback.
            try:
                model.load_params({k[len("param/"):]: v for k, v in arrays.items()
                                   if k.startswith("param/")})
                opt_state = dict(meta["optimizer"])
                opt_state.update({k[len("opt/"):]: v for k, v in arrays.items()
                                  if k.startswith("opt/")})
                opt.load_state_dict(opt_state)
                if sched is not None:
                    sched.load_state_dict(meta["scheduler"])
                drop_rng = rng_from_json(meta["dropout_rng"])
                step = _checks.check_positive_int(meta["step"], "step", minimum=0)
                best_val = math.inf if meta["best_val"] is None else float(meta["best_val"])
                skipped = _checks.check_positive_int(meta.get("skipped_steps", 0), "skipped_steps",
                                                     minimum=0)
                if "state/h" in arrays:
                    state = (arrays["state/h"], arrays["state/c"]) if o.cell == "lstm" \
                        else arrays["state/h"]
                    _check_state(model, state, o.batch)
                if not grads_finite(model.params):
                    raise ValueError("the saved weights hold NaN or Inf")
            except (KeyError, TypeError, ValueError, IndexError) as e:
                raise ValueError(f"--resume: {ckpt_path}: the training state does not fit "
                                 f"this run ({_one_line(e)})") from None
        self.out.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(self.out)
        if resumed is not None:
            _drop_partial_line(self.out / "metrics.jsonl")
        else:
            (self.out / "metrics.jsonl").unlink(missing_ok=True)  # a fresh run's own history
        info = {"source": source, "train_tokens": int(train_ids.size),
                "val_tokens": int(val_ids.size), "options": o.to_json()}

        def save_training_state():
            arrays = {f"param/{k}": np.ascontiguousarray(v) for k, v in model.params.items()}
            opt_state = opt.state_dict()
            scalars = {k: v for k, v in opt_state.items() if not isinstance(v, np.ndarray)}
            arrays.update({f"opt/{k}": v for k, v in opt_state.items() if isinstance(v, np.ndarray)})
            if state is not None:
                arrays.update(_state_arrays(state))
            meta = {"kind": STATE_KIND, "step": step, "options": o.to_json(),
                    "model": bundle_meta(model, vocab, o.level, {}, info),
                    "optimizer": scalars,
                    "scheduler": sched.state_dict() if sched is not None else None,
                    "dropout_rng": rng_to_json(drop_rng),
                    "best_val": best_val if math.isfinite(best_val) else None,
                    "skipped_steps": skipped,
                    "data_sha256": data_digest,
                    "val_sha256": val_digest}
            save_checkpoint(ckpt_path, arrays, meta)

        def validate() -> float:
            # The ids themselves: no re-tokenizing, and <unk> stays one token.
            total = evaluate_ids(model, val_ids, vocab.eos_id, streams=min(o.batch, 64),
                                 seq_len=o.seq_len)
            return -total / val_ids.size

        reporter = ProgressReporter(o.steps, self.out, start_step=step, stream=self.stream,
                                    tty=self.tty)
        summary = {"out": str(self.out), "start_step": step, "vocab_size": len(vocab),
                   "parameters": model.num_parameters(), "train_tokens": int(train_ids.size)}
        last_val = None
        # A resumed run's best model is on disk already; a fresh one writes its own.
        best_written = resumed is not None and (self.out / MODEL_FILE).exists()
        interrupted = False
        try:
            # Overflow is expected when a run diverges; it is detected below and reported in
            # one line, so numpy's warnings would only be noise on the terminal.
            with StopFlag() as stop, np.errstate(over="ignore", invalid="ignore",
                                                  divide="ignore", under="ignore"):
                while step < o.steps:
                    k = step % batcher.n_chunks
                    if k == 0:
                        state = None  # a new epoch starts each stream afresh
                    x, y = batcher.chunk(k)
                    loss, grads, new_state = model.loss_and_grads(x, y, state, training=True,
                                                                  rng=drop_rng)
                    finite = math.isfinite(loss) and grads_finite(grads)
                    if not finite and o.on_nonfinite != "skip":
                        raise TrainingError(
                            f"non-finite loss or gradients at step {step + 1} (loss {loss}); "
                            f"stopped; the last good checkpoint in {self.out} is kept "
                            "(try a lower --lr or --clip, or --on-nonfinite skip)")
                    if finite:
                        if o.clip > 0:
                            clip_grad_norm(grads, o.clip)
                        opt.step(model.params, grads)
                        if not grads_finite(model.params):
                            # No way back from here: nothing of this state is saved.
                            raise TrainingError(
                                f"the update at step {step + 1} made the weights NaN or Inf; "
                                f"stopped; the last good checkpoint in {self.out} is kept "
                                "(try a lower --lr or --clip)")
                        state = new_state
                    else:
                        # Skipped: no update, and the carried state stays that of the last
                        # good step.  Evaluation, checkpoints and Ctrl-C still happen below.
                        skipped += 1
                    step += 1
                    if finite:
                        reporter.update(step, loss, tokens=x.size)
                    is_eval = step % o.eval_every == 0 or step == o.steps
                    if is_eval:
                        last_val = validate()
                        if sched is not None:
                            sched.step(last_val)
                        if last_val < best_val:
                            best_val = last_val
                            best_written = True
                            save_model(self.out / MODEL_FILE, model, vocab, o.level, {},
                                       {**info, "step": step, "val_loss": last_val})
                    if is_eval or step % o.log_every == 0:
                        reporter.log(step, val_loss=last_val if is_eval else None, lr=opt.lr)
                    if step % o.checkpoint_every == 0 or step == o.steps:
                        save_training_state()
                    if stop.requested:
                        interrupted = True
                        break
        finally:
            reporter.close()
        if interrupted:
            save_training_state()
        if not best_written:  # e.g. interrupted before the first check
            save_model(self.out / MODEL_FILE, model, vocab, o.level, {}, {**info, "step": step})
        try:
            plot_metrics(self.out / "metrics.jsonl", self.out / "loss.png")
        except (ValueError, OSError):
            pass  # no metrics yet (a run stopped before its first log line)
        summary.update({"steps": step, "best_val_loss": best_val if math.isfinite(best_val) else None,
                        "last_val_loss": last_val, "skipped_steps": skipped,
                        "interrupted": interrupted})
        return summary

    def _check_resume(self, meta: dict) -> None:
        if meta.get("kind") != STATE_KIND:
            raise ValueError(f"--resume: {self.out / CHECKPOINT_FILE} is not a training checkpoint")
        saved = meta.get("options")
        if not isinstance(saved, dict):
            raise ValueError(f"--resume: {self.out / CHECKPOINT_FILE} holds no run options")
        now = self.opts.to_json()
        diff = sorted(k for k in now if k not in RESUMABLE_CHANGES and saved.get(k) != now[k])
        if diff:
            shown = ", ".join(f"{k} ({saved.get(k)!r} -> {now[k]!r})" for k in diff)
            raise ValueError(f"--resume: options differ from the checkpoint's: {shown}")
