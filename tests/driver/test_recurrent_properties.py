"""Property tests: padding never changes a valid step; a sequence's result does not depend
on the other sequences in its batch."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import rnnkit

MODES = st.sampled_from(["rnn", "gru", "lstm"])


@settings(max_examples=25, deadline=None)
@given(mode=MODES, bidirectional=st.booleans(), layers=st.integers(1, 2),
       lengths=st.lists(st.integers(1, 6), min_size=1, max_size=4), extra=st.integers(0, 3),
       seed=st.integers(0, 2**16))
def test_padding_never_changes_valid_steps(mode, bidirectional, layers, lengths, extra, seed):
    layer = rnnkit.RecurrentLayer(3, 4, layers, mode=mode, bidirectional=bidirectional,
                                  dtype=np.float64, seed=seed)
    rng = np.random.default_rng(seed)
    lengths = np.array(lengths)
    T = int(lengths.max()) + extra
    x = rng.standard_normal((len(lengths), T, 3))
    out, state, cache = layer.forward(x, lengths)
    dout = rng.standard_normal(out.shape)
    dx, _, _ = layer.backward(dout, cache)
    hn = state[0] if mode == "lstm" else state
    for n, L in enumerate(lengths):
        alone, st_alone, c1 = layer.forward(x[n : n + 1, :L].copy())
        np.testing.assert_allclose(out[n, :L], alone[0], rtol=0, atol=1e-12)
        assert not out[n, L:].any()  # padded steps output zeros
        h_alone = st_alone[0] if mode == "lstm" else st_alone
        np.testing.assert_allclose(hn[:, n], h_alone[:, 0], rtol=0, atol=1e-12)
        dx_alone, _, _ = layer.backward(dout[n : n + 1, :L].copy(), c1)
        np.testing.assert_allclose(dx[n, :L], dx_alone[0], rtol=0, atol=1e-12)
        assert not dx[n, L:].any()  # padding receives no gradient


@settings(max_examples=20, deadline=None)
@given(mode=MODES, bidirectional=st.booleans(), seed=st.integers(0, 2**16))
def test_result_independent_of_batch_mates(mode, bidirectional, seed):
    layer = rnnkit.RecurrentLayer(3, 4, 2, mode=mode, bidirectional=bidirectional,
                                  dtype=np.float64, seed=seed)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((4, 5, 3))
    lengths = rng.integers(1, 6, size=4)
    out, _, _ = layer.forward(x, lengths)
    x2 = rng.standard_normal((4, 5, 3))
    x2[0] = x[0]
    lengths2 = rng.integers(1, 6, size=4)
    lengths2[0] = lengths[0]
    out2, _, _ = layer.forward(x2, lengths2)
    np.testing.assert_allclose(out[0], out2[0], rtol=0, atol=1e-12)
