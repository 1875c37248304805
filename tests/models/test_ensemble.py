"""Seq2SeqEnsemble: decoding on the mean of the members' probabilities.  The scores beam
search returns are checked against each member's teacher-forced probabilities of the same
output, a one-model ensemble decodes as the model, and members of different kinds (with and
without attention, LSTM and GRU) decode together."""

import numpy as np
import pytest

from rnnkit.data.batching import pad_sequences as pad_batch
from rnnkit.layers.basic import log_softmax
from rnnkit.models import Seq2Seq, Seq2SeqConfig
from rnnkit.models.ensemble import Seq2SeqEnsemble
from rnnkit.models.target import decoder_io


def model(seed, attention="additive", cell="lstm", L=1, bi=True, V=9):
    m = Seq2Seq(Seq2SeqConfig(7, V, embed_dim=4, hidden_size=6, num_layers=L, cell=cell,
                              bidirectional=bi, dtype="float64", attention=attention, seed=seed))
    rng = np.random.default_rng(seed + 100)
    for v in m.params.values():  # sharper than the initial weights: distinct distributions
        v *= 4.0
    m.params["out.bias"][...] = rng.normal(0, 1.0, m.params["out.bias"].shape)
    return m


def source():
    rng = np.random.default_rng(3)
    return pad_batch([rng.integers(3, 7, n) for n in (5, 2, 4)])


def teacher_forced_logp(m, src, sl, outs):
    """log p(output_t | output_<t, src) per row (N, M+1), <eos> included, by teacher forcing."""
    tin, tout, tlen = decoder_io(outs)
    logits, _ = m.forward(src, sl, tin, tlen)
    lp = log_softmax(logits)
    picked = np.take_along_axis(lp, tout[..., None], axis=-1)[..., 0]
    return picked, tlen


MEMBERS = [
    [model(0), model(1)],
    [model(0), model(1, attention="none"), model(2, attention="general", cell="gru", L=2)],
]


@pytest.mark.parametrize("members", MEMBERS, ids=["two-additive", "mixed-three"])
def test_beam_scores_are_the_mean_probability_of_the_members(members):
    src, sl = source()
    ens = Seq2SeqEnsemble(members)
    outs, scores = ens.beam_search(src, sl, 3, max_len=6, return_scores=True)
    per_member = [teacher_forced_logp(m, src, sl, outs) for m in members]
    tlen = per_member[0][1]
    mean_p = np.mean([np.exp(lp) for lp, _ in per_member], axis=0)
    for i, n in enumerate(tlen):
        if len(outs[i]) == 6:  # stopped by max_len: no <eos> scored
            n -= 1
        expect = np.log(mean_p[i, :n]).sum()
        assert scores[i] == pytest.approx(expect, rel=1e-10, abs=1e-10)


@pytest.mark.parametrize("members", MEMBERS, ids=["two-additive", "mixed-three"])
def test_each_step_is_a_normalised_mean(members):
    src, sl = source()
    run = Seq2SeqEnsemble(members)._run()
    logp, state, _ = run.begin(src, sl, 5)
    np.testing.assert_allclose(np.exp(logp).sum(axis=1), 1.0, rtol=0, atol=1e-12)
    firsts = [m._begin(src, sl, 5)[0] for m in members]
    np.testing.assert_allclose(logp, np.log(np.mean(np.exp(firsts), axis=0)), rtol=1e-12)
    nxt, state = run.step(np.array([3, 4, 5]), state)
    np.testing.assert_allclose(np.exp(nxt).sum(axis=1), 1.0, rtol=0, atol=1e-12)


def test_interleaved_runs_keep_their_own_state():
    # two decodings of one ensemble (3 and 2 rows) stepped in turn: each gives, value for
    # value, what a run of its own gives alone
    src, sl = source()
    ens = Seq2SeqEnsemble([model(0), model(2, attention="general", cell="gru", L=2)])
    cases = [(slice(0, 3), np.array([3, 4, 5])), (slice(0, 2), np.array([6, 7]))]
    runs = [ens._run() for _ in cases]
    begun = [run.begin(src[rows], sl[rows], 5) for run, (rows, _) in zip(runs, cases)]
    stepped = [run.step(ids, b[1])[0] for run, b, (_, ids) in zip(runs, begun, cases)]
    for (rows, ids), b, nxt in zip(cases, begun, stepped):
        alone = ens._run()
        lp, st, _ = alone.begin(src[rows], sl[rows], 5)
        np.testing.assert_array_equal(b[0], lp)
        np.testing.assert_array_equal(nxt, alone.step(ids, st)[0])


def test_greedy_follows_the_mean_argmax():
    src, sl = source()
    members = [model(0), model(1)]
    outs = Seq2SeqEnsemble(members).greedy(src, sl, max_len=6)
    # each emitted token is the argmax of the mean distribution at its step
    tin, tout, tlen = decoder_io(outs)
    mean_p = np.mean([np.exp(log_softmax(m.forward(src, sl, tin, tlen)[0])) for m in members],
                     axis=0)
    for i, o in enumerate(outs):
        for t, tok in enumerate(o):
            assert mean_p[i, t].argmax() == tok


def test_one_member_decodes_as_the_model():
    src, sl = source()
    m = model(4, L=2)
    ens = Seq2SeqEnsemble([m])
    assert ens.greedy(src, sl, max_len=7) == m.greedy(src, sl, max_len=7)
    a, sa = ens.beam_search(src, sl, 3, max_len=7, return_scores=True)
    b, sb = m.beam_search(src, sl, 3, max_len=7, return_scores=True)
    assert a == b
    np.testing.assert_array_equal(sa, sb)


def test_identical_members_decode_as_one():
    src, sl = source()
    a, b = model(5), model(5)
    outs, s2 = Seq2SeqEnsemble([a, b]).beam_search(src, sl, 2, max_len=6, return_scores=True)
    one, s1 = a.beam_search(src, sl, 2, max_len=6, return_scores=True)
    assert outs == one
    np.testing.assert_allclose(s2, s1, rtol=1e-12)


def test_bad_members_refused():
    with pytest.raises(ValueError, match="at least one"):
        Seq2SeqEnsemble([])
    with pytest.raises(TypeError, match="Seq2Seq"):
        Seq2SeqEnsemble([model(0), "model"])
    with pytest.raises(ValueError, match="target vocabulary"):
        Seq2SeqEnsemble([model(0), model(1, V=10)])
    with pytest.raises(ValueError, match="beam size"):
        Seq2SeqEnsemble([model(0)]).beam_search(*source(), 0)
