"""The recurrent product of the compiled time loops, on a weight packed once per sequence.

Every step of a recurrent layer multiplies a few batch rows (16 per worker at batch 32 on
two cores) by the same weight, ``h @ W_hh.T`` (K = H, N = G) forward and ``dG @ W_hh``
(K = G, N = H) backward.  A general BLAS call re-packs that weight into its cache-friendly
layout at every call and runs its small-M edge code: at M 16, K 256, N 1024 OpenBLAS's
``sgemm`` reaches about 58 GFLOP/s on one Sapphire Rapids core, against 125 for a large
product (bench/RESULTS.md).  Here the weight is packed once per sequence and the product is
a register-tiled micro-kernel:

    B (K, N) -> packed (P, K, W): panel p holds columns [p*W, (p+1)*W), row k contiguous
    C[r:r+R, p*W:(p+1)*W] = sum_k A[r:r+R, k] (x) packed[p, k, :]

The tile's shape follows the vector registers of the CPU Numba compiles for
(:func:`tile_shape`): with AVX-512 (32 registers of 64 bytes) W is two vectors (32 float32
or 16 float64 columns) and R = 8 rows keep 16 accumulators, so each k loads two vectors of B
and broadcasts eight values of A for sixteen fused multiply-adds; with AVX/AVX2 (16 registers
of 32 bytes) W is three vectors (24 float32 columns) and R = 4 rows keep 12 accumulators,
leaving registers for B and the broadcast — the AVX-512 shape there needs 32 accumulators in
16 registers and spills them (measured on an AMD EPYC Zen 3 core, M 16, K 256, N 1024: 27
GFLOP/s against 91 for the 4 x 3 shape and 56 for NumPy's ``sgemm``; bench/RESULTS.md).  The
tile is written in LLVM IR (a Numba intrinsic: Numba has no vector type, and without one
LLVM keeps such an accumulator block in memory); the IR is target-independent, so every
shape runs anywhere (the tests run all of them), only slower on registers it was not sized
for.  Rows short of R in the last block are zeros in the tile's copy of A, and a last panel
narrower than W is cut when the tile is copied out.

Each output element is one chain of fused multiply-adds in k order, so the result agrees
with BLAS to rounding (float64 to ~1e-16 relative; the NumPy reference and the 1e-10
PyTorch parity tests run through it).
"""

from __future__ import annotations

import platform

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from ._math import JIT


def target_features() -> frozenset:
    """The CPU features Numba compiles for: ``NUMBA_CPU_FEATURES`` when set, else the
    host's (as Numba's JIT target does; ``NUMBA_CPU_NAME`` alone does not change them)."""
    from numba.core import config

    if config.CPU_FEATURES is not None:
        text = config.CPU_FEATURES
    else:
        import llvmlite.binding as llvm

        text = llvm.get_host_cpu_features().flatten()
    return frozenset(f[1:] for f in text.split(",") if f.startswith("+"))


def tile_shape(features) -> tuple[int, int, int]:
    """(vector bytes, vectors per panel, rows R) of the tile for CPU ``features``: the
    accumulators (R x vectors) fill most of the vector registers and leave some for B's
    vectors and A's broadcast."""
    if "avx512f" in features:
        return 64, 2, 8  # 32 registers: 16 accumulators
    if "avx" in features:
        return 32, 3, 4  # 16 registers: 12 accumulators, 3 loads of B, 1 broadcast
    return 16, 3, 4  # SSE / NEON-sized vectors


def _fused(features) -> bool:
    """Whether ``llvm.fma`` is one instruction: else ``llvm.fmuladd`` lets LLVM multiply
    and add (an x86 CPU without FMA would call libm's ``fmaf`` per lane)."""
    if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86"):
        return "fma" in features or "avx512f" in features
    return True


FEATURES = target_features()
VECTOR_BYTES, VECTORS, ROWS = tile_shape(FEATURES)
FUSED = _fused(FEATURES)


def panel_width(dtype) -> int:
    """Columns per packed panel for ``dtype`` (float32: 32 with AVX-512, 24 with AVX2;
    float64 half as many)."""
    return VECTORS * VECTOR_BYTES // np.dtype(dtype).itemsize


