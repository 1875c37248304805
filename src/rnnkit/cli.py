"""The ``rnnkit`` command: ``rnnkit COMMAND ...``.

Subcommands live in their own modules (``cli_lm`` for language models, ``cli_tasks`` for
classify / tag / seq2seq); each exposes ``register(subparsers)`` and sets ``func`` on its
parsers.  A user's mistake never shows a traceback: one line on stderr and exit status 2
(bad input) or 1 (a failure while running); Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys

from . import __version__


class UsageError(ValueError):
    """A user's mistake that the CLI reports in one line."""


class _StdoutClosed(Exception):
    """argparse was asked to print (--help, --version) with no standard output."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the usage block is one ``--help`` away.

    Subparsers are made with the parent's class, so every subcommand inherits this.
    """

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def _print_message(self, message, file=None):
        # argparse swallows a failed write (``--version > /dev/full`` would exit 0 having
        # written nothing) and sends --help to stderr when stdout is closed; main reports
        # both instead.  A usage error that cannot reach stderr keeps its exit status 2.
        if not message:
            return
        if file is None:  # stdout, closed
            raise _StdoutClosed
        if file is sys.stderr:
            try:
                file.write(message)
            except (OSError, ValueError):
                pass
            return
        file.write(message)


# The modules whose ``register(subparsers)`` adds commands, in ``--help`` order.
COMMAND_MODULES = ("cli_lm", "cli_tasks", "cli_explain", "cli_ngram", "cli_export")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = _Parser(prog="rnnkit", description="Recurrent neural network toolkit.")
    parser.add_argument("--version", action="version", version=f"rnnkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__package__}.{name}").register(sub)
    return parser


def main(argv=None) -> int:
    """Run ``rnnkit ARGV``; returns the exit status (argparse's own exits included).

    Exit status: 0 done; 2 the user's mistake (bad option, bad input file, a size this machine
    cannot hold, stdout closed); 1 a failure while running (disk full, read-only file system,
    out of memory, stdout failing, an internal error); 130 Ctrl-C.  Every error is one line on
    stderr, never a traceback (``RNNKIT_TRACEBACK=1`` shows one for an internal error).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error already printed
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
        return _finish_output(code, "rnnkit")
    except _StdoutClosed:  # --help or --version with nowhere to go
        return _error("rnnkit", _STDOUT_CLOSED, 2)
    except OSError as e:  # --help or --version into a failing stdout (/dev/full)
        return _output_failed(e, "rnnkit")
    if getattr(args, "func", None) is None:
        if _stdout_closed():
            return _error("rnnkit", _STDOUT_CLOSED, 2)
        try:
            parser.print_help()
        except OSError as e:
            return _output_failed(e, "rnnkit")
        return _finish_output(0 if args.command is None else 2, "rnnkit")
    name = f"rnnkit {args.command}"
    seed = getattr(args, "seed", None)
    if isinstance(seed, int) and seed < 0:  # numpy's own message would not name the option
        return _error(name, f"--seed must be >= 0, got {seed}", 2)
    bad = _non_utf8_argument(sys.argv[1:] if argv is None else list(argv))
    if bad:
        return _error(name, bad, 2)
    if _stdout_closed():
        # Refused before any work: a training run would otherwise end with nowhere to report.
        return _error(name, _STDOUT_CLOSED, 2)
    _fill_closed_std_fds()
    real_stdout = sys.stdout
    sys.stdout = _Stdout(real_stdout)
    try:
        from ._limits import check_memory_need
        from .memory import keep_freed_memory

        keep_freed_memory()  # each step reuses the pages the last one freed (rnnkit.memory)
        check_memory_need(args)
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a failing stdout (a full disk, /dev/full) shows here at the latest
        return code
    except _StdoutFailed as e:
        _discard_stdout(real_stdout)
        return _error(name, f"cannot write to standard output ({e.reason})", 1)
    except KeyboardInterrupt:
        return _error("rnnkit", "interrupted", 130, prefix=False)
    except BrokenPipeError:
        # The reader went away (``rnnkit sample ... | head``): not an error worth a message.
        _discard_stdout(real_stdout)
        return 1
    except MemoryError as e:
        detail = _one_line(e) if str(e).strip() else ""
        return _error(name, "out of memory" + (f" ({detail})" if detail else "")
                      + "; try smaller sizes or free memory", 1)
    except (ValueError, TypeError) as e:
        return _error(name, _one_line(e), 2)
    except OSError as e:
        return _error(name, _os_message(e), _os_status(e))
    except Exception as e:  # a bug: still one line, with the way to see more
        if os.environ.get("RNNKIT_TRACEBACK"):
            raise
        return _error(name, f"internal error: {type(e).__name__}: {_one_line(e)} (please "
                            "report it; RNNKIT_TRACEBACK=1 shows where)", 1)
    finally:
        if isinstance(sys.stdout, _Stdout):
            sys.stdout = real_stdout


class _StdoutFailed(Exception):
    """Writing to standard output failed (not a broken pipe): told apart from the OSErrors
    of files, which name their file."""

    def __init__(self, error: OSError):
        super().__init__(error)
        self.reason = error.strerror or _one_line(error)


class _Stdout:
    """Standard output seen by a command: its write errors become :class:`_StdoutFailed`."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, s):
        try:
            return self._stream.write(s)
        except BrokenPipeError:
            raise
        except OSError as e:
            raise _StdoutFailed(e) from None

    def flush(self):
        try:
            return self._stream.flush()
        except BrokenPipeError:
            raise
        except OSError as e:
            raise _StdoutFailed(e) from None

    def __getattr__(self, name):
        return getattr(self._stream, name)


