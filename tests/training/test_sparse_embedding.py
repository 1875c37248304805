"""Row-sparse embedding gradients and the optimizers' row updates."""

import numpy as np
import pytest

from rnnkit.optim import SGD, Adam, clip_grad_norm, grads_finite
from rnnkit.sparse_grad import RowSparse

V, E = 12, 3


def _sparse(seed, rows=(1, 4, 4, 9)):
    rng = np.random.default_rng(seed)
    ids = np.array(rows)
    dx = rng.standard_normal((len(ids), E))
    return RowSparse.from_ids(ids, dx, V), ids, dx


def test_from_ids_sums_repeated_rows_and_densifies():
    g, ids, dx = _sparse(0)
    dense = np.zeros((V, E))
    np.add.at(dense, ids, dx)
    assert list(g.rows) == [1, 4, 9]
    np.testing.assert_array_equal(np.asarray(g), dense)
    assert abs(g.square_sum() - (dense ** 2).sum()) < 1e-12
    np.testing.assert_array_equal(g + np.ones((V, E)), dense + 1.0)
    g *= 0.5
    np.testing.assert_allclose(np.asarray(g), dense * 0.5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_from_ids_equals_add_at_bit_for_bit(dtype):
    """A word-level batch's shape (T, N) ids with many repeats: the compiled scatter sums
    each row's gradients in the order np.add.at does."""
    rng = np.random.default_rng(7)
    ids = rng.zipf(1.3, (35, 32)) % 500
    dx = rng.standard_normal((35, 32, 16)).astype(dtype)
    g = RowSparse.from_ids(ids, dx, 500)
    dense = np.zeros((500, 16), dtype=dtype)
    np.add.at(dense, ids.reshape(-1), dx.reshape(-1, 16))
    assert g.values.dtype == dtype
    np.testing.assert_array_equal(g.rows, np.unique(ids))
    np.testing.assert_array_equal(np.asarray(g), dense)


def test_sgd_row_update_is_exactly_the_dense_update():
    rng = np.random.default_rng(1)
    p1 = rng.standard_normal((V, E))
    p2 = p1.copy()
    o1, o2 = SGD(0.1), SGD(0.1)
    for s in range(3):
        g, _, _ = _sparse(s)
        o1.step({"w": p1}, {"w": g})
        o2.step({"w": p2}, {"w": np.asarray(g)})
    np.testing.assert_array_equal(p1, p2)


def test_adam_rows_follow_torch_sparse_adam():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    p = rng.standard_normal((V, E))
    ref = torch.nn.Parameter(torch.from_numpy(p.copy()))
    topt = torch.optim.SparseAdam([ref], lr=0.01, betas=(0.8, 0.9), eps=1e-6)
    opt = Adam(0.01, betas=(0.8, 0.9), eps=1e-6)
    untouched_before = p[[0, 2]].copy()
    for s, rows in enumerate([(1, 4, 4), (4, 9), (1, 5, 9, 9)]):
        g, ids, dx = _sparse(10 + s, rows)
        opt.step({"w": p}, {"w": g})
        ref.grad = torch.sparse_coo_tensor(torch.from_numpy(ids)[None], torch.from_numpy(dx),
                                           (V, E), check_invariants=True).coalesce()
        topt.step()
        np.testing.assert_allclose(p, ref.detach().numpy(), atol=1e-12)
    np.testing.assert_array_equal(p[[0, 2]], untouched_before)  # never in a batch: untouched


def test_adam_with_weight_decay_falls_back_to_dense_adam():
    rng = np.random.default_rng(3)
    p1 = rng.standard_normal((V, E))
    p2 = p1.copy()
    o1, o2 = Adam(0.01, weight_decay=0.1), Adam(0.01, weight_decay=0.1)
    g, _, _ = _sparse(4)
    o1.step({"w": p1}, {"w": g})
    o2.step({"w": p2}, {"w": np.asarray(g)})
    np.testing.assert_allclose(p1, p2, atol=1e-15)


def test_clip_and_finiteness_see_sparse_gradients():
    g, _, _ = _sparse(5)
    d = np.ones((2, 2))
    dense_norm = np.sqrt(np.asarray(g).__pow__(2).sum() + 4.0)
    before = np.asarray(g).copy()
    norm = clip_grad_norm({"a": g, "b": d}, 1.0)
    assert abs(norm - dense_norm) < 1e-12
    np.testing.assert_allclose(np.asarray(g), before / (dense_norm + 1e-6))
    assert grads_finite({"a": g})
    g.values[0, 0] = np.nan
    assert not grads_finite({"a": g})


def test_shape_mismatch_is_refused():
    g, _, _ = _sparse(6)
    with pytest.raises(ValueError, match="shape"):
        Adam(0.1).step({"w": np.zeros((V + 1, E))}, {"w": g})
