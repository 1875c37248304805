"""The compiled whole-sequence loop (kernels.sequence + kernels.packed) against the per-step
Python loop and the NumPy reference; the packed product itself; the thread plan that uses it.

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

from rnnkit.kernels import packed  # noqa: E402  (imports numba)

CELLS = [("lstm", {}), ("gru", {}), ("gru", {"reset_after": False}), ("rnn", {}),
         ("rnn", {"nonlinearity": "relu"})]
CELL_IDS = ["lstm", "gru", "gru_reset_before", "rnn_tanh", "rnn_relu"]
TOL = {np.float64: dict(rtol=1e-12, atol=1e-12), np.float32: dict(rtol=2e-5, atol=2e-6)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("M,K,N", [(16, 64, 128), (13, 7, 50), (1, 3, 33), (9, 1, 17),
                                   (5, 40, 96), (12, 30, 31), (21, 9, 64), (3, 5, 40),
                                   (7, 16, 64), (15, 8, 32), (2, 33, 70)])
def test_packed_gemm_equals_matmul_on_row_slices(dtype, M, K, N):
    """Full R-row blocks and a short last one (from the padded copy), full panels
    and a partial last one, on row slices of bigger arrays (the loops' operands), against
    the float64 product."""
    rng = np.random.default_rng(M * 1000 + K * 10 + N)
    big = rng.standard_normal((2, M + 3, K)).astype(dtype)
    a = big[1, 2: M + 2]  # rows of a bigger array: row stride K, offset
    b = rng.standard_normal((N, K)).astype(dtype).T  # a transposed view, packed as it is
    out = np.full((M + 2, N), np.nan, dtype=dtype)
    c = out[1: M + 1]
    packed.packed_gemm(a, packed.pack(b), c)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    np.testing.assert_allclose(c, ref, rtol=0, atol=(2e-5 if dtype == np.float32 else 1e-13)
                               * max(1.0, np.abs(a).sum(1).max() * np.abs(b).max()))
    assert np.isnan(out[0]).all() and np.isnan(out[-1]).all()  # nothing outside c written
    if dtype == np.float64:  # one fma chain per element in k order: as exact as BLAS
        np.testing.assert_allclose(c, a @ b, rtol=1e-14, atol=1e-14)


def test_pack_layout_and_refusals():
    W = packed.panel_width(np.float32)  # the host's tile: 32 columns with AVX-512, 24 with AVX2
    assert packed.panel_width(np.float64) == W // 2
    b = np.arange(3 * (W + 8), dtype=np.float32).reshape(3, W + 8)
    p = packed.pack(b)
    assert p.shape == (2, 3, W) and p.flags.c_contiguous
    np.testing.assert_array_equal(p[0], b[:, :W])
    np.testing.assert_array_equal(p[1, :, :8], b[:, W:])
    assert not p[1, :, 8:].any()  # the partial panel is padded with zeros
    assert packed.pack(b.astype(np.float64)).shape == (3, 3, W // 2)
    with pytest.raises(TypeError, match="float32 or float64"):
        packed.pack(b.astype(np.int64))
    a = np.ones((4, 3), np.float32)
    with pytest.raises(ValueError, match="shapes"):
        packed.packed_gemm(a, p, np.empty((4, 2 * W + 6), np.float32))  # 3 panels' width
    with pytest.raises(ValueError, match="shapes"):
        packed.packed_gemm(np.ones((4, 5), np.float32), p, np.empty((4, W + 8), np.float32))
    with pytest.raises(ValueError, match="contiguous"):
        packed.packed_gemm(np.ones((3, 4), np.float32).T, p, np.empty((4, W + 8), np.float32))
    packed.packed_gemm(a[:0], p, np.empty((0, W + 8), np.float32))  # no rows: nothing to do


def test_tile_shape_follows_the_vector_registers():
    assert packed.tile_shape({"avx512f", "avx2", "avx", "fma"}) == (64, 2, 8)
    assert packed.tile_shape({"avx2", "avx", "fma"}) == (32, 3, 4)
    assert packed.tile_shape({"sse4.2"}) == (16, 3, 4)
    # the module's shape is the one for the features Numba compiles for
    assert (packed.VECTOR_BYTES, packed.VECTORS, packed.ROWS) == \
        packed.tile_shape(packed.target_features())
    # no register spills: accumulators plus B's vectors and a broadcast fit the registers
    for feats, regs in [({"avx512f"}, 32), ({"avx"}, 16), (set(), 16)]:
        vb, nv, r = packed.tile_shape(feats)
        assert r * nv + nv + 1 <= regs


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("vector_bytes,vectors,rows,fused",
                         [(64, 2, 8, True), (32, 3, 4, True), (16, 3, 4, True),
                          (32, 3, 4, False)],
                         ids=["avx512", "avx2", "sse", "avx-no-fma"])
def test_every_tile_shape_equals_matmul(dtype, vector_bytes, vectors, rows, fused):
    """Each shape's IR (not only the host's) multiplies an R x K block by a K x W panel:
    LLVM legalises vectors wider than the host's, so every shape runs on any CPU."""
    from numba import njit

    tile = packed._tile(rows, vectors, vector_bytes, fused)

    @njit(cache=False)
    def run(a, b, c):
        tile(a, a.ctypes.data, a.strides[0], b.ctypes.data, b.strides[0], a.shape[1],
             c.ctypes.data, c.strides[0])

    W = vectors * vector_bytes // np.dtype(dtype).itemsize
    rng = np.random.default_rng(rows * 100 + W)
    for K in (1, 7, 64):
        a = rng.standard_normal((rows, K)).astype(dtype)
        b = rng.standard_normal((K, W)).astype(dtype)
        c = np.full((rows, W), np.nan, dtype=dtype)
        run(a, b, c)
        ref = a.astype(np.float64) @ b.astype(np.float64)
        np.testing.assert_allclose(c, ref, rtol=0,
                                   atol=(2e-5 if dtype == np.float32 else 1e-13) * (K + 1))


