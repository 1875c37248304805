"""Decoding one token at a time over any step function: greedy, sampling, beam search.

Every function here drives a ``step(ids (M,), state) -> (log-probabilities (M, V), state)``
— :meth:`rnnkit.layers.decoder.Decoder.step`, :meth:`LanguageModel.stepper` or anything
with that signature — and knows nothing else of the model.  The caller starts the decoder
(feeds the start symbol, a prime text or an encoder's state) and passes the first
log-probabilities ``logp`` (N, V) with the state after them.  A state is an array
(L, M, H) or a tuple of them with the rows on axis 1 (the recurrent layers' layout).

Conventions, the same for all three:

- ``max_len`` counts generated tokens, the closing ``<eos>`` included; 0 generates nothing.
- A :class:`Hypothesis` holds its tokens *without* the closing ``<eos>``; ``ended`` says
  whether it closed with one, and ``logprob`` (nats) includes that ``<eos>``'s.
- Its length, for the length penalty, counts its tokens and the closing ``<eos>``:
  ``len(tokens) + 1``, also for a hypothesis cut at ``max_len`` (scored as if it closed
  there).
- Beam search ranks finished hypotheses by ``logprob / length ** length_penalty``
  (0 = plain log-probability), compared in log space so no penalty overflows.

Shapes: N rows (sentences, samples), M active rows, V vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Hypothesis:
    """One decoded sequence: tokens without the closing ``<eos>``, total log-probability
    (nats, the ``<eos>`` included when it ended), whether it ended with ``<eos>``."""

    tokens: list = field(default_factory=list)
    logprob: float = 0.0
    ended: bool = False

    @property
    def length(self) -> int:
        """Its tokens and the closing ``<eos>``: ``len(tokens) + 1``."""
        return len(self.tokens) + 1


def take_rows(state, idx):
    """The state of rows ``idx`` (M,): rows are axis 1 of each array."""
    if isinstance(state, tuple):
        return tuple(s[:, idx] for s in state)
    return state[:, idx]


# ---- greedy ---------------------------------------------------------------------------
def greedy(step, logp, state, eos: int, max_len: int) -> list:
    """The most probable token at every step, until ``<eos>`` or ``max_len`` tokens:
    one :class:`Hypothesis` per row of ``logp`` (N, V)."""
    N = logp.shape[0]
    hyps = [Hypothesis() for _ in range(N)]
    done = np.zeros(N, dtype=bool)
    for t in range(int(max_len)):
        nxt = logp.argmax(axis=-1)
        for i in np.flatnonzero(~done):
            tok = int(nxt[i])
            hyps[i].logprob += float(logp[i, tok])
            if tok == eos:
                hyps[i].ended = done[i] = True
            else:
                hyps[i].tokens.append(tok)
        if done.all() or t + 1 == max_len:
            break
        logp, state = step(nxt, state)
    return hyps


# ---- sampling -------------------------------------------------------------------------
def _nucleus_prefix(sorted_p: np.ndarray, top_p: float) -> np.ndarray:
    """Which of the probabilities sorted descending (N, V) top-p keeps: each while the mass
    before it is below top_p.  The tolerance keeps a prefix summing to top_p up to rounding
    from pulling in one more token; the first token always stays, however small top_p is."""
    keep = (np.cumsum(sorted_p, axis=1) - sorted_p) < top_p - 1e-12
    keep[:, 0] = True
    return keep


def _top_p_keep(p: np.ndarray, top_p: float) -> np.ndarray:
    """The tokens (N, V) bool that top-p keeps of probabilities p (N, V): in the stable
    descending order (ties: lower index first), each whose mass before it is below top_p.

    The cumulative sums need the sorted values only, not which tied index sits where, so
    they come from a plain sort of the values (10x faster than the stable argsort at a word
    vocabulary); the kept prefix is then every token above its last value and, of the tokens
    equal to it, the lowest-indexed as many as the prefix holds — the stable order's choice.
    A row whose kept positions are not a prefix (rounding could, in principle) or that holds
    a NaN goes through the stable argsort itself."""
    N, V = p.shape
    s = -np.sort(-p, axis=1)  # descending values, the stable order's exactly
    keep_sorted = _nucleus_prefix(s, top_p)
    m = keep_sorted.sum(axis=1)
    if np.isnan(s).any() or not np.array_equal(keep_sorted, np.arange(V) < m[:, None]):
        order = np.argsort(-p, axis=1, kind="stable")
        keep = np.zeros_like(keep_sorted)
        np.put_along_axis(keep, order, _nucleus_prefix(np.take_along_axis(p, order, axis=1),
                                                        top_p), axis=1)
        return keep
    cut = s[np.arange(N), m - 1][:, None]  # the last kept value
    above = p > cut
    ties = p == cut
    need = (m - above.sum(axis=1))[:, None]  # how many of the tied tokens the prefix holds
    return above | (ties & (np.cumsum(ties, axis=1) <= need))


def filter_logits(logp: np.ndarray, temperature: float, top_k=None, top_p=None) -> np.ndarray:
    """Probabilities (N, V) float64 from log-probabilities after temperature, top-k and
    top-p (nucleus) filtering.

    A temperature so small that ``logp / temperature`` overflows is the limit it tends to:
    all the mass on the most probable token(s), i.e. greedy.  Top-p keeps the smallest
    prefix of the sorted tokens whose mass reaches ``top_p``, never less than the most
    probable token.
    """
    z = np.array(logp, dtype=np.float64)  # its own copy, worked on in place
    # (the ufuncs' own reduce: what .max / .sum call, without their Python wrappers, which
    # cost as much as the arithmetic on one row of a character vocabulary)
    z -= np.maximum.reduce(z, axis=1, keepdims=True)
    if temperature != 1.0:  # x / 1 is x: divide only where it changes something
        with np.errstate(over="ignore", under="ignore"):  # -inf, then exp -> 0: the limit
            z /= temperature
    p = np.exp(z, out=z)
    V = p.shape[1]
    if top_k is not None and top_k < V:
        kth = -np.partition(-p, top_k - 1, axis=1)[:, top_k - 1: top_k]
        p = np.where(p >= kth, p, 0.0)
    p /= np.add.reduce(p, axis=1, keepdims=True)
    if top_p is not None and top_p < 1.0:
        keep = _top_p_keep(p, top_p)
        p = np.where(keep, p, 0.0)
        p /= p.sum(axis=1, keepdims=True)
    return p


def draw(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One index per row of probabilities p (N, V), by inverse CDF of one uniform draw per
    row from ``rng`` (the one sampler of rnnkit)."""
    cum = p.cumsum(axis=1)
    u = rng.random(p.shape[0])
    u *= cum[:, -1]
    idx = np.add.reduce(cum <= u[:, None], axis=1, dtype=np.intp)
    return np.minimum(idx, p.shape[1] - 1)


