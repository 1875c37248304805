"""Task models learn tiny tasks, treat padding exactly, decode consistently, and rebuild from
their config; beam width 1 is greedy decoding."""

import numpy as np
import pytest

from rnnkit.layers.basic import log_softmax
from rnnkit.models import (ClassifierConfig, ConditionalGenerator, FeedForward, FeedForwardConfig,
                           GeneratorConfig, Seq2Seq, Seq2SeqConfig, SequenceClassifier,
                           SequenceTagger, TaggerConfig)
from rnnkit.models._blocks import config_from_json, pad_batch
from rnnkit.training import confusion_matrix, edit_distance, fit


def random_seqs(rng, n, vocab=(3, 4, 5), lo=1, hi=5):
    return [rng.integers(vocab[0], vocab[-1] + 1, rng.integers(lo, hi + 1)) for _ in range(n)]


# ---- tiny tasks learned to (near) perfection -------------------------------------------------
def test_classifier_learns_contains_token():
    rng = np.random.default_rng(0)
    xs = random_seqs(rng, 200, lo=1, hi=6)
    ys = np.array([int(4 in x) for x in xs])
    m = SequenceClassifier(ClassifierConfig(6, 2, embed_dim=8, hidden_size=16, cell="gru",
                                            bidirectional=True, seed=0))

    def make(idx):
        ids, lengths = pad_batch([xs[i] for i in idx])
        return {"ids": ids, "lengths": lengths, "labels": ys[idx]}
    fit(m, make, len(xs), steps=300, batch_size=32, lr=0.01, seed=0)
    ids, lengths = pad_batch(xs)
    assert np.mean(m.predict(ids, lengths) == ys) >= 0.98


def test_tagger_bidirectional_learns_next_token_tags():
    """Tag = parity of the NEXT token (0 at the end): only a bidirectional tagger can see it."""
    rng = np.random.default_rng(1)
    xs = random_seqs(rng, 200, vocab=(3, 4, 5, 6), lo=2, hi=6)
    ys = [np.array([int(x[t + 1] % 2) if t + 1 < len(x) else 2 for t in range(len(x))]) for x in xs]
    accs = {}
    for bi in (False, True):
        m = SequenceTagger(TaggerConfig(7, 3, embed_dim=8, hidden_size=16, bidirectional=bi,
                                        cell="lstm", seed=0))

        def make(idx):
            ids, lengths = pad_batch([xs[i] for i in idx])
            tags, _ = pad_batch([ys[i] for i in idx])
            return {"ids": ids, "lengths": lengths, "tags": tags}
        fit(m, make, len(xs), steps=250, batch_size=32, lr=0.01, seed=0)
        ids, lengths = pad_batch(xs)
        pred = m.predict(ids, lengths)
        accs[bi] = np.mean(np.concatenate([p == y for p, y in zip(pred, ys)]))
    assert accs[True] >= 0.99
    assert accs[False] < 0.8  # it cannot see the next token


def test_seq2seq_learns_reversal_with_both_decoders():
    rng = np.random.default_rng(2)
    xs = random_seqs(rng, 300, lo=1, hi=4)
    ys = [x[::-1] for x in xs]
    m = Seq2Seq(Seq2SeqConfig(6, 6, embed_dim=8, hidden_size=32, cell="gru", bidirectional=True,
                              max_target_len=10, seed=0))

    def make(idx):
        src, lengths = pad_batch([xs[i] for i in idx])
        return {"src": src, "src_lengths": lengths, "targets": [ys[i] for i in idx]}
    fit(m, make, len(xs), steps=400, batch_size=32, lr=0.01, seed=0)
    src, lengths = pad_batch(xs[:100])
    for out in (m.greedy(src, lengths), m.beam_search(src, lengths, beam_size=3)):
        exact = np.mean([list(o) == list(y) for o, y in zip(out, ys[:100])])
        assert exact >= 0.95


def test_generator_writes_the_sequence_of_its_class():
    seqs = {0: [3, 3, 3], 1: [4, 5], 2: [5, 4, 3, 4]}
    m = ConditionalGenerator(GeneratorConfig(6, num_classes=3, embed_dim=8, hidden_size=16,
                                             cell="lstm", max_len=10, seed=0))
    cond = np.array([0, 1, 2] * 10)
    make = lambda idx: {"cond": cond[idx], "targets": [seqs[c] for c in cond[idx]]}
    fit(m, make, len(cond), steps=150, batch_size=15, lr=0.02, seed=0)
    assert m.generate(np.array([0, 1, 2]), greedy=True) == [seqs[0], seqs[1], seqs[2]]
    samples = m.generate(np.array([2] * 20), np.random.default_rng(0), temperature=0.5)
    assert sum(s == seqs[2] for s in samples) >= 18


