"""ConversationSanitizer rules, one behaviour per test (docs/sanitizer.md)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from openai.types.chat import ChatCompletionMessage
from openai.types.chat.chat_completion_message_function_tool_call import (
    ChatCompletionMessageFunctionToolCall,
    Function,
)
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseReasoningItem,
)
from openai.types.responses.response_output_text import ResponseOutputText
from openai.types.responses.response_reasoning_item import Summary

from llmpool._constants import SANITIZER_STRIP_FIELDS
from llmpool._errors import CompactionBudgetError, InvalidConversationError, LLMPoolError
from llmpool._sanitizer import ConversationSanitizer
from llmpool._tokens import estimate_tokens

PORTABLE = ConversationSanitizer()
SAME_STORE = ConversationSanitizer(portable=False)


def fc(call_id: str, *, item_id: str | None = None, kind: str = "function_call") -> dict[str, Any]:
    item: dict[str, Any] = {"type": kind, "call_id": call_id, "name": "lookup", "arguments": "{}"}
    if item_id is not None:
        item["id"] = item_id
    return item


def out(call_id: str, output: str = "42", kind: str = "function_call_output") -> dict[str, Any]:
    return {"type": kind, "call_id": call_id, "output": output}


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def reasoning(item_id: str = "rs_1", encrypted: str | None = "gAAA") -> dict[str, Any]:
    item: dict[str, Any] = {"type": "reasoning", "id": item_id, "summary": []}
    if encrypted is not None:
        item["encrypted_content"] = encrypted
    return item


# -- Responses: ids and bookkeeping ---------------------------------------------------------


def test_portable_mode_sends_no_item_id_at_all() -> None:
    """Portable mode removes every item id (rs_, msg_, fc_, ws_…): never a mix (Codex CLI)."""
    items = [
        {"type": "message", "role": "user", "content": "hi", "id": "msg_u"},
        reasoning("rs_1"),
        fc("call_1", item_id="fc_1"),
        out("call_1"),
        {
            "type": "web_search_call",
            "id": "ws_1",
            "status": "completed",
            "action": {"type": "search", "query": "q"},
        },
    ]
    result = PORTABLE.responses_input(items)
    assert len(result) == 5
    assert all("id" not in item for item in result)


def test_same_store_mode_keeps_every_id() -> None:
    """portable=False keeps ids and reasoning as they are (a same-store continuation)."""
    items = [reasoning("rs_1", encrypted=None), fc("call_1", item_id="fc_1"), out("call_1")]
    result = SAME_STORE.responses_input(items)
    assert [item.get("id") for item in result] == ["rs_1", "fc_1", None]


@pytest.mark.parametrize(
    "field", sorted(SANITIZER_STRIP_FIELDS - {"annotations", "index", "status"}), ids=str
)
def test_bookkeeping_is_stripped_from_items(field: str) -> None:
    """Each default strip field is removed from an item whose schema does not declare it."""
    item = {**fc("call_1"), field: "x"}
    result = PORTABLE.responses_input([item, out("call_1")])
    assert field not in result[0]
    assert result[0] == fc("call_1")


def test_declared_status_is_kept() -> None:
    """``status`` is a declared (optional) field of function_call: not bookkeeping there."""
    item = {**fc("call_1"), "status": "completed"}
    assert PORTABLE.responses_input([item, out("call_1")])[0] == item


def test_required_status_is_kept() -> None:
    """``status`` stays where the input schema requires it (apply_patch_call_output)."""
    items = [
        {
            "type": "apply_patch_call",
            "call_id": "c",
            "status": "completed",
            "operation": {"type": "delete_file", "path": "a"},
        },
        {"type": "apply_patch_call_output", "call_id": "c", "status": "failed"},
    ]
    result = PORTABLE.responses_input(items)
    assert [item["status"] for item in result] == ["completed", "failed"]


def test_nested_bookkeeping_is_stripped_but_declared_fields_stay() -> None:
    """Inside content parts, undeclared ``status``/``model`` go; declared ``annotations`` and
    ``logprobs`` (ResponseOutputTextParam) stay."""
    part = {"type": "output_text", "text": "t", "annotations": [], "logprobs": []}
    message = {
        "type": "message",
        "role": "assistant",
        "id": "msg_1",
        "content": [{**part, "status": "x", "model": "m"}],
    }
    result = PORTABLE.responses_input([message])
    assert result[0]["content"] == [part]


def test_user_json_schema_keys_named_like_bookkeeping_are_untouched() -> None:
    """Opaque values (a tool's JSON schema, an env mapping) are not walked: ``status`` stays."""
    schema = {"type": "object", "properties": {"status": {"type": "string"}, "model": {}}}
    tools = {
        "type": "additional_tools",
        "role": "developer",
        "tools": [{"type": "function", "name": "f", "parameters": schema, "strict": True}],
    }
    result = PORTABLE.responses_input([tools])
    assert result[0]["tools"][0]["parameters"] == schema


def test_null_optional_fields_are_dropped_but_required_nulls_stay() -> None:
    """A null the schema cannot take is "absent"; a required nullable field keeps its null."""
    items = [
        {**fc("c"), "namespace": None, "caller": None},
        out("c"),
        {
            "type": "code_interpreter_call",
            "id": "ci_1",
            "code": None,
            "container_id": "cntr",
            "outputs": None,
            "status": "completed",
        },
    ]
    result = SAME_STORE.responses_input(items)
    assert result[0] == fc("c")
    assert result[2] == {"type": "code_interpreter_call", "id": "ci_1", "code": None} | {
        "container_id": "cntr",
        "outputs": None,
        "status": "completed",
    }


# -- Responses: text and messages -----------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["rs_0123456789abcdef", "msg_abc", "run_1 fc_2 call_3", "resp_9", "", "  \u200b  "],
    ids=["reasoning-id", "message-id", "several-ids", "response-id", "empty", "whitespace"],
)
def test_user_text_shaped_like_an_id_is_kept(text: str) -> None:
    """Every character a user wrote survives, whatever it starts with (seed 001's bug)."""
    items = [user(text), {"role": "user", "content": [{"type": "input_text", "text": text}]}]
    result = PORTABLE.responses_input(items)
    assert result[0]["content"] == text
    assert result[1]["content"][0]["text"] == text


