"""How likely is a text under a language model — reported the way KenLM reports it, and more.

Convention (KenLM's ``<s> ... </s>``): a sentence is scored from the zero state fed
``<eos>`` (the model's start-of-line context, standing in for ``<s>``); every token of the
sentence is predicted and then the closing ``<eos>`` (KenLM's ``</s>``), so a sentence of k
tokens has k + 1 predictions.  Unknown tokens are scored as ``<unk>`` (the probability the
model gives ``<unk>``, as KenLM includes OOVs in its total) and counted separately.

    logprob      total log-probability in nats;  log10 = logprob / ln 10
    perplexity   exp(-logprob / predictions)
    bits/char    -logprob / ln 2 / characters, counting each line's newline as a character

Shapes: N sentences, T time, V vocabulary.
"""

from __future__ import annotations

import math

import numpy as np

from .. import _checks
from ..data.tokenize import split_lines
from ..data.vocab import Vocab


def _exp(x: float) -> float:
    """exp(x), inf where it overflows a float (a perplexity past 1.8e308 is infinite)."""
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def _encode_lines(vocab: Vocab, tokenizer, text: str):
    # The bulk path (rnnkit.data.tokenize): no list of tokens for a whole file.
    ids, unknown = tokenizer.encode(text, vocab, return_unknown=True)
    return None, ids, int(unknown)


# Sentences are scored in arrays of a canonical shape — ``batch_size`` rows (unused rows
# padded) by a length rounded up to a multiple of this — so a sentence's numbers depend on
# nothing but the sentence and ``batch_size``: BLAS and the fused kernels round differently
# for other shapes, and a line must score the same alone, in a file, or on another MPI rank.
# (Within that shape a line's row still moves; OpenBLAS on some CPUs, an AVX2 AMD one,
# rounds a row by its place in the product, so there the numbers agree to float32 rounding.)
LENGTH_STEP = 16


