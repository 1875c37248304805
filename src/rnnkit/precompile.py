"""Compile ahead of time what a first run would compile: ``python -m rnnkit.precompile``.

rnnkit's fast path is Numba code compiled on first use and kept in Numba's disk cache
(``cache=True``, next to the installed sources unless ``NUMBA_CACHE_DIR`` says elsewhere).
On an empty cache the first ``rnnkit train`` spends ~5 s compiling and the first run on the
built-in corpus another ~3 s parsing the standard library.  It also byte-compiles rnnkit's
own modules (:func:`write_bytecode`), which an editable install leaves to each run.  The
README's set-up commands run this module once after ``pip install``, so those seconds are
spent while installing and the user's first run starts at once.

It runs the real commands, in this process, on a small piece of the built-in corpus and
with the default sizes: ``rnnkit train`` (2 steps with a validation pass), ``eval``,
``score``, ``sample`` (beam search, and a job long enough for the compiled sampling loop,
:func:`rnnkit.kernels.lmstep.lm_sample`) for each cell asked for, so what lands in the cache
is exactly what those commands load (same functions, same argument types).  The
built-in corpus is built once and kept too (:func:`rnnkit.data.corpus.corpus_cache_dir`).

    python -m rnnkit.precompile                    # the LSTM, the default cell
    python -m rnnkit.precompile --cells lstm,gru,rnn

Running it again finds everything cached and takes about a second per cell.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

CELLS = ("lstm", "gru", "rnn")


def _run(argv: list[str]) -> None:
    from . import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    if code != 0:
        last = (err.getvalue().strip().splitlines() or ["(no message)"])[-1]
        raise RuntimeError(f"rnnkit {' '.join(argv[:1])} failed while precompiling: {last}")


def write_bytecode(root=None) -> bool:
    """Byte-compile rnnkit's own modules (``__pycache__/*.pyc``; those up to date are left),
    as ``pip install`` does for a regular install but not for an editable one: otherwise
    every process compiles the modules it imports from source again where bytecode is not
    written (``PYTHONDONTWRITEBYTECODE``, a read-only checkout) — ~0.14 s of each command's
    start.  ``root``: the package directory (rnnkit's by default).  False when some could
    not be written (a read-only directory: those modules are compiled at import, as
    before).  ``compileall`` judges a .pyc by the source's modification time alone, so a
    module edited within the second its .pyc was written keeps the old one, which import
    then refuses (it checks the size too) and compiles the source: slower, never wrong."""
    import compileall

    root = Path(root) if root is not None else Path(__file__).resolve().parent
    return bool(compileall.compile_dir(str(root), quiet=2))


def precompile(cells=("lstm",), log=None) -> dict[str, float]:
    """Run each command once per cell in ``cells`` so their compiled code is in the cache;
    returns the seconds the corpus and each cell took.  (A word-level model trains on the
    same kernels: after ``--cells lstm`` a first word-level ``train`` compiled nothing; the
    adaptive softmax and word-level sampling compile two small kernels on first use.)"""
    cells = tuple(cells)
    bad = [c for c in cells if c not in CELLS]
    if bad or not cells:
        raise ValueError(f"cells must be some of {', '.join(CELLS)}, "
                         f"got {','.join(cells) or 'none'}")
    from . import kernels
    from .cli_lm import SHORT_JOB_TOKENS
    from .data.corpus import default_corpus, split_validation

    took: dict[str, float] = {}
    t0 = time.perf_counter()
    written = write_bytecode()
    took["bytecode"] = time.perf_counter() - t0
    if log:
        log(f"bytecode of rnnkit's modules: "
            f"{'up to date' if written else 'some could not be written'} "
            f"({took['bytecode']:.1f} s)")
    t0 = time.perf_counter()
    text = default_corpus()  # built once and kept on disk
    took["corpus"] = time.perf_counter() - t0
    if log:
        log(f"built-in corpus ready in {took['corpus']:.1f} s")
    if not kernels.available():
        if log:
            log("Numba is not installed: nothing to compile (the NumPy path runs)")
        return took
    lines = text.splitlines()
    train, val = split_validation("\n".join(lines[:2100]) + "\n", 0.05)
    with tempfile.TemporaryDirectory(prefix="rnnkit-precompile-") as tmp:
        d = Path(tmp)
        (d / "train.txt").write_text(train, encoding="utf-8")
        (d / "val.txt").write_text(val, encoding="utf-8")
        for name in cells:
            t = time.perf_counter()
            model = str(d / name)
            _run(["train", str(d / "train.txt"), "--val", str(d / "val.txt"), "--out", model,
                  "--steps", "2", "--eval-every", "2", "--force", "--cell", name])
            _run(["eval", model, str(d / "val.txt")])
            _run(["score", model, lines[0]])
            _run(["sample", model, "--beam", "2", "--length", "20"])
            # Longer than a short job (cli_lm.SHORT_JOB_TOKENS runs NumPy): the compiled loop.
            _run(["sample", model, "--length", str(SHORT_JOB_TOKENS + 1), "--no-stop",
                  "--seed", "0"])
            took[name] = time.perf_counter() - t
            if log:
                log(f"{name}: compiled (or found cached) in {took[name]:.1f} s")
    return took


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rnnkit.precompile",
                                 description="Compile rnnkit's kernels ahead of time.")
    ap.add_argument("--cells", default="lstm",
                    help="comma-separated cells to compile for (lstm, gru, rnn; default lstm)")
    a = ap.parse_args(argv)
    cells = tuple(c.strip() for c in a.cells.split(",") if c.strip())
    t0 = time.perf_counter()
    try:
        precompile(cells, log=lambda m: print(f"rnnkit precompile: {m}", flush=True))
    except (ValueError, RuntimeError, OSError) as e:
        print(f"rnnkit precompile: error: {e}", file=sys.stderr)
        return 2 if isinstance(e, ValueError) else 1
    print(f"rnnkit precompile: done in {time.perf_counter() - t0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
