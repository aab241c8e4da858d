"""Conversation: the local transcript, its tool-call bookkeeping and its JSON form."""

from __future__ import annotations

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st
from openai.types.responses import Response

from llmpool._conversation import Conversation
from llmpool._errors import InvalidConversationError
from llmpool.testing import _payloads as P

TOOLS = [{"type": "function", "name": "lookup", "parameters": {"properties": {"q": {}}}}]


def sdk_response(request: dict[str, object], store: bool = True) -> Response:
    """A Response as the SDK parses it, built by the simulator's payload code."""
    data = {"model": "m", **request, "store": store}
    body = P.response_object(data, response_id="resp_1", output=P.response_output(data))
    return Response.model_validate(body)


def test_add_user_has_the_shape_of_the_api() -> None:
    """User messages are Responses input messages or Chat messages, per `api`."""
    responses, chat = Conversation(), Conversation(api="chat")
    responses.add_user("hi")
    chat.add_user("hi")
    assert responses.items == [{"type": "message", "role": "user", "content": "hi"}]
    assert chat.items == [{"role": "user", "content": "hi"}]


def test_empty_user_message_is_refused() -> None:
    """An empty message is a mistake: ValueError naming the method."""
    with pytest.raises(ValueError, match="add_user"):
        Conversation().add_user("")


def test_record_response_keeps_every_output_item_and_the_id() -> None:
    """Reasoning and tool-call items are kept whole; a stored response becomes
    last_response_id and everything so far is synced."""
    conversation = Conversation()
    conversation.add_user("find x")
    conversation.record_response(
        sdk_response({"input": "find x", "tools": TOOLS, "reasoning": {"effort": "low"}})
    )
    assert [item.get("type") for item in conversation.items] == [
        "message",
        "reasoning",
        "function_call",
    ]
    assert conversation.items[2]["arguments"] == '{"q": "find x"}'
    assert conversation.last_response_id == "resp_1"
    assert conversation.synced == 3


def test_unstored_response_leaves_no_previous_response_id() -> None:
    """store=false: the server keeps nothing, so the next turn must send the transcript."""
    conversation = Conversation()
    conversation.add_user("x")
    conversation.record_response(sdk_response({"input": "x"}, store=False))
    assert conversation.last_response_id is None
    assert conversation.continuation() == (conversation.items, None)


def test_tool_output_needs_a_pending_call() -> None:
    """add_tool_output accepts the pending call_id once; an unknown or answered one is refused
    (the API's 400 "No tool call found…")."""
    conversation = Conversation()
    conversation.add_user("find y")
    conversation.record_response(sdk_response({"input": "find y", "tools": TOOLS}))
    [call] = conversation.pending_tool_calls()
    assert call["name"] == "lookup"
    with pytest.raises(InvalidConversationError, match="call_nope"):
        conversation.add_tool_output("call_nope", "1")
    conversation.add_tool_output(call["call_id"], "42")
    assert conversation.pending_tool_calls() == []
    with pytest.raises(ValueError, match=call["call_id"]):
        conversation.add_tool_output(call["call_id"], "42")
    assert conversation.items[-1] == {
        "type": "function_call_output",
        "call_id": call["call_id"],
        "output": "42",
    }


def test_continuation_sends_only_new_items_with_the_previous_id() -> None:
    """After a stored turn, the next turn sends items[synced:] with previous_response_id."""
    conversation = Conversation()
    conversation.add_user("one")
    conversation.record_response(sdk_response({"input": "one"}))
    conversation.add_user("two")
    items, previous = conversation.continuation()
    assert previous == "resp_1"
    assert items == [{"type": "message", "role": "user", "content": "two"}]
    conversation.forget_server_state()
    assert conversation.continuation()[1] is None


def test_chat_tool_calls_and_outputs() -> None:
    """Chat: assistant tool_calls are pending until a role=tool message answers them; None
    fields of a recorded message are dropped."""
    conversation = Conversation(api="chat")
    conversation.add_user("q")
    conversation.record_chat_message(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        }
    )
    assert "content" not in conversation.items[-1]
    assert conversation.pending_call_ids() == ["call_1"]
    conversation.add_tool_output("call_1", "ok")
    assert conversation.items[-1] == {"role": "tool", "tool_call_id": "call_1", "content": "ok"}
    assert conversation.pending_call_ids() == []


@given(
    texts=st.lists(st.text(min_size=1), min_size=1, max_size=5),
    api=st.sampled_from(["responses", "chat"]),
    last=st.none() | st.from_regex(r"resp_[0-9a-f]{8}", fullmatch=True),
)
def test_json_round_trip(texts: list[str], api: str, last: str | None) -> None:
    """to_json/from_json give back an equal conversation, whatever the text."""
    conversation = Conversation(api=api, last_response_id=last)  # type: ignore[arg-type]
    for text in texts:
        conversation.add_user(text)
    conversation.synced = len(texts) if last else 0
    restored = Conversation.from_json(conversation.to_json())
    assert restored == conversation
    assert restored.items is not conversation.items


def test_from_json_rejects_what_is_not_a_conversation() -> None:
    """Unknown fields and wrong types fail with pydantic's error naming the field."""
    with pytest.raises(pydantic.ValidationError, match="api"):
        Conversation.from_json('{"api": "smtp"}')
    with pytest.raises(pydantic.ValidationError, match="extra"):
        Conversation.from_json('{"transcript": []}')


