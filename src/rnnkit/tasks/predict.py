"""Predictions of a task model for id sequences, and the held-out metrics built on them."""

from __future__ import annotations

from ..data.batching import pad_sequences
from .data import split_tokens
from .spec import get_task


def predict_ids(model, task, xs, batch=256, **options) -> list:
    """Predictions for id sequences ``xs`` (each non-empty), in their order.

    Batches hold inputs of similar length (less padding); ``options`` are the task's
    decoding options (seq2seq: ``beam``, ``length_penalty``, ``max_len``).
    """
    task = get_task(task)
    order = sorted(range(len(xs)), key=lambda i: len(xs[i]))
    preds = [None] * len(xs)
    for start in range(0, len(order), batch):
        idx = order[start: start + batch]
        ids, lengths = pad_sequences([xs[i] for i in idx])
        for i, p in zip(idx, task.predict(model, ids, lengths, **options)):
            preds[i] = p
    return preds


def evaluate(model, task, xs, ys, batch=256) -> dict:
    """Held-out accuracy (classify, tag) or greedy exact match and token error rate (seq2seq)."""
    task = get_task(task)
    return task.metrics(predict_ids(model, task, xs, batch), ys)


def predict_lines(model, task, meta, lines, batch=256, **options) -> list:
    """The text ``predict`` prints for each input line (a blank line gets "")."""
    task = get_task(task)
    vocab, level = task.source_vocab(meta), task.source_level(meta)
    toks = [split_tokens(line, level) for line in lines]
    keep = [i for i, t in enumerate(toks) if t]
    xs = [vocab.encode(toks[i]) for i in keep]
    preds = predict_ids(model, task, xs, batch, **options) if xs else []
    text = [""] * len(lines)
    for i, p in zip(keep, preds):
        text[i] = task.show(p, meta)
    return text
