"""Language-model quality benchmark: rnnkit's language-model trainer against a plain PyTorch
implementation of the same recipe on the same data, split and batches.

Recipe: character LSTM, 2 layers x 256, embedding 64, seq 100, batch 32, Adam 2e-3, global
norm clip 5, 2000 steps, stateful truncated BPTT over 32 parallel streams (no lr decay, no
dropout).  Held-out loss: the last 5% of the text, read as 32 parallel streams with the state
carried across chunks of 100, mean nats per character — the same protocol for both.

    python bench/lm_quality.py [--steps 2000] [--out bench/lm_quality.json]

The two sides can run as separate processes (``--only rnnkit`` / ``--only torch``, each
writing its own JSON, then ``--merge``), e.g. side by side on one core each; ``--threads``
sets both frameworks' thread counts (PyTorch's intra-op pool; for NumPy's OpenBLAS set
``OPENBLAS_NUM_THREADS`` to the same number).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_corpus import bench_corpus  # noqa: E402

from rnnkit.data.batching import StreamBatcher  # noqa: E402
from rnnkit.data.corpus import split_validation  # noqa: E402
from rnnkit.data.tokenize import CharTokenizer  # noqa: E402
from rnnkit.lm.bundle import load_model  # noqa: E402
from rnnkit.lm.score import evaluate_text  # noqa: E402
from rnnkit.lm.train import Trainer, TrainOptions  # noqa: E402

RECIPE = dict(cell="lstm", layers=2, hidden=256, embed=64, seq_len=100, batch=32, lr=2e-3, clip=5.0)


def torch_run(train_ids, val_text, vocab, steps, seed, log, threads):
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    V = len(vocab)

    class CharLSTM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(V, RECIPE["embed"])
            self.rnn = torch.nn.LSTM(RECIPE["embed"], RECIPE["hidden"], RECIPE["layers"], batch_first=True)
            self.out = torch.nn.Linear(RECIPE["hidden"], V)

        def forward(self, x, state=None):
            h, state = self.rnn(self.embed(x), state)
            return self.out(h), state

    model = CharLSTM()
    opt = torch.optim.Adam(model.parameters(), lr=RECIPE["lr"])
    batcher = StreamBatcher(train_ids, RECIPE["batch"], RECIPE["seq_len"])
    state = None
    t0 = time.perf_counter()
    for step in range(steps):
        k = step % batcher.n_chunks
        if k == 0:
            state = None
        x, y = (torch.from_numpy(a) for a in batcher.chunk(k))
        logits, state = model(x, state)
        state = tuple(s.detach() for s in state)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), RECIPE["clip"])
        opt.step()
        if (step + 1) % 100 == 0:
            log(f"torch step {step + 1} loss {loss.item():.4f} {time.perf_counter() - t0:.0f}s")
    elapsed = time.perf_counter() - t0
    model.eval()

    class Wrap:  # rnnkit's log_probs protocol, so both are evaluated by the same code
        def log_probs(self, ids, state=None):
            with torch.no_grad():
                logits, st = model(torch.from_numpy(np.ascontiguousarray(ids)), state)
                return torch.log_softmax(logits, -1).numpy(), st

    ev = evaluate_text(Wrap(), vocab, CharTokenizer(), val_text, streams=32, seq_len=100)
    return ev["nats_per_token"], elapsed


def rnnkit_run(text, steps, seed, log):
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp, "corpus.txt")
        corpus.write_text(text, encoding="utf-8")
        opts = TrainOptions(out=str(Path(tmp, "run")), corpus=[str(corpus)], steps=steps,
                            seed=seed, lr_decay=1.0, eval_every=steps, checkpoint_every=steps,
                            log_every=100, val_fraction=0.05, **RECIPE)
        t0 = time.perf_counter()
        Trainer(opts).run()
        elapsed = time.perf_counter() - t0
        b = load_model(opts.out)
    _, val_text = split_validation(text, 0.05)
    val = evaluate_text(b.model, b.vocab, CharTokenizer(), val_text, streams=32, seq_len=100)
    return val["nats_per_token"], elapsed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="threads for each framework")
    ap.add_argument("--only", choices=["rnnkit", "torch"], default=None)
    ap.add_argument("--merge", nargs=2, metavar="JSON", help="combine two --only results")
    ap.add_argument("--out", default=str(Path(__file__).parent / "lm_quality.json"))
    args = ap.parse_args()

    def log(msg):
        print(msg, flush=True)

    if args.merge:
        parts = [json.loads(Path(p).read_text()) for p in args.merge]
        result = {k: v for p in parts for k, v in p.items()}
    else:
        if args.threads and os.environ.get("OPENBLAS_NUM_THREADS") != str(args.threads):
            raise SystemExit(f"run with OPENBLAS_NUM_THREADS={args.threads} in the environment "
                             "(OpenBLAS reads it at import)")
        text, info = bench_corpus()
        train_text, val_text = split_validation(text, 0.05)
        tok = CharTokenizer()
        from rnnkit.data.vocab import Vocab
        vocab = Vocab.build(tok.tokenize(train_text))  # exactly the trainer's vocabulary
        result = {"corpus": info, "recipe": RECIPE, "steps": args.steps, "threads": args.threads,
                  "vocab_size": len(vocab), "val_protocol": "last 5%, 32 streams, chunks of 100"}
        if args.only in (None, "rnnkit"):
            v, t = rnnkit_run(text, args.steps, args.seed, log)
            result.update(rnnkit_val_nats_per_char=v, rnnkit_train_seconds=t)
        if args.only in (None, "torch"):
            train_ids = vocab.encode(tok.tokenize(train_text))
            v, t = torch_run(train_ids, val_text, vocab, args.steps, args.seed, log,
                             args.threads or 2)
            result.update(torch_val_nats_per_char=v, torch_train_seconds=t)
    if "rnnkit_val_nats_per_char" in result and "torch_val_nats_per_char" in result:
        result["difference"] = result["rnnkit_val_nats_per_char"] - result["torch_val_nats_per_char"]
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if "difference" not in result:
        return 0
    rk, th = result["rnnkit_val_nats_per_char"], result["torch_val_nats_per_char"]
    ok = abs(rk - th) <= 0.03
    print(f"rnnkit {rk:.4f} vs torch {th:.4f} nats/char: |diff| {abs(rk - th):.4f} "
          f"{'<=' if ok else '>'} 0.03")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
