"""`llmpool chat` end to end: a pseudo-terminal (pexpect, the screen emulated by pyte)
against a real `llmpool serve` subprocess (the simulated provider answers "Simulated reply
to: <message>", one word per 40 ms)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from .helpers import Server, Terminal, free_port

pytestmark = pytest.mark.integration

LONG = " ".join(f"w{i}" for i in range(80))  # 80 words: more than 3 s of answer


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    served = Server(free_port())
    try:
        yield served
    finally:
        served.stop()


def _chat(server: Server, *args: str) -> Terminal:
    return Terminal("--url", f"ws://127.0.0.1:{server.port}", *args)


def test_two_turns_new_session_and_back(server: Server) -> None:
    """Two turns in one session, /new starts another (a fresh id in the prompt), /session
    goes back to the first, resuming after its last frame: nothing is shown twice, and a
    turn there still works; /quit exits 0."""
    term = _chat(server, "--session", "alpha")
    try:
        term.wait_for("alpha>")
        term.type("first message")
        term.wait_for(lambda s: s.count("(done in") == 1)
        term.type("second message")
        term.wait_for(lambda s: s.count("(done in") == 2)
        term.type("/new")
        screen = term.wait_for(re.compile(r"^chat-[0-9a-f]{8}>", re.M).search)
        assert "new session chat-" in screen
        term.type("in the new one")
        term.wait_for(lambda s: s.count("(done in") == 3)
        term.type("/session alpha")
        term.wait_for("session alpha: resuming after frame")
        term.type("third message")
        screen = term.wait_for(lambda s: s.count("(done in") == 4)
        for said in ("first message", "second message", "in the new one", "third message"):
            assert screen.count(f"Simulated reply to: {said}") == 1, screen
        term.wait_for(lambda s: s.splitlines()[-1].startswith("alpha>"))
        term.type("/quit")
        assert term.exit_status() == 0
    finally:
        term.close()


def test_stop_mid_answer_then_ctrl_c_twice_quits(server: Server) -> None:
    """/stop while a long answer streams ends it at once ("stopped"), with part of the text;
    the next turn works; Ctrl-C with nothing to stop hints, the second one quits (0)."""
    term = _chat(server, "--session", "beta")
    try:
        term.wait_for("beta>")
        term.type(LONG)
        term.wait_for("Simulated reply to: w0 w1")
        term.type("/stop")
        screen = term.wait_for("(stopped after")
        assert "w79" not in screen.split("beta> /stop", 1)[1]
        term.type("after the stop")
        term.wait_for("Simulated reply to: after the stop")
        term.wait_for("(done in")
        term.key("\x03")
        term.wait_for("Ctrl-C again")
        term.key("\x03")
        assert term.exit_status() == 0
    finally:
        term.close()


def test_ctrl_c_stops_the_answer(server: Server) -> None:
    """Ctrl-C while an answer streams stops it (the answer ends "stopped"), without quitting."""
    term = _chat(server, "--session", "gamma", "--no-typewriter")
    try:
        term.wait_for("gamma>")
        term.type(LONG)
        term.wait_for("Simulated reply to: w0")
        term.key("\x03")
        term.wait_for("(stopped after")
        term.type("/quit")
        assert term.exit_status() == 0
    finally:
        term.close()


def test_a_server_restart_mid_answer() -> None:
    """SIGTERM while a long answer streams (a short grace cuts it), a new `llmpool serve` on
    the same port: the client reconnects with backoff, its resume finds a server without the
    session, says so once, repeats no text, and the next turn works."""
    port = free_port()
    first = Server(port, LLMPOOL_SHUTDOWN_GRACE="0.3")
    term = Terminal("--url", f"ws://127.0.0.1:{port}", "--session", "delta")
    second: Server | None = None
    try:
        term.wait_for("delta>")
        term.type(LONG)
        term.wait_for("Simulated reply to: w0 w1")
        assert first.terminate() == 0
        term.wait_for("the server is restarting (1012): reconnecting in")
        second = Server(port)
        screen = term.wait_for("the session starts afresh", within=15)
        assert "error server_shutting_down" in screen
        answer = screen.split("Simulated reply to:", 1)[1]
        assert answer.count(" w1 ") <= 1  # the words shown once: no replay after the restart
        assert "w79" not in answer
        term.type("after the restart")
        screen = term.wait_for("Simulated reply to: after the restart")
        term.wait_for(lambda s: "(done in" in s.split("after the restart", 2)[-1])
        assert screen.count("Simulated reply to:") == 2
        term.type("/quit")
        assert term.exit_status() == 0
    finally:
        term.close()
        first.stop()
        if second is not None:
            second.stop()


def test_an_unauthorized_client_exits_1() -> None:
    """Without the server's token: one line saying so (with the advice), close 1008, exit 1."""
    served = Server(free_port(), LLMPOOL_SERVER_TOKEN="sesame")
    term = Terminal("--url", f"ws://127.0.0.1:{served.port}")
    try:
        assert term.exit_status(within=15) == 1
        screen = term.screen()
        assert "error unauthorized" in screen
        assert "--token" in screen
        assert "(1008: a valid token is required): not retrying" in screen
    finally:
        term.close()
        served.stop()
