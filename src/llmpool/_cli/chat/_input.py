"""What the user typed: a message or a command; and what Ctrl-C means now.

Pure: no I/O. A line starting with ``/`` is a command (``/help`` lists them); ``//`` at the
start sends the rest as a message beginning with one ``/``. Session ids follow the server's
rule (1-128 printable ASCII characters, no leading or trailing space).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, TypeAlias

from llmpool import _constants as C

__all__ = [
    "HELP",
    "Clear",
    "Help",
    "Interrupt",
    "Invalid",
    "New",
    "Quit",
    "Send",
    "Stats",
    "Stop",
    "Switch",
    "UserInput",
    "check_session_id",
    "new_session_id",
    "on_interrupt",
    "parse_line",
]


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``text`` as a message: it starts a turn."""

    text: str


@dataclass(frozen=True, slots=True)
class Help:
    """``/help``: list the commands and keys."""


@dataclass(frozen=True, slots=True)
class Clear:
    """``/clear``: clear the screen."""


@dataclass(frozen=True, slots=True)
class Switch:
    """``/session ID``: follow another session, from the last frame seen of it."""

    session_id: str


@dataclass(frozen=True, slots=True)
class New:
    """``/new [ID]``: a new session (``session_id`` None: a fresh random id)."""

    session_id: str | None


@dataclass(frozen=True, slots=True)
class Stop:
    """``/stop``: stop the current answer."""


@dataclass(frozen=True, slots=True)
class Stats:
    """``/stats``: the server's metrics and its manager's stats."""


@dataclass(frozen=True, slots=True)
class Quit:
    """``/quit`` or ``/exit``."""


@dataclass(frozen=True, slots=True)
class Invalid:
    """A command that cannot run as typed; ``message`` says why."""

    message: str


UserInput: TypeAlias = Send | Help | Clear | Switch | New | Stop | Stats | Quit | Invalid

HELP: Final = """\
commands:
  /help            this list
  /clear           clear the screen
  /session ID      switch to session ID, resuming from the last frame seen of it
  /new [ID]        start a new session (a fresh random id when none is given)
  /stop            stop the current answer
  /stats           the server's /metrics.json and /api/connection-stats
  /quit, /exit     leave
keys: Ctrl-C stops the answer, a second Ctrl-C quits; Ctrl-D quits; Up/Down: history.
A line starting with // sends the rest as a message starting with /."""


def check_session_id(session_id: str) -> str | None:
    """Why ``session_id`` is not a valid session id, or None when it is."""
    if not session_id:
        return "a session id must not be empty"
    if len(session_id) > C.MAX_SESSION_ID_LENGTH:
        return f"a session id has at most {C.MAX_SESSION_ID_LENGTH} characters"
    if not all(" " <= char <= "~" for char in session_id):
        return "a session id is printable ASCII only"
    if session_id != session_id.strip(" "):
        return "a session id cannot begin or end with a space"
    return None


def new_session_id() -> str:
    """A fresh random session id, ``chat-`` and 8 hex digits."""
    return f"chat-{secrets.token_hex(4)}"


def _session_command(name: str, argument: str) -> UserInput:
    if not argument:
        if name == "/new":
            return New(None)
        return Invalid("/session needs an id: /session ID")
    problem = check_session_id(argument)
    if problem is not None:
        return Invalid(f"{name} {argument!r}: {problem}")
    return New(argument) if name == "/new" else Switch(argument)


_SIMPLE: Final[dict[str, UserInput]] = {
    "/help": Help(),
    "/?": Help(),
    "/clear": Clear(),
    "/stop": Stop(),
    "/stats": Stats(),
    "/quit": Quit(),
    "/exit": Quit(),
}


def parse_line(line: str) -> UserInput | None:
    """What a line typed at the prompt asks for.

    Args:
        line: the line, without its newline.

    Returns:
        None for a blank line; a ``Send`` for a message; the command otherwise (an
        ``Invalid`` for an unknown command or a bad argument).
    """
    if not line.strip():
        return None
    if line.startswith("//"):
        return Send(line[1:])
    if not line.startswith("/"):
        return Send(line)
    name, _, argument = line.strip().partition(" ")
    argument = argument.strip()
    if name in ("/session", "/new"):
        return _session_command(name, argument)
    command = _SIMPLE.get(name)
    if command is None:
        return Invalid(f"unknown command {name}: /help lists them (// sends a leading /)")
    if argument:
        return Invalid(f"{name} takes no argument")
    return command


class Interrupt(StrEnum):
    """What a Ctrl-C does."""

    STOP = "stop"
    """Stop the answer being written."""
    HINT = "hint"
    """Nothing to stop: say that a second Ctrl-C quits."""
    QUIT = "quit"
    """The second Ctrl-C in a row: leave."""


def on_interrupt(*, answering: bool, armed: bool) -> Interrupt:
    """What Ctrl-C does now.

    Args:
        answering: an answer is being written (a turn of the current session runs).
        armed: the previous key was Ctrl-C too (no line was entered since).

    Returns:
        ``QUIT`` when armed; else ``STOP`` while answering, ``HINT`` otherwise.
    """
    if armed:
        return Interrupt.QUIT
    return Interrupt.STOP if answering else Interrupt.HINT
