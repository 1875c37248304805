"""The course notes' claims about recurrent networks, measured.

1. Long-range dependencies: a *delayed match* task made here — a key symbol (A or B), then
   d - 1 noise symbols, then a query (A' or B'); the label says whether the query names the
   key, so the network must carry one bit across d steps (chance 50%; trained on a mixture of
   distances 1..d, tested at exactly d).  A tanh RNN, a GRU and an LSTM
   classifier with the same number of parameters and the same training steps, at d = 10, 50,
   100, 200; beside it, the gradient flow ‖∂L/∂h_t‖ against T − t of the trained models
   (``examples/gradflow.png``).
2. GRU vs LSTM (the notes: "GRUs have equivalent performance ... more efficient"): quality and
   time per step on a character language model and on the task of part 1.
3. Depth (the notes: deep RNNs are rare because of the added computation): an LSTM language
   model with 1, 2, 3 and 4 layers — held-out loss against time per step.
4. The notes' open question, 1D convolutions: a dilated ``Conv1D`` classifier against the RNN
   classifier on telling a word's language from its letters (``language_id.py``'s data) and
   on the delayed match.

Every number is measured by this script in this run, with its run time; nothing is tuned on
the test data (fixed steps, no model selection; test sets are generated or held out apart).

    python examples/long_range.py                   # the full run: about 20-25 min on a busy 2-core machine
    python examples/long_range.py --quick           # a smoke run (a minute; the numbers mean nothing)
    python examples/long_range.py --markdown out.md # also write the results tables
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small matrices: one thread is faster

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _wordlists  # noqa: E402
from rnnkit.data.corpus import default_corpus  # noqa: E402
from rnnkit.data.tokenize import get_tokenizer  # noqa: E402
from rnnkit.data.vocab import Vocab  # noqa: E402
from rnnkit.gradflow import ReferenceStack, norms_by_distance, plot, state_grads  # noqa: E402
from rnnkit.layers.basic import softmax  # noqa: E402
from rnnkit.models import ClassifierConfig, LanguageModel, LMConfig, SequenceClassifier  # noqa: E402
from rnnkit.models.conv_classifier import ConvClassifier, ConvClassifierConfig  # noqa: E402
from rnnkit.optim import Adam, clip_grad_norm  # noqa: E402

KEYS, NOISE = 2, 8
# <pad> <unk> <eos>, the keys (A, B), the queries (A', B'), the noise symbols.
KEY0, QUERY0, NOISE0 = 3, 3 + KEYS, 3 + 2 * KEYS
V_TASK = NOISE0 + NOISE
GATES = {"rnn": 1, "gru": 3, "lstm": 4}
FLOW_AT = (0, 10, 50, 100, 150)


# ---- the task ------------------------------------------------------------------------------
def delayed_match(rng, n, d, train=True):
    """n sequences of d + 1 symbols: a key (A or B) at distance d' from the end, noise symbols
    elsewhere and a query (A' or B') at the end; label 1 if the query names the key.

    The query comes from its own alphabet: were it a key too, "only one kind of key occurs"
    would give the answer without any memory (a bag of symbols, which a pooled convolution
    reads at any distance).  Training draws d' uniformly from 1..d (the short cases are what
    teach a network to store and compare at all; every model gets the same mixture), testing
    uses d' = d: the first symbol is the key."""
    ids = rng.integers(NOISE0, V_TASK, (n, d + 1))
    dist = rng.integers(1, d + 1, n) if train else np.full(n, d)
    key = rng.integers(0, KEYS, n)
    ids[np.arange(n), d - dist] = KEY0 + key
    y = rng.integers(0, 2, n)
    other = (key + rng.integers(1, KEYS, n)) % KEYS
    ids[:, -1] = QUERY0 + np.where(y == 1, key, other)
    return ids, y


# ---- sizes at an equal parameter count -----------------------------------------------------
def rnn_params(cell, H, E, V, C, K=1):
    G = GATES[cell]
    return V * E + K * (G * H * (E + H) + 2 * G * H) + C * K * H + C


