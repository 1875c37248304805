"""Training speed of seq2seq with and without attention (tokens per second).

The G2P model of examples/g2p_cmudict.py on synthetic data of CMUdict's shape: batch 64,
sources of 4-12 characters, targets of 3-11 phonemes, bidirectional LSTM encoder (H=256,
E=64), LSTM decoder.  One training step = loss, backward, global-norm clip, Adam.  The
variants ('none', 'additive', 'general') run alternately, one step each per round after a
warm-up, so a change in the machine's load hits all of them alike; each figure is the
median over rounds.  Tokens counted: target tokens (the closing <eos> included), the
decoder's work.

    python bench/attention.py                 # prints a table, --json FILE keeps it
    python bench/attention.py --rounds 30 --hidden 128 --layers 2

A kind with the suffix ``-numpy`` (e.g. ``additive-numpy``) runs the attention decoder's
NumPy reference loop instead of the fused one (rnnkit.layers.attention_fused), to show what
the fusion gives.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402


def make_batches(n, N, V_src, V_tgt, seed):
    from rnnkit.models._blocks import pad_batch

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        S = int(rng.integers(4, 13))
        lens = rng.integers(max(1, S - 3), S + 1, N)
        src, lengths = pad_batch([rng.integers(3, V_src, int(k)) for k in lens])
        tgt = [rng.integers(3, V_tgt, int(k)) for k in np.clip(lens - 1, 3, None)]
        out.append((src, lengths, tgt))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--embed", type=int, default=64)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--kinds", default="none,additive,general")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args(argv)
    from rnnkit.models import Seq2Seq, Seq2SeqConfig
    from rnnkit.optim import Adam, clip_grad_norm

    kinds = args.kinds.split(",")
    V_src, V_tgt = 30, 42
    models, opts = {}, {}
    for k in kinds:
        kind, _, loop = k.partition("-")
        cfg = Seq2SeqConfig(V_src, V_tgt, embed_dim=args.embed, hidden_size=args.hidden,
                            num_layers=args.layers, bidirectional=True, attention=kind, seed=0)
        models[k] = Seq2Seq(cfg)
        if loop:
            models[k].decoder.backend = loop
        opts[k] = Adam(lr=1e-3)
    batches = make_batches(args.rounds + 1, args.batch, V_src, V_tgt, seed=0)
    times = {k: [] for k in kinds}
    tokens = {k: [] for k in kinds}

    def step(k, b):
        src, lengths, tgt = b
        t = time.perf_counter()
        m = models[k]
        _, grads = m.loss(src, lengths, tgt, training=True, rng=np.random.default_rng(0))
        clip_grad_norm(grads, 5.0)
        opts[k].step(m.params, grads)
        return time.perf_counter() - t, sum(len(y) + 1 for y in tgt)

    for k in kinds:  # warm-up: first calls compile kernels and touch the memory
        step(k, batches[0])
    load0 = os.getloadavg()
    for r in range(args.rounds):
        for k in (kinds if r % 2 == 0 else kinds[::-1]):
            dt, n = step(k, batches[r + 1])
            times[k].append(dt)
            tokens[k].append(n)
    load1 = os.getloadavg()
    rows = {}
    for k in kinds:
        rate = [n / t for n, t in zip(tokens[k], times[k])]
        rows[k] = {"median_step_ms": 1000 * statistics.median(times[k]),
                   "median_tokens_per_s": statistics.median(rate),
                   "params": models[k].num_parameters()}
    base = rows.get("none")
    print(f"seq2seq training, batch {args.batch}, {args.layers}-layer bi-LSTM H={args.hidden} "
          f"E={args.embed}, "
          f"{args.rounds} alternated rounds; load average {load0[0]:.1f} -> {load1[0]:.1f} "
          f"on {os.cpu_count()} cores")
    print(f"{'attention':>14} {'params':>10} {'step ms':>9} {'tokens/s':>9} {'vs none':>8}")
    for k, r in rows.items():
        ratio = f"{r['median_tokens_per_s'] / base['median_tokens_per_s']:.2f}x" if base else "-"
        print(f"{k:>14} {r['params']:>10,} {r['median_step_ms']:>9.1f} "
              f"{r['median_tokens_per_s']:>9.0f} {ratio:>8}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"args": vars(args), "load_average": [load0, load1], "results": rows}, f,
                      indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