def test_feedforward_learns_xor():
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]] * 8, dtype=np.float32)
    y = (x[:, 0] != x[:, 1]).astype(np.int64)
    m = FeedForward(FeedForwardConfig(2, 2, hidden_sizes=[8], activation="tanh", seed=0))
    fit(m, lambda idx: {"x": x[idx], "labels": y[idx]}, len(x), steps=300, batch_size=8,
        lr=0.05, seed=0)
    assert (m.predict(x) == y).all()


# ---- padding: a sequence's result does not depend on its batch ----------------------------
@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
def test_classifier_padding_is_exact(pooling):
    rng = np.random.default_rng(3)
    xs = random_seqs(rng, 5, lo=1, hi=6)
    m = SequenceClassifier(ClassifierConfig(6, 3, hidden_size=5, bidirectional=True,
                                            pooling=pooling, dtype="float64"))
    ids, lengths = pad_batch(xs)
    batched = m.forward(ids, lengths)[0]
    for i, x in enumerate(xs):
        alone = m.forward(x[None, :], None)[0][0]
        np.testing.assert_allclose(batched[i], alone, rtol=1e-12, atol=1e-12)


def test_seq2seq_padding_on_both_sides_is_exact():
    rng = np.random.default_rng(4)
    xs = random_seqs(rng, 6, lo=1, hi=6)
    ys = random_seqs(rng, 6, lo=0, hi=5)
    m = Seq2Seq(Seq2SeqConfig(6, 6, hidden_size=5, bidirectional=True, num_layers=2,
                              dtype="float64"))
    src, lengths = pad_batch(xs)
    tin, tout, tlen = m.decoder_io(ys)
    batched = m.forward(src, lengths, tin, tlen)[0]
    greedy = m.greedy(src, lengths, max_len=6)
    beams = m.beam_search(src, lengths, 3, max_len=6)
    for i in range(len(xs)):
        a_in, _, a_len = m.decoder_io([ys[i]])
        alone = m.forward(xs[i][None, :], None, a_in, a_len)[0][0]
        np.testing.assert_allclose(batched[i, : tlen[i]], alone, rtol=1e-12, atol=1e-12)
        assert greedy[i] == m.greedy(xs[i][None, :], max_len=6)[0]
        assert beams[i] == m.beam_search(xs[i][None, :], None, 3, max_len=6)[0]


# ---- decoding ---------------------------------------------------------------------------------
@pytest.mark.parametrize("cell,bi", [("lstm", True), ("gru", False), ("rnn", True)])
def test_beam_width_one_equals_greedy(cell, bi):
    rng = np.random.default_rng(5)
    xs = random_seqs(rng, 60, vocab=(3, 4, 5, 6, 7), lo=1, hi=7)
    m = Seq2Seq(Seq2SeqConfig(8, 8, embed_dim=6, hidden_size=8, cell=cell, bidirectional=bi,
                              num_layers=2, seed=3))
    # Half-trained on reversal: outputs of varied lengths and some mistakes, a stronger test
    # than a degenerate untrained decoder or a perfect one.
    make = lambda idx: dict(zip(("src", "src_lengths"), pad_batch([xs[i] for i in idx])),
                            targets=[xs[i][::-1] for i in idx])
    fit(m, make, len(xs), steps=40, batch_size=20, lr=0.02, seed=0)
    src, lengths = pad_batch(xs)
    greedy = m.greedy(src, lengths, max_len=5)
    beam1 = m.beam_search(src, lengths, beam_size=1, max_len=5)
    assert beam1 == greedy
    assert len({len(g) for g in greedy}) >= 3  # some stop early, some at max_len


def sequence_logprob(m, src, target):
    """log p(target, <eos> | src) by teacher forcing (float64)."""
    tin, tout, tlen = m.decoder_io([target])
    logits = m.forward(src[None, :], None, tin, tlen)[0][0].astype(np.float64)
    return float(np.take_along_axis(log_softmax(logits), tout[0][:, None], axis=-1).sum())


