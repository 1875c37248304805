"""Language-model output heads (full, tied, adaptive): one interface, exact gradients."""

import numpy as np
import pytest

from rnnkit.gradcheck import numeric_grad, rel_error
from rnnkit.layers import heads as H_

H, V = 6, 19


def _heads():
    rng = np.random.default_rng(0)
    shared_same = rng.standard_normal((V, H))   # E == H: no projection
    shared_proj = rng.standard_normal((V, 4))   # E = 4 != H: through proj (E, H)
    return {
        "full": (H_.FullSoftmax(H, V, dtype=np.float64, seed=1), None),
        "tied": (H_.TiedSoftmax(shared_same, H, dtype=np.float64, seed=2), shared_same),
        "tied-proj": (H_.TiedSoftmax(shared_proj, H, dtype=np.float64, seed=3), shared_proj),
        "adaptive": (H_.AdaptiveHead(H, V, [6, 12], div_value=2.0, dtype=np.float64, seed=4), None),
    }


def _data(M=11):
    rng = np.random.default_rng(5)
    return rng.standard_normal((M, H)), np.concatenate([[0, 5, 6, 11, 12, 18],
                                                       rng.integers(0, V, M - 6)])


@pytest.mark.parametrize("kind", ["full", "tied", "tied-proj", "adaptive"])
def test_head_gradients(kind):
    head, shared = _heads()[kind]
    h, y = _data()
    w = np.random.default_rng(6).standard_normal(len(y))

    def loss():
        nll, _ = head.forward(h, y)
        return float(w @ nll)

    _, cache = head.forward(h, y)
    dh, grads = head.backward(w, cache)
    assert rel_error(dh, numeric_grad(loss, h)) < 1e-6
    for name, p in head.params.items():
        assert rel_error(grads[name], numeric_grad(loss, p)) < 1e-6, name
    if shared is not None:
        assert "proj" in head.params if shared.shape[1] != H else "proj" not in head.params
        assert rel_error(grads["shared"], numeric_grad(loss, shared)) < 1e-6


@pytest.mark.parametrize("kind", ["full", "tied", "tied-proj", "adaptive"])
def test_fused_step_equals_graph_and_log_probs_agree(kind):
    head, _ = _heads()[kind]
    h, y = _data()
    M = len(y)
    nll, cache = head.forward(h, y)
    dh, grads = head.backward(np.full(M, 0.5 / M), cache)
    loss, dh2, grads2 = head.loss_and_grads(h, y, 0.5 / M)
    assert abs(loss - 0.5 * nll.mean()) < 1e-12
    assert rel_error(dh, dh2) < 1e-12
    assert set(grads) == set(grads2)
    for k in grads:
        assert rel_error(grads[k], grads2[k]) < 1e-12, k
    lp = head.log_prob(h)
    np.testing.assert_allclose(np.exp(lp).sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(head.target_log_prob(h, y), lp[np.arange(M), y], atol=1e-12)
    np.testing.assert_allclose(-nll, lp[np.arange(M), y], atol=1e-12)


def test_tied_head_uses_the_embedding_array_itself():
    shared = np.random.default_rng(0).standard_normal((V, H))
    head = H_.TiedSoftmax(shared, H, dtype=np.float64, seed=0)
    h, y = _data()
    before = head.target_log_prob(h, y)
    shared[y[0]] += 1.0  # an update of the embedding is an update of the output layer
    assert not np.allclose(head.target_log_prob(h, y), before)
    assert "weight" not in head.params  # saved once: under the embedding's name only


def test_blocked_evaluation_matches_one_block(monkeypatch):
    head, _ = _heads()["full"]
    h, y = _data(40)
    whole = head.target_log_prob(h, y)
    monkeypatch.setattr(H_, "_BLOCK_ELEMS", 3 * V)  # three rows per block
    np.testing.assert_allclose(head.target_log_prob(h, y), whole, atol=1e-13)
