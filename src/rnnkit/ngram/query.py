"""Querying a backoff n-gram model: log10 p(w | h) and the perplexity of a text.

p(w | h) is the probability stored for the longest h' w listed (h' a suffix of h), times the
backoff weights of the contexts skipped on the way there: exactly an ARPA reader's rule
(KenLM's too), and for an interpolated Kneser-Ney model exactly its interpolated estimate.
Perplexity follows KenLM: each line is read from ``<s>``, each word and the closing ``</s>``
is predicted, unknown words are ``<unk>`` (counted in the perplexity and reported apart).
"""

from __future__ import annotations

import math

import numpy as np

from ..data.tokenize import get_tokenizer
from .kneser_ney import BOS, EOS, UNK, NGramModel

OOV_LOG10 = -100.0  # what KenLM gives a word when the model has no <unk>


def log10_prob(model: NGramModel, context: tuple, word: int) -> float:
    """log10 p(word | context) for word ids; ``context`` oldest first (any length)."""
    index = model.index()
    h = tuple(context)[-(model.order - 1):] if model.order > 1 else ()
    total = 0.0
    while True:
        hit = index[len(h)].get(h + (word,))
        if hit is not None:
            return total + hit[0]
        if not h:
            return total + OOV_LOG10
        b = index[len(h) - 1].get(h)
        if b is not None:
            total += b[1]
        h = h[1:]


def encode_text(model: NGramModel, text: str):
    """Each line of ``text`` as a list of word ids ending with ``</s>``; also the count of
    unknown words (mapped to ``<unk>``, or to -1 where the model has none)."""
    tokenizer = get_tokenizer(model.options.get("level", "word"),
                              **model.options.get("tokenizer_options", {}))
    wid = {w: i for i, w in enumerate(model.words)}
    unk = wid.get(UNK, -1)
    eos = wid[EOS]
    sentences, cur, unknown = [], [], 0
    for tok in tokenizer.tokenize(text):
        if tok == "<eos>":
            cur.append(eos)
            sentences.append(cur)
            cur = []
            continue
        i = wid.get(tok) if tok not in (BOS, EOS) else None
        if i is None:
            unknown += 1
            i = unk
        cur.append(i)
    if cur:
        sentences.append(cur + [eos])
    return sentences, unknown


def evaluate_text(model: NGramModel, text: str) -> dict:
    """Perplexity of ``text``: ``tokens`` (predictions, ``</s>`` included), ``log10``,
    ``perplexity``, ``unknown`` and ``perplexity_without_unknown`` (KenLM's two figures)."""
    sentences, unknown = encode_text(model, text)
    if not sentences:
        raise ValueError("the text to evaluate holds no word")
    bos = model.words.index(BOS)
    total = 0.0
    total_known = 0.0
    count = 0
    count_known = 0
    for s in sentences:
        ctx = [bos]
        for w in s:
            lp = log10_prob(model, tuple(ctx), w) if w >= 0 else OOV_LOG10
            total += lp
            count += 1
            if w >= 0 and model.words[w] != UNK:
                total_known += lp
                count_known += 1
            ctx.append(w)
    return {
        "tokens": count,
        "log10": total,
        "nats_per_token": -total * math.log(10) / count,
        "perplexity": 10.0 ** (-total / count),
        "unknown": unknown,
        "perplexity_without_unknown": 10.0 ** (-total_known / max(count_known, 1)),
    }


def next_word_distribution(model: NGramModel, context: tuple) -> np.ndarray:
    """p(w | context) for every word id (W,): a model's check that it sums to 1."""
    return np.array([10.0 ** log10_prob(model, context, w) for w in range(len(model.words))])
