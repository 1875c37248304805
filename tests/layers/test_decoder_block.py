"""layers.decoder: the decoder block's backward (parameters and initial state) and the state
bridge's (inputs too) against float64 centred differences; step() against forward()."""

import numpy as np
import pytest

from rnnkit.gradcheck import numeric_grad, rel_error
from rnnkit.layers.basic import log_softmax
from rnnkit.layers.decoder import Decoder, StateBridge

V, E, H, L = 6, 3, 4, 2


def make(cell, **kw):
    return Decoder(V, E, H, L, cell=cell, rng=np.random.default_rng(0), dtype=np.float64,
                   names=("emb", "stack", "proj"), **kw)


def initial_state(cell, N, rng):
    h = rng.normal(0, 0.5, (L, N, H))
    return (h, rng.normal(0, 0.5, (L, N, H))) if cell == "lstm" else h


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("lookup", [False, True])
def test_decoder_gradients_of_parameters_and_initial_state(cell, lookup):
    rng = np.random.default_rng(1)
    d = make(cell)
    ids, lengths = rng.integers(0, V, (3, 5)), np.array([5, 2, 4])
    state = initial_state(cell, 3, rng)
    w = rng.normal(size=(3, 5, V))
    mask = (np.arange(5)[None, :] < lengths[:, None])[..., None]

    def loss():
        logits, _, _ = d.forward(ids, lengths, state, lookup=lookup)
        return float((logits * w * mask).sum())

    logits, _, cache = d.forward(ids, lengths, state, lookup=lookup)
    grads, dstate = d.backward(w * mask, cache)
    params = {f"{n}.{k}": v for n, blk in d.blocks.items() for k, v in blk.params.items()}
    assert set(grads) == set(params)
    for name, p in params.items():
        assert rel_error(grads[name], numeric_grad(loss, p)) < 1e-6, name
    for s, ds in zip(state if cell == "lstm" else (state,), dstate if cell == "lstm" else (dstate,)):
        assert rel_error(ds, numeric_grad(loss, s)) < 1e-6


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_step_is_forward_one_token_at_a_time(cell):
    rng = np.random.default_rng(2)
    d = make(cell)
    ids = rng.integers(0, V, (2, 6))
    state0 = initial_state(cell, 2, rng)
    logits, _, _ = d.forward(ids, None, state0)
    state = state0
    for t in range(6):
        lp, state = d.step(ids[:, t], state)
        np.testing.assert_allclose(lp, log_softmax(logits[:, t]), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("lstm", [False, True])
def test_bridge_gradients_of_weights_and_inputs(lstm):
    rng = np.random.default_rng(3)
    b = StateBridge(5, 4, lstm=lstm, rng=np.random.default_rng(0), dtype=np.float64,
                    names=("bh", "bc"))
    xs = tuple(rng.normal(size=(2, 3, 5)) for _ in range(2 if lstm else 1))
    ws = tuple(rng.normal(size=(2, 3, 4)) for _ in xs)

    def loss():
        outs, _ = b.forward(xs)
        return float(sum((o * w).sum() for o, w in zip(outs, ws)))

    outs, cache = b.forward(xs)
    np.testing.assert_allclose(outs[0], np.tanh(xs[0] @ b.maps[0].params["weight"].T
                                                + b.maps[0].params["bias"]))
    dxs, grads = b.backward(ws, cache)
    assert set(grads) == {f"{n}.{k}" for n in b.names for k in ("weight", "bias")}
    for n, lin in b.blocks.items():
        for k, p in lin.params.items():
            assert rel_error(grads[f"{n}.{k}"], numeric_grad(loss, p)) < 1e-6
    for x, dx in zip(xs, dxs):
        assert rel_error(dx, numeric_grad(loss, x)) < 1e-6
