"""Interpolated modified Kneser-Ney estimation (Chen & Goodman 1998), written out with NumPy.

The text is read the way rnnkit's neural models read it: word tokens from
:class:`~rnnkit.data.WordTokenizer`, one sentence per line closed by ``<eos>`` (ARPA's
``</s>``), words outside the :class:`~rnnkit.data.Vocab` mapped to ``<unk>``.  Each sentence
is preceded by one ``<s>`` (the context the neural models get from the ``<eos>`` before it).

For n-gram orders n = 1..N (a gram g = h w: context h, word w):

* counts a(g): raw counts at the highest order and for grams that start with ``<s>`` (nothing
  can precede them); otherwise the continuation count |{v : c(v g) > 0}| — a word's lower-order
  weight is how many contexts it follows, not how often it occurs (the Kneser-Ney idea);
* three discounts per order from the counts-of-counts t_k of a (k = 1..4):
  Y = t1 / (t1 + 2 t2), D1 = 1 - 2Y t2/t1, D2 = 2 - 3Y t3/t2, D3+ = 3 - 4Y t4/t3;
* p(w | h) = (a(hw) - D(a(hw))) / sum_v a(hv) + gamma(h) p(w | h'), with h' = h minus its first
  word and gamma(h) = (D1 N1(h.) + D2 N2(h.) + D3+ N3+(h.)) / sum_v a(hv), the mass the
  discounts took; the unigrams are interpolated with the uniform distribution over the
  vocabulary (``<unk>`` and ``</s>`` included, ``<s>`` excluded).

The result is stored in backoff form (ARPA): for every seen gram its interpolated log10
probability, and for every seen context log10 gamma(h) as its backoff weight — for an unseen
h w, p(w | h) = gamma(h) p(w | h') exactly, which is what an ARPA reader computes.  These are
the estimates KenLM's ``lmplz`` makes (without its pruning options).

Grams are handled as rows of an (k, n) int array; sorting their big-endian bytes sorts them
lexicographically, so every grouping (by context, by suffix) is a sort and a search.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .._checks import check_positive_int
from ..data.vocab import Vocab

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
MAX_ORDER = 9


@dataclass
class NGramModel:
    """An n-gram model in backoff form, over ``words`` (W,): id 0 is ``<s>``.

    ``grams[n-1]`` (k_n, n) int32 rows sorted lexicographically, ``logp[n-1]`` (k_n,) log10
    probabilities and ``logbow[n-1]`` (k_n,) log10 backoff weights (0 where none).
    ``options`` records the tokenizer settings (written to the ARPA header).
    """

    words: list[str]
    grams: list[np.ndarray]
    logp: list[np.ndarray]
    logbow: list[np.ndarray]
    options: dict = field(default_factory=dict)
    discounts: list = field(default_factory=list)

    @property
    def order(self) -> int:
        return len(self.grams)

    def __post_init__(self):
        self._index = None

    def index(self) -> list[dict]:
        """Per order, a dict gram tuple -> (log10 p, log10 bow) for queries (built once)."""
        if self._index is None:
            self._index = [
                {tuple(g): (float(p), float(b)) for g, p, b in zip(G.tolist(), P, B)}
                for G, P, B in zip(self.grams, self.logp, self.logbow)
            ]
        return self._index


def _keys(rows: np.ndarray) -> np.ndarray:
    """Rows (k, n) of non-negative ints -> (k,) byte strings that sort like the rows."""
    k, n = rows.shape
    be = np.ascontiguousarray(rows, dtype=">i4")
    return be.view(np.dtype((np.void, 4 * n))).reshape(k)


def _unique_rows(rows: np.ndarray):
    """Sorted unique rows and their counts."""
    if rows.shape[0] == 0:
        return rows.astype(np.int32), np.zeros(0, np.int64)
    keys, counts = np.unique(_keys(rows), return_counts=True)
    n = rows.shape[1]
    uniq = np.frombuffer(keys.tobytes(), dtype=">i4").reshape(-1, n).astype(np.int32)
    return uniq, counts.astype(np.int64)


def _find(table: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Index in the sorted unique ``table`` of each of ``rows`` (all must be present)."""
    tk = _keys(table)
    rk = _keys(rows)
    pos = np.searchsorted(tk, rk)
    pos = np.minimum(pos, len(tk) - 1)
    if len(rk) and not np.array_equal(tk[pos], rk):
        raise AssertionError("n-gram tables are inconsistent (a suffix or context is missing)")
    return pos


