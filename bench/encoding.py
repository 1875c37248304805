"""Corpus encoding speed and training memory on a large corpus.

    .venv/bin/python bench/encoding.py speed [--mb 20] [--repeats 3]
    .venv/bin/python bench/encoding.py rss SRC_DIR [SRC_DIR ...] [--mb 20] [--steps 5]

``speed``: MB/s of encoding a generated corpus at char and word level, the bulk path
(``tok.count`` + ``tok.encode``: vocabulary and ids) against the token-list path it replaced
(``Vocab.build(tok.tokenize(text))`` + ``vocab.encode(tok.tokenize(text))``), alternated,
medians of ``--repeats``.  The ids are checked equal.

``rss``: peak resident memory of ``rnnkit train CORPUS --steps N`` (default model sizes) run
as a process from each source tree given (``git archive COMMIT | tar -x -C DIR`` makes one),
alternated; the corpus is written once to a temporary directory.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_corpus(mb: float, seed: int = 0) -> str:
    """About ``mb`` MB of word-like lines with punctuation, digits and some non-ASCII."""
    rng = np.random.default_rng(seed)
    letters = list("abcdefghijklmnopqrstuvwxyz") + ["é", "ü", "ß"]
    p = np.ones(len(letters))
    p[-3:] = 0.02
    p /= p.sum()
    words = ["".join(rng.choice(letters, size=rng.integers(1, 10), p=p)) for _ in range(20000)]
    words = np.array(words + [",", ".", "1999", "U.S.", "Mr."])  # once, not per line
    lines = [" ".join(rng.choice(words, size=rng.integers(4, 20))) for _ in range(50000)]
    base = "\n".join(lines) + "\n"
    want = int(mb * 1e6)
    reps = want // len(base.encode()) + 1
    text = base * reps
    return text[: text.rfind("\n", 0, want) + 1]


def speed(args) -> None:
    from rnnkit.data.tokenize import get_tokenizer
    from rnnkit.data.vocab import Vocab

    text = make_corpus(args.mb)
    mb = len(text.encode()) / 1e6
    print(f"corpus: {mb:.1f} MB, {len(text):,} characters; load average "
          f"{os.getloadavg()[0]:.1f}")
    # CPU seconds of this process (time.process_time) as well as wall seconds: on a shared
    # machine the wall clock counts other people's work, the CPU time does not.
    for level in ("char", "word"):
        tok = get_tokenizer(level)
        times = {"bulk": [], "token list": [], "encode": []}
        for rep in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            vocab = Vocab.from_counts(tok.count(text))
            new = tok.encode(text, vocab)
            times["bulk"].append((time.perf_counter() - t0, time.process_time() - c0))
            t0, c0 = time.perf_counter(), time.process_time()
            tok.encode(text, vocab)
            times["encode"].append((time.perf_counter() - t0, time.process_time() - c0))
            if rep < args.old_repeats:
                t0, c0 = time.perf_counter(), time.process_time()
                old_vocab = Vocab.build(tok.tokenize(text))
                old = old_vocab.encode(tok.tokenize(text))
                times["token list"].append((time.perf_counter() - t0, time.process_time() - c0))
                assert old_vocab == vocab and np.array_equal(old, new)
                del old
        med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
               for k, v in times.items()}
        for k, (w, c) in med.items():
            what = {"bulk": "vocabulary + ids, bulk path", "token list":
                    "vocabulary + ids, token-list path", "encode": "ids alone, bulk path"}[k]
            print(f"{level:5s} {what:34s}: {mb / c:6.1f} MB per CPU-second "
                  f"({mb / w:6.1f} MB/s wall)")
        print(f"{level:5s} ids {new.dtype} ({new.nbytes / 1e6:.0f} MB; int64 was "
              f"{new.size * 8 / 1e6:.0f} MB); bulk / token list (CPU): "
              f"{med['token list'][1] / med['bulk'][1]:.1f}x")


def rss(args) -> None:
    with tempfile.TemporaryDirectory() as d:
        corpus = Path(d) / "corpus.txt"
        corpus.write_text(make_corpus(args.mb))
        size = corpus.stat().st_size / 1e6
        print(f"corpus {size:.1f} MB; rnnkit train --steps {args.steps} (default sizes)")
        results = {src: [] for src in args.src}
        for _ in range(args.repeats):
            for src in args.src:
                out = Path(d) / "out"
                cmd = [sys.executable, "-m", "rnnkit.cli", "train", str(corpus), "--out",
                       str(out), "--steps", str(args.steps), "--eval-every", str(args.steps),
                       "--force"]
                env = dict(os.environ, PYTHONPATH=str(Path(src) / "src"))
                before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
                t0 = time.perf_counter()
                r = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], env=env,
                                   capture_output=True, text=True)
                wall = time.perf_counter() - t0
                if r.returncode != 0:
                    sys.exit(f"{src}: exit {r.returncode}: {r.stderr[-500:]}")
                peak_kb = int(r.stderr.strip().splitlines()[-1])
                results[src].append((peak_kb / 1024, wall))
                del before
        for src, runs in results.items():
            peak = statistics.median(p for p, _ in runs)
            wall = statistics.median(w for _, w in runs)
            print(f"{src}: peak RSS {peak:.0f} MiB ({peak * 1.048576 / size:.1f}x the corpus), "
                  f"wall {wall:.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--mb", type=float, default=20.0)
    s.add_argument("--repeats", type=int, default=3)
    s.add_argument("--old-repeats", type=int, default=1, help="repeats of the slow old path")
    r = sub.add_parser("rss")
    r.add_argument("src", nargs="+", help="source trees (each with src/rnnkit)")
    r.add_argument("--mb", type=float, default=20.0)
    r.add_argument("--steps", type=int, default=5)
    r.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    speed(args) if args.what == "speed" else rss(args)


if __name__ == "__main__":
    main()
