"""Text generation from a language model: sampling (temperature, top-k, top-p), greedy and
beam search, as text wrappers around :mod:`rnnkit.decode`.  Every sample starts from the zero state fed ``<eos>`` — the model's
"start of a line" — followed by the prime text, exactly as :mod:`rnnkit.lm.score` scores.

Shapes: N samples (or beams), V vocabulary.
"""

from __future__ import annotations

import numpy as np

from .. import _checks, decode
from ..data.vocab import Vocab
from ..decode import draw, filter_logits  # noqa: F401  (the sampler, under its old names)


def check_sampling_args(temperature=1.0, top_k=None, top_p=None, length=0, num=1):
    try:
        temperature = float(temperature)
    except (TypeError, ValueError):
        raise TypeError(f"temperature must be a number, got {temperature!r}") from None
    if not temperature > 0 or not np.isfinite(temperature):
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if top_k is not None:
        top_k = _checks.check_positive_int(top_k, "top-k")
    if top_p is not None:
        if isinstance(top_p, (str, bytes, bool)):
            raise TypeError(f"top-p must be a number, got {top_p!r}")
        try:
            top_p = float(top_p)
        except (TypeError, ValueError):
            raise TypeError(f"top-p must be a number, got {top_p!r}") from None
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top-p must lie in (0, 1], got {top_p}")
    length = _checks.check_positive_int(length, "length", minimum=0)
    num = _checks.check_positive_int(num, "num")
    return temperature, top_k, top_p, length, num


def prime_ids(vocab: Vocab, tokenizer, prime: str) -> np.ndarray:
    """``<eos>`` followed by the prime's tokens; a token outside the vocabulary is an error
    (a sample cannot continue from a context the model has never seen)."""
    if not isinstance(prime, str):
        raise TypeError(f"prime must be a str, got {type(prime).__name__}")
    tokens = tokenizer.tokenize(prime) if prime else []
    # The tokenizer closes every line with <eos>; a prime that does not end with a line
    # break is continued on its last line.
    if tokens and not prime.endswith(("\n", "\r")):
        tokens = tokens[:-1]
    unknown = [t for t in tokens if t not in vocab]
    if unknown:
        shown = ", ".join(repr(t) for t in dict.fromkeys(unknown))
        raise ValueError(f"prime text has tokens outside the model's vocabulary: {shown}")
    return np.array([vocab.eos_id] + [vocab.id(t) for t in tokens], dtype=np.int64)


# Primes up to this many tokens run through the generation step itself, token by token: the
# sequence forward would load (and on a cold cache compile) the sequence kernels for a few
# tokens — ~0.4 s of a warm 200-character `rnnkit sample`.
PRIME_BY_STEPS = 64


def _start(model, vocab: Vocab, tokenizer, prime: str, N: int, threads=1):
    """``(step, log-probabilities (N, V) of the first token, state)`` after the prime;
    ``threads`` as in :meth:`LanguageModel.stepper`."""
    ids = prime_ids(vocab, tokenizer, prime)
    step = model.stepper(threads)
    if ids.size <= PRIME_BY_STEPS:
        state = None
        for t in ids:
            lp, state = step(np.full(N, t, dtype=np.int64), state)
        return step, lp, state
    lp, state = model.log_probs(np.broadcast_to(ids, (N, ids.size)).copy())
    return step, lp[:, -1], state


def sample(model, vocab: Vocab, tokenizer, prime: str = "", length: int = 200,
           temperature: float = 1.0, top_k=None, top_p=None, num: int = 1, seed=None,
           stop_at_eos: bool = True, threads=1) -> list[str]:
    """``num`` texts, each the prime followed by up to ``length`` sampled tokens.

    With ``stop_at_eos`` a sample ends at its first ``<eos>`` (the end of a line/sentence).
    ``threads``: of each token's step (:meth:`LanguageModel.stepper`; "auto" for long jobs).
    """
    temperature, top_k, top_p, length, num = check_sampling_args(
        temperature, top_k, top_p, length, num)
    if isinstance(seed, np.random.Generator):
        rng = seed
    else:
        if seed is not None:
            _checks.check_positive_int(seed, "seed", minimum=0)
        rng = np.random.default_rng(seed)
    step, lp, state = _start(model, vocab, tokenizer, prime, num, threads)
    hyps = decode.sample(step, lp, state, rng, vocab.eos_id, length, temperature=temperature,
                         top_k=top_k, top_p=top_p, stop_at_eos=stop_at_eos)
    return [prime + tokenizer.detokenize(vocab.decode(np.array(h.tokens, dtype=np.int64)))
            for h in hyps]


def greedy(model, vocab: Vocab, tokenizer, prime: str = "", length: int = 200):
    """The greedy continuation: argmax at every step, until ``<eos>`` or ``length`` tokens.

    Returns ``(token ids (k,), total log-probability in nats)``.
    """
    length = _checks.check_positive_int(length, "length", minimum=0)
    return _closed(decode.greedy(*_start(model, vocab, tokenizer, prime, 1), vocab.eos_id,
                                 length)[0], vocab)


def _closed(h: decode.Hypothesis, vocab: Vocab):
    """``(token ids (k,) ending with <eos> when the text ended, log-probability)``."""
    ids = h.tokens + ([vocab.eos_id] if h.ended else [])
    return np.array(ids, dtype=np.int64), h.logprob


def beam_search(model, vocab: Vocab, tokenizer, prime: str = "", beam_width: int = 5,
                length: int = 200, length_penalty: float = 0.0):
    """The most likely continuation by beam search.

    A hypothesis ends at ``<eos>`` or after ``length`` tokens; finished ones are ranked by
    log-probability / (tokens ** length_penalty), the tokens counting the closing ``<eos>``
    (0 = plain log-probability; :func:`rnnkit.decode.beam_search`).  Width 1 is exactly
    :func:`greedy`.
    Returns ``(token ids (k,), total log-probability in nats)``.
    """
    beam_width = _checks.check_positive_int(beam_width, "beam width")
    length = _checks.check_positive_int(length, "length", minimum=0)
    try:
        length_penalty = float(length_penalty)
    except (TypeError, ValueError):
        raise TypeError(f"length_penalty must be a number, got {length_penalty!r}") from None
    if not np.isfinite(length_penalty):
        raise ValueError(f"length_penalty must be finite, got {length_penalty}")
    step, lp, state = _start(model, vocab, tokenizer, prime, 1)
    return _closed(decode.beam_search(step, lp, state, vocab.eos_id, length, beam_width,
                                      length_penalty)[0], vocab)
