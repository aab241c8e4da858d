"""_pairing: which output answers which call, in sequence; reasoning with its follower."""

from __future__ import annotations

from typing import Any

import pytest

from llmpool._pairing import (
    chat_groups,
    pair_chat,
    pair_responses,
    reasoning_follows,
    responses_call_key,
    responses_output_key,
)


def call(call_id: str, kind: str = "function_call") -> dict[str, Any]:
    return {"type": kind, "call_id": call_id, "name": "f", "arguments": "{}"}


def out(call_id: str, kind: str = "function_call_output") -> dict[str, Any]:
    return {"type": kind, "call_id": call_id, "output": "r"}


USER = {"role": "user", "content": "q"}
REASONING = {"type": "reasoning", "summary": [], "encrypted_content": "e"}


@pytest.mark.parametrize(
    ("item", "call_key", "output_key"),
    [
        (call("c"), ("function_call_output", "c"), None),
        (out("c"), None, ("function_call_output", "c")),
        (call("c", "tool_search_call"), ("tool_search_output", "c"), None),
        (call("c", "future_call"), ("future_call_output", "c"), None),
        ({"type": "mcp_approval_request", "id": "r"}, ("mcp_approval_response", "r"), None),
        (
            {"type": "mcp_approval_response", "approval_request_id": "r"},
            None,
            ("mcp_approval_response", "r"),
        ),
        ({"type": "local_shell_call_output", "id": "c"}, None, ("local_shell_call_output", "c")),
        ({"type": "web_search_call", "id": "ws"}, None, None),
        ({"type": "mcp_call", "id": "mcp"}, None, None),
        (USER, None, None),
    ],
    ids=[
        "function-call",
        "function-output",
        "tool-search",
        "unknown-call",
        "approval-request",
        "approval-response",
        "local-shell-output-by-id",
        "hosted-web-search",
        "hosted-mcp-call",
        "message",
    ],
)
def test_pair_keys(
    item: dict[str, Any], call_key: tuple[str, str] | None, output_key: tuple[str, str] | None
) -> None:
    """A call names the output it waits for; an output the call it answers; hosted items none."""
    assert responses_call_key(item) == call_key
    assert responses_output_key(item) == output_key


def test_a_reused_call_id_starts_a_new_pair() -> None:
    """call_0 answered, then call_0 again in a later turn: two complete pairs (in sequence)."""
    items = [call("call_0"), out("call_0"), USER, call("call_0"), out("call_0")]
    keep, partner = pair_responses(items, holds_calls=False)
    assert keep == [True] * 5
    assert partner == [1, 0, None, 4, 3]


@pytest.mark.parametrize(
    ("items", "keep"),
    [
        ([call("c"), call("c"), out("c")], [True, False, True]),
        ([call("c"), out("c"), out("c")], [True, True, False]),
        ([out("c"), call("c"), out("c")], [False, True, True]),
        ([call("c"), USER], [False, True]),
        ([call("c"), out("c", "custom_tool_call_output")], [False, False]),
    ],
    ids=["second-call-while-waiting", "second-output", "early-output", "unanswered", "wrong-kind"],
)
def test_pairing_drops_what_has_no_partner(items: list[dict[str, Any]], keep: list[bool]) -> None:
    """At most one call of a key waits at a time; an output needs a waiting call of its kind."""
    assert pair_responses(items, holds_calls=False)[0] == keep


def test_a_server_held_call_keeps_its_output_only_when_the_input_has_no_such_call() -> None:
    """holds_calls: an output whose key no call in the input has answers the server's call."""
    assert pair_responses([out("c")], holds_calls=True)[0] == [True]
    assert pair_responses([out("c"), call("c"), out("c")], holds_calls=True)[0] == [
        False,
        True,
        True,
    ]


@pytest.mark.parametrize(
    ("keep", "expected"),
    [
        ([True, True, True], [True, True, True]),
        ([True, True, False], [False, False, False]),
        ([True, False, True], [True, False, True]),
        ([False, True, True], [False, True, True]),
    ],
    ids=["all-kept", "follower-dropped", "inner-reasoning-dropped", "first-dropped"],
)
def test_reasoning_goes_with_the_item_after_its_run(keep: list[bool], expected: list[bool]) -> None:
    """A run of reasoning items goes when the first non-reasoning item after it goes."""
    items = [REASONING, REASONING, USER]
    assert reasoning_follows(items, keep) == expected


def test_trailing_reasoning_stays() -> None:
    """Nothing after a final reasoning item was dropped: it stays."""
    assert reasoning_follows([USER, REASONING], [True, True]) == [True, True]


def tool(call_id: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": "r"}


def assistant(*ids: str) -> dict[str, Any]:
    calls = [
        {"id": i, "type": "function", "function": {"name": "f", "arguments": "{}"}} for i in ids
    ]
    return {"role": "assistant", "tool_calls": calls}


def test_chat_groups_are_an_assistant_and_its_answers() -> None:
    """An assistant message and the run of tool messages after it form one range."""
    messages = [USER, assistant("a", "b"), tool("a"), tool("b"), USER, tool("x")]
    assert list(chat_groups(messages)) == [(0, 1), (1, 4), (4, 5), (5, 6)]


def test_chat_ids_reused_in_a_later_turn_pair_with_their_own_turn() -> None:
    """call_0 in two turns: each assistant message keeps its call, answered by its own run."""
    messages = [
        USER,
        assistant("call_0"),
        tool("call_0"),
        USER,
        assistant("call_0"),
        tool("call_0"),
    ]
    assert pair_chat(messages) == messages


def test_chat_pairing_does_not_change_its_input() -> None:
    """An assistant message that loses a call is a new dict; the caller's stays as it was."""
    message = assistant("a", "b")
    result = pair_chat([message, tool("b")])
    assert [c["id"] for c in result[0]["tool_calls"]] == ["b"]
    assert [c["id"] for c in message["tool_calls"]] == ["a", "b"]
