"""Training a language model: corpus -> vocabulary -> model, then the one training loop.

As in char-rnn and Zaremba et al. (2014): the corpus is cut into N contiguous streams read
T tokens at a time; the hidden state at the end of a chunk starts the next chunk of the same
stream (no gradient flows back through it) and is reset at the start of each epoch — that
state lives in the batch source (:class:`rnnkit.training.StreamSource`).  The loop itself
(:func:`rnnkit.training.train`: Adam or SGD, global-norm clipping, NaN/Inf stop or skip,
plateau schedule, checkpoints every ``checkpoint_every`` steps, at the end and on
Ctrl-C/SIGTERM, exact resume, MPI data parallelism) is the one every task model uses.  This
module holds only what is the language model's own: the corpus, the vocabulary, the model,
its validation, and the best model kept in ``DIR/model.safetensors``.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
from pathlib import Path

import numpy as np

from ..data.corpus import default_corpus, default_corpus_info, read_text, split_validation
from ..data.tokenize import get_tokenizer
from ..data.vocab import Vocab
from ..progress import ProgressReporter, plot_metrics
from ..training.signals import TrainingError  # noqa: F401  (re-exported)
from .bundle import CHECKPOINT_FILE, MODEL_FILE
from .options import TrainOptions  # noqa: F401  (the options live with the LM)

TASK = "lm"


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


# Options added after runs were saved: an older checkpoint lacks them and ran with these.
_OPTION_DEFAULTS = {"softmax": "full", "cutoffs": None, "tie_embeddings": False,
                    "sparse_embedding": False}


def _older_options(meta: dict) -> None:
    run = meta.get("run") if isinstance(meta, dict) else None
    opts = run.get("options") if isinstance(run, dict) else None
    if isinstance(opts, dict):
        for k, v in _OPTION_DEFAULTS.items():
            opts.setdefault(k, v)


def _output_layer(o, vocab, train_ids) -> dict:
    """LMConfig's output-layer fields from the options; the adaptive softmax's cutoffs from
    the training text's word frequencies unless --cutoffs names them."""
    if o.softmax != "adaptive":
        return {"tie_embeddings": bool(o.tie_embeddings)}
    from ..layers.adaptive import default_cutoffs

    V = len(vocab)
    cutoffs = o.cutoff_list()
    if cutoffs is None:
        cutoffs = default_cutoffs(np.bincount(np.asarray(train_ids, dtype=np.int64),
                                              minlength=V), o.hidden)
    elif cutoffs[-1] >= V:
        raise ValueError(f"--cutoffs {o.cutoffs}: every cutoff must be below the vocabulary "
                         f"size {V} (see --min-count / --max-vocab)")
    return {"softmax": "adaptive", "cutoffs": cutoffs}


def _digest(ids: np.ndarray) -> str:
    # SHA-256 of the ids as int64, a MiB of ids at a time: no int64 copy of a whole corpus.
    h = hashlib.sha256()
    for i in range(0, ids.size, 1 << 20):
        h.update(np.ascontiguousarray(ids[i: i + (1 << 20)], dtype=np.int64).tobytes())
    return h.hexdigest()