def pack(b: np.ndarray) -> np.ndarray:
    """``b`` (K, N) as panels (ceil(N / W), K, W), C-contiguous; a last partial panel is
    padded with zeros."""
    b = np.asarray(b)
    if b.ndim != 2 or b.dtype not in (np.float32, np.float64):
        raise TypeError(f"pack needs a float32 or float64 matrix, got {b.dtype} of shape "
                        f"{b.shape}")
    K, N = b.shape
    W = panel_width(b.dtype)
    P = -(-N // W)
    out = np.zeros((P, K, W), dtype=b.dtype)
    full = N // W
    if full:
        out[:full] = b[:, : full * W].reshape(K, full, W).transpose(1, 0, 2)
    if full < P:
        out[full, :, : N - full * W] = b[:, full * W:]
    return out


def _tile(R, vectors=None, vector_bytes=None, fused=None):
    """The intrinsic ``tile(A, a, lda, b, ldb, K, c, ldc)``: the R x W block at address ``c``
    (rows ``ldc`` bytes apart) = the R x K block at ``a`` (rows ``lda`` bytes apart) times
    the K x W panel at ``b`` (rows ``ldb`` bytes apart).  ``A`` only gives the dtype (float32
    or float64): addresses, not arrays, so one compiled tile serves every operand layout.
    W is ``vectors`` vectors of ``vector_bytes`` (the host's shape by default)."""
    shape = (R, VECTORS if vectors is None else vectors,
             VECTOR_BYTES if vector_bytes is None else vector_bytes,
             FUSED if fused is None else fused)

    @intrinsic
    def tile(typingctx, A, a, lda, b, ldb, K, c, ldc):
        if not isinstance(A, types.Array) or A.dtype not in (types.float32, types.float64):
            return None
        sig = types.void(A, types.intp, types.intp, types.intp, types.intp, types.intp,
                         types.intp, types.intp)
        is32 = A.dtype == types.float32

        def codegen(context, builder, sig, args):
            _emit_tile(builder, args[1:], shape, is32)
            return context.get_dummy_value()

        return sig, codegen

    return tile


def _emit_tile(builder, args, shape, is32):
    """The tile's IR: a loop over k keeping R x vectors accumulators in registers (phi
    nodes), then the block stored at ``c``."""
    R, vectors, vector_bytes, fused = shape
    size = 4 if is32 else 8
    lanes = vector_bytes // size
    fty = ir.FloatType() if is32 else ir.DoubleType()
    vty = ir.VectorType(fty, lanes)
    i64 = ir.IntType(64)
    i8p = ir.IntType(8).as_pointer()
    a, lda, b, ldb, K, c, ldc = args
    a8, b8, c8 = (builder.inttoptr(v, i8p) for v in (a, b, c))
    rows = [builder.gep(a8, [builder.mul(i64(r), lda)]) for r in range(R)]
    fma = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(vty, [vty, vty, vty]),
        f"llvm.{'fma' if fused else 'fmuladd'}.v{lanes}f{8 * size}")
    zero = ir.Constant(vty, [0.0] * lanes)
    splat_mask = ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes)
    undef = ir.Constant(vty, ir.Undefined)

    entry = builder.basic_block
    loop = builder.append_basic_block("tile.loop")
    done = builder.append_basic_block("tile.done")
    builder.cbranch(builder.icmp_signed("<=", K, i64(0)), done, loop)

    # one k: two (or three) vectors of B's row k, each row's A[r, k] broadcast, R x vectors fmas
    builder.position_at_end(loop)
    k = builder.phi(i64)
    acc = [[builder.phi(vty) for _ in range(vectors)] for _ in range(R)]
    bk = builder.gep(b8, [builder.mul(k, ldb)])
    bv = [builder.load(builder.bitcast(builder.gep(bk, [i64(vector_bytes * v)]),
                                       vty.as_pointer()), align=size)
          for v in range(vectors)]
    new = []
    for r in range(R):
        ak = builder.load(builder.bitcast(builder.gep(rows[r], [builder.mul(k, i64(size))]),
                                          fty.as_pointer()), align=size)
        av = builder.shuffle_vector(builder.insert_element(undef, ak, i64(0)), undef,
                                    splat_mask)
        new.append([builder.call(fma, [av, bv[v], acc[r][v]]) for v in range(vectors)])
    k1 = builder.add(k, i64(1))
    k.add_incoming(i64(0), entry)
    k.add_incoming(k1, loop)
    for r in range(R):
        for v in range(vectors):
            acc[r][v].add_incoming(zero, entry)
            acc[r][v].add_incoming(new[r][v], loop)
    builder.cbranch(builder.icmp_signed("<", k1, K), loop, done)

    builder.position_at_end(done)  # its phi nodes first (zeros when K is 0), then the stores
    final = [[builder.phi(vty) for _ in range(vectors)] for _ in range(R)]
    for r in range(R):
        for v in range(vectors):
            final[r][v].add_incoming(zero, entry)
            final[r][v].add_incoming(new[r][v], loop)
    for r in range(R):
        row = builder.gep(c8, [builder.mul(i64(r), ldc)])
        for v in range(vectors):
            ptr = builder.gep(row, [i64(vector_bytes * v)])
            builder.store(final[r][v], builder.bitcast(ptr, vty.as_pointer()), align=size)


