"""What a user waits for: ``rnnkit train`` / ``rnnkit eval`` as processes against a plain
PyTorch script (bench/torch_train.py, bench/torch_eval.py) as processes.

Same corpus (bench/bench_corpus.py, last 5% of its lines held out), same configuration
(2 x 256, embed 64, batch 32, seq-len 100, Adam 2e-3, clip 5), the same work (validation on the
held-out file every ``--eval-every`` steps and at the end, the best model saved, a checkpoint at
the end), run alternately A B A B; tokens/s over the whole process — start-up, imports,
compilation (Numba cache warm after one warm-up run; the cold first run is timed apart),
encoding, validation and saving included.  Peak memory is each process's max RSS.  Both sides
run their default thread settings (``--threads n`` pins both, for a loaded machine) and the
thread counts are printed; the load average is recorded with every run.

    .venv/bin/python bench/e2e.py                       # ~8 min: LSTM + GRU, 200 steps, eval
    .venv/bin/python bench/e2e.py --steps 2000 --eval-every 200 --cells lstm   # the issue's run
    .venv/bin/python bench/e2e.py --no-train --workdir DIR   # eval pairs only, DIR's models
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VENV_BIN = Path(sys.executable).parent
RNNKIT = str(VENV_BIN / "rnnkit")
sys.path.insert(0, str(HERE))


def load():
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def timed_rss(cmd, env=None):
    """Run ``cmd``; (wall seconds, the process's peak RSS in MiB, stdout).  Raises on failure.

    The process's CPU seconds (user + system, all its threads) go to ``CPU[-1]``: on a loaded
    machine they show the work done where wall time mostly shows the queue."""
    with tempfile.TemporaryFile(mode="w+") as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env=env, text=True)
        out = p.stdout.read()
        _, status, ru = os.wait4(p.pid, 0)  # reaps it: its own rusage, not all children's
        wall = time.perf_counter() - t0
        CPU.append(ru.ru_utime + ru.ru_stime)
        p.returncode = code = os.waitstatus_to_exitcode(status)
        if code != 0:
            err.seek(0)
            raise RuntimeError(f"{' '.join(cmd)} failed ({code}): {err.read()[-2000:]}")
    return wall, ru.ru_maxrss / 1024, out


CPU: list[float] = []


def timed(cmd, env=None):
    wall, _, out = timed_rss(cmd, env)
    return wall, out


def last_json(text):
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {}


def prepare(workdir: Path, eval_bytes: int):
    from bench_corpus import bench_corpus

    text, info = bench_corpus()
    lines = text.splitlines(keepends=True)
    k = int(len(lines) * 0.95)
    train, val = workdir / "train.txt", workdir / "val.txt"
    train.write_text("".join(lines[:k]), encoding="utf-8")
    val.write_text("".join(lines[k:]), encoding="utf-8")
    ev = workdir / "eval.txt"
    ev.write_text("".join(lines[:k])[:eval_bytes], encoding="utf-8")
    return train, val, ev, info


def train_cmds(cell, a, train, val, workdir, tag, cutoffs=None):
    common = ["--cell", cell, "--layers", "2", "--hidden", str(a.hidden), "--embed",
              str(a.embed), "--batch", str(a.batch), "--seq-len", str(a.seq_len), "--steps",
              str(a.steps), "--eval-every", str(a.eval_every)]
    if a.level == "word":
        common += ["--level", "word", "--min-count", str(a.min_count), "--softmax", a.softmax]
        if a.softmax == "adaptive" and cutoffs:
            common += ["--cutoffs", ",".join(map(str, cutoffs))]
    ours = [RNNKIT, "train", str(train), "--val", str(val), "--out",
            str(workdir / f"rnnkit-{cell}{tag}"), "--force", "--json",
            "--checkpoint-every", str(a.checkpoint_every), *common]
    theirs = [sys.executable, str(HERE / "torch_train.py"), str(train), "--val", str(val),
              "--out", str(workdir / f"torch-{cell}{tag}"),
              "--checkpoint-every", str(a.checkpoint_every), *common]
    return ours, theirs


def saved_config(model_dir: Path) -> dict:
    """The model config rnnkit saved (vocabulary size, cutoffs), from the file's header."""
    from safetensors import safe_open

    with safe_open(str(model_dir / "model.safetensors"), "np") as f:
        return json.loads(f.metadata()["rnnkit.meta"])["config"]


def pair_runs(run_a, run_b, repeats):
    """A B A B ...; per side the list of (wall, rss, stdout, load before)."""
    ra, rb = [], []
    for _ in range(repeats):
        la = load()
        ra.append((*run_a(), la, CPU[-1]))
        lb = load()
        rb.append((*run_b(), lb, CPU[-1]))
    return ra, rb


def summarise(name, work, ra, rb, extra):
    wa = [r[0] for r in ra]
    wb = [r[0] for r in rb]
    ratios = [b / a for a, b in zip(wa, wb)]  # throughput ratio rnnkit / PyTorch, per pair
    return {"case": name, "work_tokens": work,
            "rnnkit_s": wa, "torch_s": wb,
            "rnnkit_tok_s": work / statistics.median(wa), "torch_tok_s": work / statistics.median(wb),
            "ratio_per_pair": ratios, "ratio_median": statistics.median(ratios),
            "rnnkit_peak_mib": max(r[1] for r in ra), "torch_peak_mib": max(r[1] for r in rb),
            "load_before_runs": [r[3] for r in ra] + [r[3] for r in rb],
            "rnnkit_cpu_s": [r[4] for r in ra], "torch_cpu_s": [r[4] for r in rb], **extra}


def pair_eval(a, cell, label, workdir, ev, env, results, save):
    """``rnnkit eval`` against the PyTorch forward pass over the eval file, alternated."""
    e_ours = [RNNKIT, "eval", str(workdir / f"rnnkit-{cell}"), str(ev), "--streams",
              str(a.streams), "--json"]
    e_theirs = [sys.executable, str(HERE / "torch_eval.py"), str(workdir / f"torch-{cell}"),
                str(ev), "--streams", str(a.streams)]
    timed_rss(e_ours, env)  # untimed: a kernel the cache lacks compiles here, not in a pair
    ra, rb = pair_runs(lambda: timed_rss(e_ours, env), lambda: timed_rss(e_theirs, env),
                       a.repeats)
    tq = last_json(rb[-1][2])
    r = summarise(f"eval {label}", tq["tokens"], ra, rb,
                  {"torch_threads": tq.get("torch_threads"), "streams": a.streams})
    results["cases"].append(r)
    print(json.dumps({k: r[k] for k in ("case", "rnnkit_tok_s", "torch_tok_s", "ratio_median",
                                        "ratio_per_pair", "load_before_runs")}), flush=True)
    save()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", default="lstm,gru")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--checkpoint-every", type=int, default=500)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=100)
    ap.add_argument("--embed", type=int, default=64)
    ap.add_argument("--level", default="char", choices=("char", "word"))
    ap.add_argument("--min-count", type=int, default=2, help="word level")
    ap.add_argument("--softmax", default="full", choices=("full", "adaptive"), help="word level")
    ap.add_argument("--repeats", type=int, default=2, help="A B pairs per case")
    ap.add_argument("--eval-bytes", type=int, default=300_000,
                    help="size of the file scored by rnnkit eval / the torch forward pass")
    ap.add_argument("--streams", type=int, default=32)
    ap.add_argument("--no-eval", action="store_true")
    ap.add_argument("--no-train", action="store_true",
                    help="time only the eval case, on the models an earlier run left in "
                         "--workdir (each side trained once, untimed, where there are none)")
    ap.add_argument("--no-startup", action="store_true",
                    help="skip --version/--help, cold-compile and sample timings")
    ap.add_argument("--startup-only", action="store_true",
                    help="only the --version/--help, cold-compile and sample timings")
    ap.add_argument("--cold-repeats", type=int, default=1,
                    help="cold/warm train pairs, with and without the cold-start helper")
    ap.add_argument("--threads", type=int, default=0,
                    help="pin both sides to n threads (default: each framework's own)")
    ap.add_argument("--name", default="e2e", help="writes bench/NAME.json")
    ap.add_argument("--workdir", default=None)
    a = ap.parse_args(argv)

    env = dict(os.environ)
    if a.threads:
        env.update(OMP_NUM_THREADS=str(a.threads), OPENBLAS_NUM_THREADS=str(a.threads),
                   RNNKIT_STEP_THREADS=str(a.threads))
    workdir = Path(a.workdir or tempfile.mkdtemp(prefix="rnnkit-e2e-"))
    workdir.mkdir(parents=True, exist_ok=True)
    train, val, ev, corpus = prepare(workdir, a.eval_bytes)

    from rnnkit.kernels import blas

    from cpuinfo import cpu

    info = {"cpu": cpu(), "cores": blas.cores(), "load_at_start": load(), "corpus": corpus,
            "threads_option": a.threads or "defaults",
            "rnnkit_thread_plan_at_start": {c: blas.describe(a.batch, a.hidden, g)
                                            for c, g in (("lstm", 4), ("gru", 3))},
            "numpy_blas_threads": blas.get_threads(), "config": vars(a)}
    print(json.dumps(info), flush=True)
    results = {"info": info, "cases": []}
    out_json = HERE / f"{a.name}.json"

    def save():
        results["info"]["load_at_end"] = load()
        tmp = out_json.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=1))
        tmp.replace(out_json)

    if not a.no_startup:
        results["startup"] = startup(workdir, train, val, env, a.cold_repeats)
        print(json.dumps(results["startup"]), flush=True)
        save()
    if a.startup_only:
        return 0

    for cell in a.cells.split(","):
        ours, theirs = train_cmds(cell, a, train, val, workdir, "")
        label = cell if a.level == "char" else f"{cell} word {a.softmax}"
        have = all((workdir / f"{side}-{cell}").is_dir() for side in ("rnnkit", "torch"))
        if not (a.no_train and have):  # else the models of an earlier run: its config, data
            timed_rss(ours[:ours.index("--steps") + 1] + ["2"] + ours[ours.index("--steps") + 2:],
                      env)  # warm-up: fills the Numba cache (cold start is timed apart)
        cfg = saved_config(workdir / f"rnnkit-{cell}")
        if a.level == "word":  # PyTorch gets the cutoffs rnnkit chose from the frequencies
            ours, theirs = train_cmds(cell, a, train, val, workdir, "", cfg.get("cutoffs"))
        if a.no_train:
            if not have:
                timed_rss(ours, env)
                timed_rss(theirs, env)
            pair_eval(a, cell, label, workdir, ev, env, results, save)
            continue
        ra, rb = pair_runs(lambda: timed_rss(ours, env), lambda: timed_rss(theirs, env),
                           a.repeats)
        tq = last_json(rb[-1][2])
        r = summarise(f"train {label}", a.steps * a.batch * a.seq_len, ra, rb,
                      {"torch_threads": tq.get("torch_threads"),
                       "torch_val_loss": tq.get("val_loss"),
                       "rnnkit_val_loss": last_json(ra[-1][2]).get("last_val_loss"),
                       "vocab_size": [cfg["vocab_size"], tq.get("vocab_size")],
                       "level": a.level, "softmax": cfg.get("softmax"),
                       "cutoffs": cfg.get("cutoffs"),
                       "rnnkit_thread_plan": blas.describe(a.batch, a.hidden,
                                                           4 if cell == "lstm" else 3)})
        results["cases"].append(r)
        print(json.dumps({k: r[k] for k in ("case", "rnnkit_tok_s", "torch_tok_s",
                                            "ratio_median", "ratio_per_pair",
                                            "load_before_runs")}), flush=True)
        save()
        if not a.no_eval:
            pair_eval(a, cell, label, workdir, ev, env, results, save)
    save()
    print(markdown(results))
    return 0


