"""Training-step scaling at each framework's default threads, one process per measurement.

In one process, rnnkit's and PyTorch's thread pools stay awake after their calls (OpenBLAS's
and OpenMP's spinning threads) and slow whatever runs next: alternated in process, PyTorch's
char-LM LSTM step ran at 43% of the matmul rate where it runs at ~89% alone
(``bench/results-session4.md``).  Here every (framework, configuration) is measured in a fresh
process of its own, the frameworks alternated A B A B, the idle machine's two cores free:
wall time per step, median of ``--steps`` after two warm-up steps, then the median over the
repeats.  The sweep varies H, N and T around the char-LM case (V 100, E 64, 2 layers, H 256,
N 32, T 100) and writes a file ``bench/plots.py`` draws:

    .venv/bin/python bench/proc_sweep.py --modes lstm,gru --name results-proc
    .venv/bin/python bench/plots.py bench/results-proc.json --label "(2 threads, a process each)"
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
BASE = dict(V=100, E=64, H=256, L=2, N=32, T=100)
VARIANTS = [{}, {"H": 128}, {"H": 512}, {"H": 1024}, {"N": 1}, {"N": 128}, {"T": 25},
            {"T": 400}]

CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
fw, mode, steps = sys.argv[2], sys.argv[3], int(sys.argv[4])
c = json.loads(sys.argv[5])
if fw == "rnnkit":
    import rnnkit  # noqa: F401  (before NumPy, as the CLI: OpenBLAS's short spin)
    from rnnkit.memory import keep_freed_memory
    keep_freed_memory()  # as the CLI does (bench/RESULTS.md, session 8)
import numpy as np
from lmstep import RnnkitLM, torch_lm
V, E, H, L, N, T = (c[k] for k in ("V", "E", "H", "L", "N", "T"))
rng = np.random.default_rng(0)
x, y = rng.integers(0, V, (N, T)), rng.integers(0, V, (N, T))
if fw == "rnnkit":
    m = RnnkitLM(mode, V, E, H, L)
    step = lambda: m.train_step(x, y)
else:
    import torch
    m = torch_lm(mode, V, E, H, L)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    step = lambda: m.train_step(tx, ty)
step(); step()
ts = []
for _ in range(steps):
    t = time.perf_counter(); step(); ts.append(time.perf_counter() - t)
ts.sort()
print(json.dumps({"step_s": ts[len(ts) // 2]}))
"""


MATMUL = r"""
import json, time
import numpy as np
a = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
c = np.empty_like(a)
np.matmul(a, a, out=c)
ts = []
for _ in range(7):
    t = time.perf_counter(); np.matmul(a, a, out=c); ts.append(time.perf_counter() - t)
ts.sort()
print(json.dumps({"gflops": 2 * 2048 ** 3 / ts[len(ts) // 2] / 1e9}))
"""


def matmul_rate():
    """The float32 matmul rate of this machine now: a 2048^3 sgemm on NumPy's default
    threads, in a fresh process (median of 7), GFLOP/s."""
    r = subprocess.run([sys.executable, "-c", MATMUL], capture_output=True, text=True,
                       timeout=600, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])["gflops"]


def measure(fw, mode, cfg, steps):
    r = subprocess.run([sys.executable, "-c", CHILD, str(HERE), fw, mode, str(steps),
                        json.dumps(cfg)], capture_output=True, text=True, timeout=1200)
    if r.returncode:
        raise RuntimeError(r.stderr.strip().splitlines()[-1])
    return json.loads(r.stdout.strip().splitlines()[-1])["step_s"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--modes", default="lstm,gru")
    ap.add_argument("--repeats", type=int, default=2, help="A B pairs per configuration")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--name", default="results-proc")
    ap.add_argument("--variants", default="",
                    help="only these, e.g. base,H512,H1024 (default: the whole sweep)")
    a = ap.parse_args(argv)
    names = ["base" if not v else "".join(f"{k}{x}" for k, x in v.items()) for v in VARIANTS]
    chosen = set(a.variants.split(",")) if a.variants else set(names)
    unknown = chosen - set(names)
    if unknown:
        ap.error(f"unknown variants {sorted(unknown)}; choose from {names}")
    load = os.getloadavg()
    sys.path.insert(0, str(HERE))
    from cpuinfo import cpu
    from lmstep import train_flops

    # The machine's rate is measured before every configuration and once at the end: one
    # reading in a fresh process can be a third low (95 against 146-164 GFLOP/s on 27 Nov),
    # so the shares use the median of all of them.
    rates = []
    results = []
    for mode in a.modes.split(","):
        for name, v in zip(names, VARIANTS):
            if name not in chosen:
                continue
            rates.append(matmul_rate())
            print(json.dumps({"matmul_gflops": round(rates[-1], 1)}), flush=True)
            c = {**BASE, **v}
            big = c["H"] * c["H"] * c["T"] * c["N"] >= 16 * 256 * 256 * 100 * 32
            steps = max(3, a.steps // 2) if big else a.steps
            ra, rb = [], []
            for rep in range(a.repeats):
                order = ("rnnkit", "torch") if rep % 2 == 0 else ("torch", "rnnkit")
                for fw in order:
                    (ra if fw == "rnnkit" else rb).append(measure(fw, mode, c, steps))
            sa, sb = statistics.median(ra), statistics.median(rb)
            tok = c["N"] * c["T"]
            flops = train_flops(mode, *(c[k] for k in ("V", "E", "H", "L", "N", "T")))
            r = {"kind": "train", "mode": mode, **c, "rnnkit_step_s": ra, "torch_step_s": rb,
                 "rnnkit_tok_s": tok / sa, "torch_tok_s": tok / sb, "ratio": sb / sa,
                 "rnnkit_gflops": flops / sa / 1e9, "torch_gflops": flops / sb / 1e9}
            results.append(r)
            print(json.dumps({k: (round(x, 4) if isinstance(x, float) else x)
                              for k, x in r.items()}), flush=True)
    rates.append(matmul_rate())
    rate = statistics.median(rates)
    for r in results:  # share of the machine's matmul rate: the median of the readings
        r["rnnkit_share"], r["torch_share"] = r["rnnkit_gflops"] / rate, r["torch_gflops"] / rate
    for r in results:
        if all(r[k] == v for k, v in BASE.items()):
            print(f"{r['mode']} base config: rnnkit {r['rnnkit_gflops']:.0f} GFLOP/s = "
                  f"{100 * r['rnnkit_share']:.0f}% of the matmul rate ({rate:.0f} GFLOP/s, "
                  f"the median of {len(rates)} readings, {min(rates):.0f}-{max(rates):.0f}); "
                  f"PyTorch "
                  f"{100 * r['torch_share']:.0f}%", flush=True)
    out = {"command": " ".join(["bench/proc_sweep.py", *(argv or sys.argv[1:])]),
           "matmul_gflops": rates,
           "machine": {"cpu": cpu(), "loadavg_at_start": load, "threads": "defaults",
                       "timing": "wall seconds per step, a fresh process per measurement",
                       "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())},
           "results": results, "loadavg_at_end": os.getloadavg()}
    path = HERE / f"{a.name}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=1))
    tmp.replace(path)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