def sample(step, logp, state, rng: np.random.Generator, eos: int, max_len: int, *,
           temperature: float = 1.0, top_k=None, top_p=None, stop_at_eos: bool = True) -> list:
    """Each token drawn from the filtered distribution and fed back: one
    :class:`Hypothesis` per row of ``logp`` (N, V).

    Every step draws one uniform number per row (rows already ended included), so the
    same ``rng`` state gives the same samples whatever the rows do.  Without
    ``stop_at_eos`` a row goes on past ``<eos>`` (its tokens then include them).

    A ``step`` may carry ``step.compiled``: an object with ``max_rows`` and a ``sample``
    method that runs this same loop in compiled code (:class:`rnnkit.models.lean_step.
    LeanStep`).  It is given the uniforms this loop would draw, ``rng.random(N)`` a step, and
    ``rng`` is left where this loop would leave it: the same samples either way.
    """
    N = logp.shape[0]
    max_len = int(max_len)
    records = (np.zeros((N, max_len), dtype=np.int64), np.full(N, max_len),
               np.zeros(N), np.zeros(N, dtype=bool))
    compiled = getattr(step, "compiled", None)
    if compiled is not None and 0 < N <= compiled.max_rows:
        _sample_compiled(compiled, logp, state, rng, eos, max_len, temperature, top_k, top_p,
                         stop_at_eos, records)
    else:
        _sample_steps(step, logp, state, rng, eos, max_len, temperature, top_k, top_p,
                      stop_at_eos, records)
    out, ends, total, done = records
    return [Hypothesis(out[n, : ends[n]].tolist(), float(total[n]), bool(done[n]))
            for n in range(N)]


def _sample_steps(step, logp, state, rng, eos, max_len, temperature, top_k, top_p,
                  stop_at_eos, records):
    """:func:`sample`'s loop, a step function call per token; fills ``records`` (out (N,
    max_len), ends, total, done (N,))."""
    out, ends, total, done = records
    rows = np.arange(logp.shape[0])
    ended = False  # whether any row has ended: until then no mask is needed
    for t in range(max_len):
        nxt = draw(filter_logits(logp, temperature, top_k, top_p), rng)
        out[:, t] = nxt
        got = logp[rows, nxt]
        total += np.where(done, 0.0, got.astype(np.float64)) if ended else got
        if stop_at_eos:
            hit = nxt == eos
            if hit.any():
                newly = hit & ~done
                ends[newly] = t
                done |= newly
                ended = True
                if done.all():
                    break
        if t + 1 < max_len:
            logp, state = step(nxt, state)