# errnos that mean the path or permission the user gave is wrong (their mistake, exit 2);
# every other OSError is the system failing while running (disk full, EROFS, EIO: exit 1).
_USER_ERRNOS = frozenset(getattr(errno, n) for n in (
    "ENOENT", "ENOTDIR", "EISDIR", "EACCES", "EPERM", "EEXIST", "ENAMETOOLONG", "ELOOP",
    "ENXIO", "ENODEV", "ENOTEMPTY", "EXDEV") if hasattr(errno, n))

_STDOUT_CLOSED = ("standard output is closed; redirect it to a file "
                  "(or to /dev/null to discard it)")


def _os_status(e: OSError) -> int:
    return 2 if e.errno in _USER_ERRNOS else 1


def _os_message(e: OSError) -> str:
    """An OSError as one line that names its file: 'PATH: No space left on device'."""
    reason = e.strerror or _one_line(e)
    if e.filename is not None:
        where = os.fsdecode(e.filename)
        if e.filename2 is not None:
            where += f" -> {os.fsdecode(e.filename2)}"
        return _one_line(f"{where}: {reason}")
    return _one_line(reason)


def _one_line(e) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text[:300] + "..." if len(text) > 300 else text


def _error(name: str, message: str, code: int, prefix: bool = True) -> int:
    line = f"{name}: error: {message}" if prefix else f"{name}: {message}"
    stream = sys.stderr
    if stream is not None:  # with stderr closed too there is nowhere to say it: the code says it
        try:
            print(line, file=stream, flush=True)
        except (OSError, ValueError):
            pass
    return code


def _fill_closed_std_fds() -> None:
    """Put /dev/null on a closed standard descriptor (``2>&-``, ``<&-``).

    Otherwise the next file rnnkit opens (a checkpoint being written) would get that number,
    and whatever a library writes to "stderr" at the C level would land inside the user's file.
    ``sys.stdin`` stays None, so a closed stdin is still reported as closed.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            try:
                null = os.open(os.devnull, os.O_RDWR)
                if null != fd:
                    os.dup2(null, fd)
                    os.close(null)
            except OSError:
                pass
    if sys.stderr is None:
        # print(file=None) writes to stdout: progress lines would end up in the command's output.
        sys.stderr = open(os.devnull, "w")


def _stdout_closed() -> bool:
    """True if there is no standard output (started with ``>&-``)."""
    out = sys.stdout
    if out is None:  # Python sets it so when fd 1 was closed at start-up
        return True
    try:
        fd = out.fileno()
    except (OSError, ValueError, AttributeError):  # an in-memory stream (tests): usable
        return getattr(out, "closed", False)
    try:
        os.fstat(fd)
    except OSError:
        return True
    return False


def _discard_stdout(stream=None) -> None:
    # Point the stream's file descriptor at /dev/null so the interpreter's final flush of what
    # it still buffers does not print an "Exception ignored" report of its own.
    stream = sys.stdout if stream is None else stream
    try:
        target = stream.fileno()
    except (OSError, ValueError, AttributeError):  # an in-memory stream: nothing to redirect
        return
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, target)
        os.close(fd)
    except OSError:
        pass


def _finish_output(code: int, name: str) -> int:
    """Flush stdout after argparse wrote --help/--version; a failing stdout is exit 1."""
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except OSError as e:
        return _output_failed(e, name, code)
    return code


def _output_failed(e: OSError, name: str, code: int = 0) -> int:
    """A write to stdout failed: quietly 1 for a closed pipe, else one line and exit 1."""
    _discard_stdout()
    if isinstance(e, BrokenPipeError):
        return code or 1
    return _error(name, f"cannot write to standard output ({e.strerror or e})", 1)


def _non_utf8_argument(argv) -> str | None:
    """The message for the first argument that is not valid UTF-8, if any.

    Paths and options go into JSON model files and messages as UTF-8; a name that is not
    (bytes the file system allows, decoded by Python with surrogate escapes) would only fail
    at the first save, after training had started, so it is refused before anything runs.
    """
    for i, a in enumerate(argv):
        if not isinstance(a, str):
            continue
        try:
            a.encode("utf-8")
        except UnicodeEncodeError:
            shown = ascii(os.fsencode(a) if _fs_encodable(a) else a)
            prev = argv[i - 1] if i > 0 and isinstance(argv[i - 1], str) else ""
            opt = f"{prev} " if prev.startswith("-") and "=" not in prev else ""
            return (f"{opt}{shown}: not valid UTF-8; rnnkit stores names and text as UTF-8, "
                    "so rename the file (or re-encode the text)")
    return None


def _fs_encodable(a: str) -> bool:
    try:
        os.fsencode(a)
        return True
    except UnicodeEncodeError:
        return False


if __name__ == "__main__":
    sys.exit(main())
