"""`llmpool chat`'s options, the URLs made from --url, and the /stats table."""

from __future__ import annotations

import pytest

from llmpool._cli._command import UsageError
from llmpool._cli._main import build_parser
from llmpool._cli.chat._command import options_from
from llmpool._cli.chat._options import chat_url, check_url, http_url
from llmpool._cli.chat._stats import stats_table


@pytest.mark.parametrize(
    ("url", "session", "priority", "expected"),
    [
        pytest.param("ws://127.0.0.1:8000", "s1", None, "ws://127.0.0.1:8000/ws/chat/s1",
                     id="plain"),
        pytest.param("wss://example.com/llm/", "a b/c", "high",
                     "wss://example.com/llm/ws/chat/a%20b%2Fc?priority=high", id="prefix-quoted"),
    ],
)  # fmt: skip
def test_chat_url(url: str, session: str, priority: str | None, expected: str) -> None:
    assert chat_url(url, session, priority) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("ws://127.0.0.1:8000", "http://127.0.0.1:8000", id="ws"),
        pytest.param("wss://example.com/llm/", "https://example.com/llm", id="wss-prefix"),
    ],
)
def test_http_url(url: str, expected: str) -> None:
    assert http_url(url) == expected


@pytest.mark.parametrize(
    "url", ["http://x:8000", "127.0.0.1:8000", "ws://", "ws://x/?a=1"], ids=str
)
def test_bad_urls_are_refused(url: str) -> None:
    assert check_url(url) is not None


def test_options_from_arguments_and_the_token_variable() -> None:
    args = build_parser().parse_args(["chat", "--session", "n", "--priority", "low"])
    options = options_from(args, {"LLMPOOL_SERVER_TOKEN": "t0k"})
    assert (options.session_id, options.priority, options.token) == ("n", "low", "t0k")
    assert options.url == "ws://127.0.0.1:8000"
    assert options.typewriter
    fresh = options_from(build_parser().parse_args(["chat", "--no-typewriter"]), {})
    assert fresh.session_id.startswith("chat-")
    assert fresh.token is None
    assert not fresh.typewriter


@pytest.mark.parametrize(
    "argv", [["--url", "http://x"], ["--session", " padded"]], ids=["url", "session"]
)
def test_bad_options_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(UsageError):
        options_from(build_parser().parse_args(["chat", *argv]), {})


def test_the_stats_table_flattens_and_escapes() -> None:
    """Nested objects become dotted keys, floats are short, server text is escaped."""
    text = stats_table(
        {"connections": {"active": 2, "capacity_used": "8.0%"}},
        {"queueWait": {"p95": 0.123456789}, "inFlightPerClient": [1, 0], "x": "\x1b[2J"},
        width=100,
        color=False,
    )
    for expected in ("connections.active", "8.0%", "queueWait.p95", "0.1235", "[1,0]", "\\x1b[2J"):
        assert expected in text
    assert "\x1b" not in text
