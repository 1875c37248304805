"""rnnkit against PyTorch on this CPU, side by side in one run.  ``make bench`` runs it.

    python bench/run.py [--repeats 5] [--quick] [--modes lstm,gru,rnn] [--out bench]

Every case runs both frameworks in the same process, alternating rnnkit and PyTorch on each
repeat (so load from other processes hits both alike), after one warm-up each; the figure
is the median, and the ratio is PyTorch's median time over rnnkit's (> 1: rnnkit faster).
Both use every core: PyTorch via ``torch.set_num_threads(os.cpu_count())``, rnnkit's BLAS
with its default thread count (all cores) for the large products; rnnkit runs small
per-step recurrent products (< 2^31 multiply-adds, i.e. all of them here) on one BLAS thread (see
``rnnkit.kernels.blas``).

Cases: the char-LM training step (vocab 100, embed 64, 2 layers, hidden 256, batch 32, seq
100; forward, backward, clipping, Adam) for LSTM, GRU, RNN; the same with hidden 128/512/1024,
batch 1/128, seq 25/400; forward-only scoring (batch 64 x seq 256); generation at batch 1
(ms per token); peak memory of a training step (fresh subprocess each, peak RSS growth over
one step); achieved GFLOP/s of the training step over a float32 matrix product measured in
this run; cold and warm start of ``rnnkit sample``.  Writes ``results.json`` and
``results.md`` into --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

BASE = dict(V=100, E=64, H=256, L=2, N=32, T=100)


def median_pair(fa, fb, repeats, fc=None):
    """Alternate fa and fb (and fc); return the median seconds of each."""
    fs = [f for f in (fa, fb, fc) if f is not None]
    for f in fs:
        f()
    ts = [[] for _ in fs]
    for _ in range(repeats):
        for f, tl in zip(fs, ts):
            t0 = time.perf_counter()
            f()
            tl.append(time.perf_counter() - t0)
    return tuple(float(np.median(tl)) for tl in ts)


class Matmul:
    """A float32 (n, n) @ (n, n) product on all cores; ``rate(seconds)`` in GFLOP/s."""

    def __init__(self, n=1024):
        self.n = n
        self.a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
        self.o = np.empty_like(self.a)

    def __call__(self):
        for _ in range(3):
            np.matmul(self.a, self.a, out=self.o)

    def rate(self, seconds):
        return 3 * 2 * self.n ** 3 / seconds / 1e9


def matmul_rate(n=1024, repeats=20):
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    o = np.empty_like(a)
    np.matmul(a, a, out=o)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.matmul(a, a, out=o)
        ts.append(time.perf_counter() - t0)
    return 2 * n ** 3 / float(np.median(ts)) / 1e9


def machine_info():
    import numba
    import torch

    from rnnkit.kernels import blas

    from cpuinfo import cpu as cpu_info

    cpu = cpu_info()
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "numba": numba.__version__, "torch": torch.__version__,
            "numpy_blas_threads": blas.get_threads(), "torch_threads": torch.get_num_threads(),
            "rnnkit_thread_plan": blas.describe(BASE["N"], BASE["H"], 4),
            "env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                                    "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")},
            "loadavg_at_start": load}


def train_case(mode, repeats, **cfg):
    import torch

    from lmstep import RnnkitLM, torch_lm, train_flops

    c = {**BASE, **cfg}
    V, E, H, L, N, T = (c[k] for k in ("V", "E", "H", "L", "N", "T"))
    rng = np.random.default_rng(0)
    x = rng.integers(0, V, (N, T))
    y = rng.integers(0, V, (N, T))
    ours = RnnkitLM(mode, V, E, H, L)
    theirs = torch_lm(mode, V, E, H, L)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    mm = Matmul()
    ta, tb, tc = median_pair(lambda: ours.train_step(x, y), lambda: theirs.train_step(tx, ty),
                             repeats, mm)
    flops = train_flops(mode, V, E, H, L, N, T)
    return {"kind": "train", "mode": mode, **c, "rnnkit_s": ta, "torch_s": tb,
            "matmul_gflops": mm.rate(tc),
            "rnnkit_tok_s": N * T / ta, "torch_tok_s": N * T / tb, "ratio": tb / ta,
            "gflop": flops / 1e9, "rnnkit_gflops": flops / ta / 1e9,
            "torch_gflops": flops / tb / 1e9}


def score_case(mode, repeats, N=64, T=256):
    import torch

    from lmstep import RnnkitLM, torch_lm

    c = {**BASE, "N": N, "T": T}
    rng = np.random.default_rng(1)
    x = rng.integers(0, c["V"], (N, T))
    y = rng.integers(0, c["V"], (N, T))
    ours = RnnkitLM(mode)
    theirs = torch_lm(mode)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    ta, tb = median_pair(lambda: ours.score(x, y), lambda: theirs.score(tx, ty), repeats)
    return {"kind": "score", "mode": mode, **c, "rnnkit_s": ta, "torch_s": tb,
            "rnnkit_tok_s": N * T / ta, "torch_tok_s": N * T / tb, "ratio": tb / ta}


def generate_case(mode, repeats, n_tokens=200):
    import torch

    from lmstep import RnnkitLM, torch_lm

    ours = RnnkitLM(mode)
    theirs = torch_lm(mode).eval()
    rng = np.random.default_rng(2)
    gen = torch.Generator().manual_seed(2)
    ta, tb = median_pair(lambda: ours.generate(n_tokens, rng), lambda: theirs.generate(n_tokens, gen),
                         repeats)
    return {"kind": "generate", "mode": mode, **BASE, "N": 1, "tokens": n_tokens,
            "rnnkit_ms_per_token": ta / n_tokens * 1e3, "torch_ms_per_token": tb / n_tokens * 1e3,
            "rnnkit_tok_s": n_tokens / ta, "torch_tok_s": n_tokens / tb, "ratio": tb / ta}


# ---- peak memory: a fresh process per framework --------------------------------------------
def _status(field):
    with open("/proc/self/status") as f:
        for ln in f:
            if ln.startswith(field + ":"):
                return int(ln.split()[1]) * 1024
    return None


def memory_child(framework, mode):
    """Peak RSS growth (bytes) during one training step, after two warm-up steps."""
    if framework == "torch":
        import torch

        from lmstep import torch_lm

        torch.set_num_threads(os.cpu_count())
        m = torch_lm(mode)
        rng = np.random.default_rng(0)
        x = torch.from_numpy(rng.integers(0, BASE["V"], (BASE["N"], BASE["T"])))
        y = torch.from_numpy(rng.integers(0, BASE["V"], (BASE["N"], BASE["T"])))
        step = lambda: m.train_step(x, y)  # noqa: E731
    else:
        from lmstep import RnnkitLM

        m = RnnkitLM(mode)
        rng = np.random.default_rng(0)
        x = rng.integers(0, BASE["V"], (BASE["N"], BASE["T"]))
        y = rng.integers(0, BASE["V"], (BASE["N"], BASE["T"]))
        step = lambda: m.train_step(x, y)  # noqa: E731
    step()
    step()
    peaks = []
    for _ in range(3):
        before = _status("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:  # resets VmHWM to the current RSS
            f.write("5")
        step()
        peaks.append(_status("VmHWM") - before)
    out = {"peak_bytes": int(min(peaks))}
    if framework == "rnnkit":
        import tracemalloc

        tracemalloc.start()
        step()
        out["tracemalloc_peak_bytes"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    print(json.dumps(out))


def memory_case(mode):
    env = dict(os.environ)
    # Blocks of 16 KiB and up straight from mmap and back to the OS on free, so RSS follows
    # live memory for both (PyTorch makes many 32-128 KiB per-step tensors that the heap
    # would otherwise recycle unseen).
    env["MALLOC_MMAP_THRESHOLD_"] = "16384"
    env["MALLOC_TRIM_THRESHOLD_"] = "0"
    res = {"kind": "memory", "mode": mode, **BASE}
    for fw in ("rnnkit", "torch"):
        p = subprocess.run([sys.executable, __file__, "--memory-child", fw, mode],
                           capture_output=True, text=True, env=env, check=True)
        d = json.loads(p.stdout.strip().splitlines()[-1])
        res[f"{fw}_peak_mb"] = d["peak_bytes"] / 2 ** 20
        if "tracemalloc_peak_bytes" in d:
            res["rnnkit_tracemalloc_peak_mb"] = d["tracemalloc_peak_bytes"] / 2 ** 20
    res["ratio"] = res["torch_peak_mb"] / max(res["rnnkit_peak_mb"], 1e-9)
    return res


# ---- start-up of `rnnkit sample` -------------------------------------------------------------
def startup_case():
    exe = shutil.which("rnnkit") or str(Path(sys.executable).with_name("rnnkit"))
    if not Path(exe).exists():
        return {"kind": "startup", "note": "rnnkit command not installed"}
    help_ = subprocess.run([exe, "sample", "--help"], capture_output=True, text=True)
    if help_.returncode != 0:
        return {"kind": "startup", "note": "`rnnkit sample` does not exist yet"}
    res = {"kind": "startup"}
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model"
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text("the quick brown fox jumps over the lazy dog.\n" * 200)
        train = subprocess.run([exe, "train", str(corpus), "--out", str(model), "--steps", "5"],
                               capture_output=True, text=True)
        if train.returncode != 0:
            res["note"] = "could not train a model to sample from: " + \
                (train.stderr.strip().splitlines() or ["?"])[-1]
            return res
        cache_dir = Path(tmp) / "numba_cache"
        env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
        cmd = [exe, "sample", str(model), "--length", "200", "--seed", "1"]
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            p = subprocess.run(cmd, capture_output=True, text=True, env=env)
            times.append(time.perf_counter() - t0)
            if p.returncode != 0:
                res["note"] = "rnnkit sample failed: " + (p.stderr.strip().splitlines() or ["?"])[-1]
                return res
        res.update(cold_s=times[0], warm_s=float(np.median(times[1:])),
                   note="cold: empty numba cache dir (NUMBA_CACHE_DIR); warm: cache filled")
    return res


# ---- report -------------------------------------------------------------------------------
def to_markdown(info, mm, results):
    L = [f"Machine: {info['cpu']}, {info['cores']} cores; numpy {info['numpy']} "
         f"(OpenBLAS threads {info['numpy_blas_threads']}), numba {info['numba']}, "
         f"torch {info['torch']} (threads {info['torch_threads']}); load average at start "
         f"{info['loadavg_at_start']}.", "",
         f"float32 matmul (1024^3, numpy, {info['numpy_blas_threads']} BLAS threads) at the "
         f"start: {mm:.1f} GFLOP/s; each "
         "training row also times it between its repeats (the % columns use that).", ""]
    tr = [r for r in results if r["kind"] == "train"]
    if tr:
        L += ["### Training step (tokens/s; ratio = rnnkit / PyTorch throughput)", "",
              "| cell | H | N | T | rnnkit tok/s | PyTorch tok/s | ratio | rnnkit GFLOP/s | "
              "matmul GFLOP/s (same repeats) | rnnkit % of matmul | PyTorch % of matmul |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in tr:
            m = r["matmul_gflops"]
            L.append(f"| {r['mode']} | {r['H']} | {r['N']} | {r['T']} | {r['rnnkit_tok_s']:.0f} | "
                     f"{r['torch_tok_s']:.0f} | **{r['ratio']:.2f}** | {r['rnnkit_gflops']:.1f} | "
                     f"{m:.1f} | {100 * r['rnnkit_gflops'] / m:.0f}% | "
                     f"{100 * r['torch_gflops'] / m:.0f}% |")
        L.append("")
    sc = [r for r in results if r["kind"] == "score"]
    if sc:
        L += ["### Forward-only scoring, batch 64 x seq 256 (tokens/s)", "",
              "| cell | rnnkit tok/s | PyTorch tok/s | ratio |", "|---|---|---|---|"]
        L += [f"| {r['mode']} | {r['rnnkit_tok_s']:.0f} | {r['torch_tok_s']:.0f} | "
              f"**{r['ratio']:.2f}** |" for r in sc]
        L.append("")
    ge = [r for r in results if r["kind"] == "generate"]
    if ge:
        L += ["### Generation at batch 1 (sampling, per token)", "",
              "| cell | rnnkit ms/token | PyTorch ms/token | ratio (tokens/s) |",
              "|---|---|---|---|"]
        L += [f"| {r['mode']} | {r['rnnkit_ms_per_token']:.3f} | {r['torch_ms_per_token']:.3f} | "
              f"**{r['ratio']:.2f}** |" for r in ge]
        L.append("")
    me = [r for r in results if r["kind"] == "memory"]
    if me:
        L += ["### Peak memory of one char-LM training step (RSS growth during the step)", "",
              "| cell | rnnkit MiB | PyTorch MiB | PyTorch / rnnkit | rnnkit tracemalloc MiB |",
              "|---|---|---|---|---|"]
        L += [f"| {r['mode']} | {r['rnnkit_peak_mb']:.1f} | {r['torch_peak_mb']:.1f} | "
              f"**{r['ratio']:.2f}** | {r.get('rnnkit_tracemalloc_peak_mb', float('nan')):.1f} |"
              for r in me]
        L.append("")
    st = [r for r in results if r["kind"] == "startup"]
    for r in st:
        if "cold_s" in r:
            L += [f"`rnnkit sample` start to finish (200 chars): cold {r['cold_s']:.2f} s, "
                  f"warm {r['warm_s']:.2f} s ({r['note']})", ""]
        else:
            L += [f"`rnnkit sample`: {r['note']}", ""]
    return "\n".join(L)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="char-LM cases only")
    ap.add_argument("--modes", default="lstm,gru,rnn")
    ap.add_argument("--only", default="train,scale,score,generate,memory,startup")
    ap.add_argument("--out", default=str(HERE))
    ap.add_argument("--name", default="results", help="file stem of the outputs in --out")
    ap.add_argument("--threads", type=int, default=0,
                    help="cores for both frameworks (default: all)")
    ap.add_argument("--gen-tokens", type=int, default=2000,
                    help="tokens per generation run (a run of a few ms is all noise here)")
    ap.add_argument("--memory-child", nargs=2, metavar=("FRAMEWORK", "MODE"))
    args = ap.parse_args(argv)
    if args.memory_child:
        memory_child(*args.memory_child)
        return 0
    import torch

    threads = args.threads or os.cpu_count()
    torch.set_num_threads(threads)
    if args.threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads, user_api="blas")
        os.environ.setdefault("RNNKIT_STEP_THREADS", str(threads))
    modes = args.modes.split(",")
    only = set(args.only.split(","))
    info = machine_info()
    print(json.dumps(info), flush=True)
    mm = matmul_rate()
    print(f"matmul float32: {mm:.1f} GFLOP/s", flush=True)
    results = []

    def record(r):
        results.append(r)
        print(json.dumps(r), flush=True)

    R = args.repeats
    if "train" in only:
        for mode in modes:
            record(train_case(mode, R))
    if "scale" in only and not args.quick:
        for mode in modes:
            for cfg in ({"H": 128}, {"H": 512}, {"H": 1024}, {"N": 1}, {"N": 128},
                        {"T": 25}, {"T": 400}):
                reps = R if cfg.get("H", 0) < 1024 and cfg.get("T", 0) < 400 else max(3, R // 2)
                record(train_case(mode, reps, **cfg))
    if "score" in only:
        for mode in modes:
            record(score_case(mode, R))
    if "generate" in only:
        for mode in modes:
            record(generate_case(mode, R, args.gen_tokens))
    if "memory" in only:
        for mode in modes:
            record(memory_case(mode))
    if "startup" in only and not args.quick:
        record(startup_case())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"command": " ".join([Path(sys.executable).name, "bench/run.py", *(argv or sys.argv[1:])]),
               "machine": info, "matmul_gflops": mm, "results": results,
               "loadavg_at_end": os.getloadavg()}
    (out / f"{args.name}.json").write_text(json.dumps(payload, indent=1))
    md = to_markdown(info, mm, results)
    (out / f"{args.name}.md").write_text(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
