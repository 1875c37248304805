"""Corpora: reading users' text files strictly, the built-in default corpus, a held-out tail.

The default corpus is made on the user's machine from the docstrings of the Python standard
library, read by parsing its source files with ``ast`` (never importing them).  Every
CPython install has those sources, so it needs no network and the repository carries no
one's text; the same Python version gives the same corpus, byte for byte.  Parsing takes a few
seconds, so the result is kept on disk (:func:`corpus_cache_dir`) under a key made of the
Python version, every source file's size and modification time and this module's own code:
any change to either builds it again.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import platform
import re
import sys
import sysconfig
import warnings
from pathlib import Path

from .._checks import check_positive_int

DEFAULT_CORPUS_BYTES = 1_000_000

# Test suites, third-party packages and caches are not the library's own documentation.
_SKIP_DIRS = frozenset({"site-packages", "dist-packages", "test", "tests", "idle_test",
                        "__pycache__"})
# A prose sentence: starts with a capital letter, ends with . ! or ?, 30+ printable ASCII chars.
_MIN_SENTENCE = 30
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
# Signs of code rather than prose: brackets, operators, identifiers_with_underscores,
# calls "f(", dotted names "os.path", "->", "::", backticks, markup.
_NOT_LETTER = re.compile(r"[^A-Za-z ]")  # at most 10% of a prose sentence
_CODE_LIKE = re.compile(r"[{}\[\]<>=\\|`@#$^~*]|\(\)|\w_|_\w|::|->|[a-z]\.[a-z]{2,}|\s[-+/%]\s|\w\(")


def read_text(path) -> str:
    """The text of a UTF-8 file; ValueError naming the file if it is not readable text.

    Read through :mod:`rnnkit._io`, the one bounded reader: a device (``/dev/zero``), a socket
    or a directory is refused before it is opened, a file over the input limit
    (``RNNKIT_MAX_INPUT_BYTES``, 2 GiB by default) from its size, and a pipe is read as a
    stream that stops at the limit or at its first NUL byte or invalid UTF-8.
    Refused, each with a one-line message: a missing path, a directory, an unreadable file, an
    empty or whitespace-only file, UTF-16 text (by its byte-order mark), binary content (a NUL
    byte, with its offset) and bytes that are not UTF-8 (with the offset of the first bad byte).
    A leading UTF-8 byte-order mark is dropped.
    """
    from .._io import read_input_bytes, text_checker

    p = Path(path)
    data = read_input_bytes(p, check=text_checker(p))
    return decode_text(data, p)


def decode_text(data: bytes, p) -> str:
    """``data`` as UTF-8 text, with :func:`read_text`'s checks; ``p`` names it in messages."""
    if not data:
        raise ValueError(f"{p}: the file is empty")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):  # a UTF-16 (or UTF-32) byte-order mark
        raise ValueError(f"{p}: this looks like UTF-16 text (it starts with a byte-order mark); "
                         "save it as UTF-8")
    nul = data.find(b"\x00")
    if nul >= 0:
        raise ValueError(f"{p}: NUL byte at offset {nul}; this looks like a binary file, not text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{p}: not valid UTF-8: byte 0x{data[e.start]:02x} at offset "
                         f"{e.start} ({e.reason})") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text or text.isspace():  # (not text.strip(): that would copy the whole text)
        raise ValueError(f"{p}: the file holds only whitespace, no text")
    return text


