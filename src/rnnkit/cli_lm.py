"""``rnnkit train | eval | score | sample``: language models from the command line.

    rnnkit train [CORPUS ...] --out DIR      # no CORPUS: the built-in default corpus
    rnnkit eval DIR FILE [--json]
    rnnkit score DIR TEXT ... [--json]
    rnnkit sample DIR [--prime TEXT] [--length N] [--temperature X] [--top-k K] [--top-p P]
                      [--num N] [--seed N] [--greedy | --beam K] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys


def _positive_float(name):
    def parse(s):
        try:
            v = float(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {s!r}") from None
        return v
    return parse


def register(sub) -> None:
    from .lm.options import TrainOptions
    from .training.options import add_options

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
    e.add_argument("model", metavar="DIR")
    e.add_argument("file", metavar="FILE")
    e.add_argument("--streams", type=int, default=1,
                   help="read the file as this many parallel pieces (1: one exact pass)")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_eval)

    s = sub.add_parser("score", help="log-probability and perplexity of sentences")
    s.add_argument("model", metavar="DIR")
    s.add_argument("texts", nargs="+", metavar="TEXT")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_score)

    g = sub.add_parser("sample", help="generate text")
    g.add_argument("model", metavar="DIR")
    g.add_argument("--prime", default="", help="text to continue")
    g.add_argument("--length", type=int, default=200, help="most tokens to generate")
    g.add_argument("--temperature", type=_positive_float("temperature"), default=1.0)
    g.add_argument("--top-k", type=int, default=None)
    g.add_argument("--top-p", type=float, default=None)
    g.add_argument("--num", type=int, default=1)
    g.add_argument("--seed", type=int, default=None)
    g.add_argument("--no-stop", action="store_true", help="do not stop at the end of a line")
    mode = g.add_mutually_exclusive_group()
    mode.add_argument("--greedy", action="store_true", help="most likely token at each step")
    mode.add_argument("--beam", type=int, default=None, metavar="K",
                      help="most likely continuation by beam search of width K")
    g.add_argument("--json", action="store_true")
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
        print(json.dumps(summary))
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

    b = load_model(args.model)
    r = evaluate_text(b.model, b.vocab, b.tokenizer, read_text(args.file), streams=args.streams)
    if args.json:
        print(json.dumps(r))
    else:
        print(f"{args.file}: {r['tokens']} tokens, {r['nats_per_token']:.4f} nats/token, "
              f"perplexity {r['perplexity']:.3f}, {r['bits_per_char']:.4f} bits/char, "
              f"log10 prob {r['log10']:.2f}, {r['unknown']} unknown")
    return 0


def cmd_score(args) -> int:
    from .lm.bundle import load_model
    from .lm.score import score_sentences

    b = load_model(args.model)
    results = score_sentences(b.model, b.vocab, b.tokenizer, args.texts)
    if args.json:
        print(json.dumps(results))
        return 0
    for r in results:
        print(f"{r['text']}\tlogprob {r['logprob']:.4f} nats ({r['log10']:.4f} log10)\t"
              f"perplexity {r['perplexity']:.3f}\ttokens {r['predictions']}\tunknown {r['unknown']}")
        shown = " ".join(f"{_show(t)}:{lp:.2f}" for t, lp in zip(r["tokens"], r["token_logprobs"]))
        print(f"  {shown}")
    return 0


def _show(token: str) -> str:
    return {" ": "␣", "\t": "\\t"}.get(token, token)


def cmd_sample(args) -> int:
    from .lm import generate
    from .lm.bundle import load_model

    # Arguments first: a mistake is reported before the model is read.
    generate.check_sampling_args(args.temperature, args.top_k, args.top_p, args.length, args.num)
    if args.beam is not None and args.beam < 1:
        raise ValueError(f"--beam must be >= 1, got {args.beam}")
    b = load_model(args.model)
    if args.greedy or args.beam is not None:
        if args.greedy:
            ids, lp = generate.greedy(b.model, b.vocab, b.tokenizer, args.prime, args.length)
        else:
            ids, lp = generate.beam_search(b.model, b.vocab, b.tokenizer, args.prime, args.beam,
                                           args.length)
        text = args.prime + b.tokenizer.detokenize(
            [t for t in b.vocab.decode(ids) if t != "<eos>"])
        if args.json:
            print(json.dumps({"samples": [text], "logprob": lp,
                              "mode": "greedy" if args.greedy else f"beam{args.beam}"}))
        else:
            print(text)
        return 0
    texts = generate.sample(b.model, b.vocab, b.tokenizer, args.prime, args.length,
                            args.temperature, args.top_k, args.top_p, args.num, args.seed,
                            stop_at_eos=not args.no_stop)
    if args.json:
        print(json.dumps({"samples": texts}))
    else:
        for t in texts:
            print(t.rstrip("\n"))
    return 0


