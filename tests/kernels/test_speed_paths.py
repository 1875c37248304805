"""The speed and memory paths give the reference results.

- ``RecurrentLayer.backward(release=True)`` (gate gradients written over the saved gates,
  cache dropped layer by layer) gives the same gradients as the reentrant default, and a
  consumed cache is refused;  ``time_major=True`` forward/backward equal the batch-major ones.
- ``LanguageModel.loss_and_grads`` (time-major head, fused softmax-cross-entropy in place,
  release backward) equals forward + ``softmax_cross_entropy`` + ``backward``.
- The fused cross-entropy / log-softmax kernels equal the NumPy reference.
- Fused Adam is bit-identical to the NumPy formula (float64 and float32, with weight decay).
- ``LanguageModel.stepper()`` (one compiled call per token) equals the sequence forward.
"""

from __future__ import annotations

import math

import os

import numpy as np
import pytest

import rnnkit.optim as optim
from rnnkit import kernels
from rnnkit.layers.basic import log_softmax, softmax_cross_entropy
from rnnkit.layers.recurrent import RecurrentLayer
from rnnkit.models.language_model import LanguageModel, LMConfig
from rnnkit.models.lean_step import LeanStep
from _compare import assert_close_tree  # noqa: E402

pytestmark = pytest.mark.skipif(not kernels.available(), reason="numba not installed")

CELLS = [("lstm", {}), ("gru", {}), ("gru", {"reset_after": False}), ("rnn", {}),
         ("rnn", {"nonlinearity": "relu"})]
CELL_IDS = ["lstm", "gru", "gru_reset_before", "rnn_tanh", "rnn_relu"]
TOL = {np.float64: dict(rtol=1e-12, atol=1e-12), np.float32: dict(rtol=2e-5, atol=2e-6)}


def _close(a, b, tol, what=""):
    assert_close_tree(a, b, tol, what, same_dtype=False)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("ragged", [False, True], ids=["full", "ragged"])
@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_release_backward_equals_reentrant(cell, ragged, bidirectional, dtype, backend):
    mode, extra = cell
    rng = np.random.default_rng(5)
    N, T, D, H, L = 4, 7, 5, 6, 2
    layer = RecurrentLayer(D, H, L, mode=mode, bidirectional=bidirectional, dtype=dtype,
                           seed=1, backend=backend, **extra)
    x = rng.standard_normal((N, T, D)).astype(dtype)
    lengths = np.array([7, 3, 5, 1]) if ragged else None
    out, _, cache = layer.forward(x, lengths)
    dout = rng.standard_normal(out.shape).astype(dtype)
    ref = layer.backward(dout, cache)
    again = layer.backward(dout, cache)  # the default leaves the cache usable
    _close(ref, again, TOL[dtype])
    out2, _, cache2 = layer.forward(x, lengths)
    fast = layer.backward(dout.copy(), cache2, release=True)
    _close(ref, fast, TOL[dtype], "release")
    with pytest.raises(ValueError, match="consumed"):
        layer.backward(dout.copy(), cache2, release=True)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_release_with_embedding_table(cell, dtype):
    mode, extra = cell
    rng = np.random.default_rng(6)
    V, N, T, E, H = 9, 5, 6, 4, 7
    layer = RecurrentLayer(E, H, 2, mode=mode, dtype=dtype, seed=2, **extra)
    emb = rng.standard_normal((V, E)).astype(dtype)
    ids = rng.integers(0, V, (N, T))
    out, _, cache = layer.forward(ids, embedding=emb)
    dout = rng.standard_normal(out.shape).astype(dtype)
    ref = layer.backward(dout, cache)
    out_tm, _, cache2 = layer.forward(ids, embedding=emb, time_major=True)
    _close(out, out_tm.transpose(1, 0, 2), TOL[dtype], "time-major out")
    fast = layer.backward(np.ascontiguousarray(dout.transpose(1, 0, 2)), cache2,
                          release=True, time_major=True)
    _close(ref, fast, TOL[dtype], "release + time-major")


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_time_major_dx(cell):
    rng = np.random.default_rng(7)
    layer = RecurrentLayer(3, 4, 2, mode=cell, dtype=np.float64, seed=3)
    x = rng.standard_normal((2, 5, 3))
    out, _, cache = layer.forward(x)
    dout = rng.standard_normal(out.shape)
    dx, ds, g = layer.backward(dout, cache)
    out_tm, _, cache = layer.forward(x, time_major=True)
    dx_tm, ds_tm, g_tm = layer.backward(np.ascontiguousarray(dout.transpose(1, 0, 2)), cache,
                                        time_major=True)
    _close((dx, ds, g), (dx_tm.transpose(1, 0, 2), ds_tm, g_tm), TOL[np.float64])