_tile_host = _tile(ROWS)


@njit(**JIT)
def packed_gemm(a, bp, c):
    """c[:] = a @ B with B given as :func:`pack` (B) = ``bp`` (P, K, W): a (M, K) and c (M, N)
    with contiguous rows (row slices of C-contiguous arrays are).

    Full R-row blocks and full panels go straight from ``a`` to ``c``; the last rows (fewer
    than R) are read from a zero-padded copy, and a block that does not fit ``c`` (those rows,
    or a last panel narrower than W) is written to a small buffer and copied out.  One
    compiled tile per dtype whatever the shapes, so a cold start compiles it once."""
    M, K = a.shape
    N = c.shape[1]
    P, W = bp.shape[0], bp.shape[2]
    if bp.shape[1] != K or c.shape[0] != M or P != (N + W - 1) // W:
        raise ValueError("packed_gemm: shapes do not match")
    sz = a.itemsize
    if M and (a.strides[1] != sz or c.strides[1] != sz):
        raise ValueError("packed_gemm needs arrays whose rows are contiguous")
    if bp.strides[2] != sz or bp.strides[1] != W * sz:
        raise ValueError("packed_gemm needs a C-contiguous packed matrix")
    blocks = (M + ROWS - 1) // ROWS
    full = M // ROWS  # blocks of R rows read in place; a last, shorter one from a copy
    abuf = np.zeros((ROWS, K), dtype=a.dtype)
    cbuf = np.empty((ROWS, W), dtype=c.dtype)
    for i in range(M - full * ROWS):
        for k in range(K):
            abuf[i, k] = a[full * ROWS + i, k]
    lda, ldc, ldb, panel = a.strides[0], c.strides[0], bp.strides[1], bp.strides[0]
    # Panels outer: each panel of B (K x W) is read from memory once per call and stays in
    # cache for every row block (at H 512 the whole packed W_hh, 4 MB, outgrows L2).
    for p in range(P):
        cols = min(W, N - p * W)
        b_at = bp.ctypes.data + p * panel
        for blk in range(blocks):
            r = blk * ROWS
            if blk < full:
                a_at, a_ld = a.ctypes.data + r * lda, lda
            else:
                a_at, a_ld = abuf.ctypes.data, K * sz
            if blk < full and cols == W:
                _tile_host(a, a_at, a_ld, b_at, ldb, K, c.ctypes.data + r * ldc + p * W * sz, ldc)
                continue
            _tile_host(a, a_at, a_ld, b_at, ldb, K, cbuf.ctypes.data, W * sz)
            for i in range(min(ROWS, M - r)):
                for j in range(cols):
                    c[r + i, p * W + j] = cbuf[i, j]
