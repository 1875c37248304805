"""The attention decoder's fused loop (rnnkit.layers.attention_fused, kernels.attention)
against its NumPy reference: forward outputs, every gradient and the initial-state gradient,
for every cell, one and two layers, dropout, both scoring kinds, ragged sources; float64 to
1e-10 and float32 to 1e-5.  The model-level tests (torch parity, gradient checks) run the
fused path too, since it is the default wherever Numba imports."""

import numpy as np
import pytest

from rnnkit.layers import Linear, RecurrentLayer
from rnnkit.layers.attention import Attention
from rnnkit.layers.attention_decoder import AttentionDecoder
from rnnkit.layers.attention_fused import FusedDecoderCache

pytest.importorskip("numba")

N, M, S, E, H, HS = 5, 6, 7, 4, 8, 10


def decoder(cell, L, kind, dtype, dropout=0.0, reset_after=True, seed=0):
    rng = np.random.default_rng(seed)
    rnn = RecurrentLayer(E + H, H, L, mode=cell, dropout=dropout, reset_after=reset_after,
                         dtype=dtype, seed=rng)
    att = Attention(kind, H, HS, 6, dtype=dtype, seed=rng)
    # Sharper scores than at initialisation, so the softmax is far from uniform.
    for p in att.params.values():
        p *= 4.0
    return AttentionDecoder(rnn, att, Linear(HS + H, H, dtype=dtype, seed=rng))


def run(dec, backend, dtype, training, cell):
    rng = np.random.default_rng(11)
    y = rng.normal(size=(N, M, E)).astype(dtype)
    memory = rng.normal(size=(N, S, HS)).astype(dtype)
    lengths = np.array([7, 3, 1, 6, 5])
    h0 = rng.normal(size=(dec.L, N, H)).astype(dtype)
    state = (h0, rng.normal(size=(dec.L, N, H)).astype(dtype)) if cell == "lstm" else h0
    dout = rng.normal(size=(N, M, H)).astype(dtype)
    dec.rnn.backend = backend
    prep = dec.attention.prepare(memory, lengths)
    (ht, alpha), cache = dec.forward(y, prep, state, training=training,
                                     rng=np.random.default_rng(5))
    assert isinstance(cache, FusedDecoderCache) == (backend == "numba")
    dy, acc, dstate, grads, gcomb = dec.backward(dout, cache)
    dmem, gatt = dec.attention.prepare_backward(acc, prep)
    ds = dstate if isinstance(dstate, tuple) else (dstate,)
    return {"ht": ht, "alpha": alpha, "dy": dy, "dmemory": dmem,
            **{f"ds{i}": d for i, d in enumerate(ds)},
            **{f"rnn.{k}": v for k, v in grads.items()},
            **{f"comb.{k}": v for k, v in gcomb.items()},
            **{f"att.{k}": v for k, v in gatt.items()}}


CASES = [("lstm", 1, "additive", True), ("lstm", 2, "additive", True),
         ("lstm", 2, "general", True), ("gru", 2, "additive", True),
         ("gru", 1, "general", False), ("rnn", 2, "additive", True), ("rnn", 1, "general", True)]


@pytest.mark.parametrize("cell,L,kind,reset_after", CASES)
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 1e-5)])
def test_fused_decoder_equals_reference(cell, L, kind, reset_after, dtype, tol):
    dec = decoder(cell, L, kind, dtype, dropout=0.4 if L > 1 else 0.0, reset_after=reset_after)
    ref = run(dec, "numpy", dtype, True, cell)
    fused = run(dec, "numba", dtype, True, cell)
    assert set(ref) == set(fused)
    for k in ref:
        assert fused[k].dtype == dtype, k
        scale = max(1.0, float(np.abs(ref[k]).max()))
        assert np.abs(fused[k] - ref[k]).max() <= tol * scale, k


def test_fused_padding_gets_no_weight_and_no_gradient():
    dec = decoder("lstm", 1, "additive", np.float64)
    out = run(dec, "numba", np.float64, False, "lstm")
    lengths = np.array([7, 3, 1, 6, 5])
    pad = np.arange(S)[None, :] >= lengths[:, None]  # (N, S)
    assert np.all(out["alpha"][np.broadcast_to(pad[:, None, :], out["alpha"].shape)] == 0.0)
    np.testing.assert_allclose(out["alpha"].sum(axis=2), 1.0, atol=1e-12)
    # The memory's padded rows get gradient through the key product only where valid.
    assert np.all(out["dmemory"][pad] == 0.0)
    assert np.abs(out["dmemory"][~pad]).min() > 0.0
