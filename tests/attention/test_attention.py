"""Attention layers and the attention decoder: float64 centred-difference gradient checks of
every backward (parameters, queries, memory, initial states, decoder inputs), exact zeros on
padded source positions, dropout between stacked decoder layers, and one-line errors."""

import numpy as np
import pytest

from rnnkit.gradcheck import numeric_grad, rel_error
from rnnkit.layers.attention import Attention, attention_shapes, check_kind
from rnnkit.layers.attention_decoder import AttentionDecoder
from rnnkit.layers.basic import Linear
from rnnkit.layers.recurrent import RecurrentLayer

N, S, M, Hs = 3, 5, 4, 8
LENGTHS = np.array([5, 2, 3])
TOL = 1e-6


def memory(rng, lengths=LENGTHS):
    m = rng.standard_normal((N, S, Hs))
    # Like an encoder's output: zeros past each sequence's end.
    m[np.arange(S)[None, :] >= lengths[:, None]] = 0.0
    return m


@pytest.mark.parametrize("kind", ["additive", "general"])
def test_attention_gradients(kind):
    rng = np.random.default_rng(0)
    att = Attention(kind, 6, Hs, 7, dtype=np.float64, seed=1)
    mem = memory(rng)
    q = rng.standard_normal((N, M, 6))
    w = rng.standard_normal((N, M, Hs))

    def f():
        (ctx, alpha), _ = att.forward(q, mem, LENGTHS)
        return (ctx * w).sum()

    (ctx, alpha), cache = att.forward(q, mem, LENGTHS)
    dq, dmem, grads = att.backward(w, cache)
    assert rel_error(dq, numeric_grad(f, q)) < TOL
    assert rel_error(dmem, numeric_grad(f, mem)) < TOL
    assert set(grads) == set(att.params)
    for name, p in att.params.items():
        assert rel_error(grads[name], numeric_grad(f, p)) < TOL, name


