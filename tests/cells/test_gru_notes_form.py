"""The notes' GRU (Cho 2014, relevance gate before the product) against a step-by-step loop
written here straight from the equations, with the documented parameter mapping."""

import numpy as np

import rnnkit


def sig(a):
    return 1.0 / (1.0 + np.exp(-a))


def notes_gru(x, c0, p, lengths):
    """Gamma_r = s(Wr[c, x] + br), Gamma_u = s(Wu[c, x] + bu), c~ = tanh(Wc[Gamma_r*c, x] + bc),
    c = Gamma_u * c~ + (1 - Gamma_u) * c_prev, with a sequence's state frozen past its end."""
    H = c0.shape[1]
    W_ih, W_hh = p["weight_ih_l0"], p["weight_hh_l0"]
    b = p["bias_ih_l0"] + p["bias_hh_l0"]
    Wr = np.hstack([W_hh[:H], W_ih[:H]])
    Wu = -np.hstack([W_hh[H:2 * H], W_ih[H:2 * H]])  # Gamma_u = 1 - z
    bu = -b[H:2 * H]
    Wc = np.hstack([W_hh[2 * H:], W_ih[2 * H:]])
    N, T, _ = x.shape
    out = np.zeros((N, T, H))
    c_final = np.zeros((N, H))
    for n in range(N):
        c = c0[n]
        for t in range(lengths[n]):
            cx = np.concatenate([c, x[n, t]])
            gr = sig(Wr @ cx + b[:H])
            gu = sig(Wu @ cx + bu)
            ct = np.tanh(Wc @ np.concatenate([gr * c, x[n, t]]) + b[2 * H:])
            c = gu * ct + (1 - gu) * c
            out[n, t] = c
        c_final[n] = c
    return out, c_final


def test_notes_form_matches_equations():
    layer = rnnkit.GRU(4, 5, reset_after=False, dtype=np.float64, seed=11)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 6, 4))
    c0 = rng.standard_normal((3, 5))
    lengths = np.array([6, 2, 4])
    out, hn, _ = layer.forward(x, lengths, c0[None])
    ref_out, ref_c = notes_gru(x, c0, layer.params, lengths)
    np.testing.assert_allclose(out, ref_out, rtol=0, atol=1e-13)
    np.testing.assert_allclose(hn[0], ref_c, rtol=0, atol=1e-13)


def test_two_forms_differ_on_the_same_weights():
    a = rnnkit.GRU(4, 5, reset_after=False, dtype=np.float64, seed=3)
    b = rnnkit.GRU(4, 5, reset_after=True, dtype=np.float64, seed=3)
    for layer in (a, b):
        layer.params["bias_hh_l0"][10:] = 0.0  # b_hn: the only bias the forms treat apart
    x = np.random.default_rng(1).standard_normal((2, 3, 4))
    oa, _, _ = a.forward(x)
    ob, _, _ = b.forward(x)
    np.testing.assert_allclose(oa[:, 0], ob[:, 0], atol=1e-14)  # zero state: r * h = 0 either way
    assert np.abs(oa[:, 1:] - ob[:, 1:]).max() > 1e-4