def test_a_str_input_is_one_user_message() -> None:
    """``responses_input("hi")`` is the shorthand the SDK accepts, as one message."""
    assert PORTABLE.responses_input("rs_hi") == [{"role": "user", "content": "rs_hi"}]


def test_assistant_output_message_becomes_portable_input_with_phase() -> None:
    """An SDK ResponseOutputMessage replays as text + phase, without id and status."""
    model = ResponseOutputMessage(
        id="msg_1",
        type="message",
        role="assistant",
        status="completed",
        phase="commentary",
        content=[ResponseOutputText(type="output_text", text="msg_2 hello", annotations=[])],
    )
    assert PORTABLE.responses_input([model]) == [
        {
            "content": [{"annotations": [], "text": "msg_2 hello", "type": "output_text"}],
            "role": "assistant",
            "type": "message",
            "phase": "commentary",
        }
    ]


def test_sdk_models_are_accepted_and_dumped_by_alias() -> None:
    """SDK models convert to dicts; ``async_`` is sent under its wire name ``async``."""
    call = ResponseFunctionToolCall.model_validate(
        {"type": "function_call", "call_id": "c", "name": "n", "arguments": "{}"}
        | {"id": "fc_1", "async": True}
    )
    assert call.async_ is True
    result = SAME_STORE.responses_input([call, out("c")])
    assert result[0] == {
        "type": "function_call",
        "call_id": "c",
        "name": "n",
        "arguments": "{}",
        "id": "fc_1",
        "async": True,
    }


# -- Responses: reasoning and references ----------------------------------------------------


def test_reasoning_without_encrypted_content_is_dropped_in_portable_mode() -> None:
    """Only ``encrypted_content`` carries reasoning to another store (store=false guide)."""
    items = [user("q"), reasoning(encrypted=None), {"role": "assistant", "content": "a"}]
    assert PORTABLE.responses_input(items) == [user("q"), {"role": "assistant", "content": "a"}]


def test_reasoning_with_encrypted_content_is_kept_without_id() -> None:
    """Encrypted reasoning travels without its rs_ id."""
    model = ResponseReasoningItem(
        id="rs_1",
        type="reasoning",
        summary=[Summary(type="summary_text", text="s")],
        encrypted_content="gAAA",
        status="completed",
    )
    result = PORTABLE.responses_input([model, {"role": "assistant", "content": "a"}])
    assert result[0] == {
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": "s"}],
        "encrypted_content": "gAAA",
        "status": "completed",  # declared by ResponseReasoningItemParam
    }


@pytest.mark.parametrize("portable", [True, False], ids=["portable", "same-store"])
def test_another_organization_drops_reasoning_and_compaction(portable: bool) -> None:
    """Encrypted content is bound to its organisation (openai-agents-python#2063)."""
    sanitizer = ConversationSanitizer(portable=portable, same_organization=False)
    items = [
        {"type": "compaction", "encrypted_content": "gAAA"},
        reasoning(),
        {"role": "assistant", "content": "a"},
    ]
    assert sanitizer.responses_input(items) == [{"role": "assistant", "content": "a"}]