def conv_params(Ch, E, V, C, layers, k):
    return V * E + Ch * E * k + Ch + (layers - 1) * (Ch * Ch * k + Ch) + C * Ch + C


def matched(count, target):
    """The size whose parameter count is closest to ``target``."""
    return min(range(1, 2048), key=lambda h: abs(count(h) - target))


# ---- training --------------------------------------------------------------------------------
def train(model, make_batch, steps, lr, seed):
    """Adam + global-norm clip 5 for ``steps`` steps; returns (seconds, median s/step)."""
    opt = Adam(lr)
    rng = np.random.default_rng(seed)
    times = []
    t0 = time.perf_counter()
    for _ in range(steps):
        t = time.perf_counter()
        batch = make_batch(rng)
        _, grads = model.batch_loss(batch, training=True, rng=rng)
        clip_grad_norm(grads, 5.0)
        opt.step(model.params, grads)
        times.append(time.perf_counter() - t)
    return time.perf_counter() - t0, float(np.median(times))


def accuracy(model, ids, y, lengths=None, batch=500):
    preds = []
    for s in range(0, len(ids), batch):
        ln = None if lengths is None else lengths[s : s + batch]
        preds.append(model.predict(ids[s : s + batch], ln))
    return float((np.concatenate(preds) == y).mean())


def rnn_classifier(cell, H, E, V, C, seed, bidirectional=False):
    return SequenceClassifier(ClassifierConfig(V, C, embed_dim=E, hidden_size=H, cell=cell,
                                               bidirectional=bidirectional, seed=seed))


def conv_classifier(Ch, E, V, C, layers, k, seed, dilation_base=2):
    return ConvClassifier(ConvClassifierConfig(V, C, embed_dim=E, hidden_size=Ch,
                                               num_layers=layers, kernel_size=k,
                                               dilation_base=dilation_base, seed=seed))


# ---- part 1 + the conv half of part 4 ----------------------------------------------------------
def long_range(args, log):
    E, target = 16, args.task_params
    sizes = {cell: matched(lambda h, c=cell: rnn_params(c, h, E, V_TASK, 2), target)
             for cell in ("rnn", "gru", "lstm")}
    conv_layers, conv_k = 3, 5  # dilations 1, 2, 4: a receptive field of 29 steps
    sizes["conv"] = matched(lambda h: conv_params(h, E, V_TASK, 2, conv_layers, conv_k), target)
    counts = {c: (rnn_params(c, h, E, V_TASK, 2) if c != "conv" else
                  conv_params(h, E, V_TASK, 2, conv_layers, conv_k)) for c, h in sizes.items()}
    log(f"part 1: delayed match, {args.task_steps} steps x batch {args.batch}; sizes {sizes}, "
        f"parameters {counts}")
    rows, trained = [], {}
    for d in args.distances:
        test_ids, test_y = delayed_match(np.random.default_rng(10_000 + d), args.test_size, d,
                                         train=False)
        for cell in ("rnn", "gru", "lstm", "conv"):
            seed = args.seed
            if cell == "conv":
                m = conv_classifier(sizes[cell], E, V_TASK, 2, conv_layers, conv_k, seed)
            else:
                m = rnn_classifier(cell, sizes[cell], E, V_TASK, 2, seed)

            def make(rng, d=d):
                ids, y = delayed_match(rng, args.batch, d)
                return {"ids": ids, "lengths": None, "labels": y}

            secs, per_step = train(m, make, args.task_steps, args.lr, seed)
            acc = accuracy(m, test_ids, test_y)
            rows.append({"distance": d, "model": cell, "hidden": sizes[cell],
                         "params": m.num_parameters(), "test_accuracy": acc,
                         "seconds": secs, "ms_per_step": 1000 * per_step})
            trained[(cell, d)] = m
            log(f"  d={d:>3} {cell:>4}: test accuracy {100 * acc:5.1f}%  "
                f"({secs:.0f} s, {1000 * per_step:.1f} ms/step)")
    return rows, trained, sizes


