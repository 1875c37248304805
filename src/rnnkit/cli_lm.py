"""``rnnkit train | eval | score | sample``: language models from the command line.

    rnnkit train [CORPUS ...] --out DIR      # no CORPUS: the built-in default corpus
    rnnkit eval DIR FILE [--json]
    rnnkit score DIR TEXT ... | --file FILE [--json]   # FILE: one sentence a line, - stdin
    rnnkit sample DIR [--prime TEXT] [--length N] [--temperature X] [--top-k K] [--top-p P]
                      [--num N] [--seed N] [--greedy | --beam K] [--json]

``--json`` output is strict JSON: a number that is not finite (a perplexity that overflows
a float) is written ``null``, never ``Infinity`` or ``NaN``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass

from .training.options import add_options, from_args, option


def _positive_float(name):
    """An argparse type: a finite number > 0, else an error naming ``name``."""
    def parse(s):
        try:
            v = float(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {s!r}") from None
        if not (v > 0 and math.isfinite(v)):
            raise argparse.ArgumentTypeError(f"{name} must be > 0, got {s}")
        return v
    return parse


def _json(obj) -> str:
    """Strict JSON of ``obj``: non-finite floats become null."""
    def clean(x):
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        return x
    return json.dumps(clean(obj), allow_nan=False)


@dataclass
class EvalOptions:
    model: str = option(help="model directory", positional=True, metavar="DIR")
    file: str = option(help="UTF-8 text to evaluate", positional=True, metavar="FILE")
    streams: int = option(1, "read the file as this many parallel pieces (1: one exact pass)",
                          type=int)
    json: bool = option(False, "print the result as JSON", type=bool)


@dataclass
class ScoreOptions:
    model: str = option(help="model directory", positional=True, metavar="DIR")
    texts: list = option([], "sentences to score, one per argument", positional=True,
                         nargs="*", metavar="TEXT")
    file: str | None = option(None, "score each line of FILE as a sentence (- : standard input)",
                              metavar="FILE")
    batch: int = option(64, "sentences scored together", type=int)
    json: bool = option(False, "print the results as JSON", type=bool)


@dataclass
class SampleOptions:
    model: str = option(help="model directory", positional=True, metavar="DIR")
    prime: str = option("", "text to continue")
    length: int = option(200, "most tokens to generate", type=int)
    temperature: float = option(1.0, "divide the log-probabilities by this",
                                type=_positive_float("temperature"))
    top_k: int | None = option(None, "sample among the K most probable tokens", type=int)
    top_p: float | None = option(None, "sample in the smallest set holding this much mass",
                                 type=float)
    num: int = option(1, "samples to generate", type=int)
    seed: int | None = option(None, "random seed (none: fresh)", type=int)
    no_stop: bool = option(False, "do not stop at the end of a line", type=bool)
    json: bool = option(False, "print the result as JSON", type=bool)


def register(sub) -> None:
    from .lm.options import TrainOptions

    t = sub.add_parser("train", help="train a language model on text files (or the built-in corpus)",
                       description="Train a language model with stateful truncated BPTT "
                                   "(mpiexec -n K rnnkit train ...: on K processes).")
    add_options(t, TrainOptions)
    t.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    t.add_argument("--force", action="store_true",
                   help="start over, replacing the model, training state and metrics in --out")
    t.add_argument("--json", action="store_true", help="print the summary as JSON")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="evaluate a model on a whole text file")
    add_options(e, EvalOptions)
    e.set_defaults(func=cmd_eval)

    s = sub.add_parser("score", help="log-probability and perplexity of sentences",
                       description="Score each sentence on its own, from the start-of-line "
                                   "context (like KenLM's query).")
    add_options(s, ScoreOptions)
    s.set_defaults(func=cmd_score)

    g = sub.add_parser("sample", help="generate text")
    add_options(g, SampleOptions)
    mode = g.add_mutually_exclusive_group()
    mode.add_argument("--greedy", action="store_true", help="most likely token at each step")
    mode.add_argument("--beam", type=int, default=None, metavar="K",
                      help="most likely continuation by beam search of width K (default: none)")
    g.set_defaults(func=cmd_sample)


def cmd_train(args) -> int:
    from .lm.train import Trainer, TrainOptions, TrainingError
    from .training.options import from_args

    from .training.dist import world

    trainer = Trainer(from_args(TrainOptions, args, corpus=list(args.corpus)),
                      resume=args.resume, force=args.force)
    speaks = world().rank == 0  # under mpiexec, rank 0 speaks for the run
    try:
        summary = trainer.run()
    except TrainingError as e:
        if speaks:
            print(f"rnnkit train: error: {e}", file=sys.stderr)
        return 1
    except (ValueError, TypeError):
        if speaks:
            raise
        return 2
    if not speaks:
        return summary["exit_code"] if summary["interrupted"] else 0
    if args.json:
        print(_json(summary))
    else:
        best = summary["best_val_loss"]
        state = "interrupted; resume with --resume" if summary["interrupted"] else "done"
        skipped = summary.get("skipped_steps") or 0
        note = f", {skipped} step(s) skipped for a NaN/Inf loss or gradient" if skipped else ""
        print(f"{state}: step {summary['steps']}, best validation loss "
              f"{'n/a' if best is None else f'{best:.4f} nats/token'}{note}, "
              f"model in {summary['out']}")
    return summary["exit_code"] if summary["interrupted"] else 0


def cmd_eval(args) -> int:
    from .data.corpus import read_text
    from .lm.bundle import load_model
    from .lm.score import evaluate_text

    opts = from_args(EvalOptions, args)
    b = load_model(opts.model)
    r = evaluate_text(b.model, b.vocab, b.tokenizer, read_text(opts.file), streams=opts.streams)
    if opts.json:
        print(_json(r))
    else:
        print(f"{opts.file}: {r['tokens']} tokens, {r['nats_per_token']:.4f} nats/token, "
              f"perplexity {r['perplexity']:.3f}, {r['bits_per_char']:.4f} bits/char, "
              f"log10 prob {r['log10']:.2f}, {r['unknown']} unknown")
    return 0


def cmd_score(args) -> int:
    from .lm.bundle import bundle_from, load_checkpoint_of
    from .lm.score import score_sentences
    from .data.tokenize import split_lines
    from .tasks.data import read_input_text

    opts = from_args(ScoreOptions, args)
    if opts.batch < 1:
        raise ValueError(f"--batch must be a positive integer, got {opts.batch}")
    if not opts.texts and opts.file is None:
        raise ValueError("the following arguments are required: TEXT (or --file FILE)")
    if opts.texts and opts.file is not None:
        raise ValueError("give the sentences as TEXT arguments or in --file FILE, not both")
    from .training import dist

    # Under mpiexec the lines are split over the ranks and rank 0 prints them in input order.
    world = dist.world()

    def read():
        # The file is read before the model: a mistake in either is reported before any work.
        texts = opts.texts if opts.file is None else split_lines(read_input_text(opts.file))
        return texts, load_checkpoint_of(opts.model)

    texts, (arrays, meta, where) = dist.on_root(world, read) or (None, (None, None, None))
    if world.size > 1:
        arrays, meta = dist.bcast_state(world, arrays, meta)
    b = bundle_from(arrays, meta, where)
    results = dist.split_map(world, texts, lambda part: score_sentences(
        b.model, b.vocab, b.tokenizer, part, batch_size=opts.batch))
    if results is None:  # not rank 0
        return 0
    if opts.json:
        print(_json(results))
        return 0
    for r in results:
        print(f"{r['text']}\tlogprob {r['logprob']:.4f} nats ({r['log10']:.4f} log10)\t"
              f"perplexity {r['perplexity']:.3f}\ttokens {r['predictions']}\tunknown {r['unknown']}")
        shown = " ".join(f"{_show(t)}:{lp:.2f}" for t, lp in zip(r["tokens"], r["token_logprobs"]))
        print(f"  {shown}")
    return 0


def _show(token: str) -> str:
    return {" ": "␣", "\t": "\\t"}.get(token, token)


# Below this many generated tokens `sample` runs the NumPy path: loading Numba and its
# compiled generation step costs ~0.45 s of a warm start, more than the NumPy step takes for
# a few thousand tokens at batch 1 (bench/RESULTS.md, "warm rnnkit sample").
SHORT_JOB_TOKENS = 2000
def _short_job_backend(model, tokens: int) -> None:
    """The NumPy backend for a generation job of at most SHORT_JOB_TOKENS tokens: the same
    results to rounding, without the JIT's fixed cost."""
    if tokens <= SHORT_JOB_TOKENS:
        model.rnn.backend = "numpy"


