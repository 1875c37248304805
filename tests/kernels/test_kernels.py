"""The fused Numba path agrees with the NumPy reference path (DESIGN principle 7).

Same parameters, same inputs, both backends: outputs, final states and every gradient
(inputs, initial state, all weights), for every cell and GRU form, padded batches with
variable lengths, bidirectional (each merge), stacked layers, float32 and float64; the
embedding fusion (table lookup) and the single-step API too.  float64 also against
``torch.nn`` to 1e-10 and against centred differences, for both backends.
"""

from __future__ import annotations

import numpy as np
import pytest

import rnnkit
from rnnkit import kernels
from rnnkit.layers.recurrent import RecurrentLayer
from _compare import assert_close_tree  # noqa: E402

pytestmark = pytest.mark.skipif(not kernels.available(), reason="numba not installed")

CELLS = [("lstm", {}), ("gru", {}), ("gru", {"reset_after": False}), ("rnn", {}),
         ("rnn", {"nonlinearity": "relu"})]
CELL_IDS = ["lstm", "gru", "gru_reset_before", "rnn_tanh", "rnn_relu"]
TOL = {np.float64: dict(rtol=1e-12, atol=1e-12), np.float32: dict(rtol=2e-5, atol=2e-6)}


def _rand_state(layer, N, rng):
    shape = layer.state_shape(N)
    h = rng.standard_normal(shape).astype(layer.dtype)
    if layer.mode == "lstm":
        return h, rng.standard_normal(shape).astype(layer.dtype)
    return h


def _close(a, b, tol, what=""):
    assert_close_tree(a, b, tol, what)


def _both(layer, run):
    """run(layer) under numpy then numba; the results of each."""
    layer.backend = "numpy"
    ref = run(layer)
    layer.backend = "numba"
    fast = run(layer)
    return ref, fast


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("ragged", [False, True], ids=["full", "ragged"])
@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_fast_equals_reference(cell, ragged, bidirectional, dtype):
    mode, kw = cell
    rng = np.random.default_rng(7)
    N, T, D, H = 4, 6, 3, 5
    layer = RecurrentLayer(D, H, 2, mode=mode, bidirectional=bidirectional, dtype=dtype,
                           seed=3, **kw)
    x = rng.standard_normal((N, T, D)).astype(dtype)
    lengths = np.array([6, 2, 1, 5]) if ragged else None
    state = _rand_state(layer, N, rng)
    dstate = _rand_state(layer, N, rng)
    dout = rng.standard_normal((N, T, layer.output_size)).astype(dtype)

    def run(lay):
        out, st, cache = lay.forward(x, lengths, state)
        return (out, st) + lay.backward(dout, cache, dstate)

    ref, fast = _both(layer, run)
    for name, a, b in zip(("out", "state", "dx", "dstate0", "grads"), ref, fast):
        _close(a, b, TOL[dtype], name)
    if ragged:  # padding: zero output and zero input gradient there
        assert np.all(fast[0][1, 2:] == 0) and np.all(fast[2][2, 1:] == 0)


@pytest.mark.parametrize("merge", ["sum", "mean", "product"])
@pytest.mark.parametrize("cell", CELLS[:2], ids=CELL_IDS[:2])
def test_merge_modes_and_many_to_one(cell, merge):
    mode, kw = cell
    rng = np.random.default_rng(11)
    N, T, D, H = 3, 5, 4, 3
    layer = RecurrentLayer(D, H, 2, mode=mode, bidirectional=True, merge_mode=merge,
                           return_sequences=False, dtype=np.float64, seed=5, **kw)
    x = rng.standard_normal((N, T, D))
    lengths = np.array([5, 3, 4])
    dout = rng.standard_normal((N, layer.output_size))

    def run(lay):
        out, st, cache = lay.forward(x, lengths)
        return (out, st) + lay.backward(dout, cache)

    ref, fast = _both(layer, run)
    _close(ref, fast, TOL[np.float64], "all")


