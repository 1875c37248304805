"""A plain PyTorch character language model trainer — the other side of bench/e2e.py.

Written the way a PyTorch user would write it, doing the work ``rnnkit train`` does:
characters -> ids (each line closed by an end-of-line token), the training text cut into
``--batch`` contiguous streams read ``--seq-len`` tokens at a time with the hidden state
carried (detached) from chunk to chunk, nn.Embedding -> nn.LSTM/GRU(batch_first=True) ->
nn.Linear, F.cross_entropy, Adam, clip_grad_norm_; validation on the held-out file (read as
``min(batch, 64)`` streams) every ``--eval-every`` steps and at the end, the best model saved
when validation improves, a checkpoint (model + optimizer) every ``--checkpoint-every`` steps
and at the end.  Prints one JSON line: the work done and the thread count.

    python bench/torch_train.py TRAIN.txt --val VAL.txt --out DIR [--cell lstm] [--steps 200]
"""

from __future__ import annotations

import argparse
from collections import Counter
import json
import math
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

T_START = time.perf_counter()


class CharLM(nn.Module):
    """Embedding -> LSTM/GRU -> the full softmax (nn.Linear), or nn.AdaptiveLogSoftmaxWithLoss
    when ``cutoffs`` are given (word level)."""

    def __init__(self, vocab_size, cell, embed, hidden, layers, cutoffs=None):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed)
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell]
        self.rnn = rnn(embed, hidden, layers, batch_first=True)
        self.adaptive = bool(cutoffs)
        if self.adaptive:
            self.out = nn.AdaptiveLogSoftmaxWithLoss(hidden, vocab_size, cutoffs, div_value=4.0)
        else:
            self.out = nn.Linear(hidden, vocab_size)

    def forward(self, x, state=None):
        h, state = self.rnn(self.embed(x), state)
        return h, state

    def loss(self, h, y, reduction="mean"):
        """Cross-entropy of targets y (N, T) given the recurrent output h (N, T, H)."""
        h2, y2 = h.reshape(-1, h.shape[-1]), y.reshape(-1)
        if self.adaptive:
            mean = self.out(h2, y2).loss
            return mean * y2.numel() if reduction == "sum" else mean
        return F.cross_entropy(self.out(h2), y2, reduction=reduction)


def detach(state):
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


def encode(text, stoi, eos):
    ids = []
    for line in text.split("\n")[:-1] if text.endswith("\n") else text.split("\n"):
        ids.extend(stoi[c] for c in line)
        ids.append(eos)
    return torch.tensor(ids, dtype=torch.long)


def word_vocab(text, min_count):
    """<pad>, <unk>, <eos>, then the words seen min_count times or more, most frequent first."""
    counts = Counter(text.split())
    words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: -counts[w])
    return {w: i for i, w in enumerate(["<pad>", "<unk>", "<eos>"] + words)}


def encode_words(text, stoi):
    ids = []
    for line in text.splitlines():
        words = line.split()
        if words:  # a line without words carries no token
            ids.extend(stoi.get(w, 1) for w in words)
            ids.append(2)
    return torch.tensor(ids, dtype=torch.long)


@torch.no_grad()
def evaluate(model, ids, streams, seq_len, eos):
    model.eval()
    inputs = torch.cat([torch.tensor([eos]), ids[:-1]])
    per = ids.numel() // streams  # whole streams only (the remainder is < streams tokens)
    x = inputs[: per * streams].view(streams, per)
    y = ids[: per * streams].view(streams, per)
    total, state = 0.0, None
    for t0 in range(0, per, seq_len):
        h, state = model(x[:, t0:t0 + seq_len], state)
        total += model.loss(h, y[:, t0:t0 + seq_len], reduction="sum").item()
    model.train()
    return total / (per * streams)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("train")
    ap.add_argument("--val", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--cell", default="lstm")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--embed", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=100)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--clip", type=float, default=5.0)
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--checkpoint-every", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--level", default="char", choices=("char", "word"))
    ap.add_argument("--min-count", type=int, default=1)
    ap.add_argument("--softmax", default="full", choices=("full", "adaptive"))
    ap.add_argument("--cutoffs", default="", help="adaptive: C1,C2,... (word ids)")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    os.makedirs(a.out, exist_ok=True)

    with open(a.train, encoding="utf-8") as f:
        train_text = f.read()
    with open(a.val, encoding="utf-8") as f:
        val_text = f.read()
    if a.level == "word":
        stoi = word_vocab(train_text, a.min_count)
        chars, eos, vocab_size = None, 2, len(stoi)
        train_ids, val_ids = encode_words(train_text, stoi), encode_words(val_text, stoi)
    else:
        chars = sorted(set(train_text) - {"\n"})
        stoi = {c: i for i, c in enumerate(chars)}
        eos = unk = len(chars)
        stoi_val = {c: stoi.get(c, unk) for c in set(val_text)}
        vocab_size = len(chars) + 1
        train_ids = encode(train_text, stoi, eos)
        val_ids = encode(val_text, stoi_val, eos)
    cutoffs = [int(c) for c in a.cutoffs.split(",") if c] if a.softmax == "adaptive" else None

    model = CharLM(vocab_size, a.cell, a.embed, a.hidden, a.layers, cutoffs)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    N, T = a.batch, a.seq_len
    per = (train_ids.numel() - 1) // N
    xs = train_ids[: per * N].view(N, per)
    ys = train_ids[1: per * N + 1].view(N, per)
    chunks = (per - 1) // T + 1 if per % T else per // T
    state, best, val = None, math.inf, None
    for step in range(1, a.steps + 1):
        k = (step - 1) % chunks
        if k == 0:
            state = None
        x, y = xs[:, k * T:(k + 1) * T], ys[:, k * T:(k + 1) * T]
        h, state = model(x, state)
        loss = model.loss(h, y)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), a.clip)
        opt.step()
        state = detach(state)
        if step % a.eval_every == 0 or step == a.steps:
            val = evaluate(model, val_ids, min(N, 64), T, eos)
            if val < best:
                best = val
                torch.save({"model": model.state_dict(), "chars": chars, "stoi": stoi,
                            "cutoffs": cutoffs, "level": a.level, "cell": a.cell,
                            "embed": a.embed, "hidden": a.hidden, "layers": a.layers},
                           os.path.join(a.out, "model.pt"))
        if step % a.checkpoint_every == 0 or step == a.steps:
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                        "step": step}, os.path.join(a.out, "checkpoint.pt"))
    print(json.dumps({"vocab_size": vocab_size, "steps": a.steps, "tokens": a.steps * N * T, "last_loss": loss.item(),
                      "val_loss": val, "torch_threads": torch.get_num_threads(),
                      "in_process_s": time.perf_counter() - T_START}))


if __name__ == "__main__":
    main()
