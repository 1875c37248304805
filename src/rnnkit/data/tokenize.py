"""Tokenizers: text -> tokens, line by line, each line closed by ``<eos>``.

A text is a sequence of lines (``\\n``, ``\\r\\n`` and ``\\r`` all end a line; a final line
break does not start an empty line).  The end of each line is the ``<eos>`` token, so a
language model learns where sentences stop and sampling can stop at ``<eos>``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .vocab import EOS, PAD

LEVELS = ("char", "word")


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


class CharTokenizer:
    """One token per character (the default level).

    Every line becomes its characters followed by ``<eos>``; an empty line is a lone
    ``<eos>``, so paragraph breaks survive.  The text is not lower-cased or otherwise changed.
    """

    level = "char"

    def tokenize(self, text: str) -> list[str]:
        tokens: list[str] = []
        for line in split_lines(text):
            tokens.extend(line)
            tokens.append(EOS)
        return tokens

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

    def detokenize(self, tokens: Iterable[str]) -> str:
        """Text of tokens: words joined by spaces, ``<eos>`` a line break, ``<pad>`` dropped."""
        out: list[str] = []
        line: list[str] = []
        for t in tokens:
            if t == EOS:
                out.append(" ".join(line) + "\n")
                line = []
            elif t != PAD:
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
