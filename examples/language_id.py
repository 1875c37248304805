"""Many-to-one on real data: tell a word's language from its letters alone.

A character-level sequence classifier (rnnkit.SequenceClassifier: embedding -> bidirectional
LSTM -> last states -> linear -> softmax) is trained on the most frequent words of six
languages from the ``wordfreq`` package (see ``_wordlists.py``) and tested on held-out words
it never saw.  Prints accuracy and the confusion matrix.

    python examples/language_id.py                # the README's run
    python examples/language_id.py --save runs/langid   # keep the model (used by generate_words.py)
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
from rnnkit.models import ClassifierConfig, SequenceClassifier  # noqa: E402
from rnnkit.data import pad_sequences  # noqa: E402
from rnnkit.training import confusion_matrix, fit  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=96)
    ap.add_argument("--embed", type=int, default=32)
    ap.add_argument("--cell", default="lstm")
    ap.add_argument("--pooling", default="last")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--top", type=int, default=10000, help="most frequent words per language")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save", metavar="DIR", help="also save the model (rnnkit classify predict DIR)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    langs = _wordlists.LANGUAGES
    train, val, test = _wordlists.load(langs, args.top, args.seed)
    vocab = Vocab.build(c for w, _ in train for c in w)
    print(f"{len(langs)} languages ({', '.join(langs)}): {len(train)} training words, "
          f"{len(val)} validation, {len(test)} test; {len(vocab) - 3} characters", flush=True)
    model = SequenceClassifier(ClassifierConfig(len(vocab), len(langs), embed_dim=args.embed,
                                                hidden_size=args.hidden, cell=args.cell,
                                                bidirectional=True, pooling=args.pooling,
                                                seed=args.seed))

    def batcher(data):
        xs = [vocab.encode(list(w)) for w, _ in data]
        ys = np.array([k for _, k in data])

        def make(idx):
            ids, lengths = pad_sequences([xs[i] for i in idx])
            return {"ids": ids, "lengths": lengths, "labels": ys[idx]}
        return make, xs, ys

    make_train, xs, _ = batcher(train)
    result = fit(model, make_train, len(train), steps=args.steps, batch_size=args.batch,
                 lr=args.lr, seed=args.seed, val=(batcher(val)[0], len(val)), eval_every=500,
                 length_fn=lambda i: len(xs[i]), lr_decay=0.5, log=lambda m: print(m, flush=True))
    _, txs, tys = batcher(test)
    preds = np.concatenate([model.predict(*pad_sequences(txs[i: i + 512]))
                            for i in range(0, len(txs), 512)])
    acc = float(np.mean(preds == tys))
    cm = confusion_matrix(tys, preds, len(langs))
    print(f"\nheld-out accuracy: {100 * acc:.1f}% on {len(test)} unseen words "
          f"(chance {100 / len(langs):.1f}%); trained {result.steps} steps in "
          f"{result.seconds / 60:.1f} min")
    print("confusion matrix (rows: true language, columns: predicted):")
    print("      " + " ".join(f"{lang:>5}" for lang in langs) + "  recall")
    for k, lang in enumerate(langs):
        print(f"{lang:>5} " + " ".join(f"{n:>5}" for n in cm[k]) + f"  {100 * cm[k, k] / cm[k].sum():5.1f}%")
    probe = ["computer", "schmetterling", "papillon", "mariposa", "farfalla", "vlinder",
             "understanding", "wahrscheinlich", "aujourd", "desarrollo", "ragazzo", "gezellig"]
    pp = model.predict(*pad_sequences([vocab.encode(list(w)) for w in probe]))
    print("examples: " + ", ".join(f"{w} -> {langs[p]}" for w, p in zip(probe, pp)))
    if args.save:
        from rnnkit.tasks import save_bundle

        out = Path(args.save)
        out.mkdir(parents=True, exist_ok=True)
        save_bundle(out, "classify", model, {"vocab": vocab.to_json(), "labels": list(langs),
                                              "level": "char", "info": {"test_accuracy": acc}})
        print(f"saved {out}/model.safetensors")
    print(f"total run time {(time.perf_counter() - t0) / 60:.1f} min")


if __name__ == "__main__":
    main()
