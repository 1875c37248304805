"""The packed tile's shapes on this CPU: GFLOP/s of one thread for the time loops' products.

For each tile shape (rows R x vectors of some bytes, ``rnnkit.kernels.packed._tile``) a plain
driver runs the tile over every R-row block and every panel of the weight packed as the
loops pack it; rows short of a whole block are computed as a whole block (as ``packed_gemm``
does for its last one), and GFLOP/s count only the real M x K x N.  Beside them: the shape
``packed_gemm`` uses on this CPU (``tile_shape``) and NumPy's ``sgemm`` on one thread.

    .venv/bin/python bench/tile_shapes.py [--repeats 5] [--calls 200]

``--host-only`` times ``packed_gemm`` and ``sgemm`` alone, and ``--products`` picks the
products, e.g. how the rate falls once the packed weight outgrows the cache (H 1024's
W_hh is 16 MB):

    .venv/bin/python bench/tile_shapes.py --host-only --calls 20 \
        --products 16x1024x1008,16x256x4080,16x512x4080,16x1024x4080,16x2048x4080
"""

from __future__ import annotations

import argparse
import json
import time

import rnnkit  # noqa: F401  (before NumPy: OpenBLAS's short idle spin)
import numpy as np
from numba import njit
from threadpoolctl import threadpool_limits

from rnnkit.kernels import packed

SHAPES = [(64, 2, 8), (32, 2, 8), (32, 2, 6), (32, 3, 4), (32, 2, 4), (32, 1, 8)]
PRODUCTS = [(16, 256, 1024), (16, 1024, 256), (16, 256, 768), (16, 512, 2048)]


def driver(vector_bytes, vectors, rows):
    tile = packed._tile(rows, vectors, vector_bytes)
    W = vectors * vector_bytes // 4

    @njit(nogil=True)
    def gemm(a, bp, c):  # a (Mp, K), Mp a multiple of rows; c (Mp, P * W)
        K = a.shape[1]
        for p in range(bp.shape[0]):
            for blk in range(a.shape[0] // rows):
                r = blk * rows
                tile(a, a.ctypes.data + r * a.strides[0], a.strides[0],
                     bp.ctypes.data + p * bp.strides[0], bp.strides[1], K,
                     c.ctypes.data + r * c.strides[0] + p * W * 4, c.strides[0])

    return gemm, W


def pack_w(b, W):
    K, N = b.shape
    P = -(-N // W)
    out = np.zeros((P, K, W), dtype=b.dtype)
    bb = np.zeros((K, P * W), dtype=b.dtype)
    bb[:, :N] = b
    out[:] = bb.reshape(K, P, W).transpose(1, 0, 2)
    return out


def best(fn, repeats, calls):
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - t) / calls)
    return min(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--products", default=",".join("x".join(map(str, p)) for p in PRODUCTS),
                    help="MxKxN,... (default: the char-LM loops' products)")
    ap.add_argument("--host-only", action="store_true",
                    help="only packed_gemm (the host's shape) and NumPy's sgemm")
    a = ap.parse_args()
    products = [tuple(int(v) for v in p.split("x")) for p in a.products.split(",")]
    rng = np.random.default_rng(0)
    host = (packed.VECTOR_BYTES, packed.VECTORS, packed.ROWS)
    rows_out = []
    for M, K, N in products:
        x = rng.standard_normal((M, K), dtype=np.float32)
        b = rng.standard_normal((K, N), dtype=np.float32)
        ref = x.astype(np.float64) @ b.astype(np.float64)
        flops = 2 * M * K * N
        host_bp = packed.pack(b)  # the host's packed weight: its size is the row's key figure
        row = {"product": f"{M}x{K}x{N}", "packed weight MB": host_bp.nbytes / 2**20}
        for vb, nv, r in ([] if a.host_only else SHAPES):
            gemm, W = driver(vb, nv, r)
            Mp = -(-M // r) * r
            xa = np.zeros((Mp, K), np.float32)
            xa[:M] = x
            bp = pack_w(b, W)
            c = np.empty((Mp, bp.shape[0] * W), np.float32)
            gemm(xa, bp, c)
            assert np.allclose(c[:M, :N], ref, atol=1e-2), (vb, nv, r)
            row[f"{r}x{nv}x{vb}B"] = flops / best(lambda: gemm(xa, bp, c), a.repeats,
                                                   a.calls) / 1e9
        c = np.empty((M, N), np.float32)
        row["packed_gemm (host shape)"] = flops / best(lambda: packed.packed_gemm(x, host_bp, c),
                                                      a.repeats, a.calls) / 1e9
        with threadpool_limits(1):
            row["numpy sgemm, 1 thread"] = flops / best(lambda: np.matmul(x, b, out=c),
                                                       a.repeats, a.calls) / 1e9
        rows_out.append(row)
    print(json.dumps({"host_shape (bytes, vectors, rows)": host,
                      "features": sorted(f for f in packed.FEATURES if f.startswith("avx")
                                         or f == "fma")}))
    keys = list(rows_out[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows_out:
        print("| " + " | ".join(row["product"] if k == "product" else f"{row[k]:.0f}"
                                for k in keys) + " |")


if __name__ == "__main__":
    main()