def test_beam_scores_are_the_model_log_probabilities_and_beat_greedy():
    rng = np.random.default_rng(6)
    m = Seq2Seq(Seq2SeqConfig(8, 7, embed_dim=6, hidden_size=8, cell="lstm", bidirectional=True,
                              dtype="float64", seed=4))
    xs = random_seqs(rng, 20, vocab=(3, 4, 5, 6, 7), lo=1, hi=6)
    src, lengths = pad_batch(xs)
    best, scores = m.beam_search(src, lengths, beam_size=4, max_len=15, return_scores=True)
    greedy = m.greedy(src, lengths, max_len=15)
    for x, b, s, g in zip(xs, best, scores, greedy):
        if len(b) < 15:  # finished with <eos> (one cut at max_len scores without it)
            assert s == pytest.approx(sequence_logprob(m, x, b), abs=1e-9)
        if len(b) < 15 and len(g) < 15:
            assert s >= sequence_logprob(m, x, g) - 1e-9


def test_length_penalty_prefers_longer_outputs():
    rng = np.random.default_rng(7)
    m = Seq2Seq(Seq2SeqConfig(8, 7, embed_dim=6, hidden_size=8, seed=5))
    src, lengths = pad_batch(random_seqs(rng, 30, vocab=(3, 4, 5, 6, 7)))
    raw = m.beam_search(src, lengths, 5, max_len=10)
    norm = m.beam_search(src, lengths, 5, max_len=10, length_penalty=1.0)
    assert sum(map(len, norm)) >= sum(map(len, raw))


def test_generator_sampling_is_seeded():
    m = ConditionalGenerator(GeneratorConfig(6, cond_dim=3, seed=0))
    cond = np.random.default_rng(0).standard_normal((4, 3))
    a = m.generate(cond, np.random.default_rng(9), temperature=1.3)
    b = m.generate(cond, np.random.default_rng(9), temperature=1.3)
    assert a == b
    with pytest.raises(ValueError, match="Generator"):
        m.generate(cond)


# ---- configs, params, metrics ------------------------------------------------------------------
@pytest.mark.parametrize("cls,cfg", [
    (SequenceClassifier, ClassifierConfig(9, 2, bidirectional=True)),
    (SequenceTagger, TaggerConfig(9, 4)),
    (Seq2Seq, Seq2SeqConfig(9, 8, bidirectional=True, cell="lstm")),
    (ConditionalGenerator, GeneratorConfig(9, num_classes=3)),
    (FeedForward, FeedForwardConfig(4, 2, hidden_sizes=[3, 3])),
])
def test_config_round_trip_rebuilds_the_same_model(cls, cfg):
    m = cls(cfg)
    obj = m.to_json()
    assert obj["kind"] == cls.kind
    m2 = cls(config_from_json(cls.config_class, obj["config"]))
    assert m2.params.keys() == m.params.keys()
    m2.load_params({k: v + 1 for k, v in m.params.items()})
    for k in m.params:
        np.testing.assert_array_equal(m2.params[k], m.params[k] + 1)


def test_param_names_are_dotted_torch_names():
    m = Seq2Seq(Seq2SeqConfig(9, 8, bidirectional=True, num_layers=2))
    names = set(m.params)
    assert {"encoder.weight_ih_l0", "encoder.weight_hh_l1_reverse", "decoder.bias_hh_l1",
            "bridge_h.weight", "bridge_c.bias", "src_embed.weight", "out.weight"} <= names
    assert m.params["encoder.weight_ih_l0"].dtype == np.float32


def test_bad_configs_are_one_line_value_errors():
    with pytest.raises(ValueError, match="unknown cell"):
        SequenceClassifier(ClassifierConfig(5, 2, cell="transformer"))
    with pytest.raises(ValueError, match="hidden_size"):
        SequenceTagger(TaggerConfig(5, 2, hidden_size=0))
    with pytest.raises(ValueError, match="pooling"):
        SequenceClassifier(ClassifierConfig(5, 2, pooling="median"))
    with pytest.raises(ValueError, match="exactly one"):
        ConditionalGenerator(GeneratorConfig(5))
    with pytest.raises(ValueError, match="unexpected keys"):
        config_from_json(TaggerConfig, {"vocab_size": 3, "num_tags": 2, "bogus": 1})
    m = SequenceTagger(TaggerConfig(5, 2))
    with pytest.raises(ValueError, match="missing"):
        m.load_params({})


def test_metrics():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance([], [1, 2]) == 2
    np.testing.assert_array_equal(confusion_matrix([0, 1, 1], [0, 0, 1], 2), [[1, 0], [1, 1]])
