"""Where a word-level evaluation chunk spends its time, rnnkit against PyTorch, one thread each:
the recurrent forward (no gradients) and the output layer's log-probabilities of the targets,
timed apart on one 32 x 35 chunk of the synthetic Zipfian corpus of ``bench/wordlm.py`` (same
model, recipe and cutoffs).  Medians of 30 calls after one warm-up.

    .venv/bin/python bench/eval_split.py [--vocab 10000] [--softmax adaptive|full]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("RNNKIT_STEP_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import rnnkit  # noqa: E402,F401  (before NumPy, as the CLI)
import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import wordlm  # noqa: E402

CUTOFFS = {1000: [87, 180], 10000: [443, 1367], 30000: [937, 3804], 100000: [3125, 10946]}


def median_ms(f, n=30):
    f()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts)) * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab", type=int, default=10000, choices=sorted(CUTOFFS))
    ap.add_argument("--softmax", default="adaptive", choices=("adaptive", "full"))
    a = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    threadpool_limits(1)
    V, sm, cut = a.vocab, a.softmax, CUTOFFS[a.vocab]
    N, T, H = wordlm.RECIPE["batch"], wordlm.RECIPE["seq_len"], wordlm.RECIPE["hidden"]
    ids = wordlm.zipf_corpus(V, N * T + 1)
    x, y = ids[:N * T].reshape(N, T), ids[1:].reshape(N, T)

    m = wordlm.RnnkitSide(V, sm, cut).model
    h2, _ = m._hidden(x, None)
    yt = np.ascontiguousarray(y.T).reshape(-1)
    ours = {"recurrent forward": lambda: m._hidden(x, None),
            "output layer": lambda: m.head.target_log_prob(h2, yt),
            "whole chunk": lambda: m.target_log_probs(x, y)}

    tm = wordlm.TorchSide(V, sm, cut).model
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    with torch.no_grad():
        hr = tm.rnn(tm.embed(tx), None)[0].reshape(-1, H)
        tyy = ty.reshape(-1)

        def head():
            if sm == "adaptive":
                return tm.out(hr, tyy).output.sum().item()
            return torch.log_softmax(tm.out(hr), -1).gather(1, tyy.reshape(-1, 1)).sum().item()

        theirs = {"recurrent forward": lambda: tm.rnn(tm.embed(tx), None),
                  "output layer": head,
                  "whole chunk": lambda: tm.target_logprob_sum(tx, ty, None)}
        flops = 2 * N * T * sum(4 * H * (i + H) for i in (wordlm.RECIPE["embed"], H))
        print(f"V {V}, {sm} softmax, one thread each, a {N} x {T} chunk (ms, median of 30)")
        # Each framework's three timings together, twice in turn (the second round is
        # reported): interleaving single calls made both sides' later timings erratic.
        for _ in range(2):
            r_ms = {k: median_ms(f) for k, f in ours.items()}
            p_ms = {k: median_ms(f) for k, f in theirs.items()}
        for k in ours:
            r, p = r_ms[k], p_ms[k]
            extra = (f"  ({flops / r / 1e6:.0f} vs {flops / p / 1e6:.0f} GFLOP/s)"
                     if k == "recurrent forward" else "")
            print(f"{k:18s} rnnkit {r:7.2f}  PyTorch {p:7.2f}  ratio {p / r:.2f}x{extra}")


if __name__ == "__main__":
    main()
