"""Adaptive softmax: exact backward, parity with torch.nn.AdaptiveLogSoftmaxWithLoss,
normalised full log-probabilities, and cutoffs chosen from word frequencies."""

import numpy as np
import pytest

from rnnkit.gradcheck import numeric_grad, rel_error
from rnnkit.layers.adaptive import AdaptiveSoftmax, check_cutoffs, default_cutoffs

H, V, CUT = 8, 23, [5, 12, 18]


def _layer(head_bias=True, seed=0, cutoffs=CUT, div=2.0):
    return AdaptiveSoftmax(H, V, cutoffs, div_value=div, head_bias=head_bias,
                           dtype=np.float64, seed=seed)


def _data(M=17, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((M, H))
    # every cluster gets targets, and the head too
    t = np.concatenate([[0, 4, 5, 11, 12, 17, 18, 22], rng.integers(0, V, M - 8)])
    return x, t


@pytest.mark.parametrize("head_bias", [True, False])
def test_gradients_match_finite_differences(head_bias):
    layer = _layer(head_bias)
    x, t = _data()
    w = np.random.default_rng(2).standard_normal(x.shape[0])  # a weighted sum of the nlls

    def loss():
        nll, _ = layer.forward(x, t)
        return float(w @ nll)

    nll, cache = layer.forward(x, t)
    dx, grads = layer.backward(w, cache)
    assert set(grads) == set(layer.params)
    assert rel_error(dx, numeric_grad(loss, x)) < 1e-6
    for name, p in layer.params.items():
        assert rel_error(grads[name], numeric_grad(loss, p)) < 1e-6, name


def test_fused_loss_and_grads_equals_forward_backward():
    layer = _layer()
    x, t = _data()
    nll, cache = layer.forward(x, t)
    M = x.shape[0]
    dx, grads = layer.backward(np.full(M, 1.0 / M), cache)
    loss, dx2, grads2 = layer.loss_and_grads(x, t)
    assert abs(loss - nll.mean()) < 1e-12
    assert rel_error(dx, dx2) < 1e-12
    for k in grads:
        assert rel_error(grads[k], grads2[k]) < 1e-12, k


def test_cluster_without_targets_has_zero_gradient():
    layer = _layer()
    x = np.random.default_rng(0).standard_normal((4, H))
    t = np.array([0, 1, 2, 3])  # head only
    loss, dx, grads = layer.loss_and_grads(x, t)
    for i in range(3):
        assert not grads[f"tail.{i}.proj"].any() and not grads[f"tail.{i}.out"].any()
    nll, cache = layer.forward(x, t)
    assert abs(loss - nll.mean()) < 1e-12


def _torch_copy(layer, head_bias):
    torch = pytest.importorskip("torch")
    ref = torch.nn.AdaptiveLogSoftmaxWithLoss(H, V, layer.cutoffs, div_value=layer.div_value,
                                              head_bias=head_bias).double()
    with torch.no_grad():
        ref.head.weight.copy_(torch.from_numpy(layer.params["head.weight"]))
        if head_bias:
            ref.head.bias.copy_(torch.from_numpy(layer.params["head.bias"]))
        for i in range(layer.n_clusters):
            ref.tail[i][0].weight.copy_(torch.from_numpy(layer.params[f"tail.{i}.proj"]))
            ref.tail[i][1].weight.copy_(torch.from_numpy(layer.params[f"tail.{i}.out"]))
    return torch, ref


@pytest.mark.parametrize("head_bias", [True, False])
def test_equals_torch_adaptive_log_softmax(head_bias):
    layer = _layer(head_bias)
    torch, ref = _torch_copy(layer, head_bias)
    x, t = _data()
    xt = torch.from_numpy(x).requires_grad_(True)
    res = ref(xt, torch.from_numpy(t))
    full = ref.log_prob(xt).detach().numpy()
    assert np.abs(layer.log_prob(x) - full).max() < 1e-10
    assert np.abs(layer.target_log_prob(x, t) - res.output.detach().numpy()).max() < 1e-10
    nll, _ = layer.forward(x, t)
    assert np.abs(-nll - res.output.detach().numpy()).max() < 1e-10
    # gradients of the mean loss too
    res.loss.backward()
    loss, dx, grads = layer.loss_and_grads(x, t)
    assert abs(loss - res.loss.item()) < 1e-10
    assert np.abs(dx - xt.grad.numpy()).max() < 1e-10
    assert np.abs(grads["head.weight"] - ref.head.weight.grad.numpy()).max() < 1e-10
    for i in range(3):
        assert np.abs(grads[f"tail.{i}.proj"] - ref.tail[i][0].weight.grad.numpy()).max() < 1e-10
        assert np.abs(grads[f"tail.{i}.out"] - ref.tail[i][1].weight.grad.numpy()).max() < 1e-10


def test_torch_default_div_value_layout():
    layer = AdaptiveSoftmax(64, 1000, [100, 400], dtype=np.float64, seed=3)
    assert layer.params["tail.0.proj"].shape == (16, 64)   # 64 // 4
    assert layer.params["tail.1.proj"].shape == (4, 64)    # 64 // 16
    assert layer.params["tail.1.out"].shape == (600, 4)
    assert layer.params["head.weight"].shape == (102, 64)


def test_full_log_probabilities_are_normalised():
    layer = AdaptiveSoftmax(H, V, CUT, div_value=2.0, dtype=np.float64, seed=4)
    x = np.random.default_rng(5).standard_normal((9, H)) * 3
    lp = layer.log_prob(x)
    assert lp.shape == (9, V)
    np.testing.assert_allclose(np.exp(lp).sum(axis=1), 1.0, atol=1e-12)
    # and each column is the target log-probability of that class
    for c in (0, 4, 5, 17, 22):
        np.testing.assert_allclose(layer.target_log_prob(x, np.full(9, c)), lp[:, c], atol=1e-12)


def test_float32_layer_agrees_with_float64():
    l64 = _layer()
    l32 = AdaptiveSoftmax(H, V, CUT, div_value=2.0, head_bias=True, dtype=np.float32, seed=0)
    for k in l32.params:
        l32.params[k][...] = l64.params[k]
    x, t = _data()
    loss64, _, _ = l64.loss_and_grads(x, t)
    loss32, dx32, _ = l32.loss_and_grads(x.astype(np.float32), t)
    assert dx32.dtype == np.float32
    assert abs(loss64 - loss32) < 1e-5


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(ValueError, match="cutoffs must lie in"):
        AdaptiveSoftmax(8, 20, [5, 20])
    with pytest.raises(ValueError, match="strictly increasing"):
        AdaptiveSoftmax(8, 20, [5, 5])
    with pytest.raises(TypeError):
        AdaptiveSoftmax(8, 20, "5,10")
    with pytest.raises(ValueError, match="projections of size 0"):
        AdaptiveSoftmax(8, 100, [10, 20, 30], div_value=4.0)
    layer = _layer()
    with pytest.raises(ValueError, match="targets must lie"):
        layer.forward(np.zeros((2, H)), np.array([0, V]))
    with pytest.raises(ValueError, match=r"\(M, 8\)"):
        layer.log_prob(np.zeros((2, 3)))
    assert check_cutoffs([np.int64(3), 7], 10) == [3, 7]


def test_default_cutoffs_follow_frequencies():
    ranks = np.arange(1, 30_001)
    zipf = 1e6 / ranks
    cut = default_cutoffs(zipf, 256)
    assert 1 <= len(cut) <= 2 and cut == sorted(cut) and cut[-1] < 30_000
    assert cut[0] >= 30_000 // 32
    share = zipf[: cut[0]].sum() / zipf.sum()
    assert share >= 0.8  # the head holds most of the tokens
    # flatter frequencies push the first cutoff further out (more of V is worth the head)
    flat = 1e6 / ranks ** 0.6
    assert default_cutoffs(flat, 256)[0] > cut[0]
    # a tiny vocabulary still gets valid cutoffs
    small = default_cutoffs(np.array([5.0, 4, 3, 2, 1]), 16)
    assert check_cutoffs(small, 5) == small
    with pytest.raises(ValueError):
        default_cutoffs(np.zeros(10), 16)
