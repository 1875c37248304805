"""rnnkit.decode over a hand-made step function: greedy, sampling, beam search, their one
length convention, and numbers at their limits (tiny temperature and top-p, huge length
penalties)."""

import math
import warnings

import numpy as np
import pytest

from rnnkit import decode

EOS = 0


def table_step(table):
    """A step whose next-token distribution depends only on the last token:
    table (V, V) of probabilities, row = previous token.  The state counts steps."""
    logt = np.log(table)

    def step(ids, state):
        return logt[np.asarray(ids)], state + 1

    return step, logt


# Token 1 is likely first, then <eos> or 2; 2 is followed by <eos> for sure.
TABLE = np.array([[0.10, 0.60, 0.30],
                  [0.55, 0.05, 0.40],
                  [0.98, 0.01, 0.01]])


def start(n=1):
    step, logt = table_step(TABLE)
    return step, np.repeat(logt[[EOS]], n, axis=0), np.zeros((1, n, 1))


def test_greedy_follows_the_argmax_and_counts_the_eos_logprob():
    step, lp, state = start(2)
    hyps = decode.greedy(step, lp, state, EOS, 10)
    assert [h.tokens for h in hyps] == [[1], [1]]
    assert all(h.ended for h in hyps)
    assert hyps[0].logprob == pytest.approx(math.log(0.60) + math.log(0.55), abs=1e-12)
    assert hyps[0].length == 2  # one token and the closing <eos>


def test_greedy_cut_at_max_len_is_not_ended():
    step, lp, state = start()
    h = decode.greedy(step, lp, state, EOS, 1)[0]
    assert h.tokens == [1] and not h.ended and h.logprob == pytest.approx(math.log(0.6))
    assert decode.greedy(step, lp, state, EOS, 0)[0].tokens == []


def test_beam_finds_the_better_sequence_greedy_misses():
    # Greedy: 1 (0.6) then <eos> (0.55) = 0.33.  Beam: 2 (0.3) then <eos> (0.98) = 0.294,
    # 1 then 2 then <eos> = 0.6 * 0.4 * 0.98 = 0.235: greedy is best here ...
    step, lp, state = start()
    best = decode.beam_search(step, lp, state, EOS, 10, beam=3)[0]
    assert best.tokens == [1] and best.logprob == pytest.approx(math.log(0.33))
    # ... but with a length penalty 2 the longer [1, 2] wins: log(0.235)/3^2 > log(0.33)/2^2
    # (a beam of 5, so that finished hypotheses leave it room to get there).
    long = decode.beam_search(step, lp, state, EOS, 10, beam=5, length_penalty=2.0)[0]
    assert long.tokens == [1, 2]
    assert long.logprob == pytest.approx(math.log(0.6 * 0.4 * 0.98))


def test_beam_width_one_is_greedy():
    rng = np.random.default_rng(0)
    table = rng.dirichlet(np.ones(6), size=6)
    step, logt = table_step(table)
    lp = np.repeat(logt[[EOS]], 4, axis=0) + rng.normal(0, 0.5, (4, 6))
    g = decode.greedy(step, lp, np.zeros((1, 4, 1)), EOS, 12)
    b = decode.beam_search(step, lp, np.zeros((1, 4, 1)), EOS, 12, beam=1)
    assert [(h.tokens, h.logprob) for h in g] == [(h.tokens, h.logprob) for h in b]


@pytest.mark.parametrize("penalty", [1e300, -1e300, 1e308, 5e-324, -7.5])
def test_huge_length_penalties_rank_without_overflow(penalty):
    step, lp, state = start()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        best = decode.beam_search(step, lp, state, EOS, 10, beam=5, length_penalty=penalty)[0]
    # A huge positive penalty divides longer hypotheses' log-probabilities by more: the
    # longest finished ones tie and the more probable [1, 2] wins; a negative one favours
    # the shortest (<eos> at once); a denormal one is no penalty.
    assert best.tokens == ([1, 2] if penalty > 1 else [] if penalty < 0 else [1])


