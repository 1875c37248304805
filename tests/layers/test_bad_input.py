"""Bad input raises ValueError/TypeError naming the expected and the received shape."""

import numpy as np
import pytest

import rnnkit


@pytest.fixture
def lstm():
    return rnnkit.LSTM(3, 4, 2, bidirectional=True, seed=0)


def x32(*shape):
    return np.zeros(shape, dtype=np.float32)


def test_wrong_rank(lstm):
    with pytest.raises(ValueError, match=r"3 dimensions \(N, T, D\), got shape \(5, 3\)"):
        lstm.forward(x32(5, 3))


def test_wrong_feature_size(lstm):
    with pytest.raises(ValueError, match=r"\(N, T, 3\).*got \(2, 5, 7\)"):
        lstm.forward(x32(2, 5, 7))


def test_wrong_dtype(lstm):
    with pytest.raises(ValueError, match="dtype float32, got float64"):
        lstm.forward(np.zeros((2, 5, 3)))
    with pytest.raises(TypeError, match="numpy array"):
        lstm.forward([[[0.0, 0.0, 0.0]]])


@pytest.mark.parametrize("lengths,msg", [
    ([5, 0], r"\[1, 5\].*got 0"),
    ([6, 1], r"\[1, 5\].*got 6"),
    ([5], r"shape \(2,\).*got \(1,\)"),
    ([1.5, 2.0], "integers"),
])
def test_bad_lengths(lstm, lengths, msg):
    with pytest.raises(ValueError, match=msg):
        lstm.forward(x32(2, 5, 3), np.array(lengths))


def test_bad_state(lstm):
    good = lstm.zero_state(2)
    with pytest.raises(ValueError, match=r"pair \(h, c\)"):
        lstm.forward(x32(2, 5, 3), state=good[0])
    with pytest.raises(ValueError, match=r"shape \(4, 2, 4\).*got \(2, 2, 4\)"):
        lstm.forward(x32(2, 5, 3), state=(good[0][:2], good[1]))
    gru = rnnkit.GRU(3, 4)
    with pytest.raises(ValueError, match=r"state must have shape \(1, 2, 4\).*got \(1, 3, 4\)"):
        gru.forward(x32(2, 5, 3), state=x32(1, 3, 4))


def test_bad_dout(lstm):
    out, _, cache = lstm.forward(x32(2, 5, 3))
    with pytest.raises(ValueError, match=r"dout must have shape \(2, 5, 8\).*got \(2, 5, 4\)"):
        lstm.backward(x32(2, 5, 4), cache)


@pytest.mark.parametrize("kwargs,exc,msg", [
    (dict(input_size=0, hidden_size=4), ValueError, "input_size must be >= 1"),
    (dict(input_size=3, hidden_size=-1), ValueError, "hidden_size must be >= 1"),
    (dict(input_size=3, hidden_size=4, num_layers=0), ValueError, "num_layers"),
    (dict(input_size=3, hidden_size=4, dropout=1.0), ValueError, r"dropout must lie in \[0, 1\)"),
    (dict(input_size=3.5, hidden_size=4), TypeError, "input_size must be an integer"),
    (dict(input_size=3, hidden_size=4, merge_mode="max"), ValueError, "merge_mode"),
    (dict(input_size=3, hidden_size=4, dtype=np.int32), ValueError, "float32 or float64"),
])
def test_bad_constructor_args(kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        rnnkit.GRU(**kwargs)


def test_unknown_cell_and_nonlinearity():
    with pytest.raises(ValueError, match="unknown cell 'tcn'"):
        rnnkit.RecurrentLayer(3, 4, mode="tcn")
    with pytest.raises(ValueError, match="nonlinearity"):
        rnnkit.RNN(3, 4, nonlinearity="sigmoid")