def _discounts(a: np.ndarray) -> tuple[float, float, float]:
    """(D1, D2, D3+) from the counts-of-counts of ``a``.

    Chen & Goodman's estimates need t1..t4 > 0; on tiny texts where one is missing the
    estimate falls back to the single Kneser-Ney discount Y (or 0.5), and D_k is kept in
    [0.01, k]: no discounted count goes negative, and some mass is always left for backing
    off (else an unseen word would get probability 0).
    """
    t = [int(np.count_nonzero(a == k)) for k in (1, 2, 3, 4)]
    Y = t[0] / (t[0] + 2 * t[1]) if t[0] + 2 * t[1] > 0 else 0.5
    if all(t):
        d = [1 - 2 * Y * t[1] / t[0], 2 - 3 * Y * t[2] / t[1], 3 - 4 * Y * t[3] / t[2]]
    else:
        d = [Y, Y, Y]
    return tuple(float(min(max(v, 0.01), k)) for k, v in zip((1, 2, 3), d))


def sentence_ids(text: str, vocab: Vocab, tokenizer) -> list[np.ndarray]:
    """Each line of ``text`` as word ids ending with the id of ``</s>`` (no ``<s>``).

    Ids are the model's: 0 ``<s>``, then ``vocab``'s ids (``<eos>`` is ``</s>``); a word
    spelled ``<s>`` or ``</s>`` in the text is ``<unk>`` (ARPA reserves those names).
    """
    tokens = tokenizer.tokenize(text)
    ids = vocab.encode(tokens)
    for reserved in (BOS, EOS):
        if reserved in vocab:
            ids[ids == vocab.id(reserved)] = vocab.unk_id
    ends = np.flatnonzero(ids == vocab.eos_id)
    return np.split(ids, ends[:-1] + 1) if ends.size else []


def words_of(vocab: Vocab) -> list[str]:
    """The model's word list in id order: ``<pad>`` becomes ``<s>``, ``<eos>`` ``</s>``."""
    words = vocab.tokens
    words[vocab.pad_id] = BOS
    words[vocab.eos_id] = EOS
    # A literal "<s>" / "</s>" word never occurs (sentence_ids maps it to <unk>); its slot
    # keeps a unique name nobody can type in ARPA so the id order stays the vocabulary's.
    for i, w in enumerate(words):
        if i not in (vocab.pad_id, vocab.eos_id) and w in (BOS, EOS):
            words[i] = f"<reserved-{i}>"
    return words


def train_kneser_ney(sentences: list[np.ndarray], vocab: Vocab, order: int,
                     options: dict | None = None) -> NGramModel:
    """Estimate an interpolated modified Kneser-Ney model of ``order`` from sentences of ids.

    ``sentences``: arrays of ids ending with ``vocab.eos_id`` (see :func:`sentence_ids`).
    The method's steps in order: raw counts, adjusted (continuation) counts, discounts and
    interpolated probabilities, back-off weights, the full unigram table.
    """
    N = check_positive_int(order, "order")
    if N > MAX_ORDER:
        raise ValueError(f"order must be <= {MAX_ORDER}, got {N}")
    sentences = [s for s in sentences if len(s)]
    if not sentences:
        raise ValueError("the training text holds no sentence")
    W = len(vocab)
    raw = _raw_counts(sentences, N)
    adjusted = _adjusted_counts(raw)
    uniform = 1.0 / (W - 1)  # every word but <s>: <pad>'s slot is <s>
    discounts, logp, gammas_of = _interpolate(raw, adjusted, uniform)
    grams_out = [g for g, _ in raw]
    logbow = _backoffs(grams_out, gammas_of)
    _full_unigrams(grams_out, logp, logbow, gammas_of, W, uniform)
    return NGramModel(words_of(vocab), grams_out, logp, logbow, dict(options or {}), discounts)


