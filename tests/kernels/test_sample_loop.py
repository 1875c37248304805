"""Sampling in one compiled call (``LeanStep.sample`` / ``kernels.lmstep.lm_sample``) draws
what :func:`rnnkit.decode.sample`'s step-by-step loop draws.

- ``kernels.sample.pairwise_sum`` is NumPy's row sum bit for bit (the sampler's normaliser);
- ``kernels.sample.draw_row`` is ``decode.draw(decode.filter_logits(...))`` token for token,
  over temperatures, top-k, top-p, ties and a temperature whose division overflows;
- the whole loop gives the same tokens, endings and log-probability totals as the Python
  loop over the same step, for every cell, float32 and float64, several rows, chunked, and
  leaves the generator where the Python loop leaves it (also when every row ends early).
"""

from __future__ import annotations

import numpy as np
import pytest

from rnnkit import decode, kernels
from rnnkit.models.language_model import LanguageModel, LMConfig
from rnnkit.models.lean_step import LeanStep

pytestmark = pytest.mark.skipif(not kernels.available(), reason="numba not installed")


def test_pairwise_sum_is_numpys_row_sum():
    from rnnkit.kernels.sample import pairwise_sum

    rng = np.random.default_rng(0)
    sizes = list(range(1, 270)) + [511, 1000, 1024, 4096, 5001, 100_003]
    differs_from_plain = 0
    for V in sizes:
        p = np.exp(rng.standard_normal((2, V)) * 3)
        ref = np.add.reduce(p, axis=1, keepdims=True)[:, 0]
        for n in range(2):
            got = pairwise_sum(p[n], 0, V)
            assert got == ref[n], V
            differs_from_plain += got != sum(p[n].tolist())
    assert differs_from_plain > 100  # the order matters: a plain loop would not pass
    a = np.arange(20.0)
    assert pairwise_sum(a, 5, 10) == np.add.reduce(a[5:15])


SETTINGS = [dict(temperature=1.0, top_k=None, top_p=None),
            dict(temperature=0.6, top_k=None, top_p=None),
            dict(temperature=2.5, top_k=7, top_p=None),
            dict(temperature=1.0, top_k=1, top_p=None),
            dict(temperature=1.0, top_k=None, top_p=0.3),
            dict(temperature=0.8, top_k=20, top_p=0.9),
            dict(temperature=1.0, top_k=None, top_p=1e-9),
            dict(temperature=1e-300, top_k=None, top_p=None)]  # the division overflows: greedy


@pytest.mark.parametrize("setting", SETTINGS, ids=range(len(SETTINGS)))
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_draw_row_is_the_numpy_sampler(setting, dtype):
    from rnnkit.kernels.sample import draw_row

    rng = np.random.default_rng(1)
    V = 150  # over 128: the normaliser's pairwise halves
    top_k = setting["top_k"] or 0
    top_p = setting["top_p"] if setting["top_p"] is not None else 1.0
    p, cum = np.empty(V), np.empty(V)
    for trial in range(60):
        logits = rng.standard_normal(V) * 3
        if trial % 3 == 0:  # ties, at the top and at the k-th place
            logits[rng.integers(0, V, 12)] = logits.max()
            logits[rng.integers(0, V, 12)] = np.sort(logits)[-8]
        lp = (logits - np.log(np.exp(logits).sum())).astype(dtype)[None]
        u = np.random.default_rng(trial).random(1)
        want = decode.draw(decode.filter_logits(lp, **setting), np.random.default_rng(trial))
        got = draw_row(lp[0], u[0], setting["temperature"], top_k, top_p, p, cum)
        assert got == want[0], trial
        if setting["top_k"] == 1 or setting["temperature"] < 1e-100:
            assert lp[0, got] == lp[0].max()  # greedy (a draw among tied maxima)


@pytest.mark.parametrize("V", [300, 5000])
def test_draw_row_top_p_over_a_word_vocabulary(V):
    """The compiled top-p sorts values, not indices: the same kept mass as the full stable
    argsort (kernels.sample.nucleus against NumPy), and the same token drawn as the NumPy
    sampler, over peaked, Zipfian and flat rows and ties at the top and at the cut."""
    from rnnkit.kernels.sample import _nucleus_sorted, draw_row, nucleus
    rng = np.random.default_rng(V)
    rows = [rng.standard_normal(V) * 4, -1.1 * np.log(rng.permutation(V) + 1.0),
            rng.standard_normal(V) * 1e-3]
    ties = rng.standard_normal(V) * 3
    ties[rng.integers(0, V, 30)] = ties.max()
    ties[rng.integers(0, V, 40)] = np.sort(ties)[-200]
    rows.append(ties)
    p, cum, kept = np.empty(V), np.empty(V), np.empty(V)
    sizes = set()
    for z in rows:
        lp = z - np.log(np.exp(z).sum())
        for top_p in (1e-9, 0.5, 0.95, 0.999999):
            probs = np.exp(lp - lp.max())
            probs /= np.add.reduce(probs)
            order = np.argsort(-probs, kind="stable")
            before = np.cumsum(probs[order]) - probs[order]
            want = np.zeros(V)
            keep = order[(before < top_p - 1e-12) | (np.arange(V) == 0)]
            want[keep] = probs[keep]
            nucleus(probs, top_p, kept)
            np.testing.assert_array_equal(kept, want)
            _nucleus_sorted(probs, top_p, kept)  # the fallback, alone
            np.testing.assert_array_equal(kept, want)
            sizes.add(len(keep))
            for trial in range(5):
                u = np.random.default_rng(trial).random(1)
                ref = decode.draw(decode.filter_logits(lp[None], 1.0, top_p=top_p),
                                  np.random.default_rng(trial))
                assert draw_row(lp, u[0], 1.0, 0, top_p, p, cum) == ref[0]
    assert min(sizes) == 1 and max(sizes) > V // 2


