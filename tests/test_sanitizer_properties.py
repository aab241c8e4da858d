"""Hypothesis properties of ConversationSanitizer over generated (and hostile) conversations.

Generated items have the shapes the API returns: every field their SDK input TypedDict
requires, realistic values in declared fields, bookkeeping only in fields the type does not
declare. So every output item is validated against its SDK type for real (``assert_sdk_shape``),
with only the documented exceptions of ``PORTABLE_MISSING`` / ``SAME_STORE_EXTRA``
(docs/sanitizer.md, "Exceptions to the SDK types").
"""

from __future__ import annotations

import copy
import typing
from collections.abc import Iterator
from functools import cache
from typing import Any

import pytest
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

# -- the SDK types and the documented exceptions -------------------------------------------------


@cache
def adapter(schema: object) -> TypeAdapter[Any]:
    return TypeAdapter(schema)


@cache
def hints_of(schema: type) -> dict[str, Any]:
    return typing.get_type_hints(schema)


@cache
def required(schema: type) -> frozenset[str]:
    hints = typing.get_type_hints(schema, include_extras=True)
    return frozenset(k for k, v in hints.items() if typing.get_origin(v) is typing.Required)


def literal(hint: object) -> str | None:
    """The one string of ``Literal["x"]`` or ``Optional[Literal["x"]]``, if any."""
    args = typing.get_args(hint)
    values = [v for a in args for v in (a, *typing.get_args(a)) if isinstance(v, str)]
    return values[0] if len(values) == 1 else None


SCHEMAS = {
    literal(hints_of(m)["type"]): m
    for m in typing.get_args(ResponseInputItemParam)
    if m.__name__ not in {"EasyInputMessageParam", "Message", "ResponseOutputMessageParam"}
}

# Required fields the portable form leaves out, with the source that the API takes it so.
PORTABLE_MISSING: dict[str, frozenset[str]] = {
    # openai/codex codex-rs/protocol/src/models.rs: ``#[serde(skip_serializing)] id``
    "reasoning": frozenset({"id"}),
    "assistant-message": frozenset({"id", "status"}),
    "web_search_call": frozenset({"id"}),
    "local_shell_call": frozenset({"id"}),
}
# Keys same-store mode sends that the SDK type does not declare, with the source.
SAME_STORE_EXTRA: dict[str, frozenset[str]] = {
    # Wei-Shaw/sub2api#4003: the API reads a replayed message's id ("Expected an ID that
    # begins with 'msg'"); the SDK's input message types have no ``id``.
    "message": frozenset({"id"}),
}


def schema_of(item: dict[str, Any]) -> tuple[type, str]:
    """The SDK input type of an output item, and its name in the exception tables."""
    if "role" in item and item.get("type", "message") == "message":
        if not isinstance(item["content"], list):
            return EasyInputMessageParam, "message"
        if item["role"] == "assistant":
            return ResponseOutputMessageParam, "assistant-message"
        return Message, "message"
    return SCHEMAS[item["type"]], item["type"]


def consume(value: object) -> object:
    """Run pydantic's lazy validators (Iterable fields validate when iterated)."""
    if isinstance(value, dict):
        return {k: consume(v) for k, v in value.items()}
    if isinstance(value, list | Iterator):
        return [consume(v) for v in value]
    return value


def undeclared(value: object, hint: object, path: str = "") -> Iterator[str]:
    """Paths of strip-list keys in ``value`` that the type at that depth does not declare."""
    if typing_extensions.is_typeddict(hint) and isinstance(value, dict):
        hints = hints_of(typing.cast(type, hint))
        for key, item in value.items():
            if key in hints:
                yield from undeclared(item, hints[key], f"{path}.{key}")
            elif key in SANITIZER_STRIP_FIELDS:
                yield f"{path}.{key}"
        return
    args = typing.get_args(hint)
    if isinstance(value, list) and typing.get_origin(hint) in (list, typing.Iterable):
        for n, item in enumerate(value):
            yield from undeclared(item, args[0], f"{path}[{n}]")
    elif typing.get_origin(hint) is typing.Union:
        members = [m for m in args if typing_extensions.is_typeddict(m)]
        if isinstance(value, dict):
            named = [m for m in members if literal(hints_of(m).get("type")) == value.get("type")]
            for member in named if len(named) == 1 else members if len(members) == 1 else []:
                yield from undeclared(value, member, path)
        else:
            for member in args:
                if typing.get_origin(member) in (list, typing.Iterable):
                    yield from undeclared(value, member, path)


