"""The ``chat`` subcommand: its options, checked, then the chat.

Only the standard library, ``llmpool._extras`` and the chat's own pure modules are
imported here; websockets, prompt_toolkit and rich are imported when the chat runs, and a
missing one is reported with the extra to install.
"""

from __future__ import annotations

import argparse
import os

from llmpool import Priority
from llmpool._cli._command import Command, UsageError
from llmpool._extras import require

from ._input import check_session_id, new_session_id
from ._options import DEFAULT_URL, ChatOptions, check_url

__all__ = ["COMMAND", "options_from"]

_FEATURE = "llmpool chat"
_TOKEN_VARIABLE = "LLMPOOL_SERVER_TOKEN"

_DESCRIPTION = """\
Chat with an llmpool server (`llmpool serve`) from the terminal: answers stream as they are
written, /stop or Ctrl-C stops one, and a dropped connection is reopened with backoff and
jitter and resumed from the last frame seen, so nothing is missed or shown twice.
Type /help in the chat for the commands.
"""

_EPILOG = """\
examples:
  llmpool chat
  llmpool chat --url ws://127.0.0.1:8001 --session notes --priority high
  LLMPOOL_SERVER_TOKEN=secret llmpool chat --url wss://chat.example.com

exit status: 0 when you quit, 1 when the server refuses the connection for good (close 1008:
a wrong token, an invalid session id), 2 for a usage error, 130 when interrupted.
"""


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", default=DEFAULT_URL,
        help="the server: ws://host:port or wss://… (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--session", metavar="ID", default=None,
        help="the session to join or start (default: a fresh random id)",
    )  # fmt: skip
    parser.add_argument(
        "--priority", choices=[p.value for p in Priority], default=None,
        help="the priority of your turns (default: the server's, normal)",
    )  # fmt: skip
    parser.add_argument(
        "--token", default=None,
        help=f"the server's bearer token (default: ${_TOKEN_VARIABLE})",
    )  # fmt: skip
    parser.add_argument(
        "--no-typewriter", action="store_true",
        help="show answer text as it arrives, without the typewriter effect",
    )  # fmt: skip


def options_from(args: argparse.Namespace, environ: dict[str, str] | None = None) -> ChatOptions:
    """The ``ChatOptions`` of parsed ``llmpool chat`` arguments.

    Raises:
        UsageError: the URL or the session id is not valid.
    """
    env = os.environ if environ is None else environ
    problem = check_url(args.url)
    if problem is not None:
        raise UsageError(problem)
    session_id = new_session_id() if args.session is None else args.session
    problem = check_session_id(session_id)
    if problem is not None:
        raise UsageError(f"--session {session_id!r}: {problem}")
    token = args.token if args.token is not None else env.get(_TOKEN_VARIABLE) or None
    return ChatOptions(
        url=args.url,
        session_id=session_id,
        priority=args.priority,
        token=token,
        typewriter=not args.no_typewriter,
    )


def _run(args: argparse.Namespace) -> int:
    options = options_from(args)
    for module in ("websockets", "prompt_toolkit", "rich"):
        require(module, "chat", feature=_FEATURE)
    from ._app import run_chat

    return run_chat(options)


COMMAND = Command(
    name="chat",
    help="chat with an llmpool server from the terminal",
    description=_DESCRIPTION,
    epilog=_EPILOG,
    add_arguments=_add_arguments,
    run=_run,
)
"""``llmpool chat``."""
