"""Data parallelism over MPI: ``mpiexec -n 2`` (one BLAS thread per rank) against one process
with two threads, at the char-LM config (2x256 LSTM, embed 64, batch 32, seq-len 100).

    .venv/bin/python bench/mpi.py [--steps 30] [--warmup 5] [--repeats 3] [--json FILE]

Each repeat runs both sides, alternated (A B, B A, ...), as separate processes on the same
corpus (the built-in one) and reports the median tokens/s over the timed steps, the bytes one
rank puts into the step's single Allreduce, and the Allreduce's share of the step time (time
inside ``allreduce_sum``; on one machine this is mostly waiting for the slower rank).  Not a
test: figures depend on the machine and its load.
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

ROOT = Path(__file__).resolve().parent.parent
CONFIG = dict(cell="lstm", layers=2, hidden=256, embed=64, batch=32, seq_len=100)


def worker(steps: int, warmup: int) -> None:
    """One side of the comparison (run by the driver, under mpiexec or not)."""
    import numpy as np

    from rnnkit.data.corpus import default_corpus
    from rnnkit.data.tokenize import get_tokenizer
    from rnnkit.data.vocab import Vocab
    from rnnkit.models.language_model import LanguageModel, LMConfig
    from rnnkit.optim import Adam
    from rnnkit.training import dist
    from rnnkit.training.loop import train
    from rnnkit.training.sources import StreamSource

    world = dist.world()
    tokens = get_tokenizer("char").tokenize(default_corpus())
    vocab = Vocab.build(tokens)
    ids = vocab.encode(tokens)
    c = CONFIG
    model = LanguageModel(LMConfig(vocab_size=len(vocab), cell=c["cell"], num_layers=c["layers"],
                                   hidden_size=c["hidden"], embed_dim=c["embed"]), seed=0)
    reduce_s = []
    if world.size > 1:
        real = world.allreduce_sum

        def timed(buf):
            t = time.perf_counter()
            out = real(buf)
            reduce_s.append(time.perf_counter() - t)
            return out
        world.allreduce_sum = timed
    stamps = []

    class Timed(StreamSource):
        def next(self, step):
            stamps.append(time.perf_counter())
            return super().next(step)

    source = Timed(ids, c["batch"], c["seq_len"], seed=0, world=world)
    train(model, source, Adam(2e-3), steps=warmup + steps + 1, clip=5.0, eval_every=10**9,
          world=world)
    step_s = np.diff(stamps)[warmup:warmup + steps]
    if world.rank == 0:
        n_params = sum(p.size for p in model.params.values())
        print(json.dumps({
            "ranks": world.size, "step_s": float(np.median(step_s)),
            "tokens_per_s": c["batch"] * c["seq_len"] / float(np.median(step_s)),
            "allreduce_bytes": (n_params + 3) * 4 if world.size > 1 else 0,
            "allreduce_share": (float(np.median(reduce_s[warmup:warmup + steps]))
                                / float(np.median(step_s))) if reduce_s else 0.0,
            "parameters": int(n_params)}))


def run_side(side: str, steps: int, warmup: int) -> dict:
    bin_dir = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_"))}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    me = [sys.executable, str(Path(__file__).resolve()), "--worker", "--steps", str(steps),
          "--warmup", str(warmup)]
    if side == "mpi2":
        env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
                   NUMBA_NUM_THREADS="1")
        cmd = [str(bin_dir / "mpiexec"), "-n", "2", *me]
    else:
        env.update(OMP_NUM_THREADS="2", OPENBLAS_NUM_THREADS="2", MKL_NUM_THREADS="2",
                   NUMBA_NUM_THREADS="2")
        cmd = me
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        raise SystemExit(f"{side} failed: {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        worker(a.steps, a.warmup)
        return
    results = {"one2": [], "mpi2": []}
    for i in range(a.repeats):
        for side in (("one2", "mpi2") if i % 2 == 0 else ("mpi2", "one2")):
            r = run_side(side, a.steps, a.warmup)
            results[side].append(r)
            print(f"repeat {i + 1} {side}: {r['tokens_per_s']:,.0f} tokens/s "
                  f"(step {r['step_s'] * 1e3:.0f} ms, allreduce share "
                  f"{r['allreduce_share']:.1%})", flush=True)
    med = {s: statistics.median(r["tokens_per_s"] for r in rs) for s, rs in results.items()}
    m = results["mpi2"][0]
    summary = {"config": CONFIG, "steps": a.steps, "repeats": a.repeats,
               "tokens_per_s_one_process_2_threads": med["one2"],
               "tokens_per_s_mpi_2_ranks_1_thread": med["mpi2"],
               "ratio_mpi_over_one": med["mpi2"] / med["one2"],
               "allreduce_bytes_per_rank_per_step": m["allreduce_bytes"],
               "allreduce_share_median": statistics.median(r["allreduce_share"]
                                                           for r in results["mpi2"]),
               "parameters": m["parameters"], "load_average": os.getloadavg()}
    print(json.dumps(summary, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps({"summary": summary, "runs": results}, indent=2))


if __name__ == "__main__":
    main()