def task_gradflow(trained, sizes, d_train, T, args, out_png, log):
    """‖∂L/∂h_t‖ by distance for the models trained at ``d_train`` and fresh ones of the same
    sizes, on delayed-match sequences of T steps (the loss: cross-entropy of the label)."""
    E = 16
    ids, y = delayed_match(np.random.default_rng(777), 64, T - 1, train=False)
    result = {"distance": list(range(T)), "models": {}}
    for cell in ("rnn", "gru", "lstm"):
        for name, m in ((f"{cell} trained (d = {d_train})", trained[(cell, d_train)]),
                        (f"{cell} fresh", rnn_classifier(cell, sizes[cell], E, V_TASK, 2, 1))):
            p = m.params
            stack = ReferenceStack.from_layer(m.rnn)
            x = p["embed.weight"].astype(np.float64)[ids]
            states = stack.forward(x)
            h_T = states[-1]["out"][-1]
            W, b = p["out.weight"].astype(np.float64), p["out.bias"].astype(np.float64)
            dz = softmax(h_T @ W.T + b)
            dz[np.arange(len(y)), y] -= 1.0
            g = state_grads(stack, x, dz @ W, states=states)
            result["models"][name] = [float(v) for v in norms_by_distance(g)]
    plot(result, out_png, title=f"Delayed match: gradient reaching back (T = {T}, 64 sequences)")
    for name, n in result["models"].items():
        log(f"  {name}: |dL/dh| at " + ", ".join(f"{k}: {n[k]:.2e}" for k in FLOW_AT if k < T))
    return result


# ---- parts 2 and 3: language models ------------------------------------------------------------
def lm_runs(args, log):
    text = default_corpus()
    tok = get_tokenizer("char")
    cut = int(len(text) * 0.95)
    cut = text.rfind("\n", 0, cut) + 1
    vocab = Vocab.build(tok.tokenize(text[:cut]))
    train_ids = vocab.encode(tok.tokenize(text[:cut]))
    held = vocab.encode(tok.tokenize(text[cut:]))
    S, N = args.lm_seq, args.batch
    vrng = np.random.default_rng(5)
    starts = vrng.integers(0, len(held) - S - 1, 64)
    vx = held[starts[:, None] + np.arange(S)]
    vy = held[starts[:, None] + np.arange(1, S + 1)]

    class Batches:  # random windows of the training text
        def __call__(self, rng):
            s = rng.integers(0, len(train_ids) - S - 1, N)
            idx = s[:, None] + np.arange(S)
            return train_ids[idx], train_ids[idx + 1]

    configs = [("gru", 1), ("lstm", 1), ("lstm", 2), ("lstm", 3), ("lstm", 4)]
    rows = []
    log(f"parts 2-3: character LMs on the built-in corpus ({len(train_ids)} training chars, "
        f"held-out {len(held)}), H {args.lm_hidden}, {args.lm_steps} steps x {N} x {S}")
    for cell, layers in configs:
        m = LanguageModel(LMConfig(len(vocab), cell=cell, num_layers=layers,
                                   hidden_size=args.lm_hidden, embed_dim=32), seed=args.seed)
        opt = Adam(2e-3)
        rng = np.random.default_rng(args.seed)
        batches = Batches()
        times = []
        t0 = time.perf_counter()
        for _ in range(args.lm_steps):
            t = time.perf_counter()
            x, y = batches(rng)
            _, grads, _ = m.loss_and_grads(x, y)
            clip_grad_norm(grads, 5.0)
            opt.step(m.params, grads)
            times.append(time.perf_counter() - t)
        secs = time.perf_counter() - t0
        lp, _ = m.log_probs(vx)
        nats = float(-np.take_along_axis(lp, vy[..., None], -1).astype(np.float64).mean())
        rows.append({"cell": cell, "layers": layers, "hidden": args.lm_hidden,
                     "params": m.num_parameters(), "held_out_nats_per_char": nats,
                     "seconds": secs, "ms_per_step": 1000 * float(np.median(times))})
        log(f"  {cell} {layers} x {args.lm_hidden}: held-out {nats:.3f} nats/char  "
            f"({secs:.0f} s, {rows[-1]['ms_per_step']:.1f} ms/step)")
    return rows