def score_sentences(model, vocab: Vocab, tokenizer, sentences, batch_size: int = 64) -> list[dict]:
    """Score each sentence (one line of text each) on its own.

    Returns one dict per sentence: ``text``, ``tokens`` (list, ending with ``<eos>``),
    ``token_logprobs`` (nats, one per token), ``logprob`` (nats), ``log10``, ``perplexity``,
    ``predictions``, ``unknown`` (count of out-of-vocabulary tokens).  The numbers of a
    sentence are the same whatever other sentences are scored with it (for one
    ``batch_size``): to the last bit where the BLAS rounds a row alike wherever it sits,
    else to float32 rounding.
    """
    if isinstance(sentences, (str, bytes)):
        raise TypeError("sentences must be a list of str (one sentence each), got a single "
                        f"{type(sentences).__name__}")
    batch_size = _checks.check_positive_int(batch_size, "batch_size")
    encoded = [_encode_sentence(vocab, tokenizer, s) for s in sentences]
    results = [None] * len(encoded)
    # Sentences of one rounded length share batches; the input order is kept within them.
    shape_of = [-(-len(e[2]) // LENGTH_STEP) * LENGTH_STEP for e in encoded]
    for T in sorted(set(shape_of)):
        group = [i for i, t in enumerate(shape_of) if t == T]
        for start in range(0, len(group), batch_size):
            chunk = group[start: start + batch_size]
            x = np.full((batch_size, T), vocab.eos_id, dtype=np.int64)
            y = np.full((batch_size, T), vocab.eos_id, dtype=np.int64)
            for n, i in enumerate(chunk):
                ids = encoded[i][2]
                x[n, 1: len(ids)] = ids[:-1]  # <eos> then the tokens; padding after is causal-safe
                y[n, : len(ids)] = ids
            got = _target_log_probs(model, x, y)
            for n, i in enumerate(chunk):
                results[i] = _sentence_result(got[n], *encoded[i])
    return results


def _encode_sentence(vocab: Vocab, tokenizer, s):
    if not isinstance(s, str):
        raise TypeError(f"a sentence must be a str, got {type(s).__name__}")
    if "\n" in s.strip("\n") or "\r" in s.strip("\r\n"):
        raise ValueError("score takes one sentence per text; a text holds a line break")
    tokens = tokenizer.tokenize(s.rstrip("\r\n"))
    if not tokens:  # word level drops a line with no word: it is still a sentence
        tokens = [vocab.token(vocab.eos_id)]
    ids, unknown = vocab.encode(tokens, return_unknown=True)
    return s, tokens, np.asarray(ids, dtype=np.int64), int(unknown)


def _target_log_probs(model, x, y) -> np.ndarray:
    """log P(y | x) (N, T) float64: without the (N, T, V) table where the model can."""
    if hasattr(model, "target_log_probs"):
        return model.target_log_probs(x, y)[0]
    lp, _ = model.log_probs(x)
    return np.take_along_axis(lp, y[..., None], axis=-1)[..., 0].astype(np.float64)


def _sentence_result(got, s, tokens, ids, unknown) -> dict:
    """The score of one sentence from its targets' log-probabilities got (T,)."""
    tok_lp = got[: len(ids)].astype(np.float64)
    total = float(tok_lp.sum())
    return {"text": s, "tokens": list(tokens), "token_logprobs": [float(v) for v in tok_lp],
            "logprob": total, "log10": total / math.log(10),
            "perplexity": _exp(-total / len(ids)), "predictions": len(ids), "unknown": unknown}


def evaluate_ids(model, ids: np.ndarray, eos_id: int, streams: int = 1, seq_len: int = 256) -> float:
    """Total log-probability (nats) of token ids (M,) read from an ``<eos>`` context, as
    ``streams`` contiguous pieces in parallel with the state carried across chunks of
    ``seq_len``; see :func:`evaluate_text`."""
    streams = _checks.check_positive_int(streams, "streams")
    seq_len = _checks.check_positive_int(seq_len, "seq-len")
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size == 0:
        raise ValueError("the text to evaluate holds no token")
    inputs = np.concatenate([[eos_id], ids[:-1]])
    M = ids.size
    S = min(streams, M)
    per = -(-M // S)  # ceil: each stream's length, the last one padded and masked
    pad = per * S - M
    x = np.concatenate([inputs, np.full(pad, eos_id)]).reshape(S, per)
    y = np.concatenate([ids, np.full(pad, eos_id)]).reshape(S, per)
    valid = np.concatenate([np.ones(M, bool), np.zeros(pad, bool)]).reshape(S, per)
    # Every stream but the first starts at a fresh <eos> context, like a sentence.
    x[1:, 0] = eos_id
    total = 0.0
    state = None
    for t0 in range(0, per, seq_len):
        yy = y[:, t0 : t0 + seq_len]
        if hasattr(model, "target_log_probs"):  # only the targets': no (N, T, V) table
            got, state = model.target_log_probs(x[:, t0 : t0 + seq_len], yy, state)
        else:
            lp, state = model.log_probs(x[:, t0 : t0 + seq_len], state)
            got = np.take_along_axis(lp, yy[..., None], axis=-1)[..., 0].astype(np.float64)
        total += float(got[valid[:, t0 : t0 + seq_len]].sum())
    return total


def evaluate_text(model, vocab: Vocab, tokenizer, text: str, streams: int = 1,
                  seq_len: int = 256) -> dict:
    """Whole-text evaluation with the state carried from chunk to chunk.

    The text is read as ``streams`` contiguous pieces in parallel (1 = exactly one pass
    from the start; more is faster on long files, each piece then starts from the zero
    state).  Returns ``tokens`` (predictions), ``nats_per_token``, ``perplexity``,
    ``bits_per_char``, ``logprob``, ``log10``, ``characters``, ``unknown``.
    """
    tokens, ids, unknown = _encode_lines(vocab, tokenizer, text)
    total = evaluate_ids(model, ids, vocab.eos_id, streams, seq_len)
    M = ids.size
    chars = sum(len(line) + 1 for line in split_lines(text))
    nats = -total / M
    return {
        "tokens": int(M),
        "nats_per_token": nats,
        "perplexity": _exp(nats),
        "bits_per_char": -total / math.log(2) / max(chars, 1),
        "logprob": total,
        "log10": total / math.log(10),
        "characters": int(chars),
        "unknown": unknown,
    }
