"""ARPA files: the text format every n-gram toolkit (KenLM, SRILM, IRSTLM) reads and writes.

    # rnnkit ngram {"level": "word", "split_punct": false, ...}   (comment lines: KenLM skips them)
    \\data\\
    ngram 1=W
    ngram 2=k2
    \\1-grams:
    log10p<TAB>word<TAB>log10bow
    ...
    \\2-grams:
    log10p<TAB>w1 w2<TAB>log10bow
    ...
    \\end\\

rnnkit's header comment records the tokenizer settings, so ``rnnkit ngram eval`` reads text
the way the model was trained; a file without it (made by KenLM, say) is read as
whitespace-separated words.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from .kneser_ney import BOS, EOS, NGramModel

HEADER = "# rnnkit ngram "
_SECTION = re.compile(r"^\\(\d+)-grams:$")
_COUNT = re.compile(r"^ngram (\d+)=(\d+)$")


def _fmt(x: float) -> str:
    return "%.7g" % x


def write_arpa(model: NGramModel, path, *, force: bool = False) -> Path:
    """Write ``model`` to ``path`` (a temporary file renamed into place: never a partial file).

    Refuses to replace an existing file unless ``force``.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a directory; give a file name for the ARPA file")
    if path.exists() and not force:
        raise ValueError(f"{path}: already exists (use --force to replace it)")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(f"{parent}: no such directory")
    words = model.words
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            meta = dict(model.options, order=model.order)
            f.write(HEADER + json.dumps(meta, sort_keys=True) + "\n\n\\data\\\n")
            for n, G in enumerate(model.grams, 1):
                f.write(f"ngram {n}={len(G)}\n")
            for n, (G, P, B) in enumerate(zip(model.grams, model.logp, model.logbow), 1):
                f.write(f"\n\\{n}-grams:\n")
                top = n == model.order
                lines = []
                for g, p, b in zip(G.tolist(), P.tolist(), B.tolist()):
                    text = " ".join(words[i] for i in g)
                    if top:
                        lines.append(f"{_fmt(p)}\t{text}\n")
                    else:
                        lines.append(f"{_fmt(p)}\t{text}\t{_fmt(b)}\n")
                f.writelines(lines)
            f.write("\n\\end\\\n")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def read_arpa(path) -> NGramModel:
    """An ARPA file as an :class:`NGramModel`; ValueError (one line, with the line number) if
    the file is not a well-formed ARPA file."""
    path = Path(path)
    lines = _arpa_lines(path)

    def bad(i, why):
        return ValueError(f"{path}: not a valid ARPA file: line {i + 1}: {why}")

    options, i = _read_header(lines, bad)
    if i >= len(lines) or lines[i].strip() != "\\data\\":
        raise ValueError(f"{path}: not an ARPA file (no \\data\\ section at its start)")
    counts, i = _read_counts(lines, i + 1, bad)
    words: list[str] = []
    wid: dict[str, int] = {}
    grams, logp, logbow = [], [], []
    for n, k in enumerate(counts, start=1):
        while i < len(lines) and not lines[i].strip():
            i += 1
        m = _SECTION.match(lines[i].strip()) if i < len(lines) else None
        if m is None or int(m.group(1)) != n:
            raise bad(min(i, len(lines) - 1), f"expected the \\{n}-grams: section")
        G, P, B, i = _read_section(lines, i + 1, n, k, words, wid, bad)
        grams.append(G)
        logp.append(P)
        logbow.append(B)
    while i < len(lines) and not lines[i].strip():
        i += 1
    if i >= len(lines) or lines[i].strip() != "\\end\\":
        raise bad(min(i, len(lines) - 1), "expected \\end\\ after the last section "
                  "(more entries than its header announces?)")
    for w in (BOS, EOS):
        if w not in wid:
            raise ValueError(f"{path}: not a usable ARPA file: the unigrams lack {w}")
    options.pop("order", None)
    return NGramModel(words, grams, logp, logbow, options)


def _arpa_lines(path: Path) -> list[str]:
    """The file's lines, read through the bounded reader; one-line ValueErrors."""
    if path.is_dir():
        raise ValueError(f"{path}: is a directory, not an ARPA file")
    try:
        from .._io import read_input_bytes  # bounded: no device, a pipe streamed with a limit
        raw = read_input_bytes(path)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except OSError as e:
        raise ValueError(f"{path}: cannot read it ({e.strerror or e})") from None
    try:
        return raw.decode("utf-8").split("\n")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not an ARPA file (not UTF-8 text at byte {e.start})") from None


def _read_header(lines, bad) -> tuple[dict, int]:
    """rnnkit's JSON options from the comment lines before \\data\\, and that line's index."""
    options, i = {}, 0
    while i < len(lines) and (not lines[i].strip() or lines[i].startswith("#")):
        if lines[i].startswith(HEADER):
            try:
                options = json.loads(lines[i][len(HEADER):])
            except json.JSONDecodeError:
                raise bad(i, "the rnnkit header is not valid JSON") from None
            if not isinstance(options, dict):
                raise bad(i, "the rnnkit header is not a JSON object")
        i += 1
    return options, i


def _read_counts(lines, i, bad) -> tuple[list[int], int]:
    """The 'ngram N=COUNT' lines from index i: the counts and the index after them."""
    counts = []
    while i < len(lines) and lines[i].strip():
        m = _COUNT.match(lines[i].strip())
        if not m or int(m.group(1)) != len(counts) + 1:
            raise bad(i, f"expected 'ngram {len(counts) + 1}=COUNT', got {lines[i][:60]!r}")
        counts.append(int(m.group(2)))
        i += 1
    if not counts:
        raise bad(i, "no 'ngram N=COUNT' line")
    return counts, i


def _read_section(lines, i, n, k, words, wid, bad):
    """The k entries of the n-grams section from index i -> (ids (k, n), log10p (k,),
    log10 backoff (k,), index after).  Unigrams add their words to ``words``/``wid``."""
    G = np.empty((k, n), np.int32)
    P = np.empty(k)
    B = np.zeros(k)
    for r in range(k):
        if i >= len(lines) or not lines[i].strip():
            raise bad(min(i, len(lines) - 1), f"the {n}-grams section ends after {r} of "
                      f"the {k} entries its header announces")
        parts = lines[i].split()
        if len(parts) not in (n + 1, n + 2):
            raise bad(i, f"a {n}-gram line needs log10p, {n} words and an optional "
                      f"backoff, got {len(parts)} fields")
        try:
            P[r] = float(parts[0])
            if len(parts) == n + 2:
                B[r] = float(parts[-1])
        except ValueError:
            raise bad(i, f"not a number in {lines[i][:60]!r}") from None
        if not (math.isfinite(P[r]) and math.isfinite(B[r])) or P[r] > 0:
            raise bad(i, "log10 probabilities must be finite and <= 0")
        toks = parts[1 : n + 1]
        if n == 1:
            if toks[0] in wid:
                raise bad(i, f"unigram {toks[0]!r} appears twice")
            wid[toks[0]] = len(words)
            words.append(toks[0])
            G[r, 0] = wid[toks[0]]
        else:
            try:
                G[r] = [wid[t] for t in toks]
            except KeyError as e:
                raise bad(i, f"word {e.args[0]!r} is not among the unigrams") from None
        i += 1
    return G, P, B, i