def test_rank_key_orders_like_the_ratio():
    pairs = [(-3.0, 2), (-2.0, 1), (-5.0, 4), (-0.5, 3)]
    for alpha in (0.0, 0.5, 1.0, 2.0):
        by_ratio = sorted(pairs, key=lambda p: p[0] / p[1] ** alpha)
        by_key = sorted(pairs, key=lambda p: decode.rank_key(p[0], p[1], alpha))
        assert by_ratio == by_key


def test_a_temperature_like_1e_310_is_greedy_without_warnings():
    logp = np.log(np.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = decode.filter_logits(logp, 1e-310)
    np.testing.assert_array_equal(p, [[0, 1, 0], [1, 0, 0]])


def test_a_tiny_top_p_keeps_the_most_probable_token():
    logp = np.log(np.array([[0.2, 0.5, 0.3]]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = decode.filter_logits(logp, 1.0, top_p=1e-13)
    np.testing.assert_array_equal(p, [[0, 1, 0]])


def test_sampling_is_seeded_and_stops_at_eos():
    step, lp, state = start(50)
    a = decode.sample(step, lp, state, np.random.default_rng(3), EOS, 8)
    b = decode.sample(step, lp, state, np.random.default_rng(3), EOS, 8)
    assert [h.tokens for h in a] == [h.tokens for h in b]
    assert all(EOS not in h.tokens for h in a)
    # 2 is always followed by <eos> (0.98) or ends early by the 0.01 branches: all short.
    assert {h.ended for h in a} == {True}
    # Empirical first-token frequencies follow the table's first row.
    first = [h.tokens[0] if h.tokens else EOS for h in
             decode.sample(step, np.repeat(lp[:1], 4000, 0), np.zeros((1, 4000, 1)),
                           np.random.default_rng(0), EOS, 1)]
    freq = np.bincount(first, minlength=3) / 4000
    np.testing.assert_allclose(freq, TABLE[0], atol=0.03)


# ---- the sampler against the plain statement of its rule ------------------------------
def _plain_probs(logp, temperature, top_k=None, top_p=None):
    """decode.filter_logits written the plain way (new arrays at every line, the division
    always done): the sampler's fast form must give exactly these numbers."""
    z = logp.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    with np.errstate(over="ignore", under="ignore"):
        z = z / temperature
    p = np.exp(z)
    if top_k is not None and top_k < p.shape[1]:
        kth = -np.partition(-p, top_k - 1, axis=1)[:, top_k - 1: top_k]
        p = np.where(p >= kth, p, 0.0)
    p = p / p.sum(axis=1, keepdims=True)
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-p, axis=1, kind="stable")
        sorted_p = np.take_along_axis(p, order, axis=1)
        keep_sorted = (np.cumsum(sorted_p, axis=1) - sorted_p) < top_p - 1e-12
        keep_sorted[:, 0] = True
        keep = np.zeros_like(keep_sorted)
        np.put_along_axis(keep, order, keep_sorted, axis=1)
        p = np.where(keep, p, 0.0)
        p = p / p.sum(axis=1, keepdims=True)
    return p


def _word_rows(V, rng):
    """Log-probability rows over a word vocabulary: peaked (a nucleus of a few dozen),
    Zipfian (a nucleus of thousands), flat (all V), and with ties at the top and at the
    200th value."""
    peaked = rng.standard_normal(V) * 4
    zipf = -1.1 * np.log(rng.permutation(V) + 1.0)
    flat = rng.standard_normal(V) * 1e-3
    ties = rng.standard_normal(V) * 3
    ties[rng.integers(0, V, 30)] = ties.max()
    ties[rng.integers(0, V, 40)] = np.sort(ties)[-min(200, V // 2)]
    z = np.stack([peaked, zipf, flat, ties])
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


@pytest.mark.parametrize("V", [82, 3000, 20_000])
def test_top_p_over_a_word_vocabulary_keeps_exactly_the_sorted_prefix(V):
    """Top-p sorts the values, not the indices, and picks tied tokens by index: the
    probabilities are those of the full stable argsort, bit for bit."""
    rng = np.random.default_rng(V)
    logp = _word_rows(V, rng)
    kept_sizes = set()
    for top_p in (1e-9, 0.3, 0.9, 0.999, 0.999999):
        for temperature, top_k in ((1.0, None), (0.7, None), (1.3, 2000)):
            got = decode.filter_logits(logp, temperature, top_k=top_k, top_p=top_p)
            want = _plain_probs(logp, temperature, top_k, top_p)
            np.testing.assert_array_equal(got, want)
            kept_sizes.update(int(n) for n in (want > 0).sum(axis=1))
    # the cases reach past the first candidates and up to (nearly) the whole vocabulary
    assert min(kept_sizes) == 1 and max(kept_sizes) > V // 2
    logp[1, 7] = np.nan  # a broken row takes the stable argsort itself, and gives its NaNs
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(decode.filter_logits(logp, 1.0, top_p=0.9),
                                      _plain_probs(logp, 1.0, None, 0.9))


def _plain_sample(step, logp, state, rng, eos, max_len, temperature, top_k, top_p, stop):
    N = logp.shape[0]
    rows = [[] for _ in range(N)]
    total = [0.0] * N
    done = [False] * N
    for t in range(max_len):
        p = _plain_probs(logp, temperature, top_k, top_p)
        cum = np.cumsum(p, axis=1)
        u = rng.random(N) * cum[:, -1]
        nxt = np.minimum((cum <= u[:, None]).sum(axis=1), p.shape[1] - 1)
        for n in range(N):
            if done[n]:
                continue
            total[n] += float(logp[n, nxt[n]])
            if stop and nxt[n] == eos:
                done[n] = True
            else:
                rows[n].append(int(nxt[n]))
        if stop and all(done):
            break
        if t + 1 < max_len:
            logp, state = step(nxt, state)
    return [(rows[n], total[n], done[n]) for n in range(N)]


@pytest.mark.parametrize("temperature,top_k,top_p", [
    (1.0, None, None), (0.7, None, None), (1.3, 5, None), (1.0, None, 0.8), (0.5, 7, 0.9),
    (1e-310, None, None)])
@pytest.mark.parametrize("stop", [True, False])
def test_sampler_draws_exactly_what_the_plain_rule_draws(temperature, top_k, top_p, stop):
    """Same seed, same tokens, bit-identical log-probabilities, rows ending at their own
    <eos> — the fast form skips work (the division by 1, masks before any row ends), it
    never changes a number.  float32 log-probabilities, as the models give."""
    V, N = 23, 5
    gen = np.random.default_rng(11)
    table = gen.dirichlet(np.full(V, 0.3), size=V)
    table[:, EOS] = 0.0
    table *= 0.92 / table.sum(axis=1, keepdims=True)
    table[:, EOS] = 0.08  # rows run a while before they end
    logt = np.log(table).astype(np.float32)

    def step(ids, state):
        return logt[np.asarray(ids)], state + 1

    lp0 = logt[gen.integers(1, V, N)]
    got = decode.sample(step, lp0, 0, np.random.default_rng(5), EOS, 40,
                        temperature=temperature, top_k=top_k, top_p=top_p, stop_at_eos=stop)
    want = _plain_sample(step, lp0, 0, np.random.default_rng(5), EOS, 40, temperature, top_k,
                         top_p, stop)
    assert [(h.tokens, h.logprob, h.ended) for h in got] == want
    if stop and top_k is None and top_p is None and temperature >= 0.5:
        assert any(h.ended for h in got)  # the <eos> bookkeeping ran
    if not stop:
        assert all(len(h.tokens) == 40 and not h.ended for h in got)