# ---- part 4: language ID ------------------------------------------------------------------------
def language_id(args, log):
    langs = _wordlists.LANGUAGES
    train_w, _, test_w = _wordlists.load(langs, args.langid_top, 0)
    vocab = Vocab.build(c for w, _ in train_w for c in w)
    V, C, E = len(vocab), len(langs), 32

    def pad(words):
        seqs = [vocab.encode(list(w)) for w in words]
        L = np.array([len(s) for s in seqs])
        ids = np.zeros((len(seqs), L.max()), dtype=np.int64)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = s
        return ids, L

    xs = [w for w, _ in train_w]
    ys = np.array([k for _, k in train_w])
    test_ids, test_len = pad([w for w, _ in test_w])
    test_y = np.array([k for _, k in test_w])

    def make(rng):
        idx = rng.integers(0, len(xs), args.langid_batch)
        ids, L = pad([xs[i] for i in idx])
        return {"ids": ids, "lengths": L, "labels": ys[idx]}

    H = args.langid_hidden
    target = rnn_params("lstm", H, E, V, C, K=2)
    Ch = matched(lambda h: conv_params(h, E, V, C, 3, 3), target)
    models = {f"bidirectional LSTM (H {H})": rnn_classifier("lstm", H, E, V, C, args.seed, True),
              f"Conv1D, 3 layers, kernel 3, dilations 1-2-4 ({Ch} channels)":
                  conv_classifier(Ch, E, V, C, 3, 3, args.seed)}
    rows = []
    log(f"part 4: language ID, {len(langs)} languages, {len(xs)} training words, "
        f"{len(test_y)} test words, {args.langid_steps} steps x {args.langid_batch}")
    for name, m in models.items():
        secs, per_step = train(m, make, args.langid_steps, 3e-3, args.seed)
        order = np.argsort(test_len)  # similar lengths together: less padding
        acc = accuracy(m, test_ids[order], test_y[order], test_len[order])
        rows.append({"model": name, "params": m.num_parameters(), "test_accuracy": acc,
                     "seconds": secs, "ms_per_step": 1000 * per_step})
        log(f"  {name}: test accuracy {100 * acc:.1f}%  ({secs:.0f} s, {1000 * per_step:.1f} ms/step)")
    return rows