@pytest.mark.parametrize("kind", ["additive", "general"])
def test_padding_gets_no_weight_and_no_gradient(kind):
    rng = np.random.default_rng(1)
    att = Attention(kind, 6, Hs, dtype=np.float64, seed=2)
    mem = memory(rng)
    # Garbage in the padding must change nothing: not the weights, not the context.
    noisy = mem.copy()
    noisy[np.arange(S)[None, :] >= LENGTHS[:, None]] = 1e3
    q = rng.standard_normal((N, M, 6))
    (ctx, alpha), cache = att.forward(q, mem, LENGTHS)
    (ctx2, alpha2), _ = att.forward(q, noisy, LENGTHS)
    pad = np.arange(S)[None, None, :] >= LENGTHS[:, None, None]
    assert np.all(alpha[np.broadcast_to(pad, alpha.shape)] == 0.0)
    np.testing.assert_allclose(alpha.sum(axis=-1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(alpha, alpha2)
    np.testing.assert_array_equal(ctx, ctx2)
    _, dmem, _ = att.backward(rng.standard_normal(ctx.shape), cache)
    assert np.all(dmem[np.arange(S)[None, :] >= LENGTHS[:, None]] == 0.0)
    # A row attends exactly as it would alone, without the batch's longer padding.
    (c1, a1), _ = att.forward(q[1:2], mem[1:2, :2], None)
    np.testing.assert_allclose(c1[0], ctx[1], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(a1[0], alpha[1, :, :2], rtol=1e-12, atol=1e-14)


def test_general_scores_by_hand():
    att = Attention("general", 2, 2, dtype=np.float64, seed=0)
    att.params["weight"][...] = [[1.0, 0.0], [0.0, 2.0]]
    mem = np.array([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])
    q = np.array([[[1.0, 1.0]]])
    (ctx, alpha), _ = att.forward(q, mem, np.array([2]))
    # scores: q.W m = 1 and 2 for the two valid positions; the third is padding.
    e = np.exp([1.0, 2.0])
    np.testing.assert_allclose(alpha[0, 0], [e[0] / e.sum(), e[1] / e.sum(), 0.0], rtol=1e-14)
    np.testing.assert_allclose(ctx[0, 0], [e[0] / e.sum(), e[1] / e.sum()], rtol=1e-14)


def make_decoder(cell, L, kind, E=4, H=5, dropout=0.0):
    rnn = RecurrentLayer(E + H, H, L, mode=cell, dropout=dropout, dtype=np.float64, seed=2)
    att = Attention(kind, H, Hs, 6, dtype=np.float64, seed=3)
    comb = Linear(Hs + H, H, dtype=np.float64, seed=4)
    return AttentionDecoder(rnn, att, comb)


@pytest.mark.parametrize("cell,L,kind", [("lstm", 2, "additive"), ("lstm", 1, "general"),
                                         ("gru", 2, "general"), ("gru", 1, "additive"),
                                         ("rnn", 2, "additive")])
def test_attention_decoder_gradients(cell, L, kind):
    dec = make_decoder(cell, L, kind)
    rng = np.random.default_rng(5)
    E, H = dec.E, dec.H
    y = rng.standard_normal((N, M, E))
    mem = memory(rng)
    h0 = rng.standard_normal((L, N, H))
    c0 = rng.standard_normal((L, N, H))
    state = (h0, c0) if cell == "lstm" else h0
    w = rng.standard_normal((N, M, H))

    def f():
        prep = dec.attention.prepare(mem, LENGTHS)
        (ht, _), _ = dec.forward(y, prep, state)
        return (ht * w).sum()

    prep = dec.attention.prepare(mem, LENGTHS)
    (ht, alpha), cache = dec.forward(y, prep, state)
    assert alpha.shape == (N, M, S)
    dy, acc, dstate, grnn, gcomb = dec.backward(w, cache)
    dmem, gatt = dec.attention.prepare_backward(acc, prep)
    checks = {"dy": (dy, y), "dmemory": (dmem, mem)}
    if cell == "lstm":
        checks.update(dh0=(dstate[0], h0), dc0=(dstate[1], c0))
    else:
        checks["dh0"] = (dstate, h0)
    for blk, g in ((dec.rnn, grnn), (dec.attention, gatt), (dec.combine, gcomb)):
        assert set(g) == set(blk.params)
        checks.update({k: (g[k], p) for k, p in blk.params.items()})
    for name, (analytic, x) in checks.items():
        assert rel_error(analytic, numeric_grad(f, x)) < TOL, name


def test_attention_decoder_dropout_gradients_and_effect():
    dec = make_decoder("lstm", 2, "additive", dropout=0.4)
    rng = np.random.default_rng(6)
    y = rng.standard_normal((N, M, dec.E))
    mem = memory(rng)
    state = (rng.standard_normal((2, N, dec.H)), rng.standard_normal((2, N, dec.H)))
    w = rng.standard_normal((N, M, dec.H))

    def run(training=True):
        prep = dec.attention.prepare(mem, LENGTHS)
        return dec.forward(y, prep, state, training=training, rng=np.random.default_rng(9)), prep

    def f():
        ((ht, _), _), _ = run()
        return (ht * w).sum()

    ((ht, _), cache), prep = run()
    ((ht_eval, _), _), _ = run(training=False)
    assert np.abs(ht - ht_eval).max() > 1e-3  # dropout did something in training only
    _, _, _, grnn, _ = dec.backward(w, cache)
    for name in ("weight_ih_l1", "weight_hh_l0", "weight_ih_l0"):
        assert rel_error(grnn[name], numeric_grad(f, dec.rnn.params[name])) < TOL, name
    with pytest.raises(ValueError, match="Generator"):
        dec.forward(y, prep, state, training=True)


def test_decoder_step_matches_teacher_forcing():
    dec = make_decoder("gru", 2, "general")
    rng = np.random.default_rng(7)
    y = rng.standard_normal((N, M, dec.E))
    mem = memory(rng)
    h0 = rng.standard_normal((2, N, dec.H))
    prep = dec.attention.prepare(mem, LENGTHS)
    (ht, alpha), _ = dec.forward(y, prep, h0)
    st = dec.start(h0, N)
    for t in range(M):
        out, a, st = dec.step(y[:, t], st, prep)
        np.testing.assert_allclose(out, ht[:, t], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(a, alpha[:, t], rtol=1e-12, atol=1e-14)


def test_backward_does_not_mutate_its_inputs():
    dec = make_decoder("lstm", 2, "general")
    rng = np.random.default_rng(8)
    y = rng.standard_normal((N, M, dec.E))
    state = (rng.standard_normal((2, N, dec.H)), rng.standard_normal((2, N, dec.H)))
    prep = dec.attention.prepare(memory(rng), LENGTHS)
    (_, _), cache = dec.forward(y, prep, state)
    w = rng.standard_normal((N, M, dec.H))
    w0 = w.copy()
    first = dec.backward(w, cache)
    second = dec.backward(w, cache)  # reentrant: the same cache twice gives the same grads
    np.testing.assert_array_equal(w, w0)
    for k in first[3]:
        np.testing.assert_array_equal(first[3][k], second[3][k])


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(ValueError, match="unknown attention 'dot'"):
        check_kind("dot")
    with pytest.raises(ValueError, match="unknown attention"):
        Attention("none", 4, 4)
    att = Attention("additive", 4, 6, dtype=np.float64)
    with pytest.raises(ValueError, match=r"memory must have shape \(N, S, 6\)"):
        att.prepare(np.zeros((2, 3, 5)))
    with pytest.raises(ValueError, match="lengths must lie in"):
        att.prepare(np.zeros((2, 3, 6)), np.array([0, 3]))
    assert attention_shapes("additive", 4, 6, 5) == {"key_weight": (5, 6),
                                                     "query_weight": (5, 4), "v": (5,)}
    assert attention_shapes("general", 4, 6, 5) == {"weight": (4, 6)}
    assert {k: v.shape for k, v in att.params.items()} == attention_shapes("additive", 4, 6, 4)
