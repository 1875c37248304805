"""The fused time loop split across threads by batch rows, and the visible thread plan.

Rows of a batch never interact in the recurrence, so worker threads that each run the whole
sequence over their own rows must give the reference path's results (float64 1e-10,
float32 1e-5) — for every cell, ragged and reversed sequences, stacked layers, forward,
backward (also release mode) and inference.  The plan that decides the split depends on the
machine's load, so it must be visible (one line) and overridable (RNNKIT_STEP_THREADS).
"""

from __future__ import annotations

import numpy as np
import pytest

from rnnkit import kernels
from rnnkit import recurrent as rec
from rnnkit.kernels import blas
from rnnkit.layers.recurrent import RecurrentLayer
from _compare import assert_close_tree  # noqa: E402

pytestmark = pytest.mark.skipif(not kernels.available(), reason="numba not installed")

CELLS = [("lstm", {}), ("gru", {}), ("gru", {"reset_after": False}), ("rnn", {}),
         ("rnn", {"nonlinearity": "relu"})]
CELL_IDS = ["lstm", "gru", "gru_reset_before", "rnn_tanh", "rnn_relu"]
TOL = {np.float64: dict(rtol=1e-10, atol=1e-10), np.float32: dict(rtol=1e-5, atol=1e-5)}


@pytest.fixture
def record_shares(monkeypatch):
    """Record the row shares every fused loop ran with."""
    seen = []
    real = rec._on_rows

    def spy(plan, N, body):
        seen.append(plan.shares(N))
        return real(plan, N, body)

    monkeypatch.setattr(rec, "_on_rows", spy)
    return seen


def _run(layer, x, lengths, state, dout, release=False):
    out, st, cache = layer.forward(x, lengths, state)
    dx, dst, grads = layer.backward(dout.copy(), cache, release=release)
    inf, inf_st, _ = layer.forward(x, lengths, state, keep_cache=False)
    return out, st, dx, dst, grads, inf, inf_st


def _close(a, b, tol, what=""):
    assert_close_tree(a, b, tol, what)


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_row_split_equals_reference(cell, dtype, threads, monkeypatch, record_shares):
    mode, kw = cell
    rng = np.random.default_rng(7)
    N, T, D, H = 7, 6, 3, 5
    layer = RecurrentLayer(D, H, 2, mode=mode, bidirectional=True, dtype=dtype, seed=1, **kw)
    x = rng.standard_normal((N, T, D)).astype(dtype)
    lengths = np.array([6, 1, 4, 6, 2, 5, 3])
    h = rng.standard_normal(layer.state_shape(N)).astype(dtype)
    state = (h, rng.standard_normal(h.shape).astype(dtype)) if mode == "lstm" else h
    dout = rng.standard_normal((N, T, layer.output_size)).astype(dtype)
    layer.backend = "numpy"
    ref = _run(layer, x, lengths, state, dout)
    layer.backend = "numba"
    monkeypatch.setenv(blas.ENV, str(threads))
    fast = _run(layer, x, lengths, state, dout)
    _close(ref, fast, TOL[dtype], "threads")
    assert record_shares and all(len(s) == threads for s in record_shares)
    # every row is run by exactly one worker
    for shares in record_shares:
        assert [n for a, b in shares for n in range(a, b)] == list(range(N))


@pytest.mark.parametrize("cell", CELLS[:2], ids=CELL_IDS[:2])
def test_row_split_release_mode(cell, monkeypatch):
    mode, kw = cell
    rng = np.random.default_rng(3)
    N, T, D, H = 9, 5, 4, 6
    layer = RecurrentLayer(D, H, 2, mode=mode, dtype=np.float64, seed=2, **kw)
    x = rng.standard_normal((N, T, D))
    dout = rng.standard_normal((N, T, H))
    monkeypatch.setenv(blas.ENV, "1")
    one = _run(layer, x, None, None, dout, release=True)
    monkeypatch.setenv(blas.ENV, "2")
    two = _run(layer, x, None, None, dout, release=True)
    _close(one, two, TOL[np.float64], "release")


def test_worker_error_is_raised_after_all_shares(monkeypatch):
    monkeypatch.setenv(blas.ENV, "2")
    done = []

    def body(n0, n1):
        done.append((n0, n1))
        if n0 > 0:
            raise RuntimeError("worker failed")

    with pytest.raises(RuntimeError, match="worker failed"):
        rec._on_rows(blas.plan(8), 8, body)
    assert sorted(done) == [(0, 4), (4, 8)]


