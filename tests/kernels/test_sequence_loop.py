"""The compiled whole-sequence loop (kernels.sequence + kernels.gemm) against the per-step
Python loop and the NumPy reference; the BLAS call itself; the thread plan that uses it.

The compiled loop is the per-step path with the product moved into compiled code, so the
two must agree to rounding for every cell, ragged and reversed sequences, stacked layers,
with and without a saved history (training / inference), and split over row workers.
"""

from __future__ import annotations

import numpy as np
import pytest

import rnnkit
from rnnkit import kernels
from rnnkit import recurrent as rec
from rnnkit.kernels import blas
from rnnkit.layers.recurrent import RecurrentLayer
from _compare import assert_close_tree  # noqa: E402

pytestmark = pytest.mark.skipif(not kernels.available(), reason="numba not installed")

from rnnkit.kernels import gemm as gemm_mod  # noqa: E402  (imports numba)

needs_gemm = pytest.mark.skipif(not gemm_mod.available(),
                                reason="NumPy's BLAS exports no CBLAS gemm here")

CELLS = [("lstm", {}), ("gru", {}), ("gru", {"reset_after": False}), ("rnn", {}),
         ("rnn", {"nonlinearity": "relu"})]
CELL_IDS = ["lstm", "gru", "gru_reset_before", "rnn_tanh", "rnn_relu"]
TOL = {np.float64: dict(rtol=1e-12, atol=1e-12), np.float32: dict(rtol=2e-5, atol=2e-6)}


@needs_gemm
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_gemm_equals_matmul_on_row_slices(dtype):
    rng = np.random.default_rng(0)
    big = rng.standard_normal((3, 9, 7)).astype(dtype)
    b = rng.standard_normal((12, 7)).astype(dtype).T  # a transposed view: rows not contiguous
    bc = np.ascontiguousarray(b)
    blocks = rng.standard_normal((7, 20)).astype(dtype)[:, 4:15]  # column block: ld 20
    for a in (big[1, 2:6], big[2, 5:6], big[0]):
        c = np.full((a.shape[0], 12), np.nan, dtype=dtype)
        gemm_mod.gemm(a, bc, c)
        np.testing.assert_allclose(c, a @ bc, rtol=1e-5 if dtype == np.float32 else 1e-12)
        c2 = np.zeros((a.shape[0], 11), dtype=dtype)
        gemm_mod.gemm(a, blocks, c2)
        np.testing.assert_allclose(c2, a @ blocks, rtol=1e-5 if dtype == np.float32 else 1e-12)
    with pytest.raises(ValueError, match="contiguous"):
        gemm_mod.gemm(big[0], b, np.empty((9, 12), dtype=dtype))
    empty = np.empty((0, 12), dtype=dtype)
    gemm_mod.gemm(big[0, :0], bc, empty)  # no rows: nothing to do, no BLAS call
    assert "gemm" in gemm_mod.describe()


def _run(layer, x, lengths, state, dout, release=False):
    out, st, cache = layer.forward(x, lengths, state)
    grads = layer.backward(dout.copy(), cache, release=release)
    inf, inf_st, _ = layer.forward(x, lengths, state, keep_cache=False)
    return out, st, grads, inf, inf_st


