"""A plain PyTorch forward pass over a text file — the other side of ``rnnkit eval`` in
bench/e2e.py.  Loads the model bench/torch_train.py saved, reads FILE as ``--streams``
contiguous pieces in chunks of ``--seq-len`` with the state carried, no gradients, and prints
one JSON line (tokens, nats per token, thread count).

    python bench/torch_eval.py DIR FILE [--streams 32] [--seq-len 256]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

T_START = time.perf_counter()

from torch_train import CharLM, encode, encode_words, evaluate  # noqa: E402  (same directory)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("file")
    ap.add_argument("--streams", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=256)
    a = ap.parse_args()
    saved = torch.load(os.path.join(a.dir, "model.pt"))
    chars = saved["chars"]
    word = saved.get("level") == "word"
    V = len(saved["stoi"]) if word else len(chars) + 1
    model = CharLM(V, saved["cell"], saved["embed"], saved["hidden"], saved["layers"],
                   saved.get("cutoffs"))
    model.load_state_dict(saved["model"])
    with open(a.file, encoding="utf-8") as f:
        text = f.read()
    if word:
        eos, ids = 2, encode_words(text, saved["stoi"])
    else:
        stoi = {c: i for i, c in enumerate(chars)}
        eos = len(chars)
        ids = encode(text, {c: stoi.get(c, eos) for c in set(text)}, eos)
    nats = evaluate(model, ids, a.streams, a.seq_len, eos)
    print(json.dumps({"tokens": int(ids.numel()), "nats_per_token": nats,
                      "torch_threads": torch.get_num_threads(),
                      "in_process_s": time.perf_counter() - T_START}))


if __name__ == "__main__":
    main()