@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_no_output_gradient_and_state_only(cell):
    """dout None (only the final state's gradient), and dstate None (only dout)."""
    mode, kw = cell
    rng = np.random.default_rng(2)
    layer = RecurrentLayer(3, 4, 1, mode=mode, dtype=np.float64, seed=1, **kw)
    x = rng.standard_normal((2, 5, 3))
    dstate = _rand_state(layer, 2, rng)

    def run(lay):
        _, _, cache = lay.forward(x, np.array([5, 3]))
        a = lay.backward(None, cache, dstate)
        b = lay.backward(rng_out, cache)
        return a + b

    rng_out = rng.standard_normal((2, 5, 4))
    ref, fast = _both(layer, run)
    _close(ref, fast, TOL[np.float64], "all")


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("table", [True, False], ids=["lookup", "gather"])
@pytest.mark.parametrize("cell", CELLS[:3], ids=CELL_IDS[:3])
def test_embedding_fusion(cell, table, dtype):
    """forward(ids, embedding=E) equals Embedding -> layer, gradient w.r.t. E included."""
    mode, kw = cell
    rng = np.random.default_rng(4)
    N, T, V, D, H = 3, 5, (7 if table else 40), 4, 5
    layer = RecurrentLayer(D, H, 2, mode=mode, bidirectional=True, dtype=dtype, seed=2, **kw)
    E = rng.standard_normal((V, D)).astype(dtype)
    ids = rng.integers(0, V, (N, T))
    lengths = np.array([5, 2, 4])
    dout = rng.standard_normal((N, T, layer.output_size)).astype(dtype)
    for backend in ("numpy", "numba"):
        layer.backend = backend
        out, st, cache = layer.forward(ids, lengths, embedding=E)
        assert cache.tables is table
        dE, dst, grads = layer.backward(dout, cache)
        out2, st2, cache2 = layer.forward(E[ids], lengths)
        dx2, dst2, grads2 = layer.backward(dout, cache2)
        dE2 = np.zeros_like(E)
        np.add.at(dE2, ids, dx2)
        tol = TOL[dtype] if dtype == np.float64 else dict(rtol=1e-4, atol=1e-5)
        _close((out, st, dE, dst, grads), (out2, st2, dE2, dst2, grads2), tol, backend)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_step_equals_forward(cell, dtype):
    """step() token by token reproduces forward() (keep_cache=False too), both backends."""
    mode, kw = cell
    rng = np.random.default_rng(9)
    N, T, D, H = 2, 4, 3, 5
    layer = RecurrentLayer(D, H, 3, mode=mode, dtype=dtype, seed=8, **kw)
    x = rng.standard_normal((N, T, D)).astype(dtype)
    state0 = _rand_state(layer, N, rng)
    for backend in ("numpy", "numba"):
        layer.backend = backend
        out, st, _ = layer.forward(x, None, state0)
        out_nc, st_nc, none = layer.forward(x, None, state0, keep_cache=False)
        assert none is None
        _close((out, st), (out_nc, st_nc), TOL[dtype], "keep_cache")
        state = state0
        for t in range(T):
            o, state = layer.step(x[:, t], state)
            _close(o, out[:, t], TOL[dtype], f"{backend} step {t}")
        _close(state, st, TOL[dtype], f"{backend} final state")
    E = rng.standard_normal((6, D)).astype(dtype)
    tables = layer.input_tables(E)
    o, _ = layer.step(np.array([1, 4]), None, input_tables=tables)
    o2, _ = layer.step(E[[1, 4]], None)
    _close(o, o2, TOL[dtype] if dtype == np.float64 else dict(rtol=1e-4, atol=1e-5), "tables")


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_torch_parity_float64(cell, backend):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    cls = {"rnn": torch.nn.RNN, "gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[cell]
    mod = cls(3, 5, num_layers=2, bidirectional=True, batch_first=True, dtype=torch.float64)
    layer = rnnkit.from_torch(mod)
    layer.backend = backend
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 6, 3))
    lengths = np.array([6, 3, 1, 4])
    out, st, cache = layer.forward(x, lengths)
    dout = rng.standard_normal(out.shape)
    dx, _, grads = layer.backward(dout, cache)
    tx = torch.tensor(x, requires_grad=True)
    packed = torch.nn.utils.rnn.pack_padded_sequence(tx, torch.tensor(lengths), batch_first=True,
                                                     enforce_sorted=False)
    tout, _ = mod(packed)
    tout, _ = torch.nn.utils.rnn.pad_packed_sequence(tout, batch_first=True, total_length=6)
    (tout * torch.tensor(dout)).sum().backward()
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-10)
    for name, p in mod.named_parameters():
        np.testing.assert_allclose(grads[name], p.grad.numpy(), rtol=1e-10, atol=1e-10,
                                   err_msg=name)


@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_fused_gradient_check(cell):
    """Centred differences in float64 on the fused path: weights, inputs, initial state."""
    mode, kw = cell
    rng = np.random.default_rng(5)
    layer = RecurrentLayer(2, 3, 2, mode=mode, bidirectional=True, dtype=np.float64, seed=4,
                           backend="numba", **kw)
    x = rng.standard_normal((2, 4, 2))
    lengths = np.array([4, 2])
    state = _rand_state(layer, 2, rng)
    w = rng.standard_normal((2, 4, layer.output_size))

    def loss():
        out, st, _ = layer.forward(x, lengths, state)
        hs = st[0] if mode == "lstm" else st
        return float((out * w).sum() + (hs ** 2).sum())

    out, st, cache = layer.forward(x, lengths, state)
    hs = st[0] if mode == "lstm" else st
    dst = (2 * hs, np.zeros_like(hs)) if mode == "lstm" else 2 * hs
    dx, dstate0, grads = layer.backward(w, cache, dst)
    eps = 1e-6
    checks = [(x, dx)] + [(layer.params[k], grads[k]) for k in layer.params]
    checks.append((state[0] if mode == "lstm" else state, dstate0[0] if mode == "lstm" else dstate0))
    for arr, g in checks:
        for idx in list(np.ndindex(arr.shape))[:: max(1, arr.size // 6)]:
            old = arr[idx]
            arr[idx] = old + eps
            lp = loss()
            arr[idx] = old - eps
            lm = loss()
            arr[idx] = old
            assert abs((lp - lm) / (2 * eps) - g[idx]) < 1e-7 * max(1.0, abs(g[idx]))


def test_backend_option():
    assert RecurrentLayer(2, 3, backend="auto").backend == "numba"
    assert RecurrentLayer(2, 3, backend="numpy").backend == "numpy"
    with pytest.raises(ValueError, match="backend"):
        RecurrentLayer(2, 3, backend="cuda")
    with pytest.raises(ValueError, match="unidirectional"):
        RecurrentLayer(2, 3, bidirectional=True).step(np.zeros((1, 2), np.float32))


def test_backward_does_not_mutate_cache_and_is_reentrant():
    rng = np.random.default_rng(1)
    layer = rnnkit.LSTM(3, 4, 2, bidirectional=True, dtype=np.float64, seed=0, backend="numba")
    x = rng.standard_normal((3, 5, 3))
    out, _, cache = layer.forward(x, np.array([5, 2, 4]))
    dout = rng.standard_normal(out.shape)
    a = layer.backward(dout, cache)
    b = layer.backward(dout, cache)
    _close(a, b, dict(rtol=0, atol=0), "twice")
