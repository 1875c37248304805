"""The ``rnnkit`` command: ``rnnkit COMMAND ...``.

Subcommands live in their own modules (``cli_lm`` for language models, ``cli_tasks`` for
classify / tag / seq2seq); each exposes ``register(subparsers)`` and sets ``func`` on its
parsers.  A user's mistake never shows a traceback: one line on stderr and exit status 2
(bad input) or 1 (a failure while running); Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import os
import sys

from . import __version__


class UsageError(ValueError):
    """A user's mistake that the CLI reports in one line."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the usage block is one ``--help`` away.

    Subparsers are made with the parent's class, so every subcommand inherits this.
    """

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


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
    """Run ``rnnkit ARGV``; returns the exit status (argparse's own exits included)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error already printed
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0 if args.command is None else 2
    seed = getattr(args, "seed", None)
    if isinstance(seed, int) and seed < 0:  # numpy's own message would not name the option
        print(f"rnnkit {args.command}: error: --seed must be >= 0, got {seed}", file=sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("rnnkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (``rnnkit sample ... | head``): not an error worth a message.
        # Point stdout at /dev/null so the interpreter's final flush does not complain.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 1
    except MemoryError:
        print(f"rnnkit {args.command}: error: out of memory (try smaller sizes)", file=sys.stderr)
        return 1
    except (ValueError, TypeError, OSError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"rnnkit {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