CELLS = [("lstm", {}), ("gru", {}), ("rnn", {}), ("rnn", {"nonlinearity": "relu"})]


def _model(cell, extra, dtype, layers=2, V=31):
    cfg = LMConfig(vocab_size=V, cell=cell, num_layers=layers, hidden_size=12, embed_dim=5,
                   dtype=dtype, **extra)
    return LanguageModel(cfg, seed=3)


def _both(step, lp, st, seed, max_len, **kw):
    """decode.sample through the compiled loop, then through the step-by-step loop (the same
    step without its ``compiled`` attribute), each from a generator seeded alike; and the
    generators' next draws."""
    r1, r2 = np.random.default_rng(seed), np.random.default_rng(seed)
    a = decode.sample(step, lp, st, r1, 4, max_len, **kw)
    b = decode.sample(lambda ids, s: step(ids, s), lp, st, r2, 4, max_len, **kw)
    return a, b, r1.random(), r2.random()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cell,extra", CELLS, ids=["lstm", "gru", "rnn_tanh", "rnn_relu"])
def test_compiled_sampling_equals_the_step_by_step_loop(cell, extra, dtype, monkeypatch):
    monkeypatch.setattr(decode, "SAMPLE_CHUNK", 37)  # several chunks per run
    m = _model(cell, extra, dtype)
    step = m.stepper()
    assert isinstance(step.compiled, LeanStep)
    ended_early = 0
    for i, (N, setting) in enumerate([(1, SETTINGS[0]), (3, SETTINGS[1]), (2, SETTINGS[2]),
                                       (4, SETTINGS[5]), (8, SETTINGS[4])]):
        prime = np.arange(N) % 31
        lp, st = step(prime, None)
        for stop in (True, False):
            a, b, next_a, next_b = _both(step, lp, st, 10 + i, 150, stop_at_eos=stop,
                                         **setting)
            assert [h.tokens for h in a] == [h.tokens for h in b]
            assert [h.ended for h in a] == [h.ended for h in b]
            assert [h.logprob for h in a] == [h.logprob for h in b]  # the same sums
            assert next_a == next_b  # the generator left in the same place
            if stop:
                ended_early += all(h.ended for h in a)
            else:
                assert all(len(h.tokens) == 150 for h in a)
    assert ended_early >= 2  # the early end (and the generator put back) was exercised


def test_every_row_ending_inside_a_chunk_leaves_the_generator_in_place(monkeypatch):
    """Rows that all end at <eos> stop the loop mid-chunk: the uniforms drawn ahead and not
    used are given back, so later draws from the generator are the Python loop's."""
    m = _model("gru", {}, "float32", V=5)  # <eos> (id 4) comes soon in a 5-token vocabulary
    step = m.stepper()
    lp, st = step(np.array([0, 1]), None)
    for chunk in (3, 4096):
        monkeypatch.setattr(decode, "SAMPLE_CHUNK", chunk)
        a, b, next_a, next_b = _both(step, lp, st, 2, 500)
        assert all(h.ended for h in a) and max(len(h.tokens) for h in a) < 100
        assert [h.tokens for h in a] == [h.tokens for h in b]
        assert next_a == next_b


def test_the_compiled_loop_runs_only_where_it_applies(monkeypatch):
    """More rows than LeanStep.max_rows, or the NumPy backend, sample step by step."""
    calls = []
    real = LeanStep.sample
    monkeypatch.setattr(LeanStep, "sample",
                        lambda self, *a, **k: calls.append(a[0].shape[0]) or real(self, *a, **k))
    m = _model("lstm", {}, "float32")
    step = m.stepper()
    for N in (1, LeanStep.max_rows, LeanStep.max_rows + 1):
        lp, st = step(np.zeros(N, dtype=np.int64), None)
        decode.sample(step, lp, st, np.random.default_rng(0), 4, 20)
    assert calls == [1, LeanStep.max_rows]
    m.rnn.backend = "numpy"
    assert m.stepper().compiled is None
