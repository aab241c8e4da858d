"""What a subcommand of the ``llmpool`` command line is: a name, its options, how it runs.

Each subcommand package (``demo``, ``serve``, ``chat``) exports one ``Command``, and
``_main.COMMANDS`` lists them. ``add_arguments`` fills the subcommand's parser; ``run`` gets the
parsed arguments and returns the exit status. A command imports its extras (rich, the simulated
provider, Starlette…) in ``run`` only, through ``llmpool._extras.require``: ``llmpool --help``
and every other command then work without them, and a missing one is reported with the extra
to install (``MissingExtraError``, exit status 2; its ``feature`` should name the command, as
in ``require("rich", "demo", feature="llmpool demo")``: the message is printed as it is).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "Command",
    "SetupError",
    "UsageError",
]

EXIT_OK: Final = 0
"""The command did what it was asked."""
EXIT_FAILED: Final = 1
"""The command ran, and what it ran failed (e.g. a demo request)."""
EXIT_USAGE: Final = 2
"""A usage or setup error: bad arguments, a missing extra, no API key (argparse's status)."""
EXIT_INTERRUPTED: Final = 130
"""Interrupted by Ctrl-C (128 + SIGINT, as shells report it)."""


class UsageError(Exception):
    """Arguments that parse but do not fit together; shown with the command's usage, exit 2."""


class SetupError(Exception):
    """The command cannot start as configured (no API key, an invalid plan…); exit 2.

    Shown as ``llmpool <command>: <message>``, without the usage.
    """


@dataclass(frozen=True, slots=True)
class Command:
    """One subcommand of ``llmpool``.

    Attributes:
        name: what the user types, e.g. ``"demo"``.
        help: one line for ``llmpool --help``.
        description: the subcommand's ``--help`` text (kept as written).
        epilog: text after its options in ``--help``, e.g. examples (kept as written).
        add_arguments: adds the subcommand's options to its parser.
        run: runs it with the parsed arguments and returns the exit status (``EXIT_*``).
            May raise ``UsageError``, ``SetupError`` or ``MissingExtraError`` (exit 2).
    """

    name: str
    help: str
    description: str
    epilog: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
