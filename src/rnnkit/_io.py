"""The one bounded reader for every file a user gives rnnkit (corpora, TSV data, model files).

Nothing a user names is read whole before it is checked:

- a directory, a character or block device (``/dev/zero``, ``/dev/urandom``, a disk), a socket
  and every other file that is neither a regular file nor a pipe is refused at once, before it
  is opened, in one line naming the file (a symbolic link is judged by what it points at);
- a regular file larger than the input limit is refused from its size, before reading;
- a pipe (a FIFO, ``<(command)``, ``/dev/stdin`` fed by a pipe) is read as a stream, chunk by
  chunk, and refused as soon as it passes the limit; a caller may check each chunk as it comes
  (text is refused at its first NUL byte or invalid UTF-8, not after gigabytes).

The limit is ``RNNKIT_MAX_INPUT_BYTES`` (bytes, a plain integer; default
:data:`DEFAULT_MAX_INPUT_BYTES`, 2 GiB).  Each refusal is an :class:`InputError` (a ValueError,
so the CLI reports it as the user's mistake, exit 2).
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from collections.abc import Callable

DEFAULT_MAX_INPUT_BYTES = 2 * 1024 ** 3
MAX_INPUT_ENV = "RNNKIT_MAX_INPUT_BYTES"
_CHUNK = 1 << 20  # a stream is read a MiB at a time


class InputError(ValueError):
    """A file the user gave that cannot be read as input; one line naming the file."""


def max_input_bytes() -> int:
    """The input limit in bytes: ``RNNKIT_MAX_INPUT_BYTES`` if set, else 2 GiB."""
    raw = os.environ.get(MAX_INPUT_ENV)
    if raw is None or raw.strip() == "":
        return DEFAULT_MAX_INPUT_BYTES
    try:
        value = int(raw.strip().replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise InputError(f"{MAX_INPUT_ENV} must be a positive number of bytes, got {raw[:40]!r}")
    return value


def describe_bytes(n: int) -> str:
    """``n`` bytes in words: '2 GiB', '1.5 MiB', '300 bytes'."""
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            v = n / size
            return f"{v:.0f} {unit}" if v == int(v) else f"{v:.1f} {unit}"
    return f"{n} bytes"


def _too_large(name, limit: int) -> InputError:
    return InputError(f"{name}: larger than the input limit of {describe_bytes(limit)} "
                      f"({limit} bytes); set {MAX_INPUT_ENV} to raise it")


def _kind(mode: int, what: str = "file") -> str | None:
    """Why a file of this mode cannot be input, or None for a regular file or a pipe."""
    if stat.S_ISREG(mode) or stat.S_ISFIFO(mode):
        return None
    if stat.S_ISDIR(mode):
        return f"is a directory, not a {what}"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, not a regular file (rnnkit reads regular files and pipes)"
    if stat.S_ISSOCK(mode):
        return "is a socket, not a regular file (rnnkit reads regular files and pipes)"
    return "is not a regular file (rnnkit reads regular files and pipes)"


def _os_reason(e: OSError, what: str = "file") -> str:
    if isinstance(e, FileNotFoundError):
        return f"no such {what}"
    return f"cannot read it ({e.strerror or e})"


class InputFile:
    """An input opened by :func:`open_input`: ``size`` is None for a stream.

    ``read(n)`` returns up to ``n`` bytes (fewer only at the end); ``read_rest()`` reads what is
    left, within the limit.  Use it as a context manager.
    """

    def __init__(self, name, fd: int, size: int | None, limit: int):
        self.name = name
        self._file = os.fdopen(fd, "rb", buffering=0)
        self.size = size
        self.limit = limit
        self.offset = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self._file.close()

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes; InputError past the limit."""
        if self.offset + n > self.limit:
            n = self.limit - self.offset + 1  # one byte over tells that the input is too large
        parts = []
        want = n
        while want > 0:
            try:
                b = self._file.read(min(want, _CHUNK) if self.size is None else want)
            except OSError as e:
                raise OSError(e.errno, f"{self.name}: cannot read it ({e.strerror})") from None
            if not b:
                break
            parts.append(b)
            want -= len(b)
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        self.offset += len(data)
        if self.offset > self.limit:
            raise _too_large(self.name, self.limit)
        return data

    def reread(self) -> bytes:
        """A regular file's whole content again, from its start, in one piece."""
        if self.size is None:
            raise ValueError(f"{self.name}: a stream cannot be read again")
        self._file.seek(0)
        self.offset = 0
        return self.read(self.size + 1)

    def read_rest(self, check: Callable[[int, bytes], None] | None = None) -> bytes:
        """Everything left, within the limit.

        ``check(offset, chunk)`` sees each piece of a stream as it comes (a regular file is read
        in one piece of known size, and its reader checks the whole).
        """
        if self.size is not None:
            # One read of the known size (plus one byte: a file that grew is still bounded).
            return self.read(max(self.size - self.offset, 0) + 1)
        parts = []
        while True:
            start = self.offset
            b = self.read(_CHUNK)
            if not b:
                break
            if check is not None:
                check(start, b)
            parts.append(b)
        return b"".join(parts)


