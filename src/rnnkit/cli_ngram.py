"""``rnnkit ngram train | eval``: a Kneser-Ney n-gram baseline in ARPA format.

    rnnkit ngram train [CORPUS ...] --order N --out FILE.arpa [--min-count K] [--max-vocab V]
                       [--split-punct | --vocab-from MODEL_DIR] [--force]
    rnnkit ngram eval FILE.arpa TEXT_FILE [--json]

Word level, with the tokenizer, vocabulary, ``<unk>`` and ``<eos>`` of ``rnnkit train
--level word``, so the perplexities compare with ``rnnkit eval``'s on the same file.
"""

from __future__ import annotations

import json
import sys


def register(sub) -> None:
    p = sub.add_parser("ngram", help="Kneser-Ney n-gram baseline (ARPA files, KenLM-compatible)",
                       description="Interpolated modified Kneser-Ney n-gram models.")
    nsub = p.add_subparsers(dest="ngram_command", metavar="ACTION")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    t = nsub.add_parser("train", help="estimate a model from text files and write it as ARPA")
    t.add_argument("corpus", nargs="*", metavar="CORPUS",
                   help="UTF-8 text files (default: the built-in corpus)")
    t.add_argument("--order", type=int, default=3, help="n-gram order N (default 3)")
    t.add_argument("--out", required=True, metavar="FILE.arpa", help="ARPA file to write")
    t.add_argument("--min-count", type=int, default=1, help="rarer words become <unk>")
    t.add_argument("--max-vocab", type=int, default=None)
    t.add_argument("--split-punct", action="store_true",
                   help="punctuation marks are words of their own")
    t.add_argument("--vocab-from", metavar="MODEL_DIR",
                   help="use this word-level rnnkit model's vocabulary and tokenizer")
    t.add_argument("--force", action="store_true", help="replace an existing --out file")
    t.add_argument("--json", action="store_true", help="print the summary as JSON")
    t.set_defaults(func=cmd_train)

    e = nsub.add_parser("eval", help="perplexity of a text file under an ARPA model")
    e.add_argument("arpa", metavar="FILE.arpa")
    e.add_argument("file", metavar="TEXT_FILE")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_eval)


def _fail(msg: str) -> int:
    print(f"rnnkit ngram: error: {msg}", file=sys.stderr)
    return 2


def cmd_train(args) -> int:
    from pathlib import Path

    from .data.corpus import default_corpus, read_text
    from .ngram import train_text, write_arpa
    from .ngram.kneser_ney import MAX_ORDER

    if not 1 <= args.order <= MAX_ORDER:
        return _fail(f"--order must be between 1 and {MAX_ORDER}, got {args.order}")
    if args.min_count < 1:
        return _fail(f"--min-count must be >= 1, got {args.min_count}")
    if args.max_vocab is not None and args.max_vocab < 4:
        return _fail(f"--max-vocab must be >= 4, got {args.max_vocab}")
    out = Path(args.out)
    if out.exists() and not args.force:
        return _fail(f"{out}: already exists (use --force to replace it)")
    vocab = None
    split_punct = args.split_punct
    if args.vocab_from:
        from .lm.bundle import load_model

        bundle = load_model(args.vocab_from)
        if bundle.level != "word":
            return _fail(f"{args.vocab_from}: a {bundle.level}-level model; n-grams are word level")
        vocab = bundle.vocab
        split_punct = bool(bundle.tokenizer_options.get("split_punct", False))
    if args.corpus:
        texts = [read_text(p) for p in args.corpus]
        text = "".join(t if t.endswith("\n") else t + "\n" for t in texts)
    else:
        text = default_corpus()
    model = train_text(text, args.order, min_count=args.min_count, max_vocab=args.max_vocab,
                       split_punct=split_punct, vocab=vocab)
    write_arpa(model, out, force=args.force)
    summary = {"out": str(out), "order": model.order, "vocab": len(model.words),
               "ngrams": [int(len(g)) for g in model.grams],
               "discounts": [[round(d, 4) for d in D] for D in model.discounts]}
    if args.json:
        print(json.dumps(summary))
    else:
        counts = ", ".join(f"{n}-grams {c}" for n, c in enumerate(summary["ngrams"], 1))
        print(f"wrote {out}: order {model.order}, vocabulary {summary['vocab']}, {counts}")
    return 0


def cmd_eval(args) -> int:
    from .data.corpus import read_text
    from .ngram import evaluate_text, read_arpa

    model = read_arpa(args.arpa)
    result = evaluate_text(model, read_text(args.file))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['tokens']} tokens ({result['unknown']} unknown): perplexity "
              f"{result['perplexity']:.2f} (without unknown words {result['perplexity_without_unknown']:.2f}), "
              f"log10 {result['log10']:.2f}")
    return 0