class Trainer:
    """One training run into ``opts.out``; :meth:`run` returns a summary dict.

    Under ``mpiexec -n K`` (:mod:`rnnkit.training.dist`) rank 0 reads the corpus and builds
    the vocabulary, every rank gets them by broadcast and trains on its share of the streams.
    """

    def __init__(self, opts: TrainOptions, *, resume: bool = False, force: bool = False,
                 stream=None, tty=None, world=None):
        opts.validate()
        self.opts = opts
        self.resume = resume
        self.force = force
        self.stream = stream
        self.tty = tty
        self.world = world

    def _prepare(self, world) -> dict:
        """Rank 0: the options, the directory and the data checked; everything the ranks need."""
        from ..training.rundir import check_out, check_utf8
        from ..training.state import check_resume, check_resume_data, load_training_state

        o = self.opts
        out = check_out(o.out, resume=self.resume, force=self.force)
        if o.batch < world.size:
            raise ValueError(f"--batch {o.batch} is smaller than the {world.size} processes: "
                             "each needs at least one stream")
        check_utf8(o.to_json(), "a file name in the options")
        resumed = None
        if self.resume:
            ckpt = out / CHECKPOINT_FILE
            resumed = load_training_state(ckpt)
            _older_options(resumed[1])
            check_resume(ckpt, resumed[1], task=TASK, options=o.to_json(),
                         resumable=RESUMABLE_CHANGES, world_size=world.size, steps=o.steps)
        train_text, val_text, source = load_corpus(o)
        tok = get_tokenizer(o.level)
        if resumed is not None:
            try:
                vocab = Vocab.from_json(resumed[1]["run"]["model"]["vocab"])
            except (KeyError, TypeError, ValueError) as e:
                raise ValueError(f"--resume: {out / CHECKPOINT_FILE}: bad vocabulary ({e})") \
                    from None
        else:
            vocab = Vocab.from_counts(tok.count(train_text), o.min_count, o.max_vocab)
            if len(vocab) <= 3:
                raise ValueError(f"--min-count {o.min_count} leaves no token in the vocabulary "
                                 "(every token would be <unk>): lower --min-count")
        # Vectorised, in the smallest id dtype, with no list of tokens (rnnkit.data.tokenize).
        train_ids = tok.encode(train_text, vocab)
        val_ids = tok.encode(val_text, vocab)
        if val_ids.size < 2:
            raise ValueError("the validation text holds fewer than 2 tokens")
        val_ids = val_ids[: o.val_tokens]
        digests = {"data_sha256": _digest(train_ids), "val_sha256": _digest(val_ids)}
        if resumed is not None:
            try:
                check_resume_data(resumed[1], digests)
            except ValueError as e:
                raise ValueError(str(e).replace("training data", "corpus")
                                 .replace("validation data", "validation text")) from None
        info = {"source": source, "train_tokens": int(train_ids.size),
                "val_tokens": int(val_ids.size), "options": o.to_json()}
        return {"vocab": vocab, "train_ids": train_ids, "val_ids": val_ids, "digests": digests,
                "info": info, "resumed": resumed}

    def _say_thread_plan(self) -> str:
        """The thread plan, said once: up front on a terminal, and always in the summary
        (``--json``); not on a redirected stderr, where a failure is one line."""
        from ..kernels.blas import plan_line

        o = self.opts
        plan = plan_line(o.cell, o.batch, o.hidden)
        stream = self.stream if self.stream is not None else sys.stderr
        tty = self.tty
        if tty is None:
            tty = bool(getattr(stream, "isatty", None) and stream.isatty())
        if tty:
            print(plan, file=stream)
        return plan

    def _build(self, vocab, train_ids):
        """The model, its optimizer and the plateau schedule (or None)."""
        from ..models.language_model import LanguageModel, LMConfig
        from ..optim import ReduceLROnPlateau
        from ..training.fitting import make_optimizer

        o = self.opts
        config = LMConfig(vocab_size=len(vocab), cell=o.cell, num_layers=o.layers,
                          hidden_size=o.hidden, embed_dim=o.embed, dropout=o.dropout,
                          dtype=o.dtype, **_output_layer(o, vocab, train_ids))
        init_rng = np.random.default_rng(np.random.SeedSequence(o.seed).spawn(2)[0])
        model = self.model = LanguageModel(config, seed=init_rng)
        # Row-sparse embedding gradients (under MPI the allreduce sums them dense and hands
        # the optimizer the rows some rank touched: the same sparse update).
        model.sparse_embedding_grad = bool(o.sparse_embedding)
        opt = make_optimizer(o.optimizer, o.lr)
        sched = ReduceLROnPlateau(opt, factor=o.lr_decay, patience=o.patience,
                                  min_lr=o.lr * 1e-3) if o.lr_decay < 1.0 else None
        return model, opt, sched

    def run(self) -> dict:
        from ..kernels import warm
        from ..training import dist
        from ..training.loop import train
        from ..training.rundir import RunLock, drop_partial_line, remove_stale_temporaries
        from ..training.sources import StreamSource
        from .bundle import bundle_meta, save_model
        from .score import evaluate_ids

        o = self.opts
        world = self.world or dist.world()
        root = world.rank == 0
        warm.start(o.cell, o.dtype, world.size)  # a cold cache: backward compiled beside us
        setup = dist.on_root(world, lambda: self._prepare(world))
        if world.size > 1:
            setup = _broadcast_setup(world, setup or {})
        vocab, train_ids, val_ids = setup["vocab"], setup["train_ids"], setup["val_ids"]
        info, resumed = setup["info"], setup["resumed"]
        out = Path(o.out)

        model, opt, sched = self._build(vocab, train_ids)
        source = StreamSource(train_ids, o.batch, o.seq_len, seed=o.seed, world=world)
        run_meta = {"task": TASK, "options": o.to_json(), **setup["digests"],
                    "model": bundle_meta(model, vocab, o.level, {}, info)}

        def validate(m) -> float:
            # The ids themselves: no re-tokenizing, and <unk> stays one token.
            total = evaluate_ids(m, val_ids, vocab.eos_id, streams=min(o.batch, 64),
                                 seq_len=o.seq_len)
            return -total / val_ids.size

        best = {"written": False}

        def on_best(step, val):
            best["written"] = True
            save_model(out / MODEL_FILE, model, vocab, o.level, {},
                       {**info, "step": step, "val_loss": val})

        lock = RunLock(out) if root else contextlib.nullcontext()
        with lock:
            reporter, thread_plan = None, None
            if root:
                remove_stale_temporaries(out)
                thread_plan = self._say_thread_plan()
                if resumed is not None:
                    drop_partial_line(out / "metrics.jsonl")
                    # A resumed run's best model is on disk already.
                    best["written"] = (out / MODEL_FILE).exists()
                else:
                    # A run started over (--force) must never resume, nor show, the old one.
                    for name in (CHECKPOINT_FILE, "metrics.jsonl", "loss.png"):
                        (out / name).unlink(missing_ok=True)
                start = resumed[1].get("step", 0) if resumed is not None else 0
                reporter = ProgressReporter(o.steps, out, start_step=start, stream=self.stream,
                                            tty=self.tty)
            try:
                result = train(model, source, opt, steps=o.steps, clip=o.clip,
                               on_nonfinite=o.on_nonfinite, scheduler=sched, evaluate=validate,
                               eval_every=o.eval_every, log_every=o.log_every, keep_best=False,
                               on_best=on_best, checkpoint=out / CHECKPOINT_FILE,
                               checkpoint_every=o.checkpoint_every, run=run_meta,
                               resume=resumed, reporter=reporter, world=world)
            finally:
                if reporter is not None:
                    reporter.close()
            if root:
                if not best["written"]:  # e.g. interrupted before the first check
                    save_model(out / MODEL_FILE, model, vocab, o.level, {},
                               {**info, "step": result.steps})
                try:
                    plot_metrics(out / "metrics.jsonl", out / "loss.png")
                except (ValueError, OSError):
                    pass  # no metrics yet (a run stopped before its first log line)
        return {"out": str(out), "start_step": result.start_step, "vocab_size": len(vocab),
                "parameters": model.num_parameters(), "train_tokens": int(train_ids.size),
                "steps": result.steps, "best_val_loss": result.val_loss,
                "last_val_loss": result.last_val, "skipped_steps": result.skipped,
                "interrupted": result.interrupted, "exit_code": result.exit_code,
                "world_size": world.size, "thread_plan": thread_plan}


def _broadcast_setup(world, setup: dict) -> dict:
    """Rank 0's vocabulary, ids, digests and resume state, on every rank."""
    from ..training import dist

    root = world.rank == 0
    setup["vocab"] = Vocab.from_json(world.bcast_json(setup["vocab"].to_json() if root else None))
    for key in ("train_ids", "val_ids"):
        setup[key] = world.bcast_array(setup.get(key))
    setup["info"] = world.bcast_json(setup.get("info"))
    setup["digests"] = world.bcast_json(setup.get("digests"))
    if world.bcast_json(setup.get("resumed") is not None):
        setup["resumed"] = dist.bcast_state(world, *(setup.get("resumed") or ({}, None)))
    else:
        setup["resumed"] = None
    return setup
