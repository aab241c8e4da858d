"""The sanitizer's walk: copies all the way down, each value read once, cycles refused, and
pairing that is linear in the number of items (docs/sanitizer.md, "Copies and cost").

Complexity is asserted by counting, not by the clock: how often each container is iterated,
how many string comparisons pairing makes. A quadratic or exponential walk fails these
counts by orders of magnitude, on any machine.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from openai.types.responses.response_output_text import ResponseOutputText

from llmpool._errors import InvalidConversationError
from llmpool._sanitizer import ConversationSanitizer

PORTABLE = ConversationSanitizer()
SAME_STORE = ConversationSanitizer(portable=False)


READS: dict[int, int] = {}


def read(node: object) -> None:
    """Count a read; a second read of one container fails at once (not after 2**40 reads)."""
    READS[id(node)] = READS.get(id(node), 0) + 1
    if READS[id(node)] > 1:
        raise AssertionError(f"a {type(node).__name__} was read twice: the walk is not linear")


class CountingList(list[Any]):
    """A list that may be iterated once."""

    def __iter__(self) -> Any:
        read(self)
        return super().__iter__()


class CountingDict(dict[str, Any]):
    """A dict whose items may be read once."""

    def items(self) -> Any:
        read(self)
        return super().items()


class Id(str):
    """A string that counts equality comparisons (dict/set lookups compare once, on a hit)."""

    __slots__ = ()
    compared: ClassVar[int] = 0

    def __eq__(self, other: object) -> bool:
        Id.compared += 1
        return str.__eq__(self, other)

    __hash__ = str.__hash__


def containers(value: object) -> dict[int, object]:
    found: dict[int, object] = {}
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict | list) and id(node) not in found:
            found[id(node)] = node
            stack.extend(node.values() if isinstance(node, dict) else node)
    return found


def shared_tower(levels: int) -> tuple[CountingList, list[CountingList]]:
    """``levels`` lists, each holding the one below it twice: 2**levels paths, levels+1 lists."""
    node = CountingList(["leaf"])
    nodes = [node]
    for _ in range(levels):
        node = CountingList([node, node])
        nodes.append(node)
    return node, nodes


@pytest.mark.parametrize(
    ("wrap", "unwrap"),
    [
        (lambda v: {"type": "future_item", "payload": v}, lambda item: item["payload"]),
        (lambda v: {"role": "user", "content": "q", "x": v}, lambda item: item["x"]),
        (
            lambda v: {
                "type": "function_call_output",
                "call_id": "c",
                "output": [{"type": "input_text", "text": "t", "x": v}],
            },
            lambda item: item["output"][0]["x"],
        ),
    ],
    ids=["unknown-item", "unknown-key", "inside-schema-walk"],
)
def test_shared_sub_lists_forty_deep_are_read_once_each(wrap: Any, unwrap: Any) -> None:
    """2**40 paths, 41 lists: each list is iterated once and copied once, and the copy keeps
    the sharing (as copy.deepcopy does)."""
    READS.clear()
    tower, nodes = shared_tower(40)
    call = {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}
    result = SAME_STORE.responses_input([call, wrap(tower)])
    assert [READS.get(id(node)) for node in nodes] == [1] * len(nodes)
    copies = containers(unwrap(result[-1]))  # plain lists: free to read
    assert len(copies) == len(nodes)
    assert not copies.keys() & {id(node) for node in nodes}


def test_a_dict_that_refers_to_itself_twice_is_refused() -> None:
    """The issue's hang: ``d["a"] = d["b"] = d``. Now an error naming the item, at once."""
    READS.clear()
    loop = CountingDict(type="future_item")
    loop["a"] = loop
    loop["b"] = loop
    with pytest.raises(
        InvalidConversationError, match=r"^item 1: a CountingDict contains itself \(a cycle\)"
    ):
        PORTABLE.responses_input([{"role": "user", "content": "q"}, loop])