def _raw_counts(sentences, N) -> list:
    """Per order n: (sorted unique n-grams (g, n), their counts (g,)), each sentence read as
    <s> w1 .. wk </s>."""
    lens = np.array([len(s) + 1 for s in sentences], dtype=np.int64)
    stream = np.concatenate([np.concatenate([[0], s]) for s in sentences]).astype(np.int32)
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
    off = np.arange(stream.size) - np.repeat(starts, lens)  # position within its sentence
    raw = []
    for n in range(1, N + 1):
        end = np.flatnonzero((off >= 1) & (off >= n - 1))  # predicted positions with n-1 words before
        rows = np.stack([stream[end - (n - 1 - j)] for j in range(n)], axis=1)
        raw.append(_unique_rows(rows))
    return raw


def _adjusted_counts(raw) -> list:
    """a(g): the raw count at the highest order and for grams starting with <s>, else the
    number of distinct words seen to the gram's left."""
    N = len(raw)
    adjusted = []
    for n in range(1, N + 1):
        grams, counts = raw[n - 1]
        if n == N:
            a = counts.copy()
        else:
            suffixes, left = _unique_rows(raw[n][0][:, 1:])  # distinct left extensions of each suffix
            a = np.zeros(len(grams), np.int64)
            a[_find(grams, suffixes)] = left
            bos = grams[:, 0] == 0
            a[bos] = counts[bos]
        adjusted.append(a)
    return adjusted


def _interpolate(raw, adjusted, uniform):
    """Per order: the three discounts, log10 of the interpolated probabilities (aligned with
    the grams) and (contexts (c, n-1), gamma (c,)) for the back-off weights."""
    discounts, logp, gammas_of = [], [], []
    p_lower = None  # probabilities of the order below, aligned with its grams
    for n in range(1, len(raw) + 1):
        grams, a = raw[n - 1][0], adjusted[n - 1]
        D = _discounts(a)
        discounts.append(D)
        d = np.where(a >= 3, D[2], np.where(a == 2, D[1], D[0]))
        # grams sharing a context are contiguous: group boundaries on the first n-1 columns
        if n == 1:
            group = np.zeros(len(grams), np.int64)
            ctx = np.zeros((1, 0), np.int32)
        else:
            ck = _keys(grams[:, :-1])
            new = np.concatenate([[True], ck[1:] != ck[:-1]])
            group = np.cumsum(new) - 1
            ctx = grams[new, :-1]
        denom = np.bincount(group, weights=a)
        gamma = np.bincount(group, weights=d) / denom
        u = (a - d) / denom[group]
        if n == 1:
            lower = np.full(len(grams), uniform)
        else:
            lower = p_lower[_find(raw[n - 2][0], grams[:, 1:])]
        p = u + gamma[group] * lower
        gammas_of.append((ctx, gamma))
        logp.append(np.log10(p))
        p_lower = p
    return discounts, logp, gammas_of


def _backoffs(grams_out, gammas_of) -> list:
    """log10 back-off weight of each gram: its gamma as a context of the order above."""
    N = len(grams_out)
    logbow = [np.zeros(len(grams_out[n])) for n in range(N)]
    for n in range(2, N + 1):
        ctx, gamma = gammas_of[n - 1]
        in_table = ctx[:, 0] != 0 if n == 2 else np.ones(len(ctx), bool)
        pos = _find(grams_out[n - 2], ctx[in_table])
        logbow[n - 2][pos] = np.log10(gamma[in_table])
    return logbow


def _full_unigrams(grams_out, logp, logbow, gammas_of, W, uniform) -> None:
    """Unigrams for every vocabulary word (unseen ones get only the uniform share) and <s>,
    in place of the seen ones."""
    g1 = grams_out[0][:, 0]
    full_p = np.full(W, math.log10(gammas_of[0][1][0] * uniform))
    full_p[g1] = logp[0]
    full_b = np.zeros(W)
    full_b[g1] = logbow[0]
    full_p[0] = -99.0  # <s> is never predicted (ARPA convention)
    if len(grams_out) >= 2:
        ctx, gamma = gammas_of[1]
        bos_rows = ctx[:, 0] == 0
        if bos_rows.any():
            full_b[0] = float(np.log10(gamma[bos_rows][0]))
    grams_out[0] = np.arange(W, dtype=np.int32)[:, None]
    logp[0], logbow[0] = full_p, full_b