def _run(layer, x, lengths, state, dout, release=False):
    out, st, cache = layer.forward(x, lengths, state)
    grads = layer.backward(dout.copy(), cache, release=release)
    inf, inf_st, _ = layer.forward(x, lengths, state, keep_cache=False)
    return out, st, grads, inf, inf_st


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("N,T,D,H", [(6, 7, 3, 5), (19, 4, 3, 40)], ids=["small", "panels"])
def test_compiled_loop_equals_step_loop_and_reference(cell, dtype, workers, N, T, D, H,
                                                      monkeypatch):
    """"panels": H 40 gives the packed product full panels and a partial one, and 9-10 rows
    per worker its 8-row and 1-row tiles."""
    mode, kw = cell
    rng = np.random.default_rng(11)
    layer = RecurrentLayer(D, H, 2, mode=mode, bidirectional=True, dtype=dtype, seed=4, **kw)
    x = rng.standard_normal((N, T, D)).astype(dtype)
    lengths = rng.integers(1, T + 1, N)
    lengths[0] = T
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


def test_single_step_keeps_the_step_path(monkeypatch):
    assert rec.sequence_loop(1) is False
    assert rec.sequence_loop(2) is True
    monkeypatch.setattr(rec, "SEQUENCE_LOOP", False)
    assert rec.sequence_loop(2) is False


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


@pytest.mark.parametrize("mode,kw,loop_blocks", [("lstm", {}, 4), ("rnn", {}, 1),
                                                  ("gru", {}, 2),
                                                  ("gru", {"reset_after": False}, 3)],
                         ids=["lstm", "rnn", "gru", "gru_reset_before"])
def test_input_bias_joins_the_recurrent_bias_in_the_loop(mode, kw, loop_blocks):
    """b_ih is added with b_hh inside the loop for every gate whose pre-activation is a plain
    sum; the reset-after GRU's candidate gets its b_in apart (the parity tests check the
    loops' results with these biases)."""
    cell = kernels.make_fused_cell(mode, **kw)
    H = 5
    rng = np.random.default_rng(3)
    b_ih, b_hh = rng.standard_normal((2, cell.gates * H))
    b_hh_before = b_hh.copy()
    b, bx = cell.loop_bias(b_ih, b_hh, H)
    k = loop_blocks * H
    np.testing.assert_array_equal(b[:k], b_ih[:k] + b_hh[:k])
    np.testing.assert_array_equal(b[k:], b_hh[k:])
    if k == b_ih.size:
        assert bx is None
    else:  # the reset-after GRU's b_in, added by the loop to the projection rows it reads
        np.testing.assert_array_equal(bx, b_ih[k:])
    assert cell.loop_bias(None, None, H) == (None, None)
    np.testing.assert_array_equal(b_hh, b_hh_before)  # b_hh itself untouched
