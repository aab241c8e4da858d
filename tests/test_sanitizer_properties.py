"""Hypothesis properties of ConversationSanitizer over generated (and hostile) conversations."""

from __future__ import annotations

import copy
import typing
from collections.abc import Iterator
from functools import cache
from typing import Any

import typing_extensions
from hypothesis import given
from hypothesis import strategies as st
from openai.types.chat import ChatCompletionMessageParam
from openai.types.responses import ResponseInputItemParam
from openai.types.responses.easy_input_message_param import EasyInputMessageParam
from openai.types.responses.response_input_item_param import Message
from openai.types.responses.response_output_message_param import ResponseOutputMessageParam
from pydantic import TypeAdapter

from llmpool._constants import SANITIZER_STRIP_FIELDS
from llmpool._errors import CompactionBudgetError, InvalidConversationError
from llmpool._sanitizer import ConversationSanitizer
from llmpool._tokens import estimate_tokens

PORTABLE = ConversationSanitizer()
SAME_STORE = ConversationSanitizer(portable=False)
SRC = "x_src"  # an unknown key: passes through, tells which input item an output came from

CALL_TYPES = {
    "function_call": lambda c: {"name": "f", "arguments": '{"a": 1}'},
    "custom_tool_call": lambda c: {"name": "g", "input": "rs_raw input"},
    "shell_call": lambda c: {"action": {"commands": ["ls"]}},
}
OUTPUT_EXTRA = {
    "function_call": {"output": "42"},
    "custom_tool_call": {"output": "ok"},
    "shell_call": {"output": []},
}

ids = st.builds(
    str.__add__,
    st.sampled_from(["rs_", "msg_", "fc_", "call_", "ws_", "run_", "resp_", ""]),
    st.text("abcdef0123456789", min_size=1, max_size=8),
)
texts = st.one_of(st.text(max_size=20), ids)
bookkeeping = st.dictionaries(
    st.sampled_from(sorted(SANITIZER_STRIP_FIELDS - {"annotations"})),
    st.one_of(st.none(), st.integers(), st.text(max_size=5)),
    max_size=3,
)


@st.composite
def segments(draw: st.DrawFn, call_id: str) -> list[dict[str, Any]]:
    """One conversation piece: a message, a reasoning item, a tool group, or a stray item."""
    kind = draw(
        st.sampled_from(
            [
                *("user", "user-parts", "system", "assistant", "assistant-text", "reasoning"),
                *("group", "group", "orphan", "unanswered", "reference", "web", "unknown"),
            ]
        )
    )
    extra = draw(bookkeeping)
    if kind == "user":
        return [{"role": "user", "content": draw(texts), **extra}]
    if kind == "user-parts":
        parts = [{"type": "input_text", "text": t} for t in draw(st.lists(texts, max_size=3))]
        return [{"type": "message", "role": "user", "content": parts, "id": draw(ids), **extra}]
    if kind == "system":
        role = draw(st.sampled_from(["system", "developer"]))
        return [{"role": role, "content": draw(texts), **extra}]
    if kind == "assistant":
        part = {"type": "output_text", "text": draw(texts), "annotations": [], "logprobs": []}
        item = {"type": "message", "role": "assistant", "id": draw(ids), "status": "completed"}
        item["content"] = [part, {"type": "refusal", "refusal": draw(texts)}]
        if draw(st.booleans()):
            item["phase"] = draw(st.sampled_from(["commentary", "final_answer"]))
        return [{**extra, **item}]  # bookkeeping never overrides a required status
    if kind == "assistant-text":
        return [{"role": "assistant", "content": draw(texts), "phase": "commentary"}]
    if kind == "reasoning":
        item = {"type": "reasoning", "id": draw(ids), "summary": [], **extra}
        if draw(st.booleans()):
            item["encrypted_content"] = draw(st.text(min_size=1, max_size=10))
        return [item]
    if kind in {"group", "orphan", "unanswered"}:
        tool = draw(st.sampled_from(sorted(CALL_TYPES)))
        call = {"type": tool, "call_id": call_id, "id": draw(ids), **CALL_TYPES[tool](call_id)}
        output = {"type": tool + "_output", "call_id": call_id, **OUTPUT_EXTRA[tool]}
        pieces = {"group": [call, {**output, **extra}], "orphan": [output], "unanswered": [call]}
        lead = [{"type": "reasoning", "id": draw(ids), "summary": [], "encrypted_content": "e"}]
        return (lead if draw(st.booleans()) else []) + pieces[kind]
    if kind == "reference":
        return [{"type": "item_reference", "id": draw(ids)}]
    if kind == "web":
        action = {"type": "search", "query": draw(texts)}
        return [
            {"type": "web_search_call", "id": draw(ids), "status": "completed", "action": action}
        ]
    return [{"type": "future_item", "id": draw(ids), "payload": {"status": draw(texts)}, **extra}]


