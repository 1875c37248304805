"""Training-step scaling on one thread, timed in CPU seconds — usable on a shared machine.

Wall-clock ratios on a loaded machine mostly measure each process's share of the queue; with
both frameworks pinned to one thread, the CPU time of a step is the work it did.  This sweeps
hidden size, batch and sequence length around the char-LM case (V 100, E 64, 2 layers,
H 256, N 32, T 100), alternating rnnkit and PyTorch, and writes a results file that
``bench/plots.py`` draws:

    .venv/bin/python bench/cpu_sweep.py --modes lstm,gru --name results-cpu-1thread
    .venv/bin/python bench/plots.py bench/results-cpu-1thread.json --label "(1 thread, CPU time)" \
        --prefix scaling-cpu-1thread
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ["RNNKIT_STEP_THREADS"] = "1"
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

BASE = dict(V=100, E=64, H=256, L=2, N=32, T=100)
VARIANTS = [{}, {"H": 128}, {"H": 512}, {"N": 1}, {"N": 128}, {"T": 25}, {"T": 400}]


def case(mode, repeats, **cfg):
    import numpy as np
    import torch

    from lmstep import RnnkitLM, torch_lm

    c = {**BASE, **cfg}
    V, E, H, L, N, T = (c[k] for k in ("V", "E", "H", "L", "N", "T"))
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, V, (N, T)), rng.integers(0, V, (N, T))
    ours, theirs = RnnkitLM(mode, V, E, H, L), torch_lm(mode, V, E, H, L)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    fa, fb = (lambda: ours.train_step(x, y)), (lambda: theirs.train_step(tx, ty))
    fa(), fb()  # warm-up (compilation, allocator)
    ta, tb = [], []
    for _ in range(repeats):
        t = time.process_time()
        fa()
        ta.append(time.process_time() - t)
        t = time.process_time()
        fb()
        tb.append(time.process_time() - t)
    a, b = float(np.median(ta)), float(np.median(tb))
    return {"kind": "train", "mode": mode, **c, "rnnkit_cpu_s": a, "torch_cpu_s": b,
            "rnnkit_tok_s": N * T / a, "torch_tok_s": N * T / b, "ratio": b / a}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--modes", default="lstm,gru")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--name", default="results-cpu-1thread")
    a = ap.parse_args(argv)
    import torch
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    torch.set_num_threads(1)
    load = os.getloadavg()
    results = []
    for mode in a.modes.split(","):
        for v in VARIANTS:
            r = case(mode, a.repeats, **v)
            results.append(r)
            print(json.dumps({k: (round(x, 4) if isinstance(x, float) else x)
                              for k, x in r.items()}), flush=True)
    out = {"command": " ".join(["bench/cpu_sweep.py", *(argv or sys.argv[1:])]),
           "machine": {"loadavg_at_start": load, "threads": 1, "timing": "CPU seconds"},
           "results": results, "loadavg_at_end": os.getloadavg()}
    path = HERE / f"{a.name}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=1))
    tmp.replace(path)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
