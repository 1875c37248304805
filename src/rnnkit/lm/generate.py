"""Text generation from a language model: sampling (temperature, top-k, top-p), greedy and
beam search.  Every sample starts from the zero state fed ``<eos>`` — the model's
"start of a line" — followed by the prime text, exactly as :mod:`rnnkit.lm.score` scores.

Shapes: N samples (or beams), V vocabulary.
"""

from __future__ import annotations

import numpy as np

from .. import _checks
from ..data.vocab import Vocab


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


def filter_logits(logp: np.ndarray, temperature: float, top_k=None, top_p=None) -> np.ndarray:
    """Probabilities (N, V) from log-probabilities after temperature, top-k and top-p (nucleus)."""
    z = logp.astype(np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    V = p.shape[1]
    if top_k is not None and top_k < V:
        kth = -np.partition(-p, top_k - 1, axis=1)[:, top_k - 1 : top_k]
        p = np.where(p >= kth, p, 0.0)
    p /= p.sum(axis=1, keepdims=True)
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-p, axis=1, kind="stable")
        sorted_p = np.take_along_axis(p, order, axis=1)
        cum = np.cumsum(sorted_p, axis=1)
        # Keep the smallest prefix whose mass reaches top_p (always at least one token); the
        # tolerance keeps a prefix summing to top_p up to rounding from pulling in one more.
        keep_sorted = (cum - sorted_p) < top_p - 1e-12
        keep = np.zeros_like(keep_sorted)
        np.put_along_axis(keep, order, keep_sorted, axis=1)
        p = np.where(keep, p, 0.0)
        p /= p.sum(axis=1, keepdims=True)
    return p


def draw(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One index per row of probabilities p (N, V), by inverse CDF of one uniform draw per row."""
    cum = np.cumsum(p, axis=1)
    u = rng.random(p.shape[0]) * cum[:, -1]
    idx = (cum <= u[:, None]).sum(axis=1)
    return np.minimum(idx, p.shape[1] - 1)


def _feed(model, ids: np.ndarray, N: int):
    """State after reading ids (T,) in N identical rows, and the last step's log-probs (N, V)."""
    lp, state = model.log_probs(np.broadcast_to(ids, (N, ids.size)).copy())
    return lp[:, -1], state


def sample(model, vocab: Vocab, tokenizer, prime: str = "", length: int = 200,
           temperature: float = 1.0, top_k=None, top_p=None, num: int = 1, seed=None,
           stop_at_eos: bool = True) -> list[str]:
    """``num`` texts, each the prime followed by up to ``length`` sampled tokens.

    With ``stop_at_eos`` a sample ends at its first ``<eos>`` (the end of a line/sentence).
    """
    temperature, top_k, top_p, length, num = check_sampling_args(
        temperature, top_k, top_p, length, num)
    if isinstance(seed, np.random.Generator):
        rng = seed
    else:
        if seed is not None:
            _checks.check_positive_int(seed, "seed", minimum=0)
        rng = np.random.default_rng(seed)
    ids = prime_ids(vocab, tokenizer, prime)
    lp, state = _feed(model, ids, num)
    step = model.stepper()
    out = np.zeros((num, length), dtype=np.int64)
    done = np.zeros(num, dtype=bool)
    ends = np.full(num, length)
    for t in range(length):
        nxt = draw(filter_logits(lp, temperature, top_k, top_p), rng)
        out[:, t] = nxt
        if stop_at_eos:
            newly = (~done) & (nxt == vocab.eos_id)
            ends[newly] = t
            done |= newly
            if done.all():
                break
        if t + 1 < length:
            lp, state = step(nxt, state)
    texts = []
    for n in range(num):
        tokens = vocab.decode(out[n, : ends[n]])
        texts.append(prime + tokenizer.detokenize(tokens))
    return texts


def greedy(model, vocab: Vocab, tokenizer, prime: str = "", length: int = 200):
    """The greedy continuation: argmax at every step, until ``<eos>`` or ``length`` tokens.

    Returns ``(token ids (k,), total log-probability in nats)``.
    """
    length = _checks.check_positive_int(length, "length", minimum=0)
    lp, state = _feed(model, prime_ids(vocab, tokenizer, prime), 1)
    step = model.stepper()
    ids, total = [], 0.0
    for _ in range(length):
        nxt = int(np.argmax(lp[0]))
        total += float(lp[0, nxt])
        ids.append(nxt)
        if nxt == vocab.eos_id:
            break
        lp, state = step(np.array([nxt]), state)
    return np.array(ids, dtype=np.int64), total


def _take_state(state, idx):
    if isinstance(state, tuple):
        return tuple(s[:, idx] for s in state)
    return state[:, idx]


def beam_search(model, vocab: Vocab, tokenizer, prime: str = "", beam_width: int = 5,
                length: int = 200, length_penalty: float = 0.0):
    """The most likely continuation by beam search.

    A hypothesis ends at ``<eos>`` or after ``length`` tokens; finished ones are ranked by
    log-probability / (tokens ** length_penalty) (0 = plain log-probability).  The search
    stops when no open beam can still beat the best finished one (exact for
    length_penalty = 0), so width 1 is exactly :func:`greedy`.
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
    lp, state = _feed(model, prime_ids(vocab, tokenizer, prime), 1)
    step = model.stepper()
    beams = [[]]
    scores = np.zeros(1)
    finished = []  # (rank score, total, ids)

    def rank(total, n):
        return total / (max(n, 1) ** length_penalty) if length_penalty else total

    for t in range(length):
        V = lp.shape[1]
        cand = (scores[:, None] + lp.astype(np.float64)).reshape(-1)
        k = min(beam_width, cand.size)
        top = np.argpartition(-cand, k - 1)[:k]
        top = top[np.argsort(-cand[top], kind="stable")]
        new_beams, new_scores, keep = [], [], []
        for flat in top:
            b, tok = divmod(int(flat), V)
            ids = beams[b] + [tok]
            if tok == vocab.eos_id or t == length - 1:
                finished.append((rank(cand[flat], len(ids)), float(cand[flat]), ids))
            else:
                new_beams.append(ids)
                new_scores.append(cand[flat])
                keep.append(b)
        if finished and length_penalty == 0:
            best = max(f[0] for f in finished)
            # Log-probabilities only fall: an open beam below the best finished one is done.
            alive = [i for i, s in enumerate(new_scores) if s > best]
            new_beams = [new_beams[i] for i in alive]
            new_scores = [new_scores[i] for i in alive]
            keep = [keep[i] for i in alive]
        if not new_beams:
            break
        beams, scores = new_beams, np.array(new_scores)
        state = _take_state(state, np.array(keep))
        lp, state = step(np.array([b[-1] for b in beams]), state)
    if not finished:
        return np.zeros(0, dtype=np.int64), 0.0
    _, total, ids = max(finished, key=lambda f: f[0])
    return np.array(ids, dtype=np.int64), total