def test_item_references_are_dropped_in_portable_mode_only() -> None:
    """An item_reference names server state: useless in another store, kept in the same one."""
    items = [{"type": "item_reference", "id": "msg_1"}, {"id": "msg_2"}, user("q")]
    assert PORTABLE.responses_input(items) == [user("q")]
    assert [item["type"] for item in SAME_STORE.responses_input(items)[:2]] == [
        "item_reference"
    ] * 2


# -- Responses: pairing ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call_type", "output_type"),
    [
        ("function_call", "function_call_output"),
        ("custom_tool_call", "custom_tool_call_output"),
        ("shell_call", "shell_call_output"),
        ("computer_call", "computer_call_output"),
        ("future_tool_call", "future_tool_call_output"),
    ],
    ids=["function", "custom", "shell", "computer", "unknown-type"],
)
def test_orphan_output_is_dropped(call_type: str, output_type: str) -> None:
    """An output whose call is not in the input is dropped (the API answers 400)."""
    items = [user("q"), out("call_gone", kind=output_type), fc("call_1", kind=call_type)]
    items.append(out("call_1", kind=output_type))
    result = SAME_STORE.responses_input(items)  # portable mode drops computer calls
    assert [item.get("call_id") for item in result] == [None, "call_1", "call_1"]


def test_unanswered_call_is_dropped_with_its_reasoning() -> None:
    """A call without output goes, and the reasoning item that preceded it goes with it."""
    items = [user("q"), reasoning("rs_1"), fc("call_1"), reasoning("rs_2"), fc("call_2")]
    items.append(out("call_2"))
    result = SAME_STORE.responses_input(items)
    assert [item.get("id") or item.get("call_id") for item in result[1:]] == [
        "rs_2",
        "call_2",
        "call_2",
    ]


def test_output_of_another_tool_type_does_not_answer_a_call() -> None:
    """A custom_tool_call_output does not answer a function_call with the same call_id."""
    items = [fc("c"), out("c", kind="custom_tool_call_output"), user("q")]
    assert PORTABLE.responses_input(items) == [user("q")]


def test_output_before_its_call_is_an_orphan() -> None:
    """Order matters: an output that precedes its call answers nothing; both go."""
    assert PORTABLE.responses_input([out("c"), fc("c"), user("q")]) == [user("q")]


def test_duplicate_outputs_keep_the_first() -> None:
    """One call, two outputs: the first answer stays, the second is dropped."""
    result = PORTABLE.responses_input([fc("c"), out("c", "first"), out("c", "second")])
    assert [item.get("output") for item in result] == [None, "first"]


def test_a_call_id_reused_by_a_later_turn_keeps_both_pairs() -> None:
    """Servers that number calls per response send call_0 again next turn: the second call,
    its output and the answer after it are kept (pairing in sequence)."""
    items = [
        user("Paris?"),
        fc("call_0"),
        out("call_0", "18 C"),
        {"role": "assistant", "content": "18 C."},
        user("Lyon?"),
        fc("call_0"),
        out("call_0", "16 C"),
        {"role": "assistant", "content": "16 C."},
    ]
    assert PORTABLE.responses_input(items) == items


def test_previous_response_id_keeps_output_of_a_server_held_call() -> None:
    """With previous_response_id the server holds the call: its output is not "repaired"."""
    items = [out("call_on_server")]
    assert PORTABLE.responses_input(items, previous_response_id="resp_1") == items
    assert PORTABLE.responses_input(items) == []


def test_local_shell_output_pairs_by_id_and_keeps_it() -> None:
    """local_shell_call_output names its call in ``id`` (SDK): kept as the pairing key."""
    call = {
        "type": "local_shell_call",
        "id": "lsh_1",
        "call_id": "call_1",
        "status": "completed",
        "action": {"type": "exec", "command": ["ls"], "env": {}},
    }
    output = {"type": "local_shell_call_output", "id": "call_1", "output": "a"}
    result = PORTABLE.responses_input([call, output])
    assert "id" not in result[0]
    assert result[1] == output


def test_mcp_approval_pair_is_dropped_in_portable_mode() -> None:
    """An approval is answered by the request's server id: it cannot travel without it."""
    items = [
        {
            "type": "mcp_approval_request",
            "id": "mcpr_1",
            "arguments": "{}",
            "name": "n",
            "server_label": "s",
        },
        {"type": "mcp_approval_response", "approval_request_id": "mcpr_1", "approve": True},
        user("q"),
    ]
    assert PORTABLE.responses_input(items) == [user("q")]
    assert len(SAME_STORE.responses_input(items)) == 3


