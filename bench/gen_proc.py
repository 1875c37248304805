"""Generation at batch 1 with each side in its own process: what a user's sampling loop
waits for per token, without the other framework's thread pool in the same process.

``bench/run.py --only generate`` alternates rnnkit and PyTorch inside one process: at two
threads each, PyTorch's OpenMP workers (and rnnkit's) are still spinning on the second core
when the other side starts, so that figure says more about the neighbour than the step.
Here every measurement is a fresh process that builds the model (``bench/lmstep.py``: 2 x
256, embed 64, V 100), warms up, then samples ``--tokens`` tokens ``--inner`` times and
prints the median ms per token; rnnkit and PyTorch processes alternate, ``--repeats`` pairs.

    .venv/bin/python bench/gen_proc.py                       # both sides at default threads
    .venv/bin/python bench/gen_proc.py --threads 1 --name gen-proc-1thread
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def child(side: str, mode: str, tokens: int, inner: int) -> None:
    sys.path.insert(0, str(HERE))
    if side == "rnnkit":
        import rnnkit  # noqa: F401  (before NumPy, as the command: OpenBLAS's short spin)
    import numpy as np

    if side == "rnnkit":
        from lmstep import RnnkitLM

        m = RnnkitLM(mode)
        rng = np.random.default_rng(2)

        def run():
            return m.generate(tokens, rng)
    else:
        import torch
        from lmstep import torch_lm

        m = torch_lm(mode).eval()
        gen = torch.Generator().manual_seed(2)

        def run():
            return m.generate(tokens, gen)
    run()
    ts = []
    for _ in range(inner):
        t = time.perf_counter()
        run()
        ts.append(time.perf_counter() - t)
    how = {}
    if side == "rnnkit":
        from rnnkit.kernels import lmstep

        how["split_over_threads"] = bool(lmstep._split_layer_ok)
    else:
        how["torch_threads"] = torch.get_num_threads()
    print(json.dumps({"ms_per_token": statistics.median(ts) / tokens * 1e3, **how}))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", default="lstm,gru,rnn")
    ap.add_argument("--tokens", type=int, default=2000)
    ap.add_argument("--inner", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="pin both sides (default: their own)")
    ap.add_argument("--name", default="gen-proc")
    ap.add_argument("--child", nargs=2, metavar=("SIDE", "MODE"))
    a = ap.parse_args(argv)
    if a.child:
        child(*a.child, a.tokens, a.inner)
        return 0
    env = dict(os.environ)
    if a.threads:
        env.update(OMP_NUM_THREADS=str(a.threads), OPENBLAS_NUM_THREADS=str(a.threads),
                   RNNKIT_STEP_THREADS=str(a.threads))

    def one(side, mode):
        out = subprocess.run([sys.executable, __file__, "--child", side, mode, "--tokens",
                              str(a.tokens), "--inner", str(a.inner)], env=env, check=True,
                             capture_output=True, text=True).stdout
        return json.loads(out.strip().splitlines()[-1])

    rows = []
    for mode in a.modes.split(","):
        ours, theirs, how = [], [], {}
        for _ in range(a.repeats):
            r = one("rnnkit", mode)
            ours.append(r.pop("ms_per_token"))
            how.update(r)
            r = one("torch", mode)
            theirs.append(r.pop("ms_per_token"))
            how.update(r)
        ratios = [t / o for o, t in zip(ours, theirs)]
        rows.append({"mode": mode, **how, "rnnkit_ms": ours, "torch_ms": theirs,
                     "ratio_per_pair": ratios, "ratio_median": statistics.median(ratios)})
        print(json.dumps(rows[-1]), flush=True)
    sys.path.insert(0, str(HERE))
    from cpuinfo import cpu

    info = {"cpu": cpu(), "threads": a.threads or "defaults", "tokens": a.tokens,
            "inner": a.inner, "repeats": a.repeats, "load_at_end": os.getloadavg()[0]}
    (HERE / f"{a.name}.json").write_text(json.dumps({"info": info, "cases": rows}, indent=1))
    print("| cell | rnnkit ms/token | PyTorch ms/token | ratio (median of pairs) | pairs |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {statistics.median(r['rnnkit_ms']):.3f} | "
              f"{statistics.median(r['torch_ms']):.3f} | **{r['ratio_median']:.2f}×** | "
              + ", ".join(f"{x:.2f}" for x in r["ratio_per_pair"]) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