def assert_sdk_shape(item: dict[str, Any], *, portable: bool) -> None:
    """Validate an output item against its SDK input TypedDict, with the documented
    exceptions only: no placeholder, no undeclared key, no undeclared bookkeeping at any depth.
    """
    schema, name = schema_of(item)
    body = {k: v for k, v in item.items() if k != SRC}
    hints = hints_of(schema)
    allowed_extra = frozenset() if portable else SAME_STORE_EXTRA.get(name, frozenset())
    assert set(body) <= set(hints) | allowed_extra, set(body) - set(hints)
    missing = PORTABLE_MISSING.get(name, frozenset()) if portable else frozenset()
    assert not missing & set(body), f"the portable {name} must not carry {missing & set(body)}"
    assert required(schema) - missing <= set(body), required(schema) - set(body)
    if missing:  # validate every field it has, against its annotation
        for key, value in body.items():
            if key in hints:
                consume(adapter(hints[key]).validate_python(value))
    else:
        consume(adapter(schema).validate_python({k: v for k, v in body.items() if k in hints}))
    assert not list(undeclared(body, schema))


# -- generated conversations ---------------------------------------------------------------------

ids = st.builds(
    str.__add__,
    st.sampled_from(["rs_", "msg_", "fc_", "call_", "ws_", "run_", "resp_", ""]),
    st.text("abcdef0123456789", min_size=1, max_size=8),
)
texts = st.one_of(st.text(max_size=20), ids)
junk = st.one_of(st.none(), st.integers(), st.text(max_size=5))


@st.composite
def bookkeeping(draw: st.DrawFn, schema: type | None) -> dict[str, Any]:
    """Strip-list fields the item's type does not declare, with junk values."""
    declared = set(hints_of(schema)) if schema is not None else set()
    names = sorted(SANITIZER_STRIP_FIELDS - declared - {"annotations"})
    return draw(st.dictionaries(st.sampled_from(names), junk, max_size=3))


CALL_TYPES = {
    "function_call": lambda: {"name": "f", "arguments": '{"a": 1}'},
    "custom_tool_call": lambda: {"name": "g", "input": "rs_raw input"},
    "shell_call": lambda: {"action": {"commands": ["ls"]}},
    "local_shell_call": lambda: {
        "status": "completed",
        "action": {"type": "exec", "command": ["ls"], "env": {"status": "x"}},
    },
    "computer_call": lambda: {
        "status": "completed",
        "pending_safety_checks": [],
        "action": {"type": "click", "button": "left", "x": 1, "y": 2},
    },
}
OUTPUT_EXTRA = {
    "function_call": {"output": "42"},
    "custom_tool_call": {"output": "ok"},
    "shell_call": {"output": []},
    "local_shell_call": {"output": "a.txt"},
    "computer_call": {"output": {"type": "computer_screenshot", "image_url": "data:,"}},
}
HOSTED = {
    "file_search_call": lambda t: {"status": "completed", "queries": [t], "results": []},
    "code_interpreter_call": lambda t: {
        "status": "completed",
        "code": t,
        "container_id": "cntr",
        "outputs": [{"type": "logs", "logs": t}],
    },
    "image_generation_call": lambda t: {"status": "completed", "result": "iVBO", "size": "auto"},
    "mcp_list_tools": lambda t: {
        "server_label": "s",
        "tools": [
            {"name": "n", "input_schema": {"properties": {"model": {}}}, "annotations": {"t": t}}
        ],
    },
    "mcp_call": lambda t: {
        "server_label": "s",
        "name": "n",
        "arguments": "{}",
        "output": t,
        "status": "completed",
    },
}