# -- Responses: errors and purity -----------------------------------------------------------


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([user("q"), 3], "item 1: expected a mapping or an SDK model, got int"),
        ([None], "item 0: expected a mapping or an SDK model, got NoneType"),
        ([{"content": "x"}], "item 0: a mapping with neither 'type' nor 'role'"),
        ([{"type": 7}], "item 0: 'type' must be a string, got 7"),
        ([{"role": "tool", "content": "x"}], "item 0: message with an unknown role 'tool'"),
        (
            [{"role": "user"}],
            "item 0: user message 'content' must be a str or a list, got NoneType",
        ),
        ([{"type": "function_call", "name": "f"}], "item 0: function_call without a string"),
        ({"role": "user", "content": "x"}, "expected a list of items or messages, got dict"),
        (5, "expected a list of items or messages, got int"),
    ],
    ids=[
        "int",
        "none",
        "no-type",
        "type-int",
        "bad-role",
        "no-content",
        "no-call-id",
        "dict",
        "int-arg",
    ],
)
def test_unreadable_input_raises_a_clear_value_error(items: Any, message: str) -> None:
    """Junk raises InvalidConversationError (a ValueError) naming the item and the reason."""
    with pytest.raises(InvalidConversationError, match="^" + message.replace("(", r"\(")) as info:
        PORTABLE.responses_input(items)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, LLMPoolError)


def test_unknown_item_types_pass_through_without_id_and_bookkeeping() -> None:
    """A type this SDK does not know is forwarded (forward compatibility), minus id/status."""
    item = {"type": "hologram", "id": "hg_1", "status": "completed", "payload": {"status": 1}}
    assert PORTABLE.responses_input([item]) == [{"type": "hologram", "payload": {"status": 1}}]


def test_input_is_never_mutated() -> None:
    """The sanitizer builds new dicts: the caller's list and items are unchanged."""
    items = [user("q"), reasoning(), fc("c", item_id="fc_1"), out("c"), out("orphan")]
    before = copy.deepcopy(items)
    result = PORTABLE.responses_input(items)
    result[0]["content"] = "changed"
    assert items == before


@pytest.mark.parametrize("bad", [["content"], ["id"], "status"], ids=["content", "id", "str"])
def test_strip_fields_may_not_name_content_or_links(bad: Any) -> None:
    """Misuse fails at once: protected names and a bare str are refused."""
    with pytest.raises(ValueError, match="strip_fields"):
        ConversationSanitizer(strip_fields=bad)


def test_custom_strip_fields_replace_the_default_set() -> None:
    """strip_fields=[…] is the whole set: ``status`` is then kept, ``trace`` removed."""
    sanitizer = ConversationSanitizer(strip_fields=["trace"])
    result = sanitizer.responses_input([{**user("q"), "trace": 1, "status": "completed"}])
    assert result == [{**user("q"), "status": "completed"}]


# -- Chat Completions -----------------------------------------------------------------------


def assistant_calls(*ids: str) -> dict[str, Any]:
    calls = [
        {"id": i, "type": "function", "function": {"name": "f", "arguments": "{}"}} for i in ids
    ]
    return {"role": "assistant", "content": None, "tool_calls": calls}


def tool(call_id: str, text: str = "r") -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def test_chat_model_is_converted_and_provider_fields_removed() -> None:
    """A ChatCompletionMessage loses annotations, nulls and provider extras; content stays."""
    model = ChatCompletionMessage.model_validate(
        {
            "role": "assistant",
            "content": "call_1 answer",
            "refusal": None,
            "annotations": [],
            "reasoning_content": "thinking",
        }
    )
    assert PORTABLE.chat_messages([user("q"), model]) == [
        user("q"),
        {"role": "assistant", "content": "call_1 answer"},
    ]


def test_chat_unanswered_tool_call_is_removed_from_its_message() -> None:
    """A tool_calls entry without a ``tool`` answer goes; the answered one stays."""
    messages = [user("q"), assistant_calls("a", "b"), tool("b")]
    result = PORTABLE.chat_messages(messages)
    assert [call["id"] for call in result[1]["tool_calls"]] == ["b"]
    assert result[2] == tool("b")


def test_chat_assistant_left_empty_is_dropped() -> None:
    """An assistant message whose only calls were unanswered has nothing left to send."""
    assert PORTABLE.chat_messages([user("q"), assistant_calls("a"), user("again")]) == [
        user("q"),
        user("again"),
    ]


