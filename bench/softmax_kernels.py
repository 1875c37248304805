"""In-process detail: the float32 softmax cross-entropy of one training step's logits
(M = 1,120 rows = batch 32 x 35 steps) at several vocabulary sizes, three ways — the compiled
scalar loop with libm's exp (the kernel before), NumPy over blocks of rows, and the vectorised
kernel (rnnkit.kernels.loss.xent, one row worker) — and the gradient-norm pass over a
2.5M-value gradient (NumPy's float64 square + isfinite against kernels.adam.sq_sum).
Best of --repeats, one thread; run it pinned (taskset -c 0) on an otherwise idle core.

    OPENBLAS_NUM_THREADS=1 RNNKIT_STEP_THREADS=1 taskset -c 0 \\
        .venv/bin/python bench/softmax_kernels.py
"""

from __future__ import annotations

import argparse
import time

import rnnkit  # noqa: F401  (before NumPy, as the CLI)
import numpy as np


def best(fn, make, repeats):
    out = []
    for _ in range(repeats):
        z = make()
        t = time.perf_counter()
        fn(z)
        out.append(time.perf_counter() - t)
    return 1000 * min(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1120)
    ap.add_argument("--vocab", default="100,1000,9867,30000")
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args(argv)
    from rnnkit.kernels.adam import sq_sum
    from rnnkit.kernels.loss import xent, xent_inplace
    from rnnkit.layers.adaptive import _ROWS

    def numpy_blocks(z, t, scale):  # the NumPy form of layers.adaptive._xent_inplace
        for a0 in range(0, z.shape[0], _ROWS):
            zz, tt = z[a0:a0 + _ROWS], t[a0:a0 + _ROWS]
            r = np.arange(tt.size)
            zz -= zz.max(axis=1, keepdims=True)
            np.exp(zz, out=zz)
            s = zz.sum(axis=1, dtype=np.float64)
            zz *= (scale / s).astype(zz.dtype)[:, None]
            zz[r, tt] -= zz.dtype.type(scale)

    rng = np.random.default_rng(0)
    print(f"softmax cross-entropy of {a.rows} rows, float32, ms (best of {a.repeats})")
    print(f"{'V':>7} {'scalar libm':>12} {'NumPy blocks':>13} {'vectorised':>11} {'speed-up':>9}")
    for V in (int(v) for v in a.vocab.split(",")):
        z0 = (rng.standard_normal((a.rows, V)) * 3).astype(np.float32)
        t = rng.integers(0, V, a.rows)
        s = np.float32(1.0 / a.rows)
        old = best(lambda z: xent_inplace(z, t, s), z0.copy, a.repeats)
        blocks = best(lambda z: numpy_blocks(z, t, s), z0.copy, a.repeats)
        new = best(lambda z: xent(z, t, s), z0.copy, a.repeats)
        print(f"{V:>7} {old:>12.2f} {blocks:>13.2f} {new:>11.2f} {old / new:>8.1f}x")
    g = rng.standard_normal(2_500_000).astype(np.float32)
    ref = best(lambda x: (float(np.square(x, dtype=np.float64).sum()), bool(np.isfinite(x).all())),
               lambda: g, a.repeats)
    k = best(sq_sum, lambda: g, a.repeats)
    print(f"gradient norm + finiteness of 2.5M float32 values: NumPy {ref:.2f} ms, "
          f"sq_sum {k:.2f} ms ({ref / k:.1f}x)")
    return 0


if __name__ == "__main__":
    main()
