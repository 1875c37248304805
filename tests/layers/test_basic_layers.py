"""Embedding, Linear, Dropout and masked softmax cross-entropy: gradients and torch parity."""

import numpy as np
import pytest

import rnnkit
from rnnkit.gradcheck import numeric_grad, rel_error

torch = pytest.importorskip("torch")


def test_linear_gradients():
    lin = rnnkit.Linear(4, 3, dtype=np.float64, seed=0)
    x = np.random.default_rng(0).standard_normal((2, 5, 4))
    w = np.random.default_rng(1).standard_normal((2, 5, 3))

    def loss():
        return float((lin.forward(x)[0] * w).sum())

    out, cache = lin.forward(x)
    dx, grads = lin.backward(w, cache)
    assert rel_error(dx, numeric_grad(loss, x)) < 1e-8
    for k, p in lin.params.items():
        assert rel_error(grads[k], numeric_grad(loss, p)) < 1e-8


def test_embedding_gradient_accumulates_repeated_ids():
    emb = rnnkit.Embedding(5, 3, dtype=np.float64, seed=0)
    ids = np.array([[1, 1, 4], [0, 1, 4]])
    w = np.random.default_rng(2).standard_normal((2, 3, 3))
    out, cache = emb.forward(ids)
    np.testing.assert_array_equal(out[0, 0], emb.params["weight"][1])
    _, grads = emb.backward(w, cache)
    np.testing.assert_allclose(grads["weight"][1], w[0, 0] + w[0, 1] + w[1, 1])
    np.testing.assert_allclose(grads["weight"][4], w[0, 2] + w[1, 2])
    assert not grads["weight"][2].any() and not grads["weight"][3].any()
    with pytest.raises(ValueError, match=r"\[0, 5\), got 5"):
        emb.forward(np.array([5]))


def test_dropout_scaling_and_gradient():
    drop = rnnkit.Dropout(0.25)
    x = np.ones((4000,), dtype=np.float64)
    y, mask = drop.forward(x, training=True, rng=np.random.default_rng(0))
    kept = y != 0
    np.testing.assert_allclose(y[kept], 1 / 0.75)
    assert abs(kept.mean() - 0.75) < 0.03
    d, _ = drop.backward(np.full_like(x, 2.0), mask)
    np.testing.assert_allclose(d, 2.0 * mask)
    same, _ = drop.forward(x)
    assert same is x


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_matches_torch_with_padding(reduction):
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((3, 4, 7))
    targets = rng.integers(0, 7, size=(3, 4))
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])
    loss, dlogits = rnnkit.softmax_cross_entropy(logits, targets, mask, reduction=reduction)
    lt = torch.tensor(logits, requires_grad=True)
    tt = torch.tensor(np.where(mask == 1, targets, -100))
    ref = torch.nn.functional.cross_entropy(lt.reshape(-1, 7), tt.reshape(-1), ignore_index=-100,
                                            reduction=reduction)
    ref.backward()
    assert abs(loss - ref.item()) < 1e-12
    assert rel_error(dlogits, lt.grad.numpy()) < 1e-12
    assert not dlogits[1, 2:].any()


def test_cross_entropy_gradient_numeric():
    rng = np.random.default_rng(4)
    logits = rng.standard_normal((2, 3, 5))
    targets = rng.integers(0, 5, size=(2, 3))
    _, d = rnnkit.softmax_cross_entropy(logits, targets)
    num = numeric_grad(lambda: rnnkit.softmax_cross_entropy(logits, targets)[0], logits)
    assert rel_error(d, num) < 1e-8


def test_log_softmax_is_stable():
    out = rnnkit.log_softmax(np.array([[1000.0, 0.0, -1000.0]]))
    np.testing.assert_allclose(out, [[0.0, -1000.0, -2000.0]])
    np.testing.assert_allclose(np.exp(rnnkit.log_softmax(np.random.default_rng(0).standard_normal((5, 9)))).sum(-1), 1.0)