def _lm(cell, dtype, **kw):
    cfg = LMConfig(vocab_size=23, cell=cell, num_layers=2, hidden_size=12, embed_dim=5,
                   dtype=dtype, **kw)
    return LanguageModel(cfg, seed=4)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_lm_loss_and_grads_equals_reference(cell, dtype):
    m = _lm(cell, dtype)
    rng = np.random.default_rng(8)
    x = rng.integers(0, 23, (3, 9))
    y = rng.integers(0, 23, (3, 9))
    state = m.zero_state(3)
    state = tuple(s + 0.1 for s in state) if isinstance(state, tuple) else state + 0.1
    logits, st_ref, cache = m.forward(x, state)
    loss_ref, dlogits = softmax_cross_entropy(logits, y)
    g_ref = m.backward(dlogits, cache)
    loss, g, st = m.loss_and_grads(x, y, state)
    tol = TOL[np.dtype(dtype).type]
    assert loss == pytest.approx(loss_ref, rel=1e-12 if dtype == "float64" else 1e-6)
    _close(g_ref, g, tol, "grads")
    _close(st_ref, st, tol, "state")
    # log_probs' time-major head equals the reference log-softmax of the logits
    lp, _ = m.log_probs(x, state)
    _close(log_softmax(logits), lp, tol, "log_probs")
    with pytest.raises(ValueError):
        m.loss_and_grads(x, y + 23)


