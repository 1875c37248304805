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
