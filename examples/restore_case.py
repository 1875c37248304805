"""Aligned tagging on real text: restore capitalisation character by character.

Input: a line of English prose with every letter lower-cased.  Output: one tag per
character, ``U`` (upper-case it) or ``L`` (leave it).  The text is rnnkit's built-in corpus —
the docstrings of the Python standard library, read from the Python installation itself
(``rnnkit.data.default_corpus``; no network, nothing copied into the repository).  Lines are
shuffled with a fixed seed; 10% are held out for testing.

Two taggers (rnnkit.SequenceTagger: embedding -> LSTM -> linear, same size and steps) are
compared: a unidirectional one, which sees only the characters up to the one it tags, and a
bidirectional one, which sees the whole line.  Reported: character accuracy and precision /
recall / F1 of the upper-case tag (only ~3% of characters are upper case, so accuracy alone
flatters), next to a rule baseline that capitalises the first letter of each sentence.

    python examples/restore_case.py
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small matrices: one thread is faster

import numpy as np  # noqa: E402

from rnnkit.data import default_corpus  # noqa: E402
from rnnkit.data.vocab import Vocab  # noqa: E402
from rnnkit.models import SequenceTagger, TaggerConfig  # noqa: E402
from rnnkit.data import pad_sequences  # noqa: E402
from rnnkit.training import fit  # noqa: E402

MAX_CHARS = 100


def load(seed):
    lines = []
    for line in default_corpus().splitlines():
        line = line.strip()
        # Pieces of at most MAX_CHARS characters, cut at spaces.
        while line:
            if len(line) <= MAX_CHARS:
                lines.append(line)
                break
            cut = line.rfind(" ", 0, MAX_CHARS)
            cut = cut if cut > 0 else MAX_CHARS
            lines.append(line[:cut])
            line = line[cut:].strip()
    lines = [ln for ln in lines if all(len(c.lower()) == 1 for c in ln)]
    order = np.random.default_rng(seed).permutation(len(lines))
    lines = [lines[i] for i in order]
    n_test = len(lines) // 10
    n_val = len(lines) // 20
    return lines[n_test + n_val:], lines[n_test: n_test + n_val], lines[:n_test]


def tags_of(line):
    return np.array([int(c.isupper()) for c in line])


def rule_baseline(line):
    """Upper-case the first letter of the line and of each sentence after . ! or ?."""
    out = np.zeros(len(line), dtype=int)
    low = line.lower()
    starts = [0] + [m.end() for m in re.finditer(r"[.!?]\s+", low)]
    for s in starts:
        m = re.search(r"[a-z]", low[s:])
        if m:
            out[s + m.start()] = 1
    return out


def report(name, preds, golds):
    p, g = np.concatenate(preds), np.concatenate(golds)
    tp = int(((p == 1) & (g == 1)).sum())
    prec = tp / max(int((p == 1).sum()), 1)
    rec = tp / max(int((g == 1).sum()), 1)
    f1 = 2 * prec * rec / max(prec + rec, 1e-12)
    acc = float((p == g).mean())
    lines = np.mean([np.array_equal(a, b) for a, b in zip(preds, golds)])
    print(f"| {name:<34} | {100 * acc:6.2f}% | {100 * prec:6.1f}% | {100 * rec:6.1f}% | "
          f"{100 * f1:6.1f}% | {100 * lines:6.1f}% |", flush=True)
    return acc, f1


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=2500)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--embed", type=int, default=32)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--cell", default="lstm")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    train, val, test = load(args.seed)
    vocab = Vocab.build(c for ln in train for c in ln.lower())
    print(f"{len(train)} training lines, {len(val)} validation, {len(test)} test "
          f"({sum(map(len, test))} characters, {100 * np.mean(np.concatenate([tags_of(t) for t in test])):.1f}% upper case)",
          flush=True)

    def batcher(lines):
        xs = [vocab.encode(list(ln.lower())) for ln in lines]
        ys = [tags_of(ln) for ln in lines]

        def make(idx):
            ids, lengths = pad_sequences([xs[i] for i in idx])
            tags, _ = pad_sequences([ys[i] for i in idx])
            return {"ids": ids, "lengths": lengths, "tags": tags}
        return make, xs, ys

    make_train, xs, _ = batcher(train)
    _, txs, tys = batcher(test)
    results = {}
    for bi in (False, True):
        name = "bidirectional" if bi else "unidirectional"
        model = SequenceTagger(TaggerConfig(len(vocab), 2, embed_dim=args.embed,
                                            hidden_size=args.hidden, num_layers=args.layers,
                                            cell=args.cell, bidirectional=bi, seed=args.seed))
        print(f"training the {name} tagger ({model.num_parameters():,} parameters)", flush=True)
        res = fit(model, make_train, len(train), steps=args.steps, batch_size=args.batch,
                  lr=args.lr, seed=args.seed, val=(batcher(val)[0], len(val)), eval_every=500,
                  length_fn=lambda i: len(xs[i]), lr_decay=0.5, log=lambda m: print(m, flush=True))
        order = sorted(range(len(txs)), key=lambda i: len(txs[i]))
        preds = [None] * len(txs)
        for s in range(0, len(order), 256):
            idx = order[s: s + 256]
            for i, p in zip(idx, model.predict(*pad_sequences([txs[i] for i in idx]))):
                preds[i] = p
        results[name] = (preds, res.seconds, model)
    print("\nheld-out test lines:")
    print("| tagger                             | char acc | U prec | U recall |  U F1  | lines exact |")
    print("|------------------------------------|---------:|-------:|---------:|-------:|------------:|")
    report("all lower case", [np.zeros_like(y) for y in tys], tys)
    report("rule: sentence starts", [rule_baseline(t) for t in test], tys)
    for name, (preds, secs, _) in results.items():
        report(f"{name} LSTM ({secs / 60:.1f} min)", preds, tys)
    model = results["bidirectional"][2]
    for line in test[:3]:
        p = model.predict(*pad_sequences([vocab.encode(list(line.lower()))]))[0]
        print("  " + "".join(c.upper() if t else c for c, t in zip(line.lower(), p)))
    print(f"total run time {(time.perf_counter() - t0) / 60:.1f} min")


if __name__ == "__main__":
    main()
