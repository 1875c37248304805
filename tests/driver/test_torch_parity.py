"""Parity with torch.nn.RNN/GRU/LSTM (PyTorch 2.13) on the same weights: outputs at valid
steps, final states and every gradient (parameters, inputs, initial states), for 1-3
layers, uni/bidirectional, equal lengths and variable lengths (against packed sequences)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import rnnkit  # noqa: E402
from rnnkit.gradcheck import rel_error  # noqa: E402

KINDS = {
    "rnn_tanh": lambda *a, **k: torch.nn.RNN(*a, nonlinearity="tanh", **k),
    "rnn_relu": lambda *a, **k: torch.nn.RNN(*a, nonlinearity="relu", **k),
    "gru": torch.nn.GRU,
    "lstm": torch.nn.LSTM,
}
TOL = {torch.float64: 1e-10, torch.float32: 1e-5}


def run_pair(kind, num_layers, bidirectional, variable, tdtype, N=4, T=7, D=5, H=6, seed=0):
    torch.manual_seed(seed)
    module = KINDS[kind](D, H, num_layers=num_layers, bidirectional=bidirectional,
                         batch_first=True, dtype=tdtype)
    layer = rnnkit.from_torch(module)
    assert layer.dtype == (np.float64 if tdtype == torch.float64 else np.float32)
    rng = np.random.default_rng(seed)
    ndtype = layer.dtype
    x = rng.standard_normal((N, T, D)).astype(ndtype)
    lengths = np.array([7, 3, 5, 1]) if variable else None
    K = 2 if bidirectional else 1
    h0 = (rng.standard_normal((num_layers * K, N, H)) * 0.5).astype(ndtype)
    c0 = (rng.standard_normal((num_layers * K, N, H)) * 0.5).astype(ndtype)
    is_lstm = kind == "lstm"

    xt = torch.tensor(x, requires_grad=True)
    h0t = torch.tensor(h0, requires_grad=True)
    c0t = torch.tensor(c0, requires_grad=True)
    init = (h0t, c0t) if is_lstm else h0t
    if variable:
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            xt, torch.tensor(lengths), batch_first=True, enforce_sorted=False)
        pout, st = module(packed, init)
        out_t, _ = torch.nn.utils.rnn.pad_packed_sequence(pout, batch_first=True, total_length=T)
    else:
        out_t, st = module(xt, init)
    hn_t, cn_t = (st if is_lstm else (st, None))

    out, state, cache = layer.forward(x, lengths, (h0, c0) if is_lstm else h0)
    hn, cn = state if is_lstm else (state, None)

    w_out = rng.standard_normal(out.shape).astype(ndtype)
    w_h = rng.standard_normal(hn.shape).astype(ndtype)
    w_c = rng.standard_normal(hn.shape).astype(ndtype)
    loss = (out_t * torch.tensor(w_out)).sum() + (hn_t * torch.tensor(w_h)).sum()
    if is_lstm:
        loss = loss + (cn_t * torch.tensor(w_c)).sum()
    loss.backward()
    dx, dstate, grads = layer.backward(w_out, cache, (w_h, w_c) if is_lstm else w_h)

    pairs = {"out": (out, out_t), "h_n": (hn, hn_t), "dx": (dx, xt.grad),
             "dh0": (dstate[0] if is_lstm else dstate, h0t.grad)}
    if is_lstm:
        pairs.update({"c_n": (cn, cn_t), "dc0": (dstate[1], c0t.grad)})
    for name, p in module.named_parameters():
        pairs[name] = (grads[name], p.grad)
    sd = layer.torch_state_dict(grads)
    assert set(sd) == set(dict(module.named_parameters()))
    errors = {k: rel_error(a, b.detach().numpy()) for k, (a, b) in pairs.items()}
    return errors, len(pairs)


@pytest.mark.parametrize("tdtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("variable", [False, True], ids=["equal", "variable"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("kind", list(KINDS))
def test_parity_with_torch(kind, num_layers, bidirectional, variable, tdtype):
    errors, n = run_pair(kind, num_layers, bidirectional, variable, tdtype)
    worst = max(errors, key=errors.get)
    assert errors[worst] < TOL[tdtype], f"{worst}: {errors[worst]:.2e}"
    assert n >= 4 + 4 * num_layers * (2 if bidirectional else 1)


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_to_torch_round_trip(kind):
    layer = rnnkit.RecurrentLayer(3, 5, 2, mode=kind, bidirectional=True, dtype=np.float64, seed=9)
    module = layer.to_torch()
    x = np.random.default_rng(1).standard_normal((2, 4, 3))
    out, _, _ = layer.forward(x)
    out_t, _ = module(torch.tensor(x))
    assert rel_error(out, out_t.detach().numpy()) < 1e-12
    back = rnnkit.from_torch(module)
    for k, v in layer.params.items():
        np.testing.assert_array_equal(back.params[k], v)


def test_bias_free_module():
    module = torch.nn.LSTM(3, 4, bias=False, batch_first=True, dtype=torch.float64)
    layer = rnnkit.from_torch(module)
    assert not any(k.startswith("bias") for k in layer.params)
    x = np.random.default_rng(0).standard_normal((2, 3, 3))
    out, _, _ = layer.forward(x)
    assert rel_error(out, module(torch.tensor(x))[0].detach().numpy()) < 1e-12


def test_from_torch_refuses_what_it_cannot_copy():
    with pytest.raises(ValueError, match="proj_size"):
        rnnkit.from_torch(torch.nn.LSTM(3, 4, proj_size=2))
    with pytest.raises(TypeError, match="torch.nn.RNN, GRU or LSTM"):
        rnnkit.from_torch(torch.nn.Linear(3, 4))
    with pytest.raises(ValueError, match="reset_after"):
        rnnkit.GRU(3, 4, reset_after=False).to_torch()