def cmd_sample(args) -> int:
    from .lm import generate
    from .lm.bundle import load_model

    # Arguments first: a mistake is reported before the model is read.
    generate.check_sampling_args(args.temperature, args.top_k, args.top_p, args.length, args.num)
    if args.beam is not None and args.beam < 1:
        raise ValueError(f"--beam must be >= 1, got {args.beam}")
    b = load_model(args.model)
    _short_job_backend(b.model, args.length * args.num * (args.beam or 1))
    if args.greedy or args.beam is not None:
        if args.greedy:
            ids, lp = generate.greedy(b.model, b.vocab, b.tokenizer, args.prime, args.length)
        else:
            ids, lp = generate.beam_search(b.model, b.vocab, b.tokenizer, args.prime, args.beam,
                                           args.length)
        text = args.prime + b.tokenizer.detokenize(
            [t for t in b.vocab.decode(ids) if t != "<eos>"])
        if args.json:
            print(_json({"samples": [text], "logprob": lp,
                         "mode": "greedy" if args.greedy else f"beam{args.beam}"}))
        else:
            print(text)
        return 0
    texts = generate.sample(b.model, b.vocab, b.tokenizer, args.prime, args.length,
                            args.temperature, args.top_k, args.top_p, args.num, args.seed,
                            stop_at_eos=not args.no_stop)
    if args.json:
        print(_json({"samples": texts}))
    else:
        for t in texts:
            print(t.rstrip("\n"))
    return 0