def test_plan_env_override_and_bad_value(monkeypatch):
    monkeypatch.setenv(blas.ENV, "3")
    p = blas.plan(32, 1 << 23, load=9.0)
    assert (p.workers, p.blas) == (3, 1) and blas.ENV in p.reason
    assert blas.plan(2, load=0.0).workers == 2  # never more workers than rows
    for bad in ("abc", "-1", "1.5"):
        monkeypatch.setenv(blas.ENV, bad)
        with pytest.raises(ValueError) as e:
            blas.plan(32)
        assert blas.ENV in str(e.value) and "\n" not in str(e.value)


def test_plan_by_load_and_size(monkeypatch):
    monkeypatch.delenv(blas.ENV, raising=False)
    monkeypatch.setattr(blas, "cores", lambda: 2)
    idle = blas.plan(32, 1 << 23, load=0.3)  # the row split only when asked for (measured)
    assert (idle.workers, idle.blas) == (1, 0)
    busy = blas.plan(32, 1 << 23, load=5.0)
    assert (busy.workers, busy.blas, busy.hoisted) == (1, 1, 1) and "load 5.0" in busy.reason
    assert idle.hoisted == 0
    gen = blas.plan(1, 1 << 18, load=0.3)
    assert (gen.workers, gen.blas) == (1, 1)
    big = blas.plan(1, 1 << 22, load=0.3)  # batch 1, H 1024 LSTM: BLAS splits the product
    assert (big.workers, big.blas) == (1, 0)
    assert blas.plan(32, load=None).workers == 1  # no load average: stay safe
    line = blas.describe(32, 256, 4)
    assert "\n" not in line and "thread" in line
    assert idle.shares(7) == [(0, 7)]
    split = blas.ThreadPlan(2, 1, "asked for")
    assert split.shares(7) == [(0, 3), (3, 7)]
    assert "2 threads" in split.describe() and "1 thread," in busy.describe()
    monkeypatch.setattr(blas, "load_average", lambda: 0.2)
    line = blas.plan_line("gru", 32, 256)
    assert line.startswith("thread plan: time loop on 1 thread") and blas.ENV in line


def test_blas_threads_restored():
    before = blas.get_threads()
    if before is None:
        pytest.skip("no BLAS library visible to threadpoolctl")
    with blas.threads(1):
        assert blas.get_threads() == 1
    assert blas.get_threads() == before


def test_bad_env_fails_when_the_layer_is_built(monkeypatch):
    monkeypatch.setenv(blas.ENV, "two")
    with pytest.raises(ValueError, match=blas.ENV):
        RecurrentLayer(3, 4, backend="numba")
    RecurrentLayer(3, 4, backend="numpy")  # the reference path has no threads to plan


def test_cli_bad_env_is_one_line_and_leaves_no_directory(tmp_path, monkeypatch, capsys):
    from rnnkit.cli import main

    corpus = tmp_path / "c.txt"
    corpus.write_text("a small corpus line.\n" * 30)
    out = tmp_path / "run"
    monkeypatch.setenv(blas.ENV, "abc")
    assert main(["train", str(corpus), "--out", str(out), "--steps", "1", "--hidden", "8",
                 "--embed", "4", "--batch", "2", "--seq-len", "5"]) == 2
    err = capsys.readouterr().err
    assert blas.ENV in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_row_split_works_in_a_forked_child(monkeypatch):
    import multiprocessing as mp

    monkeypatch.setenv(blas.ENV, "2")
    layer = RecurrentLayer(3, 4, mode="lstm", dtype=np.float64, seed=0)
    x = np.random.default_rng(0).standard_normal((6, 5, 3))
    want, _, _ = layer.forward(x, keep_cache=False)  # the parent's pool exists now
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:
        got = pool.apply_async(_forward_in_child, (layer, x)).get(timeout=120)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def _forward_in_child(layer, x):
    return layer.forward(x, keep_cache=False)[0]


def test_row_split_is_bitwise_with_this_blas(monkeypatch):
    """The plan changes with the load, so it must not change a run's numbers: a training
    step's outputs and gradients with 1 and 2 workers are identical (float32)."""
    rng = np.random.default_rng(5)
    layer = RecurrentLayer(8, 16, 2, mode="lstm", seed=3)
    x = rng.standard_normal((10, 12, 8)).astype(np.float32)
    dout = rng.standard_normal((10, 12, 16)).astype(np.float32)
    runs = []
    for n in ("1", "2"):
        monkeypatch.setenv(blas.ENV, n)
        out, _, cache = layer.forward(x)
        runs.append((out, layer.backward(dout, cache)[2]))
    assert np.array_equal(runs[0][0], runs[1][0])
    for k in runs[0][1]:
        assert np.array_equal(runs[0][1][k], runs[1][1][k]), k
