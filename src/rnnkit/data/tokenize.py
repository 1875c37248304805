"""Tokenizers: text -> tokens, line by line, each line closed by ``<eos>``.

A text is a sequence of lines (``\\n``, ``\\r\\n`` and ``\\r`` all end a line; a final line
break does not start an empty line).  The end of each line is the ``<eos>`` token, so a
language model learns where sentences stop and sampling can stop at ``<eos>``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from itertools import repeat

import numpy as np

from .vocab import EOS, PAD, Vocab

LEVELS = ("char", "word")
# Bulk encoding works on pieces of about this many characters, so its temporary arrays stay
# small whatever the corpus size.
_BLOCK = 1 << 20


def split_lines(text: str) -> list[str]:
    """The lines of ``text`` without their line breaks."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    # Normalise every line-break convention to \n; str.splitlines is avoided on purpose because
    # it also breaks on form feeds, \x1c-\x1e and U+2028, which are characters of a line here.
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _normalised(text: str) -> str:
    """``text`` with every line break as ``\n`` and, unless empty, ending in one.

    Then each ``\n`` is exactly one ``<eos>`` of :func:`split_lines`' lines.  No copy is made
    of a text that already has Unix line breaks and ends with one.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if text and not text.endswith("\n"):
        text += "\n"
    return text


def _line_blocks(text: str) -> Iterator[str]:
    """Pieces of a normalised text of about ``_BLOCK`` characters, each ending at a ``\n``."""
    start, n = 0, len(text)
    while start < n:
        end = text.find("\n", min(start + _BLOCK, n - 1)) + 1 or n
        yield text[start:end]
        start = end


def _code_points(piece: str) -> np.ndarray:
    """The code points of ``piece`` as an array (uint8 for ASCII text, else uint32)."""
    if piece.isascii():  # a flag CPython keeps: no scan
        return np.frombuffer(piece.encode("ascii"), dtype=np.uint8)
    # surrogatepass: a lone surrogate (possible in a Python str) is one character like any other
    return np.frombuffer(piece.encode("utf-32-le", "surrogatepass"), dtype="<u4")


class CharTokenizer:
    """One token per character (the default level).

    Every line becomes its characters followed by ``<eos>``; an empty line is a lone
    ``<eos>``, so paragraph breaks survive.  The text is not lower-cased or otherwise changed.

    :meth:`count` and :meth:`encode` do what ``Counter(tokenize(text))`` and
    ``vocab.encode(tokenize(text))`` do, with the same result, without a Python object per
    character: the text is looked up as an array of code points (over 50 MB/s).
    """

    level = "char"

    def tokenize(self, text: str) -> list[str]:
        tokens: list[str] = []
        for line in split_lines(text):
            tokens.extend(line)
            tokens.append(EOS)
        return tokens

    def count(self, text: str) -> Counter:
        """Token -> count over ``text`` (``<eos>`` not counted: :meth:`Vocab.build` drops it)."""
        text = _normalised(text)
        totals = np.zeros(256, dtype=np.int64)
        for piece in _line_blocks(text):
            cp = _code_points(piece)
            if cp.size and int(cp.max()) >= totals.size:
                totals = np.concatenate([totals, np.zeros(int(cp.max()) + 1 - totals.size,
                                                          np.int64)])
            totals[: int(cp.max()) + 1 if cp.size else 0] += np.bincount(cp)
        totals[ord("\n")] = 0  # line ends are <eos>, not a character token
        return Counter({chr(c): int(totals[c]) for c in np.flatnonzero(totals)})

    def encode(self, text: str, vocab: Vocab, return_unknown: bool = False):
        """Ids (M,) of ``text``'s tokens in ``vocab.id_dtype``; unknown characters are ``<unk>``.

        Equal to ``vocab.encode(self.tokenize(text))`` (as integers).  With
        ``return_unknown=True`` returns ``(ids, n_unknown)``.
        """
        text = _normalised(text)
        table = self._table(vocab)
        pieces = []
        for piece in _line_blocks(text):
            cp = _code_points(piece)
            if cp.dtype != np.uint8 and cp.size and int(cp.max()) >= table.size:
                cp = np.minimum(cp, table.size - 1)  # the table's last entry is <unk>
            pieces.append(table[cp])
        ids = np.concatenate(pieces) if pieces else np.zeros(0, vocab.id_dtype)
        if return_unknown:
            return ids, int(np.count_nonzero(ids == vocab.unk_id))
        return ids

    @staticmethod
    def _table(vocab: Vocab) -> np.ndarray:
        # code point -> id for every one-character token; one entry past the largest code point
        # stays <unk> for the characters beyond it; at least 256 entries for ASCII lookups.
        chars = {ord(t): i for t, i in vocab.lookup().items() if len(t) == 1}
        size = max(max(chars, default=0) + 2, 257)
        table = np.full(size, vocab.unk_id, dtype=vocab.id_dtype)
        for c, i in chars.items():
            table[c] = i
        table[ord("\n")] = vocab.eos_id
        return table

    def detokenize(self, tokens: Iterable[str]) -> str:
        """Text of tokens: ``<eos>`` becomes a line break, ``<pad>`` is dropped."""
        return "".join("\n" if t == EOS else t for t in tokens if t != PAD)


class WordTokenizer:
    """Whitespace-separated words, each line closed by ``<eos>``.

    With ``split_punct=False`` (the default) a word is a maximal run of non-space characters,
    so "end." is one token.  With ``split_punct=True`` runs of letters/digits/underscore and
    single punctuation characters are separate tokens ("end", ".").  Lines without any word
    are skipped: at word level a blank line carries no token.  A literal word spelled like a
    special token (``<unk>`` in Penn Treebank text, say) is that special token.
    """

    level = "word"
    _PUNCT = re.compile(r"\w+|[^\w\s]")

    def __init__(self, split_punct: bool = False):
        self.split_punct = bool(split_punct)

    def tokenize(self, text: str) -> list[str]:
        tokens: list[str] = []
        for line in split_lines(text):
            words = self._PUNCT.findall(line) if self.split_punct else line.split()
            if words:
                tokens.extend(words)
                tokens.append(EOS)
        return tokens

    def _blocks(self, text: str) -> Iterator[tuple[list[str], str]]:
        """``(words, mark)`` a block of ~``_BLOCK`` characters at a time.

        Each line break becomes the word ``mark`` (a word that occurs nowhere in the text), so
        one C-level split of the whole block finds the words and the line ends together, with
        no Python loop per line; :meth:`encode` then turns each ``mark`` that closes a line
        with words into ``<eos>`` and drops the others (a line without words has no token).
        """
        text = _normalised(text)
        mark = "rnnkitEndOfLine"
        while mark in text:  # a C-level scan; a text that holds it gets a longer mark
            mark += "x"
        spaced = f" {mark} "
        split = self._PUNCT.findall if self.split_punct else str.split
        for piece in _line_blocks(text):
            yield split(piece.replace("\n", spaced)), mark

    def count(self, text: str) -> Counter:
        """Token -> count over ``text``, a block of lines at a time (no list of all tokens);
        ``<eos>`` is not counted (:meth:`Vocab.build` drops it)."""
        counts: Counter = Counter()
        mark = None
        for words, mark in self._blocks(text):
            counts.update(words)
        counts.pop(mark, None)
        counts.pop(EOS, None)  # a literal "<eos>" word is the <eos> token
        return counts

    def encode(self, text: str, vocab: Vocab, return_unknown: bool = False):
        """Ids (M,) of ``text``'s tokens in ``vocab.id_dtype``, a block of lines at a time.

        Equal to ``vocab.encode(self.tokenize(text))`` (as integers); with
        ``return_unknown=True`` returns ``(ids, n_unknown)``.
        """
        unk, V, dtype = vocab.unk_id, len(vocab), vocab.id_dtype
        lookup = None
        pieces = []
        for words, mark in self._blocks(text):
            if lookup is None:
                lookup = dict(vocab.lookup())
                lookup[mark] = V  # an id past the vocabulary marks a line break
            raw = np.fromiter(map(lookup.get, words, repeat(unk)), dtype=np.int32,
                              count=len(words))
            brk = raw == V
            # A break closes a line with words (<eos>) unless the token before it is a break
            # too; a block starts just after a break.
            first = brk.copy()
            first[1:] &= ~brk[:-1]
            first[:1] = False
            raw[brk] = vocab.eos_id
            pieces.append(raw[~brk | first].astype(dtype))
        ids = np.concatenate(pieces) if pieces else np.zeros(0, dtype)
        if return_unknown:
            return ids, int(np.count_nonzero(ids == unk))
        return ids

    def detokenize(self, tokens: Iterable[str]) -> str:
        """Text of tokens: words joined by spaces, ``<eos>`` a line break.

        ``<pad>`` is written as the word ``<pad>``, like ``<unk>``: a literal "<pad>" word in a
        text is that token (see the class docstring), so tokenizing the text again gives the
        same tokens.
        """
        out: list[str] = []
        line: list[str] = []
        for t in tokens:
            if t == EOS:
                out.append(" ".join(line) + "\n")
                line = []
            else:
                line.append(t)
        if line:
            out.append(" ".join(line))
        return "".join(out)


def get_tokenizer(level: str = "char", **options):
    """The tokenizer for ``level`` ("char" or "word"); options go to its constructor."""
    if level == "char":
        return CharTokenizer(**options)
    if level == "word":
        return WordTokenizer(**options)
    raise ValueError(f"unknown tokenization level {level!r}; choose one of {', '.join(LEVELS)}")


def tokenize_text(text: str, level: str = "char", **options) -> list[str]:
    """Tokens of ``text`` at ``level`` ("char" or "word"), each line closed by ``<eos>``."""
    return get_tokenizer(level, **options).tokenize(text)
