"""Token estimates (``_tokens``): characters / 4 plus framing per item, or a given tokenizer."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmpool import _constants as C
from llmpool._tokens import CHARS_PER_TOKEN, TOKENS_PER_ITEM, estimate_tokens, text_chars


def test_text_chars_counts_string_values_only() -> None:
    """Keys, numbers and None count nothing; nested strings count."""
    value = {"role": "user", "content": [{"type": "input_text", "text": "abcd"}], "n": 5}
    assert text_chars(value) == len("user") + len("input_text") + len("abcd")
    assert text_chars(None) == 0


def test_estimate_rounds_up_and_adds_framing_per_item() -> None:
    """A list adds TOKENS_PER_ITEM per element; text is ceil(chars / 4)."""
    assert estimate_tokens("abcde") == 2  # ceil(5 / 4)
    one = {"role": "user", "content": "x" * 8}
    expected = -(-text_chars(one) // int(CHARS_PER_TOKEN)) + TOKENS_PER_ITEM
    assert estimate_tokens([one]) == expected
    assert estimate_tokens([]) == 0


def test_tokenizer_is_used_for_every_string() -> None:
    """With a tokenizer, each string is counted by it, nested ones too."""
    words = estimate_tokens(
        [{"content": "one two three", "parts": ["four five"]}], tokenizer=lambda s: len(s.split())
    )
    assert words == 5 + TOKENS_PER_ITEM


def test_deep_nesting_is_cut_off() -> None:
    """Values nested deeper than 64 levels are not followed (no RecursionError)."""
    deep: object = "x" * 400
    for _ in range(200):
        deep = [deep]
    assert estimate_tokens(deep) >= 0
    assert estimate_tokens(deep, tokenizer=len) >= 0


def shared_dicts(depth: int) -> dict[str, object]:
    """A dict holding the same sub-dict twice, at every level: 2**depth paths to one string."""
    node: dict[str, object] = {"text": "abcd"}
    for _ in range(depth):
        node = {"left": node, "right": node}
    return node


def shared_lists(depth: int) -> list[object]:
    """The same sub-list twice at every level."""
    node: list[object] = ["abcd"]
    for _ in range(depth):
        node = [node, node]
    return node


class Counting:
    """A tokenizer that counts its calls: how many strings the walk visited."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, text: str) -> int:
        self.calls += 1
        return len(text)


@pytest.mark.parametrize("build", [shared_dicts, shared_lists], ids=["dicts", "lists"])
def test_shared_containers_are_walked_once(build: Callable[[int], object]) -> None:
    """40 levels of shared sub-containers: one string visited, not 2**40 (was ~12 days of CPU)."""
    value = build(40)
    counter = Counting()
    started = time.perf_counter()
    assert estimate_tokens([value], tokenizer=counter) == len("abcd") + TOKENS_PER_ITEM
    assert text_chars(value) == len("abcd")
    elapsed = time.perf_counter() - started
    assert counter.calls == 1
    assert elapsed < 1.0  # a guard only: it takes well under 1 ms


def test_cycles_terminate_and_count_once() -> None:
    """A dict or list that contains itself is read once; its strings count once."""
    looped: dict[str, object] = {"text": "abc"}
    looped["self"] = looped
    ring: list[object] = ["de"]
    ring.append([ring, "f"])
    assert text_chars(looped) == 3
    assert text_chars(ring) == 3
    assert estimate_tokens(ring) == TOKENS_PER_ITEM * 2 + 1 + 1  # items "de" and [ring, "f"]


def test_items_are_counted_independently() -> None:
    """The same message object twice in a list counts twice: each item has its own walk."""
    message = {"role": "user", "content": "x" * 40}
    assert estimate_tokens([message, message]) == 2 * estimate_tokens([message])


def test_one_estimate_visits_at_most_max_estimate_nodes() -> None:
    """Past MAX_ESTIMATE_NODES values, counting stops: the walk's time is bounded."""
    limit = C.MAX_ESTIMATE_NODES
    counter = Counting()
    estimate_tokens(["x"] * (limit + 1000), tokenizer=counter)
    assert counter.calls == limit
    # One item: the dict and its list count 2 of the budget, their strings the rest.
    assert text_chars({"items": ["x"] * (2 * limit)}) == limit - 2


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=4), inner, max_size=4)
        | st.tuples(inner, inner)
    ),
    max_leaves=30,
)


def reference_chars(value: object, depth: int = 0) -> int:
    """The recursive definition (the implementation before the iterative walk)."""
    if isinstance(value, str):
        return len(value)
    if depth >= C.MAX_ESTIMATE_DEPTH:
        return 0
    if isinstance(value, Mapping):
        return sum(reference_chars(item, depth + 1) for item in value.values())
    if isinstance(value, list | tuple):
        return sum(reference_chars(item, depth + 1) for item in value)
    return 0


@given(JSON)
def test_tree_shaped_input_counts_as_the_recursive_definition(value: object) -> None:
    """Without shared containers, the iterative walk counts exactly what the recursion did."""
    assert text_chars(value) == reference_chars(value)
    items = value if isinstance(value, list | tuple) else [value]
    framing = TOKENS_PER_ITEM * len(items) if isinstance(value, list | tuple) else 0
    expected = framing + sum(-(-reference_chars(item) // 4) for item in items)
    assert estimate_tokens(value) == expected
