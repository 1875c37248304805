"""``rnnkit explain | gradflow``: seeing inside a recurrent network.

    rnnkit explain DIR TEXT... [--file FILE] --html OUT.html [--units 12,87 | --top N] [--force]
    rnnkit gradflow [DIR ...] [--cell rnn,gru,lstm] [--length T] [--file FILE] --out PREFIX

``explain`` writes one self-contained HTML page (:mod:`rnnkit.lm.explain`); ``gradflow``
writes ``PREFIX.png`` and ``PREFIX.json`` with the mean ‖∂L_T/∂h_t‖ against T − t
(:mod:`rnnkit.gradflow`).  Files are written whole or not at all (temp + rename) and an
existing file is replaced only with ``--force``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def register(sub) -> None:
    e = sub.add_parser("explain", help="an HTML page showing what a language model reads",
                       description="Write one self-contained HTML page: tokens coloured by "
                                   "surprisal with the top-5 guesses, hidden units, gates.")
    e.add_argument("model", metavar="DIR")
    e.add_argument("texts", nargs="*", metavar="TEXT", help="text to explain (one sentence per line)")
    e.add_argument("--file", metavar="FILE", help="read the text from FILE too")
    e.add_argument("--html", required=True, metavar="OUT.html", help="page to write")
    g = e.add_mutually_exclusive_group()
    g.add_argument("--units", metavar="LIST",
                   help="units to show: [LAYER:][c]UNIT,... (default: found automatically)")
    g.add_argument("--top", type=int, default=6, metavar="N",
                   help="show the N units most correlated with text features (default 6)")
    e.add_argument("--force", action="store_true", help="replace an existing OUT.html")
    e.set_defaults(func=cmd_explain)

    f = sub.add_parser("gradflow", help="plot how far back the gradient reaches",
                       description="Mean norm of dL_T/dh_t against the distance T - t, for "
                                   "trained models (DIR) or fresh ones (--cell).")
    f.add_argument("models", nargs="*", metavar="DIR", help="trained language models")
    f.add_argument("--cell", metavar="LIST", help="fresh models of these cells, e.g. rnn,gru,lstm")
    f.add_argument("--length", type=int, default=100, metavar="T", help="sequence length (default 100)")
    f.add_argument("--count", type=int, default=64, metavar="N",
                   help="sequences averaged over (default 64)")
    f.add_argument("--file", metavar="FILE", help="text to draw sequences from (default: the "
                                                  "built-in corpus)")
    f.add_argument("--hidden", type=int, default=None,
                   help="fresh models: hidden size (default: the first DIR's, else 128)")
    f.add_argument("--layers", type=int, default=None, help="fresh models: layers (default 1)")
    f.add_argument("--layer", type=int, default=None,
                   help="whose hidden state h_t (1 = the bottom; default the top layer)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--out", required=True, metavar="PREFIX", help="writes PREFIX.png and PREFIX.json")
    f.add_argument("--force", action="store_true", help="replace existing output files")
    f.set_defaults(func=cmd_gradflow)


def _check_writable(path: Path, force: bool, flag: str) -> None:
    """Refuse before any work: an existing file without --force, a missing or unwritable folder."""
    if path.is_dir():
        raise ValueError(f"{flag} {path}: is a directory")
    if path.exists() and not force:
        raise ValueError(f"{flag} {path}: already exists; add --force to replace it")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(f"{flag} {path}: no such directory {parent}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path}: cannot write into {parent} (permission denied)")


def _load_lm(path):
    """A language model bundle; a task model gets one line saying explain takes LMs only."""
    from .checkpoint import CheckpointError
    from .lm.bundle import load_model

    try:
        return load_model(path)
    except CheckpointError as e:
        if "not a language model" in str(e) or _is_task_model(path):
            raise ValueError(f"{path}: not a language model (explain and gradflow read "
                             "language models only; train one with rnnkit train)") from None
        raise


def _is_task_model(path) -> bool:
    from .checkpoint import load_checkpoint

    p = Path(path)
    try:
        _, meta = load_checkpoint(p / "model.safetensors" if p.is_dir() else p)
    except (OSError, ValueError):
        return False
    return str(meta.get("kind", "")).startswith("rnnkit.")


def cmd_explain(args) -> int:
    from .checkpoint import atomic_write_text
    from .data.corpus import read_text
    from .lm.explain import explain, render_html

    out = Path(args.html)
    _check_writable(out, args.force, "--html")
    if args.top is not None and args.top < 1:
        raise ValueError(f"--top must be a positive integer, got {args.top}")
    texts = list(args.texts)
    if args.file:
        texts.append(read_text(args.file))
    if not texts or not any(t.strip() for t in texts):
        raise ValueError("the text is empty: give TEXT or --file with something to explain")
    bundle = _load_lm(args.model)
    report = explain(bundle, texts, units=args.units, top=args.top)
    page = render_html(report, title=str(args.model))
    atomic_write_text(out, page)
    lines = report["lines"]
    print(f"wrote {out} ({len(lines)} line(s), {sum(len(x['tokens']) for x in lines)} tokens)")
    return 0


def _parse_cells(spec):
    from .gradflow import CELLS

    cells = [c.strip() for c in spec.split(",") if c.strip()]
    if not cells:
        raise ValueError("--cell: give at least one of rnn, gru, lstm")
    for c in cells:
        if c not in CELLS:
            raise ValueError(f"--cell: unknown cell {c!r}; choose from {', '.join(CELLS)}")
    return cells


def cmd_gradflow(args) -> int:
    from .checkpoint import atomic_write_bytes, atomic_write_text
    from .data.corpus import default_corpus, read_text
    from .gradflow import lm_gradflow, lm_parts, plot

    if not args.models and not args.cell:
        raise ValueError("give model directories (DIR ...) or --cell rnn,gru,lstm")
    for name, v in (("--length", args.length), ("--count", args.count)):
        if v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v}")
    for name, v in (("--hidden", args.hidden), ("--layers", args.layers), ("--layer", args.layer)):
        if v is not None and v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v}")
    cells = _parse_cells(args.cell) if args.cell else []
    png, js = Path(f"{args.out}.png"), Path(f"{args.out}.json")
    for p in (png, js):
        _check_writable(p, args.force, "--out")
    bundles = [(str(d), _load_lm(d)) for d in args.models]
    text = read_text(args.file) if args.file else default_corpus()
    models = {}  # name -> (parts, vocab, tokenizer)
    for name, b in bundles:
        models[name] = (lm_parts(b.model), b.vocab, b.tokenizer)
    if cells:
        from .data.tokenize import get_tokenizer
        from .data.vocab import Vocab
        from .models.language_model import LanguageModel, LMConfig

        if bundles:  # same sizes and vocabulary as the first trained model
            b0 = bundles[0][1]
            c0 = b0.model.config
            vocab, tok = b0.vocab, b0.tokenizer
            hidden = args.hidden or c0.hidden_size
            layers = args.layers or c0.num_layers
            embed = c0.embed_dim
        else:
            tok = get_tokenizer("char")
            vocab = Vocab.build(tok.tokenize(text))
            hidden, layers, embed = args.hidden or 128, args.layers or 1, 64
        for cell in cells:
            m = LanguageModel(LMConfig(len(vocab), cell=cell, num_layers=layers,
                                       hidden_size=hidden, embed_dim=embed), seed=args.seed)
            models[f"{cell} (fresh, {layers} × {hidden})"] = (lm_parts(m), vocab, tok)
    result = {"distance": list(range(args.length)), "models": {},
              "length": args.length, "count": args.count,
              "layer": "top" if args.layer is None else args.layer,
              "corpus": args.file or "built-in"}
    for name, (parts, vocab, tok) in models.items():
        if args.layer is not None and args.layer > parts.rnn.num_layers:
            raise ValueError(f"--layer {args.layer}: {name} has {parts.rnn.num_layers} layer(s)")
        ids = vocab.encode(tok.tokenize(text))
        layer = None if args.layer is None else args.layer - 1
        norms = lm_gradflow(parts, ids, args.length, args.count, seed=args.seed, layer=layer)
        result["models"][name] = [float(v) for v in norms]
    tmp = png.with_name(f".{png.name}.{os.getpid()}.tmp.png")
    try:
        plot(result, tmp, title=f"Gradient reaching back, T = {args.length}, "
                                f"{args.count} sequences")
        atomic_write_bytes(png, tmp.read_bytes())
    finally:
        tmp.unlink(missing_ok=True)
    atomic_write_text(js, json.dumps(result, indent=1) + "\n")
    for name, norms in result["models"].items():
        d = [k for k in (0, 10, 50, 100, 200) if k < len(norms)]
        print(f"{name}: " + ", ".join(f"|dL/dh| at {k} = {norms[k]:.3g}" for k in d),
              file=sys.stdout)
    print(f"wrote {png} and {js}")
    return 0