# Uniform numbers drawn ahead for the compiled loop: at most this many steps at a time.
SAMPLE_CHUNK = 4096


def _sample_compiled(compiled, logp, state, rng, eos, max_len, temperature, top_k, top_p,
                     stop_at_eos, records):
    """:func:`sample`'s loop in ``compiled.sample``, fed the uniforms :func:`_sample_steps`
    would draw (``rng.random((K, N))`` is K calls of ``rng.random(N)``); when every row ends
    early, ``rng`` is put back and advanced by exactly the uniforms used."""
    N = logp.shape[0]
    done = records[3]
    t = 0
    while t < max_len:
        K = min(max_len - t, SAMPLE_CHUNK)
        saved = rng.bit_generator.state
        u = rng.random((K, N))
        used, logp, state = compiled.sample(logp, state, u, t, max_len, eos, stop_at_eos,
                                            temperature, top_k, top_p, records)
        if used < K:  # every row ended at <eos>
            rng.bit_generator.state = saved
            rng.random((used, N))
            return
        if stop_at_eos and done.all():  # ... at the chunk's last draw
            return
        t += K


# ---- beam search ----------------------------------------------------------------------
def rank_key(logprob: float, length: int, length_penalty: float):
    """Sort key of ``logprob / length ** length_penalty`` (larger is better), in log space.

    For log-probabilities (<= 0) the ratio is ``-exp(log(-logprob) - penalty * log(length))``,
    so comparing ``penalty * log(length) - log(-logprob)`` orders the same way without ever
    computing a power that overflows; the raw log-probability breaks ties.
    """
    if not length_penalty:
        return (logprob, logprob)
    if logprob >= 0.0:
        return (math.inf, logprob)
    return (length_penalty * math.log(length) - math.log(-logprob), logprob)


def _top(flat: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values, largest first; among ties the lower index first
    (like argmax): ``argsort(-flat, stable)[:k]`` without sorting all of a large vocabulary."""
    if k >= flat.size:
        return np.argsort(-flat, kind="stable")[:k]
    kth = np.partition(flat, flat.size - k)[flat.size - k]
    idx = np.flatnonzero(flat >= kth)  # ascending, ties of the k-th value included
    return idx[np.argsort(-flat[idx], kind="stable")][:k]


def beam_search(step, logp, state, eos: int, max_len: int, beam: int,
                length_penalty: float = 0.0) -> list:
    """The most probable sequence of each row of ``logp`` (N, V) by beam search: one
    :class:`Hypothesis` per row.

    Each row keeps at most ``beam`` hypotheses: one that emits ``<eos>`` leaves the beam and
    takes one of its places, so width 1 is :func:`greedy` step for step.  Hypotheses still
    open after ``max_len`` tokens compete as they are.  With ``length_penalty`` 0 a row stops
    as soon as no open hypothesis can beat its best finished one (log-probabilities only
    fall), which never changes the answer.
    """
    N = logp.shape[0]
    owner = np.arange(N)  # the row each active hypothesis belongs to
    hyps = [[] for _ in range(N)]
    scores = np.zeros(N, dtype=np.float64)
    finished = [[] for _ in range(N)]
    for t in range(int(max_len)):
        cand = scores[:, None] + logp.astype(np.float64)  # (M, V)
        V = cand.shape[1]
        parents, new_hyps, new_scores, new_owner = [], [], [], []
        for s in np.unique(owner):
            rows = np.flatnonzero(owner == s)
            flat = cand[rows].reshape(-1)
            top = _top(flat, beam - len(finished[s]))
            kept = []
            for j in top:
                r, v = rows[j // V], int(j % V)
                if v == eos or t + 1 == max_len:
                    ended = v == eos
                    finished[s].append(Hypothesis(hyps[r] + ([] if ended else [v]),
                                                  float(flat[j]), ended))
                else:
                    kept.append((r, v, float(flat[j])))
            if not length_penalty and finished[s]:
                best = max(h.logprob for h in finished[s])
                kept = [k for k in kept if k[2] > best]
            for r, v, score in kept:
                parents.append(r)
                new_hyps.append(hyps[r] + [v])
                new_scores.append(score)
                new_owner.append(s)
        if not parents:
            break
        state = take_rows(state, np.array(parents, dtype=np.int64))
        hyps, scores = new_hyps, np.array(new_scores, dtype=np.float64)
        owner = np.array(new_owner, dtype=np.int64)
        logp, state = step(np.array([h[-1] for h in hyps], dtype=np.int64), state)
    return [max(f, key=lambda h: rank_key(h.logprob, h.length, length_penalty))
            if f else Hypothesis() for f in finished]