def split_validation(text: str, fraction: float = 0.1) -> tuple[str, str]:
    """``(train, val)``: the last ``fraction`` of ``text`` held out as validation text.

    The cut is moved to the nearest line boundary, so no line is split between the two;
    a text without line breaks is cut at the exact character.  ValueError if ``fraction`` is
    not in (0, 1) or one side would be empty.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    try:
        fraction = float(fraction)
    except (TypeError, ValueError):
        raise TypeError(f"fraction must be a number, got {type(fraction).__name__}") from None
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    n = len(text)
    cut = n - round(n * fraction)
    after = text.find("\n", cut - 1) + 1 if cut > 0 else 0   # first line start >= cut
    before = text.rfind("\n", 0, cut - 1) + 1 if cut > 1 else 0  # last line start < cut
    candidates = [b for b in (after, before) if 0 < b < n]
    if candidates:
        cut = min(candidates, key=lambda b: (abs(b - cut), b))
    if not 0 < cut < n:
        raise ValueError(f"cannot hold out {fraction:g} of a {n}-character text: "
                         "the training or validation part would be empty")
    return text[:cut], text[cut:]


def default_corpus(max_bytes: int = DEFAULT_CORPUS_BYTES) -> str:
    """The built-in corpus: prose sentences from the Python standard library's docstrings.

    One sentence per line, printable ASCII, at most ``max_bytes`` bytes (whole lines only).
    Deterministic for a given Python version; about 0.7 MB in all for CPython 3.11, so the
    default cap takes everything.  Built in a few seconds the first time, then read back
    from the disk cache (:func:`corpus_cache_dir`) and memoised for the process.
    """
    return _build_default_corpus(check_positive_int(max_bytes, "max_bytes"))[0]


def default_corpus_info(max_bytes: int = DEFAULT_CORPUS_BYTES) -> dict:
    """Where :func:`default_corpus` comes from and what it holds (a JSON-serialisable dict)."""
    return dict(_build_default_corpus(check_positive_int(max_bytes, "max_bytes"))[1])


def corpus_cache_dir() -> Path | None:
    """Where the built default corpus is kept: ``$RNNKIT_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/rnnkit``, else ``~/.cache/rnnkit``; None (no disk cache) when
    ``RNNKIT_CACHE_DIR`` is set empty or there is no home directory."""
    env = os.environ.get("RNNKIT_CACHE_DIR")
    if env is not None:
        return Path(env) if env else None
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        try:
            base = str(Path.home() / ".cache")
        except (RuntimeError, KeyError):  # no home directory to speak of
            return None
    return Path(base) / "rnnkit"


def _cache_key(root: Path, files: list[Path], max_bytes: int) -> str:
    """A digest of everything the corpus depends on: the Python version, the extraction code
    (this file), the cap, and each source's path, size and modification time."""
    h = hashlib.sha256()
    h.update(f"{sys.implementation.name} {sys.version}\n{root}\n{max_bytes}\n".encode())
    h.update(Path(__file__).read_bytes())
    for path in files:
        try:
            st = path.stat()
        except OSError:
            continue
        h.update(f"{path.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def _load_cached(path: Path) -> tuple[str, dict] | None:
    """The (text, info) stored at ``path``, or None when it is missing, unreadable or does not
    hold what it says (its text's digest is checked)."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        text, info = saved["text"], saved["info"]
        if (isinstance(text, str) and isinstance(info, dict)
                and hashlib.sha256(text.encode("ascii")).hexdigest() == info.get("sha256")):
            return text, info
    except (OSError, ValueError, KeyError, TypeError, UnicodeError):
        pass
    return None


def _store(path: Path, text: str, info: dict) -> None:
    """Write the cache file whole or not at all (a temporary file, then a rename); a cache
    that cannot be written is only a cache: the error is dropped."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"text": text, "info": info}), encoding="utf-8")
        os.replace(tmp, path)
        # Older corpora (another Python, edited sources or extraction code) are stale: only
        # the newest is kept, so the directory does not grow by 0.7 MB with each change.
        for old in path.parent.glob("default-corpus-*.json"):
            if old != path:
                old.unlink(missing_ok=True)
    except OSError:
        if tmp is not None:
            try:
                tmp.unlink()
            except OSError:
                pass


@functools.lru_cache(maxsize=4)
def _build_default_corpus(max_bytes: int) -> tuple[str, dict]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = _stdlib_sources(root)
    cache = corpus_cache_dir()
    path = None
    if files and cache is not None:
        path = cache / f"default-corpus-{_cache_key(root, files, max_bytes)}.json"
        found = _load_cached(path)
        if found is not None:
            return found
    text, info = _extract(root, files, max_bytes)
    if path is not None:
        _store(path, text, info)
    return text, info


def _extract(root: Path, files: list[Path], max_bytes: int) -> tuple[str, dict]:
    if not files:
        raise OSError(f"the Python standard library sources are not in {root}, so the default "
                      "corpus cannot be built; give a text file instead")
    lines: list[str] = []
    seen: set[str] = set()
    size = 0
    scanned = 0
    full = False
    for path in files:
        scanned += 1
        for doc in _docstrings_of_file(path):
            for sentence in _prose_sentences(doc):
                if sentence in seen:
                    continue
                if size + len(sentence) + 1 > max_bytes:
                    full = True
                    break
                seen.add(sentence)
                lines.append(sentence)
                size += len(sentence) + 1
            if full:
                break
        if full:
            break
    if not lines:
        raise ValueError(f"max_bytes={max_bytes} is too small to hold one line of the default corpus")
    text = "\n".join(lines) + "\n"
    info = {
        "name": "python-stdlib-docstrings",
        "description": "prose sentences from the docstrings of the Python standard library, "
                       "parsed with ast from the installed sources",
        "license": "the docstrings are part of Python, under the Python Software Foundation License",
        "python": f"{sys.implementation.name} {platform.python_version()}",
        "stdlib_dir": str(root),
        "files_scanned": scanned,
        "files_available": len(files),
        "lines": len(lines),
        "bytes": len(text),
        "max_bytes": max_bytes,
        "sha256": hashlib.sha256(text.encode("ascii")).hexdigest(),
    }
    return text, info


def _stdlib_sources(root: Path) -> list[Path]:
    """The standard library's .py files in a fixed order (sorted directory walk)."""
    if not root.is_dir():
        return []
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        out.extend(Path(dirpath, f) for f in sorted(filenames) if f.endswith(".py"))
    return out


def _docstrings_of_file(path: Path) -> list[str]:
    try:
        source = path.read_bytes()
        with warnings.catch_warnings():
            # Old escape sequences in some modules warn; they are not ours to fix.
            warnings.simplefilter("ignore")
            tree = ast.parse(source)
    except (OSError, SyntaxError, ValueError):
        return []
    out = []
    doc = ast.get_docstring(tree)
    if doc:
        out.append(doc)
    _collect_docstrings(tree, out)
    return out


def _collect_docstrings(node, out: list[str]) -> None:
    # Docstrings live only in statement bodies, so only those fields are walked: visiting every
    # expression node (ast.walk) would take longer than parsing.
    for field in ("body", "handlers", "orelse", "finalbody", "cases"):  # source order
        children = getattr(node, field, None)
        if not isinstance(children, list):
            continue
        for child in children:
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                doc = ast.get_docstring(child)
                if doc:
                    out.append(doc)
            _collect_docstrings(child, out)


def _prose_sentences(doc: str) -> list[str]:
    """The sentences of a docstring that read as English prose, whitespace normalised.

    Paragraphs are runs of lines with the same indentation; doctest blocks (from a ``>>>``
    line to the next blank line) are dropped whole, as is every sentence that looks like code.
    """
    paragraphs: list[str] = []
    current: list[str] = []
    indent = -1
    in_doctest = False
    for line in doc.split("\n"):
        stripped = line.strip()
        if not stripped:
            in_doctest = False
        elif stripped.startswith((">>>", "...")):
            in_doctest = True
        if in_doctest or not stripped:
            if current:
                paragraphs.append(" ".join(current))
                current = []
            continue
        line_indent = len(line) - len(line.lstrip())
        if current and line_indent != indent:
            paragraphs.append(" ".join(current))
            current = []
        indent = line_indent
        current.append(stripped)
    if current:
        paragraphs.append(" ".join(current))

    out = []
    for paragraph in paragraphs:
        for s in _SENTENCE_END.split(" ".join(paragraph.split())):
            if (len(s) >= _MIN_SENTENCE and s.isascii() and s.isprintable() and s[0].isupper()
                    and s[-1] in ".!?" and not _CODE_LIKE.search(s)
                    and len(_NOT_LETTER.findall(s)) <= 0.1 * len(s)):
                out.append(s)
    return out
