"""The ``llmpool`` command line: the parser built from its subcommands, and ``main``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Final

from llmpool._extras import MissingExtraError

from . import chat, demo, serve
from ._command import EXIT_INTERRUPTED, EXIT_USAGE, Command, SetupError, UsageError

__all__ = ["COMMANDS", "build_parser", "main"]

COMMANDS: Final[tuple[Command, ...]] = (demo.COMMAND, serve.COMMAND, chat.COMMAND)
"""Every subcommand, in the order ``llmpool --help`` lists them."""


def _build() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(
        prog="llmpool", description="llmpool: pooled, prioritised, retrying OpenAI clients."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    parsers: dict[str, argparse.ArgumentParser] = {}
    for command in COMMANDS:
        sub = subparsers.add_parser(
            command.name,
            help=command.help,
            description=command.description,
            epilog=command.epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.add_arguments(sub)
        parsers[command.name] = sub
    return parser, parsers


def build_parser() -> argparse.ArgumentParser:
    """The ``llmpool`` argument parser, with a subparser per command in ``COMMANDS``."""
    return _build()[0]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``llmpool`` command line.

    Args:
        argv: the arguments after the program name; ``sys.argv[1:]`` by default.

    Returns:
        The exit status: 0 success, 1 the command ran and failed (e.g. a demo request), 2 a
        usage or setup error (a missing extra included), 130 interrupted. ``--help`` and
        arguments argparse rejects exit through ``SystemExit`` (status 0 and 2).
    """
    parser, parsers = _build()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    command = next(c for c in COMMANDS if c.name == args.command)
    try:
        return command.run(args)
    except UsageError as exc:
        parsers[command.name].error(str(exc))  # exits with status 2
    except SetupError as exc:
        sys.stderr.write(f"llmpool {command.name}: {exc}\n")
        return EXIT_USAGE
    except MissingExtraError as exc:  # its message starts with the feature: "llmpool demo …"
        sys.stderr.write(f"{exc}\n")
        return EXIT_USAGE
    except BaseException as exc:
        # trio delivers Ctrl-C through the task groups: a group of interrupts is one too
        interrupted = isinstance(exc, KeyboardInterrupt) or (
            isinstance(exc, BaseExceptionGroup) and exc.split(KeyboardInterrupt)[1] is None
        )
        if not interrupted:
            raise  # anything else (a group with something besides Ctrl-C too) shows
        sys.stderr.write(f"llmpool {command.name}: interrupted\n")
        return EXIT_INTERRUPTED
