"""One-to-many on real data: write new words of a chosen language.

A conditional generator (rnnkit.ConditionalGenerator) reads one input — the language, as a
class — into the initial state of an LSTM, which then spells a word one letter at a time,
each sampled letter fed back as the next input, until it writes ``<eos>``.  Trained on the
same ``wordfreq`` word lists as ``language_id.py``.

Reported: held-out cross-entropy (bits per character, ``<eos>`` included) of the true
language vs. the same words under a wrong language (how much the condition matters); for
generated words, how many are new (in no language's word list) and — given a language-ID
model saved by ``language_id.py --save DIR`` with ``--judge DIR`` — how often that
classifier attributes a generated word to the language it was asked for.

    python examples/generate_words.py --judge runs/langid
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small matrices: one thread is faster

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _wordlists  # noqa: E402
from rnnkit.data.vocab import Vocab  # noqa: E402
from rnnkit.models import ConditionalGenerator, GeneratorConfig  # noqa: E402
from rnnkit.data import pad_sequences  # noqa: E402
from rnnkit.training import fit  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=10000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--embed", type=int, default=32)
    ap.add_argument("--cell", default="lstm")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--top", type=int, default=10000)
    ap.add_argument("--samples", type=int, default=200, help="words generated per language")
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--judge", metavar="DIR", help="language-ID model from language_id.py --save")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    langs = _wordlists.LANGUAGES
    train, val, test = _wordlists.load(langs, args.top, args.seed)
    vocab = Vocab.build(c for w, _ in train for c in w)
    model = ConditionalGenerator(GeneratorConfig(len(vocab), num_classes=len(langs),
                                                 embed_dim=args.embed, hidden_size=args.hidden,
                                                 cell=args.cell, max_len=30, seed=args.seed))
    print(f"{len(train)} training words in {len(langs)} languages; "
          f"{model.num_parameters():,} parameters", flush=True)

    def batcher(data, shift=0):
        ys = [vocab.encode(list(w)) for w, _ in data]
        cs = np.array([(k + shift) % len(langs) for _, k in data])
        return (lambda idx: {"cond": cs[idx], "targets": [ys[i] for i in idx]}), ys

    make, ys = batcher(train)
    result = fit(model, make, len(train), steps=args.steps, batch_size=args.batch, lr=args.lr,
                 seed=args.seed, val=(batcher(val)[0], len(val)), eval_every=500,
                 length_fn=lambda i: len(ys[i]), lr_decay=0.5, log=lambda m: print(m, flush=True))
    from rnnkit.training import evaluate_loss

    nats_true = evaluate_loss(model, batcher(test)[0], len(test))
    nats_wrong = np.mean([evaluate_loss(model, batcher(test, s)[0], len(test))
                          for s in range(1, len(langs))])
    print(f"\nheld-out cross-entropy: {nats_true / np.log(2):.3f} bits/char with the true language, "
          f"{nats_wrong / np.log(2):.3f} with a wrong one; trained {result.steps} steps in "
          f"{result.seconds / 60:.1f} min")
    known = {w for data in (train, val, test) for w, _ in data}
    rng = np.random.default_rng(args.seed)
    judge = None
    if args.judge:
        from rnnkit.tasks import load_bundle

        judge, jmeta = load_bundle(args.judge, "classify")
        if jmeta["labels"] != list(langs):
            raise SystemExit("the judge model was trained on other languages")
    print(f"{args.samples} samples per language at temperature {args.temperature}:")
    for k, lang in enumerate(langs):
        out = model.generate(np.full(args.samples, k), rng, temperature=args.temperature)
        words = ["".join(vocab.decode(np.array(o, dtype=np.int64))) for o in out]
        words = [w for w in words if w]
        new = [w for w in words if w not in known]
        line = f"{_wordlists.NAMES[lang]:>8}: {100 * len(new) / len(words):5.1f}% new"
        if judge is not None:
            jv = jmeta["vocab"]
            pred = judge.predict(*pad_sequences([jv.encode(list(w)) for w in words]))
            line += f", {100 * np.mean(pred == k):5.1f}% judged {lang}"
        print(line + "  e.g. " + ", ".join(new[:8]), flush=True)
    print(f"total run time {(time.perf_counter() - t0) / 60:.1f} min")


if __name__ == "__main__":
    main()