@st.composite
def conversations(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A Responses conversation; sometimes shuffled (outputs before calls, split groups)."""
    count = draw(st.integers(0, 10))
    items = [item for n in range(count) for item in draw(segments(f"call_{n}"))]
    if draw(st.integers(0, 4)) == 0:
        items = draw(st.permutations(items))
    return [{**item, SRC: n} for n, item in enumerate(items)]


def by_source(result: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {item[SRC]: item for item in result}


def message_texts(item: dict[str, Any]) -> list[str]:
    content = item.get("content")
    if isinstance(content, str):
        return [content]
    return [p.get("text", p.get("refusal")) for p in content or []]


def pair_key(item: dict[str, Any]) -> tuple[str, str] | None:
    kind = item.get("type", "")
    if kind.endswith("_output"):
        return (kind.removesuffix("_output"), item["call_id"])
    return (kind, item["call_id"]) if "call_id" in item else None


def assert_pairs_intact(result: list[dict[str, Any]], *, server_calls: bool = False) -> None:
    calls = [
        n for n, item in enumerate(result) if "call_id" in item and "_output" not in item["type"]
    ]
    outputs = [n for n, item in enumerate(result) if item.get("type", "").endswith("_output")]
    for n in calls:
        assert any(pair_key(result[m]) == pair_key(result[n]) for m in outputs if m > n)
    for m in outputs:
        answered = any(pair_key(result[n]) == pair_key(result[m]) for n in calls if n < m)
        assert answered or server_calls


@given(conversations())
def test_portable_output_holds_no_server_id(items: list[dict[str, Any]]) -> None:
    """Portable mode: no item id at all, no item_reference, reasoning only when encrypted."""
    result = PORTABLE.responses_input(items)
    assert all("id" not in item for item in result)
    assert all(item.get("type") != "item_reference" for item in result)
    assert all(item.get("encrypted_content") for item in result if item.get("type") == "reasoning")


@given(conversations())
def test_same_store_output_keeps_every_id(items: list[dict[str, Any]]) -> None:
    """portable=False never drops an id from a kept item: never a mix."""
    for source, item in by_source(SAME_STORE.responses_input(items)).items():
        assert item.get("id") == items[source].get("id")


@given(conversations(), st.booleans())
def test_messages_and_their_text_are_kept_character_for_character(
    items: list[dict[str, Any]], portable: bool
) -> None:
    """Every user/system/assistant message survives with every character of its text."""
    sanitizer = PORTABLE if portable else SAME_STORE
    kept = by_source(sanitizer.responses_input(items))
    for source, item in enumerate(items):
        if "role" in item:
            assert message_texts(kept[source]) == message_texts(item)
            assert kept[source].get("phase") == item.get("phase")


@given(conversations(), st.booleans())
def test_calls_and_outputs_stay_paired(items: list[dict[str, Any]], portable: bool) -> None:
    """Every output has its call before it and every call its output; whole pairs survive."""
    sanitizer = PORTABLE if portable else SAME_STORE
    result = sanitizer.responses_input(items)
    # Same store: an item_reference may hold the call an output answers.
    references = not portable and any(i.get("type") == "item_reference" for i in items)
    assert_pairs_intact(result, server_calls=references)
    kept = by_source(result)
    for n, item in enumerate(items[:-1]):  # an in-order, unique pair is never dropped
        follower = items[n + 1]
        same = [i for i in items if i.get("call_id") == item.get("call_id")]
        in_order = "_output" not in item.get("type", "") and "_output" in follower.get("type", "")
        if in_order and follower.get("call_id") == item.get("call_id") and len(same) == 2:
            assert n in kept
            assert n + 1 in kept


@given(conversations())
def test_previous_response_id_keeps_every_output(items: list[dict[str, Any]]) -> None:
    """With previous_response_id an output without its call answers a server-held call."""
    result = PORTABLE.responses_input(items, previous_response_id="resp_1")
    assert_pairs_intact(result, server_calls=True)
    calls = {i["call_id"] for i in items if "call_id" in i and "_output" not in i["type"]}
    for source, item in enumerate(items):
        if item.get("type", "").endswith("_output") and item["call_id"] not in calls:
            assert source in by_source(result)


@given(conversations(), st.booleans(), st.booleans())
def test_sanitizing_is_idempotent(items: list[dict[str, Any]], portable: bool, prev: bool) -> None:
    """Sanitizing twice equals sanitizing once."""
    sanitizer = ConversationSanitizer(portable=portable)
    previous = "resp_1" if prev else None
    once = sanitizer.responses_input(items, previous_response_id=previous)
    assert sanitizer.responses_input(once, previous_response_id=previous) == once


@given(conversations())
def test_input_is_not_mutated(items: list[dict[str, Any]]) -> None:
    """The caller's items are unchanged, and the result shares no dict or list with them."""
    before = copy.deepcopy(items)
    result = PORTABLE.responses_input(items)
    for item in result:
        item.clear()
    assert items == before


@cache
def adapter(schema: type) -> TypeAdapter[Any]:
    return TypeAdapter(schema)


@cache
def required(schema: type) -> frozenset[str]:
    hints = typing.get_type_hints(schema, include_extras=True)
    return frozenset(k for k, v in hints.items() if typing.get_origin(v) is typing.Required)


def literal(hint: object) -> str:
    """The one string of ``Literal["x"]`` or ``Optional[Literal["x"]]``."""
    args = typing.get_args(hint)
    return next(v for a in args for v in (a, *typing.get_args(a)) if isinstance(v, str))


SCHEMAS = {
    literal(typing.get_type_hints(m)["type"]): m
    for m in typing.get_args(ResponseInputItemParam)
    if m.__name__ not in {"EasyInputMessageParam", "Message", "ResponseOutputMessageParam"}
}


def consume(value: object) -> object:
    """Run pydantic's lazy validators (Iterable fields validate when iterated)."""
    if isinstance(value, dict):
        return {k: consume(v) for k, v in value.items()}
    if isinstance(value, list | Iterator):
        return [consume(v) for v in value]
    return value


def assert_sdk_shape(item: dict[str, Any]) -> None:
    """Validate against the SDK TypedDict; the portable form only lacks ``id`` (and status)."""
    if "role" in item:
        assistant_list = item["role"] == "assistant" and isinstance(item["content"], list)
        schema = ResponseOutputMessageParam if assistant_list else EasyInputMessageParam
        if item["role"] != "assistant" and isinstance(item["content"], list):
            schema = Message
    else:
        schema = SCHEMAS[item["type"]]
    filled = dict(item)
    if "id" in required(schema):
        filled.setdefault("id", "placeholder")
    if "status" in required(schema):
        filled.setdefault("status", "completed")
    consume(adapter(schema).validate_python(filled))
    for key in SANITIZER_STRIP_FIELDS & set(item):
        assert key in required(schema), key


@given(conversations(), st.booleans())
def test_output_has_the_sdk_param_shapes(items: list[dict[str, Any]], portable: bool) -> None:
    """Every known item validates against its openai SDK param type; bookkeeping is gone."""
    sanitizer = PORTABLE if portable else SAME_STORE
    for item in sanitizer.responses_input(items):
        if item.get("type") != "future_item":
            assert_sdk_shape(item)


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8))
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["type", "role", "content", "id", "call_id", "x"]), inner)
    ),
    max_leaves=10,
)
hostile_item = st.one_of(
    json_value,
    st.fixed_dictionaries(
        {"type": st.sampled_from(["message", "function_call", "reasoning", "zzz"]) | json_leaf},
        optional={
            "role": st.sampled_from(["user", "assistant", "tool"]) | json_leaf,
            "content": json_value,
            "call_id": json_value,
            "id": json_value,
            "summary": json_value,
            "status": json_value,
        },
    ),
)