@needs_gemm
@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_compiled_loop_equals_step_loop_and_reference(cell, dtype, workers, monkeypatch):
    mode, kw = cell
    rng = np.random.default_rng(11)
    N, T, D, H = 6, 7, 3, 5
    layer = RecurrentLayer(D, H, 2, mode=mode, bidirectional=True, dtype=dtype, seed=4, **kw)
    x = rng.standard_normal((N, T, D)).astype(dtype)
    lengths = np.array([7, 1, 4, 7, 2, 5])
    h = rng.standard_normal(layer.state_shape(N)).astype(dtype)
    state = (h, rng.standard_normal(h.shape).astype(dtype)) if mode == "lstm" else h
    dout = rng.standard_normal((N, T, layer.output_size)).astype(dtype)
    monkeypatch.setenv(blas.ENV, str(workers))
    layer.backend = "numpy"
    ref = _run(layer, x, lengths, state, dout)
    layer.backend = "numba"
    calls = []
    real = layer.fused_cell.forward_seq

    def spy(w, n0, n1):
        calls.append((n0, n1))
        return real(w, n0, n1)

    monkeypatch.setattr(layer.fused_cell, "forward_seq", spy)
    compiled = _run(layer, x, lengths, state, dout)
    assert calls, "the compiled loop did not run"
    assert {b - a for a, b in calls} <= {N // workers, N - N // workers}
    monkeypatch.setattr(rec, "SEQUENCE_LOOP", False)
    calls.clear()
    stepped = _run(layer, x, lengths, state, dout)
    assert not calls
    assert_close_tree(ref, compiled, TOL[dtype], "compiled vs reference")
    assert_close_tree(stepped, compiled, TOL[dtype], "compiled vs per-step")


@needs_gemm
@pytest.mark.parametrize("cell", CELLS[:3], ids=CELL_IDS[:3])
def test_compiled_loop_release_mode_and_lm_step(cell, monkeypatch):
    """release=True (gate gradients over the saved gates) through the compiled loop."""
    mode, kw = cell
    rng = np.random.default_rng(5)
    layer = RecurrentLayer(4, 6, 2, mode=mode, dtype=np.float64, seed=2, **kw)
    x = rng.standard_normal((9, 5, 4))
    dout = rng.standard_normal((9, 5, 6))
    monkeypatch.setenv(blas.ENV, "2")
    compiled = _run(layer, x, None, None, dout, release=True)
    monkeypatch.setattr(rec, "SEQUENCE_LOOP", False)
    stepped = _run(layer, x, None, None, dout, release=True)
    assert_close_tree(stepped, compiled, TOL[np.float64], "release")


def test_single_step_keeps_the_step_path():
    assert rec.sequence_loop(1) is False
    assert rec.sequence_loop(2) is gemm_mod.available()


def test_plan_splits_rows_only_for_compiled_loops_without_spinning_blas(monkeypatch):
    monkeypatch.delenv(blas.ENV, raising=False)
    monkeypatch.setattr(blas, "cores", lambda: 2)
    monkeypatch.setattr(blas, "get_threads", lambda: 2)
    split = blas.plan(32, 1 << 23, load=0.3, compiled=True, short_spin=True)
    assert (split.workers, split.blas) == (2, 1) and "compiled loops" in split.reason
    assert split.compiled  # the driver reads the loop's kind from the plan
    assert split.shares(32) == [(0, 16), (16, 32)]
    # OpenBLAS threads still spinning (NumPy loaded before rnnkit): one worker, as before
    assert blas.plan(32, 1 << 23, load=0.3, compiled=True, short_spin=False).workers == 1
    stepped = blas.plan(32, 1 << 23, load=0.3, compiled=False, short_spin=True)
    assert stepped.workers == 1 and not stepped.compiled
    assert blas.plan(15, 1 << 23, load=0.3, compiled=True, short_spin=True).workers == 1
    assert blas.plan(16, 1 << 20, load=0.3, compiled=True, short_spin=True).workers == 2
    monkeypatch.setattr(blas, "cores", lambda: 8)
    assert blas.plan(24, 1 << 23, load=0.3, compiled=True, short_spin=True).workers == 3
    assert blas.plan(32, 1 << 23, load=3.0, compiled=True, short_spin=True).workers == 4
    monkeypatch.setattr(blas, "cores", lambda: 2)  # load 3 on 2 cores: every core taken
    assert blas.plan(32, 1 << 23, load=3.0, compiled=True, short_spin=True).workers == 1
    # BLAS limited to one thread (one MPI rank per core): one worker
    one = blas.plan(32, 1 << 23, load=0.3, compiled=True, short_spin=True, blas_threads=1)
    assert (one.workers, one.blas) == (1, 1) and "1 thread" in one.reason
    monkeypatch.setattr(blas, "get_threads", lambda: 1)
    assert blas.plan(32, 1 << 23, load=0.3, compiled=True, short_spin=True).workers == 1


def test_spin_timeout_is_read_from_the_environment(monkeypatch):
    monkeypatch.setattr(rnnkit, "_BLAS_SPIN_SET_BEFORE_NUMPY", True)
    monkeypatch.setenv(rnnkit.BLAS_SPIN_ENV, "10")
    assert blas.spin_is_short()
    monkeypatch.setenv(rnnkit.BLAS_SPIN_ENV, "28")
    assert not blas.spin_is_short()
    monkeypatch.setenv(rnnkit.BLAS_SPIN_ENV, "soon")
    assert not blas.spin_is_short()
    monkeypatch.setenv(rnnkit.BLAS_SPIN_ENV, "4")
    monkeypatch.setattr(rnnkit, "_BLAS_SPIN_SET_BEFORE_NUMPY", False)  # NumPy loaded first
    assert not blas.spin_is_short()


def test_import_rnnkit_first_sets_a_short_spin(tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != rnnkit.BLAS_SPIN_ENV}
    code = ("import os, rnnkit, numpy; from rnnkit.kernels import blas; "
            "print(os.environ['OPENBLAS_THREAD_TIMEOUT'], blas.spin_is_short())")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["10", "True"]
    code = ("import numpy, os, rnnkit; from rnnkit.kernels import blas; "
            "print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'), blas.spin_is_short())")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["None", "False"]