@pytest.mark.parametrize(
    "item",
    [
        {"role": "user", "content": [{"type": "input_text", "text": "t"}]},
        {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
    ],
    ids=["in-content", "in-a-call"],
)
def test_a_cycle_inside_a_schema_field_is_refused(item: dict[str, Any]) -> None:
    """A list that contains itself where the schema is walked (content parts) is refused."""
    READS.clear()
    parts = CountingList([{"type": "input_text", "text": "t"}])
    parts.append(parts)
    looped = {**item, "content": parts} if "role" in item else {**item, "x": {"y": parts}}
    with pytest.raises(InvalidConversationError, match="contains itself"):
        SAME_STORE.responses_input([looped])


def test_a_chat_message_that_contains_itself_is_refused() -> None:
    """Chat messages go through the same walk."""
    READS.clear()
    content = CountingList([{"type": "text", "text": "t"}])
    content.append(CountingDict(nested=content))
    with pytest.raises(
        InvalidConversationError, match=r"^item 0: a Counting(List|Dict) contains itself"
    ):
        PORTABLE.chat_messages([{"role": "user", "content": content}])


def test_values_nested_deeper_than_any_recursion_limit_are_new() -> None:
    """10,000 levels (past the schema walk's limit and Python's recursion limit): copied
    iteratively, every list new, the leaf intact."""
    deep: list[Any] = ["leaf"]
    for _ in range(10_000):
        deep = [deep]
    [result] = PORTABLE.responses_input([{"role": "user", "content": "q", "x_extra": deep}])
    copied = result["x_extra"]
    assert not containers(copied).keys() & containers(deep).keys()
    for _ in range(10_000):
        assert len(copied) == 1
        copied = copied[0]
    assert copied == ["leaf"]


def test_a_value_shared_by_two_items_is_copied_once() -> None:
    """The same dict in two items: both outputs hold one new copy (identity kept, as in
    copy.deepcopy), never the caller's dict."""
    shared = {"k": ["v"]}
    items = [
        {"role": "user", "content": "a", "x": shared},
        {"role": "user", "content": "b", "x": shared},
    ]
    first, second = PORTABLE.responses_input(items)
    assert first["x"] is second["x"]
    assert first["x"] == shared
    assert first["x"] is not shared
    assert first["x"]["k"] is not shared["k"]


def test_a_hundred_thousand_responses_items_are_each_read_once() -> None:
    """25,000 turns (user, call, output, answer): every item out, pairing by dict lookups:
    the call ids are compared about once per output, not once per earlier call."""
    Id.compared = 0
    items: list[dict[str, Any]] = []
    for n in range(25_000):
        link = Id(f"call_{n}")
        items += [
            {"role": "user", "content": f"q{n}"},
            {"type": "function_call", "call_id": link, "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": Id(f"call_{n}"), "output": "42"},
            {"role": "assistant", "content": "a"},
        ]
    result = PORTABLE.responses_input(items)
    assert len(result) == 100_000
    assert Id.compared <= 4 * 25_000


def test_chat_pairing_compares_each_tool_call_id_a_bounded_number_of_times() -> None:
    """16,000 parallel calls answered by 16,000 tool messages: set lookups, not a list scan
    per tool message (which made 128 million comparisons)."""
    Id.compared = 0
    count = 16_000
    calls = [
        {"id": Id(f"call_{k}"), "type": "function", "function": {"name": "f", "arguments": "{}"}}
        for k in range(count)
    ]
    messages: list[dict[str, Any]] = [{"role": "assistant", "content": None, "tool_calls": calls}]
    messages += [
        {"role": "tool", "tool_call_id": Id(f"call_{k}"), "content": "r"} for k in range(count)
    ]
    result = PORTABLE.chat_messages(messages)
    assert len(result) == count + 1
    assert Id.compared <= 6 * count


def test_mcp_approval_pairs_are_matched_without_scanning_the_conversation() -> None:
    """10,000 approval pairs in portable mode: each response finds its request by lookup."""
    Id.compared = 0
    items: list[dict[str, Any]] = []
    for n in range(10_000):
        request = {"type": "mcp_approval_request", "id": Id(f"mcpr_{n}"), "arguments": "{}"}
        items += [
            request | {"name": "n", "server_label": "s"},
            {"type": "mcp_approval_response", "approval_request_id": Id(f"mcpr_{n}")}
            | {"approve": True},
        ]
    assert PORTABLE.responses_input(items) == []
    assert Id.compared <= 4 * 10_000


def test_sdk_models_nested_in_plain_dicts_are_dumped() -> None:
    """A content part that is an SDK model (inside a hand-built dict) becomes a plain dict,
    in a schema field and in an opaque one alike."""
    part = ResponseOutputText(type="output_text", text="hi", annotations=[])
    message = {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed"}
    [result] = SAME_STORE.responses_input([{**message, "content": [part], "x": {"p": part}}])
    expected = {"type": "output_text", "text": "hi", "annotations": []}
    assert result["content"] == [expected]
    assert result["x"] == {"p": expected}
