"""The data of the sequence tasks: TSV files of examples and the inputs ``predict`` reads.

Data files are UTF-8 text, one example per line, two fields separated by one TAB:

- classify: ``text<TAB>label`` (text read per level: ``char`` or ``word``)
- tag:      ``tokens<TAB>tags``, both space-separated, as many tags as tokens
- seq2seq:  ``source<TAB>target``, each read per its own level

Blank lines are skipped; any other line that does not fit is refused with its line number.
Fields are split into tokens by the language models' tokenizers (:mod:`rnnkit.data.tokenize`).
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..data.corpus import read_text
from ..data.tokenize import get_tokenizer, split_lines

LEVELS = ("char", "word")


def split_tokens(text: str, level: str) -> list:
    """The tokens of one field (no line break) at ``level``: characters or words."""
    tokens = get_tokenizer(level).tokenize(text)
    return tokens[:-1]  # the tokenizer closes the line with <eos>; a field is not a line


def join_tokens(tokens, level: str) -> str:
    return "".join(tokens) if level == "char" else " ".join(tokens)


def read_tsv(path, task, levels=("char", "char"), warn=None) -> list:
    """Examples ``(line_no, input_tokens, output)`` of a task's TSV file.

    ``task``: a :class:`rnnkit.tasks.Task` or its name; output: a label (classify), a list of
    tags (tag) or a list of target tokens (seq2seq).  ValueError naming the file and line
    for the first line that does not fit.  A first line that looks like a column header
    (its label or tags occur nowhere else) is read as an example, with a warning through
    ``warn`` (default: a line on standard error).
    """
    from .spec import get_task

    task = get_task(task)
    text = read_text(path)
    examples = []
    for no, line in enumerate(split_lines(text), start=1):
        if not line.strip():
            continue
        where = f"{path}: line {no}"
        if line.count("\t") != 1:
            raise ValueError(f"{where}: expected two fields separated by one TAB, found "
                             f"{line.count(chr(9)) + 1} field(s)")
        left, right = line.split("\t")
        src, out = task.parse(left, right, levels, where)
        if not src:
            raise ValueError(f"{where}: empty input")
        examples.append((no, src, out))
    if not examples:
        raise ValueError(f"{path}: no examples (every line is blank)")
    header = task.header_like(examples)
    if header:
        (warn or _warn)(f"{path}: line {examples[0][0]} looks like a column header ({header} "
                        "nowhere else); it is read as an example")
    return examples


def _warn(message: str) -> None:
    print(f"rnnkit: warning: {message}", file=sys.stderr, flush=True)


def read_input_text(path) -> str:
    """The text of FILE, or of standard input for None or ``-`` (UTF-8, a BOM dropped)."""
    if path is None or path == "-":
        data = _stdin_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"standard input: not valid UTF-8 (byte offset {e.start})") from None
        return text[1:] if text.startswith("\ufeff") else text
    p = Path(path)
    if p.exists() and p.is_file() and p.stat().st_size == 0:
        return ""
    return read_text(p)


def _stdin_bytes() -> bytes:
    """Standard input's bytes: through the bounded reader (no device, no closed stdin), or
    from a Python stream standing in for it (a program embedding rnnkit, a test), which
    has no file descriptor to check."""
    from .._io import read_stdin_bytes, text_checker

    stream = sys.stdin
    try:
        stream.fileno()
    except (AttributeError, OSError, ValueError):
        if stream is not None and not getattr(stream, "closed", True):
            data = stream.buffer.read() if hasattr(stream, "buffer") else stream.read()
            return data.encode("utf-8") if isinstance(data, str) else data
    return read_stdin_bytes(check=text_checker("standard input"))


def read_inputs(path) -> list:
    """The input lines of ``predict`` (FILE or stdin), each cut at its first TAB."""
    return [line.split("\t", 1)[0] for line in split_lines(read_input_text(path))]