def open_input(path, limit: int | None = None, what: str = "file") -> InputFile:
    """Open a file the user named, refusing what cannot be input (see the module docstring).

    InputError (ValueError) naming the file for a missing path, a directory, a device, a
    socket, an unreadable file or a regular file over the limit.  ``what`` names the kind of
    file in the messages ("no such checkpoint file").
    """
    limit = max_input_bytes() if limit is None else int(limit)
    name = str(path)
    try:
        st = os.stat(path)  # before opening: opening some devices has effects of its own
    except OSError as e:
        raise InputError(f"{name}: {_os_reason(e, what)}") from None
    why = _kind(st.st_mode, what)
    if why:
        raise InputError(f"{name}: {why}")
    if stat.S_ISREG(st.st_mode) and st.st_size > limit:
        raise _too_large(name, limit)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        if e.errno == errno.ENXIO:
            raise InputError(f"{name}: {_kind(stat.S_IFSOCK)}") from None
        raise InputError(f"{name}: {_os_reason(e, what)}") from None
    try:
        st = os.fstat(fd)  # what was opened, in case the path changed since the stat
        why = _kind(st.st_mode, what)
        if why:
            raise InputError(f"{name}: {why}")
        size = st.st_size if stat.S_ISREG(st.st_mode) else None
        if size is not None and size > limit:
            raise _too_large(name, limit)
        return InputFile(name, fd, size, limit)
    except BaseException:
        os.close(fd)
        raise


def read_input_bytes(path, limit: int | None = None,
                     check: Callable[[int, bytes], None] | None = None,
                     what: str = "file") -> bytes:
    """The bytes of a file the user named, through :func:`open_input` (bounded, devices refused).

    ``check(offset, chunk)`` is called on each piece of a stream and may raise to stop early.
    """
    with open_input(path, limit, what) as f:
        return f.read_rest(check)


def read_stdin_bytes(limit: int | None = None,
                     check: Callable[[int, bytes], None] | None = None) -> bytes:
    """Standard input's bytes, bounded like a file: a closed stdin or a device (other than a
    terminal) is refused in one line."""
    name = "standard input"
    stream = sys.stdin
    try:
        fd = stream.fileno() if stream is not None else -1
        st = os.fstat(fd) if fd >= 0 else None
    except (OSError, ValueError, AttributeError):
        st = None
    if st is None:
        raise InputError(f"{name} is closed; give a FILE or redirect input into rnnkit")
    limit = max_input_bytes() if limit is None else int(limit)
    if not os.isatty(fd):
        why = _kind(st.st_mode)
        if why:
            raise InputError(f"{name} {why}")
    if stat.S_ISREG(st.st_mode) and st.st_size > limit:
        raise _too_large(name, limit)
    # Read through a duplicate: closing the InputFile must not close the process' stdin.
    f = InputFile(name, os.dup(fd), None, limit)
    with f:
        return f.read_rest(check)


def text_checker(name) -> Callable[[int, bytes], None]:
    """A ``check`` for text: InputError at the first NUL byte or invalid UTF-8 in a stream.

    Lets a stream of binary data (``<(cat /dev/urandom)``) be refused at its first MiB; the
    caller still checks the whole text afterwards for the precise message.
    """
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()

    def check(offset: int, chunk: bytes) -> None:
        if offset == 0 and chunk.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise InputError(f"{name}: this looks like UTF-16 text (it starts with a byte-order "
                             "mark); save it as UTF-8")
        nul = chunk.find(b"\x00")
        if nul >= 0:
            raise InputError(f"{name}: NUL byte at offset {offset + nul}; this looks like a "
                             "binary file, not text")
        pending = decoder.getstate()[0]  # an incomplete character left from the last chunk
        try:
            decoder.decode(chunk)
        except UnicodeDecodeError as e:
            data = pending + chunk
            raise InputError(f"{name}: not valid UTF-8: byte 0x{data[e.start]:02x} at offset "
                             f"{offset - len(pending) + e.start} ({e.reason})") from None

    return check


class named_errors:
    """Context manager: an OSError inside that names no file gets ``path`` as its file name.

    A write that fails for a full disk or a file-size limit raises ``[Errno 28] No space left
    on device`` with no file; wrapped (``with named_errors(path), open(path, "a") as f:``) the
    CLI's message becomes ``PATH: No space left on device``.
    """

    def __init__(self, path):
        self.path = path

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if (exc is not None and isinstance(exc, OSError) and not isinstance(exc, BrokenPipeError)
                and exc.filename is None and exc.errno is not None):
            raise OSError(exc.errno, exc.strerror or str(exc), str(self.path)) from None
        return False
