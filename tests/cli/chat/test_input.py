"""Typed lines: messages and commands; what Ctrl-C does."""

from __future__ import annotations

import re

import pytest

from llmpool._cli.chat._input import (
    Clear,
    Help,
    Interrupt,
    Invalid,
    New,
    Quit,
    Send,
    Stats,
    Stop,
    Switch,
    UserInput,
    new_session_id,
    on_interrupt,
    parse_line,
)


@pytest.mark.parametrize(
    ("line", "parsed"),
    [
        pytest.param("hello", Send("hello"), id="message"),
        pytest.param("  spaced  ", Send("  spaced  "), id="message-kept-as-typed"),
        pytest.param("//etc/hosts", Send("/etc/hosts"), id="double-slash-sends-slash"),
        pytest.param("", None, id="empty"),
        pytest.param("   ", None, id="blank"),
        pytest.param("/help", Help(), id="help"),
        pytest.param("/clear", Clear(), id="clear"),
        pytest.param("/stop", Stop(), id="stop"),
        pytest.param("/stats", Stats(), id="stats"),
        pytest.param("/quit", Quit(), id="quit"),
        pytest.param("/exit", Quit(), id="exit"),
        pytest.param("/session notes", Switch("notes"), id="session"),
        pytest.param("/session   notes  ", Switch("notes"), id="session-trimmed"),
        pytest.param("/new", New(None), id="new-random"),
        pytest.param("/new mine", New("mine"), id="new-named"),
    ],
)
def test_lines_parse(line: str, parsed: UserInput | None) -> None:
    """A line is a message, a command, or nothing (blank)."""
    assert parse_line(line) == parsed


@pytest.mark.parametrize(
    ("line", "says"),
    [
        pytest.param("/nope", "unknown command /nope", id="unknown"),
        pytest.param("/session", "/session needs an id", id="session-without-id"),
        pytest.param("/stop now", "/stop takes no argument", id="stray-argument"),
        pytest.param("/session é", "printable ASCII", id="non-ascii-id"),
        pytest.param("/new " + "x" * 129, "at most 128", id="id-too-long"),
    ],
)
def test_bad_commands_say_why(line: str, says: str) -> None:
    """A command that cannot run is an Invalid whose message says why."""
    parsed = parse_line(line)
    assert isinstance(parsed, Invalid)
    assert says in parsed.message


def test_new_session_ids_are_fresh() -> None:
    """/new without an id makes chat-<8 hex>, a different one each time."""
    ids = {new_session_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(re.fullmatch(r"chat-[0-9a-f]{8}", i) for i in ids)


@pytest.mark.parametrize(
    ("answering", "armed", "does"),
    [
        pytest.param(True, False, Interrupt.STOP, id="answering-stops"),
        pytest.param(False, False, Interrupt.HINT, id="idle-hints"),
        pytest.param(True, True, Interrupt.QUIT, id="second-quits-while-answering"),
        pytest.param(False, True, Interrupt.QUIT, id="second-quits"),
    ],
)
def test_ctrl_c(answering: bool, armed: bool, does: Interrupt) -> None:
    """Ctrl-C stops the answer; a second Ctrl-C in a row quits."""
    assert on_interrupt(answering=answering, armed=armed) is does
