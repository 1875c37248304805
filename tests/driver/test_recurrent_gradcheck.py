"""float64 centred-difference checks of every recurrent backward: cells, GRU forms, masks,
reverse/bidirectional (all merge modes), stacking, dropout, many-to-one — w.r.t. every
parameter, the inputs and the initial state."""

import numpy as np
import pytest

import rnnkit
from rnnkit.gradcheck import numeric_grad, rel_error

CELLS = [
    ("rnn", {"nonlinearity": "tanh"}),
    ("rnn", {"nonlinearity": "relu"}),
    ("gru", {"reset_after": True}),
    ("gru", {"reset_after": False}),
    ("lstm", {"forget_bias": 1.0}),
]
CELL_IDS = ["rnn_tanh", "rnn_relu", "gru_after", "gru_before", "lstm"]

CONFIGS = {
    "uni_full_state": dict(num_layers=1, bidirectional=False, lengths=None, state=True),
    "uni_masked": dict(num_layers=1, bidirectional=False, lengths=[5, 2, 4], state=True),
    "bi_masked": dict(num_layers=1, bidirectional=True, lengths=[3, 5, 1], state=True),
    "deep_bi_dropout": dict(num_layers=2, bidirectional=True, lengths=[4, 5, 2], state=True,
                            dropout=0.3),
    "deep3_uni": dict(num_layers=3, bidirectional=False, lengths=[2, 5, 5], state=False),
}


def make(mode, kw, **cfg):
    return rnnkit.RecurrentLayer(3, 4, mode=mode, dtype=np.float64, seed=1, **kw, **cfg)


def check_layer(layer, x, lengths, state, training=False, tol=1e-6):
    rng = np.random.default_rng(7)
    out0, st0, _ = layer.forward(x, lengths, state, training=training, rng=np.random.default_rng(3))
    w_out = rng.standard_normal(out0.shape)
    sts = st0 if isinstance(st0, tuple) else (st0,)
    w_st = [rng.standard_normal(s.shape) for s in sts]

    def loss():
        out, st, _ = layer.forward(x, lengths, state, training=training,
                                   rng=np.random.default_rng(3))
        st = st if isinstance(st, tuple) else (st,)
        return float((out * w_out).sum() + sum((s * w).sum() for s, w in zip(st, w_st)))

    out, st, cache = layer.forward(x, lengths, state, training=training,
                                   rng=np.random.default_rng(3))
    dstate = tuple(w_st) if isinstance(st, tuple) else w_st[0]
    dx, dstate0, grads = layer.backward(w_out, cache, dstate)
    errors = {}
    for name, p in layer.params.items():
        errors[name] = rel_error(grads[name], numeric_grad(loss, p))
    errors["x"] = rel_error(dx, numeric_grad(loss, x))
    if state is not None:
        states = state if isinstance(state, tuple) else (state,)
        d0 = dstate0 if isinstance(dstate0, tuple) else (dstate0,)
        for i, (s, ds) in enumerate(zip(states, d0)):
            errors[f"state{i}"] = rel_error(ds, numeric_grad(loss, s))
    worst = max(errors, key=errors.get)
    assert errors[worst] < tol, f"{worst}: rel error {errors[worst]:.2e}"
    return errors


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("mode,kw", CELLS, ids=CELL_IDS)
def test_layer_gradients(mode, kw, config):
    cfg = dict(CONFIGS[config])
    lengths = cfg.pop("lengths")
    with_state = cfg.pop("state")
    layer = make(mode, kw, **cfg)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 3))
    state = None
    if with_state:
        shape = layer.state_shape(3)
        state = rng.standard_normal(shape) * 0.5
        if mode == "lstm":
            state = (state, rng.standard_normal(shape) * 0.5)
    lengths = None if lengths is None else np.array(lengths)
    errors = check_layer(layer, x, lengths, state, training=cfg.get("dropout", 0) > 0)
    assert "x" in errors and len(errors) >= len(layer.params) + 1


@pytest.mark.parametrize("merge_mode", ["sum", "mean", "product"])
@pytest.mark.parametrize("mode", ["gru", "lstm"])
def test_merge_modes_and_stacking(mode, merge_mode):
    layer = rnnkit.RecurrentLayer(3, 4, 2, mode=mode, bidirectional=True, merge_mode=merge_mode,
                                  dtype=np.float64, seed=2)
    x = np.random.default_rng(1).standard_normal((2, 4, 3))
    check_layer(layer, x, np.array([4, 2]), None)


@pytest.mark.parametrize("merge_mode", ["concat", "product"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_many_to_one_gradients(bidirectional, merge_mode):
    layer = rnnkit.LSTM(3, 4, 2, bidirectional=bidirectional, merge_mode=merge_mode,
                        return_sequences=False, dtype=np.float64, seed=3)
    x = np.random.default_rng(2).standard_normal((3, 5, 3))
    check_layer(layer, x, np.array([5, 3, 1]), None)


def test_many_to_one_is_last_valid_output():
    layer = rnnkit.GRU(3, 4, dtype=np.float64, seed=4)
    last = rnnkit.GRU(3, 4, dtype=np.float64, seed=4, return_sequences=False)
    x = np.random.default_rng(3).standard_normal((3, 6, 3))
    lengths = np.array([6, 1, 3])
    seq, _, _ = layer.forward(x, lengths)
    out, _, _ = last.forward(x, lengths)
    np.testing.assert_array_equal(out, seq[np.arange(3), lengths - 1])


def test_dropout_only_in_training_and_between_layers():
    layer = rnnkit.LSTM(3, 4, 2, dropout=0.5, dtype=np.float64, seed=5)
    x = np.random.default_rng(4).standard_normal((2, 3, 3))
    a, _, _ = layer.forward(x)
    b, _, _ = layer.forward(x)
    np.testing.assert_array_equal(a, b)  # evaluation: deterministic, no dropout
    c, _, _ = layer.forward(x, training=True, rng=np.random.default_rng(0))
    d, _, _ = layer.forward(x, training=True, rng=np.random.default_rng(1))
    assert np.abs(c - a).max() > 1e-3 and np.abs(c - d).max() > 1e-3
    # A single layer has nothing between layers: dropout leaves it unchanged (as in torch).
    one = rnnkit.LSTM(3, 4, 1, dropout=0.5, dtype=np.float64, seed=5)
    e, _, _ = one.forward(x)
    f, _, _ = one.forward(x, training=True, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(e, f)


def test_backward_does_not_mutate_and_is_reentrant():
    layer = rnnkit.LSTM(3, 4, 2, bidirectional=True, dtype=np.float64, seed=6)
    rng = np.random.default_rng(5)
    x1, x2 = rng.standard_normal((2, 4, 3)), rng.standard_normal((2, 4, 3))
    out1, _, c1 = layer.forward(x1, np.array([4, 2]))
    out2, _, c2 = layer.forward(x2)  # a second use of the same layer before the first backward
    dout = rng.standard_normal(out1.shape)
    keep = dout.copy()
    g_a = layer.backward(dout, c1)[2]
    g_b = layer.backward(dout, c1)[2]
    np.testing.assert_array_equal(dout, keep)
    for k in g_a:
        np.testing.assert_array_equal(g_a[k], g_b[k])
    assert layer.backward(dout, c2)[2]["weight_hh_l0"].shape == g_a["weight_hh_l0"].shape
    assert np.abs(layer.backward(dout, c2)[2]["weight_hh_l0"] - g_a["weight_hh_l0"]).max() > 1e-6