def test_lm_dropout_path_uses_release_and_matches():
    m = _lm("lstm", "float64", dropout=0.3)
    rng = np.random.default_rng(9)
    x = rng.integers(0, 23, (2, 6))
    y = rng.integers(0, 23, (2, 6))
    logits, _, cache = m.forward(x, training=True, rng=np.random.default_rng(1))
    loss_ref, dlogits = softmax_cross_entropy(logits, y)
    g_ref = m.backward(dlogits, cache)
    loss, g, _ = m.loss_and_grads(x, y, training=True, rng=np.random.default_rng(1))
    assert loss == pytest.approx(loss_ref, rel=1e-12)
    _close(g_ref, g, TOL[np.float64])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fused_cross_entropy_kernel(dtype):
    from rnnkit.kernels.loss import log_softmax_rows, xent_inplace

    rng = np.random.default_rng(10)
    z = (rng.standard_normal((37, 11)) * 30).astype(dtype)
    y = rng.integers(0, 11, 37)
    loss_ref, d_ref = softmax_cross_entropy(z, y)
    w = z.copy()
    loss = xent_inplace(w, y.astype(np.int64), dtype(1 / 37)) / 37
    tol = TOL[dtype]
    assert loss == pytest.approx(loss_ref, rel=1e-12 if dtype == np.float64 else 1e-6)
    np.testing.assert_allclose(w, d_ref, **tol)
    out = np.empty_like(z)
    log_softmax_rows(z, out)
    np.testing.assert_allclose(out, log_softmax(z), rtol=tol["rtol"], atol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fused_adam_bit_identical(dtype, weight_decay, monkeypatch):
    rng = np.random.default_rng(11)
    p1 = {"a": rng.standard_normal((13, 7)).astype(dtype), "b": rng.standard_normal(5).astype(dtype)}
    p2 = {k: v.copy() for k, v in p1.items()}
    o1 = optim.Adam(3e-3, weight_decay=weight_decay)
    o2 = optim.Adam(3e-3, weight_decay=weight_decay)
    for _ in range(6):
        g = {k: rng.standard_normal(v.shape).astype(dtype) for k, v in p1.items()}
        g_copy = {k: v.copy() for k, v in g.items()}
        monkeypatch.setattr(optim, "FUSED_ADAM", True)
        o1.step(p1, g)
        monkeypatch.setattr(optim, "FUSED_ADAM", False)
        o2.step(p2, g)
        for k in g:
            assert np.array_equal(g[k], g_copy[k])  # gradients are never modified
    for k in p1:
        assert np.array_equal(p1[k], p2[k])
        assert np.array_equal(o1.state[k]["exp_avg"], o2.state[k]["exp_avg"])
        assert np.array_equal(o1.state[k]["exp_avg_sq"], o2.state[k]["exp_avg_sq"])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("cell,extra", [("lstm", {}), ("gru", {}), ("rnn", {}),
                                        ("rnn", {"nonlinearity": "relu"}),
                                        ("gru", {"reset_after": False})])
@pytest.mark.parametrize("layers", [1, 3])
def test_lean_stepper_equals_sequence_forward(cell, extra, dtype, layers, monkeypatch):
    cfg = LMConfig(vocab_size=31, cell=cell, num_layers=layers, hidden_size=10, embed_dim=6,
                   dtype=dtype, **extra)
    m = LanguageModel(cfg, seed=5)
    rng = np.random.default_rng(12)
    ids = rng.integers(0, 31, (3, 8))
    lp_seq, st_seq = m.log_probs(ids)
    tol = TOL[np.dtype(dtype).type] if dtype == "float64" else dict(rtol=1e-5, atol=1e-5)
    for max_n in (8, 0):  # the one-call kernel, then the general per-layer path
        monkeypatch.setattr(LeanStep, "max_rows", max_n)
        step = m.stepper()
        st = None
        for t in range(8):
            lp, st = step(ids[:, t], st)
            _close(lp_seq[:, t], lp, tol, f"t={t}")
        _close(st_seq, st, tol, "state")
    monkeypatch.setattr(LeanStep, "max_rows", 8)
    step = m.stepper()
    with pytest.raises(ValueError):
        step(np.array([31]))
    with pytest.raises(ValueError):
        step(np.array([-1]))


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("layers,H", [(1, 10), (2, 9), (3, 7)])
def test_lean_step_weight_order_changes_nothing(cell, layers, H):
    """The generation kernel reads the weights forwards or backwards on alternate tokens (and
    rows): each output is the same dot product either way, whatever the remainder rows of the
    8-row blocks (G*H = 7..40, V = 31).  Equal to float32 rounding, not always bit for bit:
    the kernel's call sites are inlined copies that LLVM may vectorise apart (seen on an AVX2
    AMD CPU: one unit in the last place of h at L 1, H 10; identical on an AVX-512 Intel)."""
    from rnnkit.kernels.lmstep import lm_token

    cfg = LMConfig(vocab_size=31, cell=cell, num_layers=layers, hidden_size=H, embed_dim=5,
                   dtype="float32")
    m = LanguageModel(cfg, seed=3)
    step = m.stepper()
    rng = np.random.default_rng(4)
    h = rng.standard_normal((layers, 3, H)).astype(np.float32)
    c = rng.standard_normal((layers, 3, H)).astype(np.float32)
    tok = np.array([0, 30, 17], dtype=np.int64)
    args = _lean_args(m, tok, h, c)
    a, b = lm_token(*args, False), lm_token(*args, True)
    assert not a[0] and not b[0]
    same = dict(rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(b[1], a[1], **same)  # h
    np.testing.assert_allclose(b[3], a[3], **same)  # log-probabilities
    if cell == "lstm":  # c_new is written by the LSTM only
        np.testing.assert_allclose(b[2], a[2], **same)
    # and the stepper, alternating, equals the kernel in either order
    lp1, _ = step(tok, (h, c) if cell == "lstm" else h)
    lp2, _ = step(tok, (h, c) if cell == "lstm" else h)
    assert np.array_equal(lp1, a[3]) or np.array_equal(lp1, b[3])
    assert np.array_equal(lp2, a[3]) or np.array_equal(lp2, b[3])
    assert not np.array_equal(lp1, lp2) or np.array_equal(a[3], b[3])  # it did alternate


def _lean_args(m, tok, h, c):
    """The arguments the stepper's one-call kernel gets."""
    lean = m.stepper().compiled
    return (lean.code, tok, *lean.weights(), h, c)


@pytest.mark.parametrize("cell,extra", [("lstm", {}), ("gru", {}), ("rnn", {}),
                                        ("rnn", {"nonlinearity": "relu"})])
@pytest.mark.parametrize("layers,H", [(1, 8), (2, 12), (3, 7), (2, 10)])
@pytest.mark.parametrize("blocks", [2, 3])
def test_split_generation_step_equals_one_thread(cell, extra, layers, H, blocks):
    """The generation step split by hidden units (and the output layer by vocabulary rows)
    over threads gives the one-thread kernel's results to float32 rounding (the same 8-row
    dot products where H is a multiple of 8; the gate math of a block's units may take the
    vector or the scalar form, which differ in the last bit); for 1 and 3 rows."""
    from rnnkit.kernels.lmstep import block_edges, lm_token, lm_token_split

    cfg = LMConfig(vocab_size=31, cell=cell, num_layers=layers, hidden_size=H, embed_dim=5,
                   dtype="float32", **extra)
    m = LanguageModel(cfg, seed=7)
    rng = np.random.default_rng(8)
    for N in (1, 3):
        h = rng.standard_normal((layers, N, H)).astype(np.float32)
        c = rng.standard_normal((layers, N, H)).astype(np.float32) if cell == "lstm" else h
        tok = rng.integers(0, 31, N).astype(np.int64)
        args = _lean_args(m, tok, h, c)
        a = lm_token(*args, False)
        b = lm_token_split(*args, block_edges(H, blocks), block_edges(31, blocks))
        assert not a[0] and not b[0]
        def same(x, y):
            return np.allclose(x, y, rtol=2e-6, atol=1e-6)

        assert same(a[1], b[1]) and same(a[3], b[3])
        if cell == "lstm":
            assert same(a[2], b[2])
    bad = lm_token_split(*_lean_args(m, np.array([31]), h[:, :1], c[:, :1]),
                         block_edges(H, blocks), block_edges(31, blocks))
    assert bad[0]  # a token outside the vocabulary is reported, not read


def test_block_edges():
    from rnnkit.kernels.lmstep import block_edges

    assert block_edges(256, 2).tolist() == [0, 128, 256]
    assert block_edges(10, 2).tolist() == [0, 8, 10]  # starts on multiples of 8
    assert block_edges(3, 2).tolist() == [0, 3, 3]  # an empty last block is allowed
    assert block_edges(100, 3).tolist() == [0, 40, 80, 100]
    assert block_edges(100, 3, align=4).tolist() == [0, 36, 72, 100]


def test_stepper_on_two_threads_equals_sequence_forward(monkeypatch):
    """RNNKIT_STEP_THREADS=2 makes the stepper split each token over two threads (where
    Numba has an OpenMP or TBB layer; else it runs the one-thread kernel): either way the
    log-probabilities are the sequence forward's, token after token, and a forked child
    (GNU OpenMP does not survive fork) gets the same from the one-thread kernel."""
    from rnnkit.kernels import lmstep

    monkeypatch.setenv("RNNKIT_STEP_THREADS", "2")
    cfg = LMConfig(vocab_size=23, cell="lstm", num_layers=2, hidden_size=16, embed_dim=6,
                   dtype="float32")
    m = LanguageModel(cfg, seed=2)
    ids = np.random.default_rng(3).integers(0, 23, (2, 6))
    lp_seq, _ = m.log_probs(ids)
    step = m.stepper()
    st = None
    for t in range(6):
        lp, st = step(ids[:, t], st)
        _close(lp_seq[:, t], lp, dict(rtol=1e-5, atol=1e-5), f"t={t}")
    if lmstep._split_layer_ok:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through the pipe
            lp2, _ = step(ids[:, 0], None)
            os.write(w, b"1" if np.allclose(lp2, lp_seq[:, 0], atol=1e-5) else b"0")
            os._exit(0)
        os.close(w)
        assert os.read(r, 1) == b"1"
        os.waitpid(pid, 0)


def test_stepper_threads_argument(monkeypatch):
    """stepper(threads=1) — the default — never loads the split kernel's thread pool;
    threads=2 splits (where Numba has an OpenMP/TBB layer); a bad value is refused."""
    from rnnkit.kernels import lmstep

    monkeypatch.delenv("RNNKIT_STEP_THREADS", raising=False)
    calls = []
    real = lmstep.split_call
    monkeypatch.setattr(lmstep, "split_call", lambda n, *a: calls.append(n) or real(n, *a))
    cfg = LMConfig(vocab_size=19, cell="gru", num_layers=2, hidden_size=12, embed_dim=4,
                   dtype="float32")
    m = LanguageModel(cfg, seed=1)
    tok = np.array([3])
    lp1, _ = m.stepper()(tok, None)
    assert calls == []
    lp2, _ = m.stepper(threads=2)(tok, None)
    assert calls == [2]
    assert np.allclose(lp1, lp2, rtol=2e-6, atol=1e-6)
    for bad in (0, -1, 1.5, "two"):
        with pytest.raises((ValueError, TypeError)):
            m.stepper(threads=bad)


def test_training_plan_and_generation_ask_the_same_first_question(monkeypatch):
    """One rule says when a second thread finds no core of its own; the training plan and
    the generation step both go to one thread then, saying why."""
    from rnnkit.kernels import blas

    monkeypatch.delenv("RNNKIT_STEP_THREADS", raising=False)
    assert blas._no_free_core(1, 0.0) == "one core"
    assert blas._no_free_core(2, None) == "no load average"
    assert blas._no_free_core(2, 2.5) == "load 2.5 on 2 cores"
    assert blas._no_free_core(2, 2.4) is None and blas._no_free_core(4, 1.0) is None
    monkeypatch.setattr(blas, "get_threads", lambda: 2)
    monkeypatch.setattr(blas, "spin_is_short", lambda: True)
    for c, load in ((1, 0.0), (2, None), (2, 2.5)):
        monkeypatch.setattr(blas, "cores", lambda c=c: c)
        p = blas.plan(32, 32 * 4 * 256 * 256, load=load, compiled=True, short_spin=True,
                      blas_threads=2)
        assert (p.workers, p.blas, p.hoisted) == (1, 1, 1)
        assert p.reason == blas._no_free_core(c, load) + ": one thread"
        assert blas.generation_threads(3 << 20, load=load) == 1
    monkeypatch.setattr(blas, "cores", lambda: 2)
    assert blas.plan(32, 32 * 4 * 256 * 256, load=0.5, compiled=True, short_spin=True,
                     blas_threads=2).workers == 2
    assert blas.generation_threads(3 << 20, load=0.5) == 2


def test_generation_threads_rule(monkeypatch):
    from rnnkit.kernels import blas

    monkeypatch.delenv("RNNKIT_STEP_THREADS", raising=False)
    monkeypatch.setattr(blas, "cores", lambda: 2)
    monkeypatch.setattr(blas, "get_threads", lambda: 2)
    monkeypatch.setattr(blas, "spin_is_short", lambda: True)
    mb = 1 << 20
    assert blas.generation_threads(3 * mb, load=0.5) == 2  # 2 x 256 LSTM: both cores
    assert blas.generation_threads(mb // 2, load=0.5) == 1  # small weights: one thread
    assert blas.generation_threads(3 * mb, load=2.6) == 1  # no free core
    assert blas.generation_threads(3 * mb, load=None) == 1
    monkeypatch.setattr(blas, "spin_is_short", lambda: False)  # NumPy imported first
    assert blas.generation_threads(3 * mb, load=0.5) == 1
    monkeypatch.setattr(blas, "spin_is_short", lambda: True)
    monkeypatch.setattr(blas, "get_threads", lambda: 1)  # OMP_NUM_THREADS=1
    assert blas.generation_threads(3 * mb, load=0.5) == 1
    monkeypatch.setattr(blas, "get_threads", lambda: 16)
    monkeypatch.setattr(blas, "cores", lambda: 16)
    assert blas.generation_threads(40 * mb, load=0.5) == blas.GEN_MAX_THREADS
    assert blas.generation_threads(40 * mb, 1, load=0.5) == 1  # asked for one
    assert blas.generation_threads(mb // 2, 2, load=9.0) == 2  # asked for two
    monkeypatch.setenv("RNNKIT_STEP_THREADS", "3")
    assert blas.generation_threads(mb // 2, load=9.0) == 3
    assert blas.generation_threads(mb // 2, 1, load=9.0) == 3  # the variable wins


@pytest.mark.parametrize("V", [1, 5, 7, 8, 9, 16, 17, 100, 1003])
def test_float32_softmax_kernels_against_float64(V):
    """The vectorised float32 forms (row max in eight registers, polynomial exp) of xent, the
    picked log-probability and log softmax, against the float64 reference of the same
    logits: rows of every length around the eight maxima, spreads up to e^-87 clamping."""
    from rnnkit.kernels.loss import log_softmax as k_log_softmax
    from rnnkit.kernels.loss import pick_log_softmax, xent

    rng = np.random.default_rng(V)
    M = 29
    z = (rng.standard_normal((M, V)) * np.array([0.1, 3.0, 40.0])[np.arange(M) % 3, None])
    z = z.astype(np.float32)
    y = rng.integers(0, V, M).astype(np.int64)
    z64 = z.astype(np.float64)
    loss_ref, d_ref = softmax_cross_entropy(z64, y)  # mean nll, d of the mean
    w = z.copy()
    total = xent(w, y, np.float32(1.0 / M))
    assert total / M == pytest.approx(loss_ref, rel=2e-6, abs=1e-6)
    np.testing.assert_allclose(w, d_ref, rtol=1e-4, atol=2e-7)
    lp_ref = log_softmax(z64)
    got = pick_log_softmax(z, y)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, lp_ref[np.arange(M), y], rtol=1e-6, atol=2e-6)
    out = np.empty_like(z)
    k_log_softmax(z, out)
    np.testing.assert_allclose(out, lp_ref, rtol=1e-6, atol=1e-5)
    k_log_softmax(z, z)  # in place
    np.testing.assert_array_equal(z, out)


def test_float32_row_max_is_exact():
    """The eight-register row max is the row's max, wherever it sits (each of the eight
    running maxima and the remainder), for every length up to 40 and a vocabulary's."""
    from rnnkit.kernels.loss import _row_max32

    rng = np.random.default_rng(21)
    for V in list(range(1, 41)) + [9867]:
        for where in range(min(V, 17)):
            row = rng.standard_normal(V).astype(np.float32) - 5
            row[(where * 7) % V] = 3.0
            assert _row_max32(row) == np.float32(3.0) == row.max()
        row = -np.abs(rng.standard_normal(V)).astype(np.float32) - 1  # all negative
        assert _row_max32(row) == row.max()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("split", [False, True])
def test_picked_log_softmax_with_bias_equals_adding_it_first(dtype, split, monkeypatch):
    """The bias added inside the picking kernel, row by row: the same log-probabilities, bit
    for bit, as adding it to the whole block first, and the block left holding z + bias."""
    from rnnkit.kernels import loss as kloss

    rng = np.random.default_rng(22)
    z = (rng.standard_normal((205, 300)) * 3).astype(dtype)
    b = rng.standard_normal(300).astype(dtype)
    y = rng.integers(0, 300, 205).astype(np.int64)
    if split:
        monkeypatch.setattr(kloss, "SPLIT_MIN", 0)
        monkeypatch.setenv("RNNKIT_STEP_THREADS", "2")
    first = z + b
    want = kloss.pick_log_softmax(first, y)
    got_z = z.copy()
    got = kloss.pick_log_softmax(got_z, y, b)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got_z, first)


def test_float32_exp_accuracy():
    from rnnkit.kernels.loss import _exp_parts32

    x = np.linspace(-80.0, 0.0, 200_001).astype(np.float32)
    p, two_n = np.empty_like(x), np.empty_like(x)
    s = _exp_parts32(x, np.float32(0.0), p, two_n)
    ref = np.exp(x.astype(np.float64))
    assert np.max(np.abs(p * two_n - ref) / ref) < 4e-7
    assert s == pytest.approx(ref.sum(), rel=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sq_sum_kernel_norm_and_finiteness(dtype):
    """The gradient norm's one-pass kernel: the float64 sum of squares (to summation order)
    and a flag that is 0 exactly when every value is finite — also for finite values whose
    square overflows."""
    from rnnkit.kernels.adam import sq_sum

    rng = np.random.default_rng(12)
    x = (rng.standard_normal(10_010) * 1e3).astype(dtype)
    s, bad = sq_sum(x)
    assert s == pytest.approx(float(np.square(x, dtype=np.float64).sum()), rel=1e-12)
    assert bad == 0.0
    for v in (np.nan, np.inf, -np.inf):
        y = x.copy()
        y[5003] = v
        assert np.isnan(sq_sum(y)[1])
        assert optim.grads_finite({"w": y.reshape(7, -1)[:, :1001].copy()}) is False
    if dtype == np.float64:
        big = np.array([1e200, -1e200])
        assert sq_sum(big)[1] == 0.0 and optim.grads_finite({"b": big})
    assert optim.grads_finite({"w": x}) is True
    g = {"w": x.copy()}
    norm = optim.clip_grad_norm(g, 1.0)
    assert norm == pytest.approx(float(np.linalg.norm(x.astype(np.float64))), rel=1e-12)
    assert float(np.linalg.norm(g["w"].astype(np.float64))) == pytest.approx(1.0, rel=1e-5)


def test_float32_xent_row_split_equals_one_pass(monkeypatch):
    """Split over two row workers (forced), the loss and every gradient row are those of one
    pass: each row is done alone, and the totals are added in row order."""
    from rnnkit.kernels import loss as kloss

    rng = np.random.default_rng(13)
    z = (rng.standard_normal((301, 57)) * 4).astype(np.float32)
    y = rng.integers(0, 57, 301).astype(np.int64)
    one = z.copy()
    t1 = kloss.xent(one, y, np.float32(1 / 301))
    monkeypatch.setattr(kloss, "SPLIT_MIN", 0)
    monkeypatch.setenv("RNNKIT_STEP_THREADS", "2")
    calls = []
    real = kloss._xent32
    monkeypatch.setattr(kloss, "_xent32", lambda z_, *a: calls.append(z_.shape[0]) or real(z_, *a))
    two = z.copy()
    t2 = kloss.xent(two, y, np.float32(1 / 301))
    assert sorted(calls) == [150, 151]
    np.testing.assert_array_equal(two, one)
    assert t2 == pytest.approx(t1, rel=1e-12)
    monkeypatch.setattr(kloss, "SPLIT_MIN", 1 << 30)
    p1, l1 = kloss.pick_log_softmax(z, y), np.empty_like(z)
    kloss.log_softmax(z, l1)
    monkeypatch.setattr(kloss, "SPLIT_MIN", 0)
    p2, l2 = kloss.pick_log_softmax(z, y), np.empty_like(z)
    kloss.log_softmax(z, l2)
    np.testing.assert_array_equal(p2, p1)
    np.testing.assert_array_equal(l2, l1)


@pytest.mark.parametrize("split", [False, True])
def test_float32_xent_with_bias(split, monkeypatch):
    """The bias added inside the loss kernel and its gradient summed there (per worker, then
    added): the same loss and dL/dz as adding it first, and dL/db = the column sums."""
    from rnnkit.kernels import loss as kloss

    rng = np.random.default_rng(14)
    z = (rng.standard_normal((203, 41)) * 3).astype(np.float32)
    b = rng.standard_normal(41).astype(np.float32)
    y = rng.integers(0, 41, 203).astype(np.int64)
    ref = z + b
    t_ref = kloss.xent(ref, y, np.float32(1 / 203))
    if split:
        monkeypatch.setattr(kloss, "SPLIT_MIN", 0)
        monkeypatch.setenv("RNNKIT_STEP_THREADS", "2")
    got = z.copy()
    t, db = kloss.xent(got, y, np.float32(1 / 203), b)
    assert t == pytest.approx(t_ref, rel=1e-6)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(db, ref.astype(np.float64).sum(axis=0), rtol=1e-4, atol=1e-6)
    z64 = z.astype(np.float64)
    t64, db64 = kloss.xent(z64, y, 1 / 203, b.astype(np.float64))
    loss_ref, d_ref = softmax_cross_entropy(z.astype(np.float64) + b, y)
    assert t64 / 203 == pytest.approx(loss_ref, rel=1e-12)
    np.testing.assert_allclose(db64, d_ref.sum(axis=0), rtol=1e-10, atol=1e-14)


def test_grad_square_sum_one_pass_for_check_and_clip():
    """The training step's NaN check and clip norm come from one pass: the same norm as
    clip_grad_norm, the same verdict as grads_finite, and the same clipped gradients."""
    rng = np.random.default_rng(15)
    g = {"a": rng.standard_normal((7, 5)).astype(np.float32) * 3,
         "b": rng.standard_normal(9).astype(np.float32)}
    sq, finite = optim.grad_square_sum(g)
    ref = {k: v.copy() for k, v in g.items()}
    norm = optim.clip_grad_norm(ref, 1.0)
    assert finite is True and math.sqrt(sq) == pytest.approx(norm, rel=1e-12)
    optim.scale_to_norm(g, 1.0, math.sqrt(sq))
    for k in g:
        np.testing.assert_array_equal(g[k], ref[k])
    g["b"][3] = np.inf
    assert optim.grad_square_sum(g)[1] is False and optim.grads_finite(g) is False