@given(
    st.lists(st.one_of(hostile_item, conversations().map(lambda c: c[0] if c else {})), max_size=6)
)
def test_hostile_input_raises_only_a_clear_value_error(items: list[Any]) -> None:
    """JSON-like junk either sanitizes or raises InvalidConversationError naming the item."""
    for sanitizer in (PORTABLE, SAME_STORE):
        try:
            once = sanitizer.responses_input(items)
        except InvalidConversationError as exc:
            error = exc
        else:
            assert sanitizer.responses_input(once) == once
            continue
        assert isinstance(error, ValueError)
        assert error.index is not None
        assert 0 <= error.index < len(items)
        assert str(error).startswith(f"item {error.index}: ")


@given(conversations(), st.integers(1, 12), st.integers(20, 400))
def test_compact_stays_valid_and_within_budget(
    items: list[dict[str, Any]], max_items: int, max_tokens: int
) -> None:
    """Compaction keeps instructions and the latest user message, whole groups, the budget."""
    full = PORTABLE.responses_input(items)
    try:
        result = PORTABLE.compact_responses_input(items, max_items=max_items, max_tokens=max_tokens)
    except CompactionBudgetError:
        must = [i for i in full if i.get("role") in {"system", "developer"}]
        users = [i for i in full if i.get("role") == "user"]
        must += users[-1:]
        assert len(must) > max_items or estimate_tokens(must) > max_tokens
        return
    assert len(result) <= max_items
    assert estimate_tokens(result) <= max_tokens
    assert not result or not result[0].get("type", "").endswith("_output")
    assert_pairs_intact(result)
    sources = [item[SRC] for item in result]
    assert sources == sorted(sources)
    for item in full:
        if item.get("role") in {"system", "developer"}:
            assert item in result
    users = [item for item in full if item.get("role") == "user"]
    if users:
        assert users[-1] in result
    assert PORTABLE.responses_input(result) == result