def startup(workdir, train, val, env, cold_repeats=1):
    """--version / --help wall time; the first train and sample on an empty Numba cache."""
    res = {}
    for what in ("--version", "--help"):
        ts = [timed([RNNKIT, what], env)[0] for _ in range(5)]
        res[f"rnnkit {what} s"] = statistics.median(ts)
    # A tiny model to sample from (its own run, warm cache after it).
    small = [RNNKIT, "train", str(train), "--val", str(val), "--steps", "2", "--eval-every",
             "2", "--force", "--json"]
    # Each repeat: a cold run on a fresh cache, then a warm one on it; with the cold-start
    # helper (rnnkit.kernels.warm) and, alternated with it, without (RNNKIT_NO_WARM=1).
    compile_s = {"helper": [], "no helper": []}
    for r in range(cold_repeats):
        for variant in (("helper", "no helper") if r % 2 == 0 else ("no helper", "helper")):
            cold_dir = Path(tempfile.mkdtemp(prefix="numba-cold-", dir=workdir))
            cold_env = {**env, "NUMBA_CACHE_DIR": str(cold_dir)}
            if variant == "no helper":
                cold_env["RNNKIT_NO_WARM"] = "1"
            cold, _, _ = timed_rss(small + ["--out", str(workdir / "cold")], cold_env)
            warm, _, _ = timed_rss(small + ["--out", str(workdir / "cold")], cold_env)
            compile_s[variant].append(cold - warm)
            if variant == "helper":
                res["train 2 steps: cold s"] = cold
                res["train 2 steps: warm s"] = warm
    # What a user of the README's set-up gets: python -m rnnkit.precompile at install on an
    # empty cache (timed), then the first run and a second one.
    after = []
    for r in range(cold_repeats):
        pre_dir = Path(tempfile.mkdtemp(prefix="numba-pre-", dir=workdir))
        pre_env = {**env, "NUMBA_CACHE_DIR": str(pre_dir)}
        t_pre = timed([sys.executable, "-m", "rnnkit.precompile", "--cells", "lstm,gru,rnn"],
                      pre_env)[0]
        first, _, _ = timed_rss(small + ["--out", str(workdir / "pre")], pre_env)
        second, _, _ = timed_rss(small + ["--out", str(workdir / "pre")], pre_env)
        after.append({"precompile s": t_pre, "first run s": first, "second run s": second,
                      "compile s (first - second)": first - second})
    res["after precompile, runs"] = after
    res["after precompile: compile s (first - second)"] = statistics.median(
        a["compile s (first - second)"] for a in after)
    res["precompile (install step) s"] = statistics.median(a["precompile s"] for a in after)
    res["train: compile s (cold - warm), runs"] = compile_s
    res["train: compile s (cold - warm)"] = statistics.median(compile_s["helper"])
    res["train: compile s without the helper"] = statistics.median(compile_s["no helper"])
    sample = [RNNKIT, "sample", str(workdir / "cold"), "--length", "200", "--no-stop",
              "--seed", "1"]
    cold_dir2 = Path(tempfile.mkdtemp(prefix="numba-cold-", dir=workdir))
    env2 = {**env, "NUMBA_CACHE_DIR": str(cold_dir2)}
    try:
        res["sample 200: cold s"] = timed(sample, env2)[0]
        cold_cpu = CPU[-1]
        res["sample 200: warm s"] = statistics.median(timed(sample, env2)[0] for _ in range(3))
        res["sample 200: warm CPU s"] = statistics.median(CPU[-3:])
        res["sample 200: compile CPU s (cold - warm)"] = cold_cpu - statistics.median(CPU[-3:])
    except RuntimeError as e:  # report it with the rest rather than lose the run
        res["sample 200: error"] = str(e).strip().splitlines()[-1][:300]
    res["load"] = load()
    return res


def markdown(results):
    rows = ["| case | rnnkit tok/s | PyTorch tok/s | ratio (median of pairs) | pairs | "
            "peak MiB rnnkit / PyTorch | CPU s rnnkit / PyTorch | load before runs |",
            "|---|---|---|---|---|---|---|---|"]
    for r in results["cases"]:
        rows.append(f"| {r['case']} | {r['rnnkit_tok_s']:.0f} | {r['torch_tok_s']:.0f} | "
                    f"**{r['ratio_median']:.2f}** | "
                    f"{', '.join(f'{x:.2f}' for x in r['ratio_per_pair'])} | "
                    f"{r['rnnkit_peak_mib']:.0f} / {r['torch_peak_mib']:.0f} | "
                    f"{statistics.median(r['rnnkit_cpu_s']):.1f} / "
                    f"{statistics.median(r['torch_cpu_s']):.1f} | "
                    f"{', '.join(str(x) for x in r['load_before_runs'])} |")
    if "startup" in results:
        rows.append("")
        rows += [f"- {k}: {v:.2f}" if isinstance(v, float) else f"- {k}: {v}"
                 for k, v in results["startup"].items()]
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
