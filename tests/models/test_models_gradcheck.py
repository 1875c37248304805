"""Whole-model float64 centred-difference gradient checks of every task model: each
parameter tensor's relative error < 1e-6 (tiny sizes; padded, variable-length batches)."""

import numpy as np
import pytest

from _taskcheck import max_rel_error
from rnnkit.models import (ClassifierConfig, ConditionalGenerator, FeedForward, FeedForwardConfig,
                           GeneratorConfig, Seq2Seq, Seq2SeqConfig, SequenceClassifier,
                           SequenceTagger, TaggerConfig)

TOL = 1e-6
RNG = np.random.default_rng(0)
IDS = RNG.integers(1, 7, (3, 4))
LENS = np.array([4, 1, 3])
TINY = dict(embed_dim=2, hidden_size=3, dtype="float64", seed=1)


def check(model, loss_fn):
    err, name = max_rel_error(model, loss_fn)
    assert err < TOL, f"{name}: relative error {err:.2e}"


@pytest.mark.parametrize("cell,bi,pooling,layers", [
    ("lstm", True, "last", 1), ("gru", False, "mean", 2), ("rnn", True, "max", 1),
    ("gru", True, "mean", 1),
])
def test_classifier(cell, bi, pooling, layers):
    m = SequenceClassifier(ClassifierConfig(7, 3, cell=cell, bidirectional=bi, pooling=pooling,
                                            num_layers=layers, **TINY))
    check(m, lambda: m.loss(IDS, LENS, np.array([0, 2, 1])))


@pytest.mark.parametrize("cell,bi,layers", [("lstm", True, 2), ("gru", False, 1), ("rnn", True, 1)])
def test_tagger(cell, bi, layers):
    m = SequenceTagger(TaggerConfig(7, 3, cell=cell, bidirectional=bi, num_layers=layers, **TINY))
    tags = RNG.integers(0, 3, IDS.shape)
    check(m, lambda: m.loss(IDS, LENS, tags))


@pytest.mark.parametrize("cell,bi,layers", [
    ("lstm", True, 1),   # bridge for h and c
    ("gru", False, 1),   # encoder state handed over as it is
    ("rnn", True, 2),    # deep, bridged per layer
    ("lstm", False, 2),
])
def test_seq2seq(cell, bi, layers):
    m = Seq2Seq(Seq2SeqConfig(7, 6, cell=cell, bidirectional=bi, num_layers=layers, **TINY))
    targets = [[3, 4, 5], [], [5]]  # variable lengths on the target side, one empty
    check(m, lambda: m.loss(IDS, LENS, targets))


@pytest.mark.parametrize("cell,cond", [("lstm", "class"), ("gru", "vector"), ("rnn", "class")])
def test_generator(cell, cond):
    kw = dict(num_classes=3) if cond == "class" else dict(cond_dim=2)
    m = ConditionalGenerator(GeneratorConfig(6, cell=cell, num_layers=2, **kw, **TINY))
    c = np.array([0, 2, 1]) if cond == "class" else RNG.standard_normal((3, 2))
    check(m, lambda: m.loss(c, [[3, 4, 5], [], [5, 3]]))


@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_feedforward(act):
    m = FeedForward(FeedForwardConfig(4, 3, hidden_sizes=[5, 4], activation=act, dtype="float64"))
    x = RNG.standard_normal((6, 4))
    check(m, lambda: m.loss(x, np.array([0, 1, 2, 0, 1, 2])))


def test_dropout_training_gradients_are_exact_for_a_fixed_mask():
    """With dropout on, the same rng seed gives the same masks, so the check still holds."""
    m = SequenceTagger(TaggerConfig(7, 3, cell="gru", num_layers=2, dropout=0.4, **TINY))
    tags = RNG.integers(0, 3, IDS.shape)
    check(m, lambda: m.loss(IDS, LENS, tags, training=True, rng=np.random.default_rng(5)))