def test_chat_orphan_tool_message_is_dropped() -> None:
    """A ``tool`` message not directly after the call it answers is an orphan."""
    messages = [user("q"), tool("x"), assistant_calls("a"), user("u"), tool("a")]
    assert PORTABLE.chat_messages(messages) == [user("q"), user("u")]


def test_chat_sdk_tool_call_models_are_accepted() -> None:
    """ChatCompletionMessage with SDK tool-call models converts to the param shape."""
    call = ChatCompletionMessageFunctionToolCall(
        id="call_1", type="function", function=Function(name="f", arguments="{}")
    )
    model = ChatCompletionMessage(role="assistant", content=None, tool_calls=[call])
    result = PORTABLE.chat_messages([model, tool("call_1")])
    assert result[0] == {
        "role": "assistant",
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ],
    }


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        (["hi"], "item 0: expected a mapping or an SDK model, got str"),
        ([{"content": "x"}], "item 0: message with an unknown role None"),
        (
            [{"role": "tool", "content": "x"}],
            "item 0: tool message without a string 'tool_call_id'",
        ),
        ([{"role": "assistant", "tool_calls": [1]}], "item 0: each 'tool_calls' entry"),
        ("hi", "expected a list of items or messages, got str"),
    ],
    ids=["str-item", "no-role", "tool-no-id", "junk-call", "str-arg"],
)
def test_chat_unreadable_input_raises(messages: Any, message: str) -> None:
    """Chat junk raises InvalidConversationError naming the message."""
    with pytest.raises(InvalidConversationError, match="^" + message):
        PORTABLE.chat_messages(messages)


# -- Compaction -----------------------------------------------------------------------------


def history() -> list[dict[str, Any]]:
    return [
        {"role": "developer", "content": "rules"},
        user("first"),
        reasoning("rs_1"),
        fc("c1"),
        out("c1"),
        {"role": "assistant", "content": "one"},
        user("second"),
        fc("c2"),
        fc("c3"),
        out("c2"),
        out("c3"),
    ]


def test_compact_without_budget_keeps_instructions_and_latest_turn() -> None:
    """No budget: instructions + the latest user message + its whole turn."""
    result = PORTABLE.compact_responses_input(history())
    assert result == [history()[0], user("second"), fc("c2"), fc("c3"), out("c2"), out("c3")]


def test_compact_keeps_whole_tool_groups_within_max_items() -> None:
    """A parallel-call group (4 items) does not fit in 3 spare items: it goes whole."""
    result = PORTABLE.compact_responses_input(history(), max_items=5)
    assert result == [history()[0], user("second")]
    result = PORTABLE.compact_responses_input(history(), max_items=6)
    assert result == [history()[0], user("second"), fc("c2"), fc("c3"), out("c2"), out("c3")]


def test_compact_adds_older_history_newest_first_within_max_tokens() -> None:
    """A token budget admits older units newest first, reasoning with its call."""
    everything = PORTABLE.responses_input(history())
    budget = estimate_tokens(everything)
    assert PORTABLE.compact_responses_input(history(), max_tokens=budget) == everything
    result = PORTABLE.compact_responses_input(history(), max_tokens=budget - 1)
    assert result[0] == history()[0]
    assert estimate_tokens(result) <= budget - 1
    assert user("first") not in result


def test_compact_budget_below_the_mandatory_items_raises() -> None:
    """Instructions + latest user message are never dropped: a smaller budget is an error."""
    with pytest.raises(CompactionBudgetError, match="max_items=1"):
        PORTABLE.compact_responses_input(history(), max_items=1)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True], ids=["zero", "negative", "float", "bool"])
def test_compact_rejects_a_non_positive_budget(bad: Any) -> None:
    """max_items must be a positive int."""
    with pytest.raises(ValueError, match="max_items"):
        PORTABLE.compact_responses_input(history(), max_items=bad)


def test_compact_chat_keeps_tool_groups_whole() -> None:
    """Chat compaction keeps the system message, latest user message and whole groups."""
    messages = [
        {"role": "system", "content": "s"},
        user("a"),
        assistant_calls("x", "y"),
        tool("x"),
        tool("y"),
        user("b"),
        assistant_calls("z"),
        tool("z"),
    ]
    result = PORTABLE.compact_chat_messages(messages, max_items=4)
    assert [m["role"] for m in result] == ["system", "user", "assistant", "tool"]
    assert result[1] == user("b")
    assert PORTABLE.compact_chat_messages(messages, max_items=3) == [messages[0], user("b")]