# -- Chat Completions -----------------------------------------------------------------------


@st.composite
def chat_conversations(draw: st.DrawFn) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for n in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["system", "user", "assistant", "calls", "orphan"]))
        extra = draw(bookkeeping)
        if kind in {"system", "user", "assistant"}:
            messages.append({"role": kind, "content": draw(texts), **extra})
        elif kind == "orphan":
            messages.append({"role": "tool", "tool_call_id": f"gone_{n}", "content": "r"})
        else:
            ids_ = [f"call_{n}_{k}" for k in range(draw(st.integers(1, 3)))]
            function = {"name": "f", "arguments": "{}"}
            calls = [{"id": i, "type": "function", "function": function, "index": 0} for i in ids_]
            messages.append({"role": "assistant", "content": None, "tool_calls": calls, **extra})
            answered = draw(st.lists(st.sampled_from(ids_), unique=True))
            messages += [
                {"role": "tool", "tool_call_id": i, "content": draw(texts)} for i in answered
            ]
    return messages


CHAT_SCHEMAS = {
    typing.get_args(typing.get_type_hints(m)["role"])[0]: m
    for m in typing.get_args(ChatCompletionMessageParam)
}


def assert_chat_paired(result: list[dict[str, Any]]) -> None:
    for n, message in enumerate(result):
        if message["role"] == "tool":
            owner = next(m for m in reversed(result[:n]) if m["role"] != "tool")
            assert message["tool_call_id"] in [c["id"] for c in owner.get("tool_calls", [])]
        for call in message.get("tool_calls", []):
            answers = [m for m in result[n + 1 :] if m["role"] == "tool"]
            assert call["id"] in [m["tool_call_id"] for m in answers]


@given(chat_conversations())
def test_chat_messages_are_paired_shaped_and_stable(messages: list[dict[str, Any]]) -> None:
    """Chat: calls and tool messages paired, text kept, SDK shapes, idempotent, no mutation."""
    before = copy.deepcopy(messages)
    result = PORTABLE.chat_messages(messages)
    assert messages == before
    assert_chat_paired(result)
    assert PORTABLE.chat_messages(result) == result
    texts_in = [m["content"] for m in messages if m["role"] in {"system", "user", "assistant"}]
    texts_out = [m.get("content") for m in result if m["role"] != "tool"]
    assert [t for t in texts_out if t is not None] == [t for t in texts_in if t is not None]
    for message in result:
        consume(adapter(CHAT_SCHEMAS[message["role"]]).validate_python(message))
        assert not SANITIZER_STRIP_FIELDS & set(message)
        assert all("index" not in call for call in message.get("tool_calls", []))


@given(chat_conversations(), st.integers(1, 8))
def test_compact_chat_keeps_groups_whole_within_budget(
    messages: list[dict[str, Any]], max_items: int
) -> None:
    """Chat compaction: within max_items, never starts with a tool message, pairs intact."""
    try:
        result = PORTABLE.compact_chat_messages(messages, max_items=max_items)
    except CompactionBudgetError:
        return
    assert len(result) <= max_items
    assert not result or result[0]["role"] != "tool"
    assert_chat_paired(result)


def test_typed_dict_required_keys_are_read_from_hints() -> None:
    """Guard for the helpers above: the SDK's Required[...] is visible through the hints."""
    assert required(ResponseOutputMessageParam) >= {"id", "status", "content", "role", "type"}
    assert typing_extensions.is_typeddict(EasyInputMessageParam)