def test_discard_turn_removes_the_turn_in_progress_only() -> None:
    """discard_turn removes what add_user/add_tool_output added since the last completed
    turn; items placed directly before it, and completed turns, stay."""
    conversation = Conversation(api="chat")
    conversation.items.append({"role": "system", "content": "be brief"})
    conversation.add_user("one")
    assert conversation.turn_start == 1
    conversation.record_chat_message({"role": "assistant", "content": "1"})
    assert conversation.turn_start is None
    conversation.add_user("two")
    conversation.add_user("and three")
    assert conversation.turn_start == 3
    conversation.discard_turn()
    assert [item["content"] for item in conversation.items] == ["be brief", "one", "1"]
    assert conversation.turn_start is None
    conversation.discard_turn()  # nothing in progress: nothing removed
    assert len(conversation.items) == 3


def test_discarded_tool_output_can_be_given_again() -> None:
    """A failed turn that answered a tool call leaves the call pending again."""
    conversation = Conversation()
    conversation.add_user("find x")
    conversation.record_response(sdk_response({"input": "find x", "tools": TOOLS}))
    [call_id] = conversation.pending_call_ids()
    conversation.add_tool_output(call_id, "42")
    assert conversation.pending_call_ids() == []
    conversation.discard_turn()
    assert conversation.pending_call_ids() == [call_id]
    conversation.add_tool_output(call_id, "42")
    assert [i.get("type") for i in conversation.items].count("function_call_output") == 1


def test_turn_in_progress_survives_json() -> None:
    """turn_start is part of the saved conversation."""
    conversation = Conversation()
    conversation.add_user("hi")
    restored = Conversation.from_json(conversation.to_json())
    assert restored.turn_start == 0
    restored.discard_turn()
    assert restored.items == []


def test_pending_tool_calls_cover_every_call_type_the_sanitizer_pairs() -> None:
    """Custom, shell and computer calls and MCP approval requests wait like function calls,
    until the next output of their kind and call_id."""
    conversation = Conversation()
    custom = {"type": "custom_tool_call", "call_id": "c1", "name": "patch", "input": "*** diff"}
    shell = {"type": "shell_call", "call_id": "c2", "action": {"commands": ["ls"]}}
    approval = {"type": "mcp_approval_request", "id": "mcpr_1", "name": "ask"}
    approval |= {"arguments": '{"q": 1}', "server_label": "wiki"}
    conversation.items += [custom, shell, approval]
    pending = conversation.pending_tool_calls()
    assert [(p["type"], p["call_id"], p["name"], p["arguments"]) for p in pending] == [
        ("custom_tool_call", "c1", "patch", "*** diff"),
        ("shell_call", "c2", "", ""),
        ("mcp_approval_request", "mcpr_1", "ask", '{"q": 1}'),
    ]
    assert pending[1]["item"] == shell
    assert pending[1]["item"] is not shell
    conversation.items += [
        {"type": "shell_call_output", "call_id": "c2", "output": []},
        {"type": "mcp_approval_response", "approval_request_id": "mcpr_1", "approve": True},
        {"type": "function_call_output", "call_id": "c1", "output": "wrong kind"},
    ]
    assert conversation.pending_call_ids() == ["c1"]


def test_add_tool_output_answers_a_custom_call_with_its_own_output_type() -> None:
    """A custom tool call is answered by custom_tool_call_output (text), not a function one."""
    conversation = Conversation()
    conversation.items.append(
        {"type": "custom_tool_call", "call_id": "c1", "name": "n"} | {"input": "x"}
    )
    conversation.add_tool_output("c1", "done")
    assert conversation.items[-1] == {
        "type": "custom_tool_call_output",
        "call_id": "c1",
        "output": "done",
    }
    assert conversation.pending_tool_calls() == []


def test_add_tool_output_refuses_a_call_whose_output_is_not_text() -> None:
    """A shell call's output is a list of chunks: the caller appends that item itself."""
    conversation = Conversation()
    conversation.items.append({"type": "shell_call", "call_id": "c2", "action": {"commands": []}})
    with pytest.raises(InvalidConversationError, match="is a shell_call, whose output is not text"):
        conversation.add_tool_output("c2", "x")
    assert len(conversation.items) == 1


def test_a_call_id_reused_by_a_later_turn_is_pending_again() -> None:
    """call_0 answered in turn one and sent again in turn two waits for its new output."""
    conversation = Conversation()
    call = {"type": "function_call", "call_id": "call_0", "name": "f", "arguments": "{}"}
    conversation.items += [
        call,
        {"type": "function_call_output", "call_id": "call_0"} | {"output": "1"},
    ]
    assert conversation.pending_call_ids() == []
    conversation.items.append(dict(call))
    assert conversation.pending_call_ids() == ["call_0"]
    conversation.add_tool_output("call_0", "2")
    assert conversation.pending_call_ids() == []


def test_add_assistant_ends_the_turn_with_the_callers_text() -> None:
    """A stopped turn keeps its input and the partial reply: the turn is no longer pending
    (a later discard_turn removes nothing), and the message has no id (portable)."""
    responses, chat = Conversation(), Conversation(api="chat")
    for conversation in (responses, chat):
        conversation.add_user("hi")
        conversation.add_assistant("Hel")
        conversation.discard_turn()
        assert conversation.turn_start is None
    assert responses.items[1] == {"type": "message", "role": "assistant", "content": "Hel"}
    assert chat.items[1] == {"role": "assistant", "content": "Hel"}
    assert len(responses.items) == len(chat.items) == 2


def test_empty_assistant_message_is_refused() -> None:
    """An empty assistant message is a mistake: ValueError naming the method."""
    with pytest.raises(ValueError, match="add_assistant"):
        Conversation().add_assistant("")
