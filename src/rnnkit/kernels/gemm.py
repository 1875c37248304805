"""Matrix products callable from compiled code: NumPy's own BLAS, reached from Numba.

The whole-sequence kernels (``*_fwd_seq`` / ``*_bwd_seq`` in :mod:`.lstm`, :mod:`.gru`,
:mod:`.rnn`) run a direction's entire time loop — recurrent product, then gate kernel, T
times — inside one compiled function that releases the GIL, so two threads can each run
their share of the batch for the whole sequence with no Python, no GIL hand-over and no
synchronisation per step.  Their product is :func:`gemm`: ``c = a @ b`` through the
``cblas_?gemm`` of the BLAS NumPy itself loaded (found with ``threadpoolctl``), so the
numbers are the ones ``np.matmul`` gives and ``threadpoolctl`` limits its threads.

The symbol is called by name (a Numba ``ExternalFunction`` resolved against the library
loaded with ``llvmlite``), which keeps the kernels cacheable on disk.  :func:`available` is
False — and the driver keeps its per-step Python loop — when NumPy's BLAS is not an
OpenBLAS with a known CBLAS symbol (e.g. an MKL build) or Numba is missing.
"""

from __future__ import annotations

import ctypes

import numpy as np

# (symbol, integer width) in the order they are tried: NumPy >= 2 wheels ship an ILP64
# OpenBLAS with prefixed, suffixed names; distribution builds export plain CBLAS.
_CANDIDATES = (("scipy_cblas_{}gemm64_", 64), ("cblas_{}gemm64_", 64), ("cblas_{}gemm", 32))
_ROW_MAJOR, _NO_TRANS = 101, 111


def _find():
    """(library path, sgemm name, dgemm name, int bits) of NumPy's OpenBLAS, or None."""
    try:
        from threadpoolctl import threadpool_info

        libs = [i for i in threadpool_info()
                if i.get("user_api") == "blas" and i.get("internal_api") == "openblas"]
    except Exception:  # pragma: no cover - threadpoolctl is a dependency
        return None
    for info in libs:
        path = info.get("filepath")
        try:
            lib = ctypes.CDLL(path)
        except OSError:  # pragma: no cover
            continue
        for pattern, bits in _CANDIDATES:
            s, d = pattern.format("s"), pattern.format("d")
            if hasattr(lib, s) and hasattr(lib, d):
                return path, s, d, bits
    return None


_FOUND = _find()


def available() -> bool:
    """True when the compiled whole-sequence loop can call NumPy's BLAS."""
    return _FOUND is not None


def describe() -> str:
    """Which BLAS routine the compiled loop calls, for the thread-plan line and benchmarks."""
    if _FOUND is None:
        return "no CBLAS symbol found in NumPy's BLAS: per-step loop"
    return f"{_FOUND[1]} / {_FOUND[2]} of {_FOUND[0].rsplit('/', 1)[-1]}"


if _FOUND is not None:
    import llvmlite.binding as _llb
    from numba import njit, types

    from ._math import STEP_JIT

    _llb.load_library_permanently(_FOUND[0])
    _I = types.int64 if _FOUND[3] == 64 else types.int32
    _E = types.int32  # the CBLAS enums are C ints

    def _signature(real):
        p = types.intp  # pointers travel as addresses: same registers as a pointer argument
        return types.void(_E, _E, _E, _I, _I, _I, real, p, _I, p, _I, real, p, _I)

    _sgemm = types.ExternalFunction(_FOUND[1], _signature(types.float32))
    _dgemm = types.ExternalFunction(_FOUND[2], _signature(types.float64))

    @njit(**STEP_JIT)
    def gemm(a, b, c):
        """c[:] = a @ b for 2-D arrays of one float dtype whose rows are contiguous (row
        slices of C-contiguous arrays are): M x K times K x N into M x N."""
        M, K = a.shape
        N = b.shape[1]
        if M == 0 or N == 0:
            return
        sz = a.itemsize
        if a.strides[1] != sz or b.strides[1] != sz or c.strides[1] != sz:
            raise ValueError("gemm needs arrays whose rows are contiguous")
        lda, ldb, ldc = a.strides[0] // sz, b.strides[0] // sz, c.strides[0] // sz
        # A one-row operand reports stride 0 or any value: BLAS wants ld >= the row length.
        lda = max(lda, K) if M == 1 else lda
        ldb = max(ldb, N) if K == 1 else ldb
        ldc = max(ldc, N) if M == 1 else ldc
        if sz == 4:  # float32
            _sgemm(_ROW_MAJOR, _NO_TRANS, _NO_TRANS, M, N, K, np.float32(1.0), a.ctypes.data,
                   lda, b.ctypes.data, ldb, np.float32(0.0), c.ctypes.data, ldc)
        else:
            _dgemm(_ROW_MAJOR, _NO_TRANS, _NO_TRANS, M, N, K, 1.0, a.ctypes.data, lda,
                   b.ctypes.data, ldb, 0.0, c.ctypes.data, ldc)
else:  # pragma: no cover - exercised only on a BLAS without the symbol
    gemm = None