def output_item(tool: str, call_id: str) -> dict[str, Any]:
    kind = tool + "_output"
    link = {"id": call_id} if tool == "local_shell_call" else {"call_id": call_id}
    return {"type": kind, **link, **OUTPUT_EXTRA[tool]}


@st.composite
def segments(draw: st.DrawFn, call_id: str) -> list[dict[str, Any]]:
    """One conversation piece: a message, reasoning, a tool group, a hosted item, a stray."""
    kind = draw(
        st.sampled_from(
            [
                *("user", "user-parts", "system", "assistant", "assistant-text", "reasoning"),
                *("group", "group", "orphan", "unanswered", "reference", "web", "unknown"),
                *("hosted", "approval", "deep"),
            ]
        )
    )
    lead: list[dict[str, Any]] = []
    led = {"group", "orphan", "unanswered", "web", "hosted", "approval", "reference"}
    if kind in led and draw(st.booleans()):  # reasoning before the item, as the model emits it
        lead = [{"type": "reasoning", "id": draw(ids), "summary": [], "encrypted_content": "e"}]
    if kind == "user":
        return [
            {"role": "user", "content": draw(texts), **draw(bookkeeping(EasyInputMessageParam))}
        ]
    if kind == "user-parts":
        parts = [{"type": "input_text", "text": t} for t in draw(st.lists(texts, max_size=3))]
        item = {"type": "message", "role": "user", "content": parts, "id": draw(ids)}
        return [{**item, "status": "completed", **draw(bookkeeping(Message))}]
    if kind == "system":
        role = draw(st.sampled_from(["system", "developer"]))
        return [{"role": role, "content": draw(texts), **draw(bookkeeping(EasyInputMessageParam))}]
    if kind == "assistant":
        part = {"type": "output_text", "text": draw(texts), "annotations": [], "logprobs": []}
        item = {"type": "message", "role": "assistant", "id": draw(ids), "status": "completed"}
        item["content"] = [part, {"type": "refusal", "refusal": draw(texts)}]
        if draw(st.booleans()):
            item["phase"] = draw(st.sampled_from(["commentary", "final_answer"]))
        return [{**draw(bookkeeping(ResponseOutputMessageParam)), **item}]
    if kind == "assistant-text":
        return [{"role": "assistant", "content": draw(texts), "phase": "commentary"}]
    if kind == "reasoning":
        item = {"type": "reasoning", "id": draw(ids), "summary": [], "status": "completed"}
        if draw(st.booleans()):
            item["encrypted_content"] = draw(st.text(min_size=1, max_size=10))
        return [{**item, **draw(bookkeeping(SCHEMAS["reasoning"]))}]
    if kind in {"group", "orphan", "unanswered"}:
        tool = draw(st.sampled_from(sorted(CALL_TYPES)))
        call = {"type": tool, "call_id": call_id, "id": draw(ids), **CALL_TYPES[tool]()}
        output = {**output_item(tool, call_id), **draw(bookkeeping(SCHEMAS[tool + "_output"]))}
        pieces = {"group": [call, output], "orphan": [output], "unanswered": [call]}
        return lead + pieces[kind]
    if kind == "reference":
        return [*lead, {"type": "item_reference", "id": draw(ids)}]
    if kind == "web":
        action = {"type": "search", "query": draw(texts)}
        web = {"type": "web_search_call", "id": draw(ids), "status": "completed", "action": action}
        return [*lead, web]
    if kind == "hosted":
        tool = draw(st.sampled_from(sorted(HOSTED)))
        item = {"type": tool, "id": draw(ids), **HOSTED[tool](draw(texts))}
        return [*lead, {**item, **draw(bookkeeping(SCHEMAS[tool]))}]
    if kind == "approval":
        request = {"type": "mcp_approval_request", "id": "mcpr_" + call_id, "arguments": "{}"}
        request |= {"name": "n", "server_label": "s"}
        response = {"type": "mcp_approval_response", "approval_request_id": request["id"]}
        return [*lead, request, {**response, "approve": draw(st.booleans())}]
    if kind == "deep":  # an opaque value nested past the schema walk's depth limit
        value: object = draw(texts)
        for _ in range(draw(st.integers(60, 90))):
            value = [value] if draw(st.booleans()) else {"status": value}
        return [{"role": "user", "content": draw(texts), "x_deep": value}]
    return [{"type": "future_item", "id": draw(ids), "payload": {"status": draw(texts)}}]


