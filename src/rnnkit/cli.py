"""The ``rnnkit`` command: ``rnnkit COMMAND ...``.

Subcommands live in their own modules (``cli_lm`` for language models, ``cli_tasks`` for
classify / tag / seq2seq); each exposes ``register(subparsers)`` and sets ``func`` on its
parsers.  A user's mistake never shows a traceback: one line on stderr and exit status 2
(bad input) or 1 (a failure while running); Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import sys

from . import __version__


class UsageError(ValueError):
    """A user's mistake that the CLI reports in one line."""


def build_parser() -> argparse.ArgumentParser:
    from . import cli_lm, cli_tasks

    parser = argparse.ArgumentParser(prog="rnnkit", description="Recurrent neural network toolkit.")
    parser.add_argument("--version", action="version", version=f"rnnkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    cli_lm.register(sub)
    cli_tasks.register(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("rnnkit: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"rnnkit {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