# ---- report -------------------------------------------------------------------------------------
def markdown(res) -> str:
    a = res["args"]
    out = [f"Measured by `python examples/long_range.py` on {res['when']} in {res['minutes']:.1f} min "
           f"(seed {a['seed']}, float32; the 2-core machine was shared with other jobs: times are "
           "upper bounds and only their ratios within one table mean much).", ""]
    rows = res["long_range"]
    ds = a["distances"]
    p = {r["model"]: r for r in rows}
    out += [f"**Delayed match** (one bit carried across d steps; chance 50%; trained on distances "
            f"1..d, {a['task_steps']} steps × batch {a['batch']}, Adam {a['lr']}; test accuracy "
            f"on {a['test_size']} fresh sequences at exactly d):", "",
            "| model | hidden | parameters | " + " | ".join(f"d = {d}" for d in ds) + " | ms/step at d = "
            f"{ds[-1]} |", "|---|---|---|" + "---|" * len(ds) + "---|"]
    names = {"rnn": "tanh RNN", "gru": "GRU", "lstm": "LSTM", "conv": "Conv1D (receptive field 29)"}
    for m in ("rnn", "gru", "lstm", "conv"):
        cells = [next(r for r in rows if r["model"] == m and r["distance"] == d) for d in ds]
        out.append(f"| {names[m]} | {p[m]['hidden']} | {p[m]['params']:,} | "
                   + " | ".join(f"{100 * c['test_accuracy']:.1f}%" for c in cells)
                   + f" | {cells[-1]['ms_per_step']:.0f} |")
    g = res["gradflow"]["models"]
    T = len(res["gradflow"]["distance"])
    at = [k for k in FLOW_AT if k < T]
    out += ["", f"Gradient flow on 64 delayed-match sequences of T = {T} steps "
            "(`examples/gradflow.png`): mean ‖∂L/∂h_t‖ at distance T − t:", "",
            "| model | " + " | ".join(str(k) for k in at) + " |", "|---|" + "---|" * len(at)]
    for name, n in g.items():
        out.append(f"| {name} | " + " | ".join(f"{n[k]:.1e}" for k in at) + " |")
    lm = res["lm"]
    out += ["", f"**Character language models** on the built-in corpus (held out: its last 5%; "
            f"{a['lm_steps']} steps × batch {a['batch']} × {a['lm_seq']} characters, Adam 2e-3, "
            "embedding 32; held-out loss on 64 fixed windows):", "",
            "| cell | layers × hidden | parameters | held-out nats/char | ms/step | total |",
            "|---|---|---|---|---|---|"]
    for r in lm:
        out.append(f"| {r['cell'].upper()} | {r['layers']} × {r['hidden']} | {r['params']:,} | "
                   f"{r['held_out_nats_per_char']:.3f} | {r['ms_per_step']:.0f} | {r['seconds']:.0f} s |")
    out += ["", f"**Language ID** (6 languages from `wordfreq`, `language_id.py`'s split; "
            f"{a['langid_steps']} steps × batch {a['langid_batch']}; test words never seen):", "",
            "| model | parameters | test accuracy | ms/step | total |", "|---|---|---|---|---|"]
    for r in res["langid"]:
        out.append(f"| {r['model']} | {r['params']:,} | {100 * r['test_accuracy']:.1f}% | "
                   f"{r['ms_per_step']:.0f} | {r['seconds']:.0f} s |")
    return "\n".join(out) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a smoke run with tiny budgets")
    ap.add_argument("--distances", default="10,50,100,200")
    ap.add_argument("--task-steps", type=int, default=1000)
    ap.add_argument("--task-params", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--test-size", type=int, default=2000)
    ap.add_argument("--lm-steps", type=int, default=600)
    ap.add_argument("--lm-hidden", type=int, default=128)
    ap.add_argument("--lm-seq", type=int, default=64)
    ap.add_argument("--langid-steps", type=int, default=2000)
    ap.add_argument("--langid-batch", type=int, default=64)
    ap.add_argument("--langid-hidden", type=int, default=64)
    ap.add_argument("--langid-top", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gradflow-png", default=str(HERE / "gradflow.png"))
    ap.add_argument("--json", default="runs/long_range.json")
    ap.add_argument("--markdown", metavar="FILE", help="write the results tables here")
    args = ap.parse_args(argv)
    if args.quick:
        args.distances, args.task_steps, args.test_size = "5,20", 20, 200
        args.lm_steps, args.lm_hidden, args.langid_steps, args.langid_top = 5, 32, 20, 2000
    args.distances = [int(d) for d in args.distances.split(",")]
    t0 = time.perf_counter()

    def log(msg):
        print(f"[{(time.perf_counter() - t0) / 60:5.1f} min] {msg}", flush=True)

    res = {"args": vars(args).copy()}
    res["long_range"], trained, sizes = long_range(args, log)
    d_flow = 50 if 50 in args.distances else args.distances[-1]
    T = 200 if not args.quick else 60
    log(f"gradient flow of the models trained at d = {d_flow} and fresh ones, T = {T}")
    res["gradflow"] = task_gradflow(trained, sizes, d_flow, T, args, args.gradflow_png, log)
    res["lm"] = lm_runs(args, log)
    res["langid"] = language_id(args, log)
    res["minutes"] = (time.perf_counter() - t0) / 60
    res["when"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(res, indent=1))
    md = markdown(res)
    if args.markdown:
        Path(args.markdown).write_text(md)
    print("\n" + md)
    log(f"done: total run time {res['minutes']:.1f} min")


if __name__ == "__main__":
    main()