@st.composite
def conversations(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A Responses conversation: call ids sometimes reused by a later turn (``call_0``…),
    sometimes shuffled (outputs before calls, split groups), sometimes sharing one value."""
    count = draw(st.integers(0, 10))
    reuse = draw(st.booleans())
    items = [item for n in range(count) for item in draw(segments(f"call_{n % 2 if reuse else n}"))]
    if draw(st.integers(0, 4)) == 0:
        items = draw(st.permutations(items))
    items = [{**item, SRC: n} for n, item in enumerate(items)]
    if items and draw(st.booleans()):  # the same (nested) object in several items
        shared: dict[str, Any] = {"status": "kept", "list": [draw(texts)]}
        shared["again"] = [shared["list"], shared["list"]]
        for item in draw(st.lists(st.sampled_from(items), min_size=1, max_size=3)):
            item["x_shared"] = shared
    return items


def by_source(result: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {item[SRC]: item for item in result}


def message_texts(item: dict[str, Any]) -> list[str]:
    content = item.get("content")
    if isinstance(content, str):
        return [content]
    return [p.get("text", p.get("refusal")) for p in content or []]


def pair_key(item: dict[str, Any]) -> tuple[str, str] | None:
    """An independent statement of the pairing key (the SDK's link fields)."""
    kind = item.get("type", "")
    if kind == "mcp_approval_request":
        return ("mcp_approval", item["id"])
    if kind == "mcp_approval_response":
        return ("mcp_approval", item["approval_request_id"])
    link = item.get("call_id", item.get("id") if kind == "local_shell_call_output" else None)
    if link is None:
        return None
    return (kind.removesuffix("_output"), link)


def is_output(item: dict[str, Any]) -> bool:
    return item.get("type", "").endswith("_output") or item.get("type") == "mcp_approval_response"


def assert_pairs_in_sequence(result: list[dict[str, Any]], *, server_calls: bool = False) -> None:
    """Every call is answered by the next output of its key; no output without its call."""
    waiting: set[tuple[str, str]] = set()
    for item in result:
        key = pair_key(item)
        if key is None:
            continue
        if is_output(item):
            assert key in waiting or server_calls, item
            waiting.discard(key)
        else:
            assert key not in waiting, item
            waiting.add(key)
    assert not waiting


@given(conversations())
def test_portable_output_holds_no_server_id(items: list[dict[str, Any]]) -> None:
    """Portable mode: no item id (but the local shell output's link), no reference, no hosted
    item that cannot travel, reasoning only when encrypted."""
    result = PORTABLE.responses_input(items)
    for item in result:
        if item.get("type") != "local_shell_call_output":
            assert "id" not in item
    kinds = {item.get("type") for item in result}
    assert not kinds & {"item_reference", "mcp_approval_request", "computer_call", *HOSTED}
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
def test_calls_and_outputs_stay_paired_in_sequence(
    items: list[dict[str, Any]], portable: bool
) -> None:
    """Calls and outputs pair in sequence, and a call directly followed by its output, with no
    call of its key waiting, is kept whole (unless portable mode drops its type)."""
    sanitizer = PORTABLE if portable else SAME_STORE
    result = sanitizer.responses_input(items)
    # Same store: an item_reference may hold the call an output answers.
    references = not portable and any(i.get("type") == "item_reference" for i in items)
    assert_pairs_in_sequence(result, server_calls=references)
    kept = by_source(result)
    waiting: set[tuple[str, str]] = set()
    for n, item in enumerate(items):
        key = pair_key(item)
        if key is None:
            continue
        if is_output(item):
            waiting.discard(key)
            continue
        follower = items[n + 1] if n + 1 < len(items) else {}
        travels = not portable or item["type"] not in {"computer_call", "mcp_approval_request"}
        if key not in waiting and is_output(follower) and pair_key(follower) == key and travels:
            assert n in kept
            assert n + 1 in kept
        waiting.add(key)


@given(conversations(), st.booleans())
def test_every_reasoning_item_kept_precedes_a_kept_item(
    items: list[dict[str, Any]], portable: bool
) -> None:
    """A kept reasoning item's follower in the input (after its run of reasoning) is kept."""
    sanitizer = PORTABLE if portable else SAME_STORE
    kept = by_source(sanitizer.responses_input(items))
    for n, item in enumerate(items):
        if item.get("type") != "reasoning" or n not in kept:
            continue
        after = [m for m in range(n + 1, len(items)) if items[m].get("type") != "reasoning"]
        assert not after or after[0] in kept


@given(conversations())
def test_previous_response_id_keeps_every_output(items: list[dict[str, Any]]) -> None:
    """With previous_response_id an output without its call answers a server-held call."""
    result = PORTABLE.responses_input(items, previous_response_id="resp_1")
    assert_pairs_in_sequence(result, server_calls=True)
    calls = {pair_key(i) for i in items if pair_key(i) is not None and not is_output(i)}
    for source, item in enumerate(items):
        if is_output(item) and pair_key(item) not in calls:
            assert source in by_source(result)


@given(conversations(), st.booleans(), st.booleans())
def test_sanitizing_is_idempotent(items: list[dict[str, Any]], portable: bool, prev: bool) -> None:
    """Sanitizing twice equals sanitizing once."""
    sanitizer = ConversationSanitizer(portable=portable)
    previous = "resp_1" if prev else None
    once = sanitizer.responses_input(items, previous_response_id=previous)
    assert sanitizer.responses_input(once, previous_response_id=previous) == once


def containers(value: object) -> dict[int, object]:
    """Every dict and list reachable from ``value``, by id (iterative, each once)."""
    found: dict[int, object] = {}
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict | list) and id(node) not in found:
            found[id(node)] = node
            stack.extend(node.values() if isinstance(node, dict) else node)
    return found


@given(conversations(), st.booleans())
def test_the_result_shares_no_container_with_the_input(
    items: list[dict[str, Any]], portable: bool
) -> None:
    """Every dict and list returned is new, at any depth (past the walk's depth limit too),
    and the caller's items are unchanged."""
    before = copy.deepcopy(items)
    result = (PORTABLE if portable else SAME_STORE).responses_input(items)
    assert not containers(items).keys() & containers(result).keys()
    assert items == before
    for source, item in by_source(result).items():
        for key in ("x_deep", "x_shared"):
            if key in items[source]:
                assert item[key] == items[source][key]


@given(conversations(), st.booleans())
def test_output_has_the_sdk_param_shapes(items: list[dict[str, Any]], portable: bool) -> None:
    """Every known item validates against its SDK input type, with the documented exceptions
    only; no undeclared bookkeeping at any depth."""
    sanitizer = PORTABLE if portable else SAME_STORE
    for item in sanitizer.responses_input(items):
        if item.get("type") != "future_item":
            item.pop("x_deep", None)
            item.pop("x_shared", None)
            assert_sdk_shape(item, portable=portable)


@given(conversations(), st.integers(0, 9), st.sampled_from(["self", "parent"]))
def test_a_value_that_contains_itself_is_refused(
    items: list[dict[str, Any]], at: int, shape: str
) -> None:
    """A cycle anywhere in an item raises InvalidConversationError naming that item."""
    if not items:
        return
    index = at % len(items)
    loop: dict[str, Any] = {"status": "x"}
    loop["again"] = loop if shape == "self" else [{"up": loop}]
    items[index]["x_loop"] = loop
    for sanitizer in (PORTABLE, SAME_STORE):
        with pytest.raises(InvalidConversationError, match="contains itself") as info:
            sanitizer.responses_input(items)
        assert info.value.index == index


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
    assert not result or not is_output(result[0])
    assert_pairs_in_sequence(result)
    sources = [item[SRC] for item in result]
    assert sources == sorted(sources)
    for item in full:
        if item.get("role") in {"system", "developer"}:
            assert item in result
    users = [item for item in full if item.get("role") == "user"]
    if users:
        assert users[-1] in result
    assert PORTABLE.responses_input(result) == result


# -- Chat Completions ----------------------------------------------------------------------------


@st.composite
def chat_conversations(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Chat messages: tool calls numbered per message (``call_0``…, so later turns reuse the
    ids), unanswered calls, orphan tool messages, audio replies."""
    messages: list[dict[str, Any]] = []
    for n in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["system", "user", "assistant", "calls", "orphan", "audio"]))
        extra = draw(bookkeeping(None))
        if kind in {"system", "user", "assistant"}:
            messages.append({"role": kind, "content": draw(texts), **extra})
        elif kind == "orphan":
            messages.append({"role": "tool", "tool_call_id": f"gone_{n}", "content": "r"})
        elif kind == "audio":
            audio = {"id": f"audio_{n}", "data": "UklGRg==", "expires_at": 1_700_000_000}
            audio["transcript"] = draw(texts)
            messages.append({"role": "assistant", "content": None, "audio": audio, **extra})
        else:
            prefix = draw(st.sampled_from(["call_", f"call_{n}_"]))
            ids_ = [f"{prefix}{k}" for k in range(draw(st.integers(1, 3)))]
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
    """Each tool message answers a call of the assistant message its run follows, once; each
    call is answered in that run."""
    for n, message in enumerate(result):
        if message["role"] != "assistant":
            continue
        run = []
        for other in result[n + 1 :]:
            if other["role"] != "tool":
                break
            run.append(other["tool_call_id"])
        assert sorted(run) == sorted(c["id"] for c in message.get("tool_calls", []))
    for n, message in enumerate(result):
        if message["role"] == "tool":
            assert result[n - 1]["role"] in {"assistant", "tool"}


def chat_words(message: dict[str, Any]) -> object:
    audio = message.get("audio") or {}
    return message.get("content") or audio.get("transcript")


@given(chat_conversations(), st.booleans())
def test_chat_messages_are_paired_shaped_and_stable(
    messages: list[dict[str, Any]], portable: bool
) -> None:
    """Chat: calls and tool messages paired, every word kept (an audio reply's transcript
    too), SDK shapes, idempotent, no mutation, no shared container."""
    sanitizer = PORTABLE if portable else SAME_STORE
    before = copy.deepcopy(messages)
    result = sanitizer.chat_messages(messages)
    assert messages == before
    assert not containers(messages).keys() & containers(result).keys()
    assert_chat_paired(result)
    assert sanitizer.chat_messages(result) == result
    words_in = [chat_words(m) for m in messages if m["role"] in {"system", "user", "assistant"}]
    words_out = [m.get("content") for m in result if m["role"] != "tool"]
    if portable:
        assert [w for w in words_out if w] == [w for w in words_in if w]
        assert all("audio" not in m for m in result)
    for message in result:
        consume(adapter(CHAT_SCHEMAS[message["role"]]).validate_python(message))
        assert set(message) <= set(hints_of(CHAT_SCHEMAS[message["role"]]))
        assert not SANITIZER_STRIP_FIELDS & set(message)
        assert all("index" not in call for call in message.get("tool_calls", []))
        if not portable and "audio" in message:
            assert set(message["audio"]) == {"id"}


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


def test_the_exception_tables_name_required_fields_only() -> None:
    """Guard: each documented exception is a field its SDK type really requires (an SDK that
    stops requiring it makes the exception obsolete, and this test says so)."""
    named = {"assistant-message": ResponseOutputMessageParam, **SCHEMAS}
    for name, fields in PORTABLE_MISSING.items():
        assert fields <= required(named[name]), name
    for fields in SAME_STORE_EXTRA.values():
        assert not fields & (set(hints_of(Message)) | set(hints_of(EasyInputMessageParam)))
