"""Token estimates for admission and compaction, before a request is sent.

A request's token cost is not known until the response's ``usage`` arrives, so admission works
from an estimate and corrects it afterwards (see ``docs/limits.md``). The estimate counts the
characters of every string in a JSON-like value and divides by ``CHARS_PER_TOKEN`` (OpenAI's rule
of thumb: "one token generally corresponds to ~4 characters of text for common English text",
https://help.openai.com/en/articles/4936856), plus ``TOKENS_PER_ITEM`` per message/item, the
framing the chat format adds (OpenAI cookbook, "How to count tokens with tiktoken").

``tiktoken`` is not a dependency: this module never imports it, because its encodings are
downloaded on first use and llmpool must work offline. Pass your own ``Tokenizer`` where an exact
count matters.

The walk is iterative and linear in the input's size: a container shared within an item (or a
cycle) is read once, and one estimate reads at most ``MAX_ESTIMATE_NODES`` values, so a hostile
or accidental input cannot block the event loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Final

from . import _constants as C

__all__ = ["CHARS_PER_TOKEN", "TOKENS_PER_ITEM", "Tokenizer", "estimate_tokens", "text_chars"]

CHARS_PER_TOKEN: Final = 4.0
"""Characters per token of the character-based estimate."""

TOKENS_PER_ITEM: Final = 4
"""Tokens of framing added per message or input item."""

Tokenizer = Callable[[str], int]
"""A function returning the token count of one string (e.g. ``len(enc.encode(s))``)."""

_SCALARS: Final = (int, float, type(None))  # JSON leaves other than strings (bool is an int)


def text_chars(value: object) -> int:
    """Characters in every string value of a JSON-like ``value`` (keys not counted).

    Objects that are neither str, Mapping nor list/tuple count 0. A container reached a second
    time (shared or cyclic) counts 0; nesting deeper than ``MAX_ESTIMATE_DEPTH`` (64) levels is
    not followed, and past ``MAX_ESTIMATE_NODES`` (100,000) values counting stops.
    """
    return sum(_totals((value,), len))


def estimate_tokens(value: object, *, tokenizer: Tokenizer | None = None) -> int:
    """Estimate the tokens of a prompt: a string, one item, or a list of items/messages.

    The walk is iterative and linear in the input's size. Within one item, a container reached
    a second time (the same dict or list object twice, or a cycle) counts 0, so the estimate is
    then lower than the JSON the SDK would send. Items are counted independently: the estimate
    of a list is the sum of its items' estimates. One call counts at most
    ``MAX_ESTIMATE_NODES`` (100,000) values (containers, strings and other items), then stops
    counting; nesting deeper than ``MAX_ESTIMATE_DEPTH`` (64) levels is not followed.

    Args:
        value: a ``str``, a JSON-like mapping (one item/message) or a list of them.
        tokenizer: exact counter for one string; default: ``ceil(chars / CHARS_PER_TOKEN)``.

    Returns:
        Estimated tokens (>= 0): the text's tokens plus ``TOKENS_PER_ITEM`` per list element.
    """
    if tokenizer is None and type(value) is str:  # a plain prompt: the common case
        return math.ceil(len(value) / CHARS_PER_TOKEN)
    items: Sequence[object] = value if isinstance(value, list | tuple) else (value,)
    framing = TOKENS_PER_ITEM * len(items) if items is value else 0
    if tokenizer is None:
        return framing + sum(math.ceil(chars / CHARS_PER_TOKEN) for chars in _totals(items, len))
    return framing + sum(_totals(items, tokenizer))


def _totals(items: Iterable[object], measure: Callable[[str], int]) -> Iterator[int]:
    """For each item, the sum of ``measure(s)`` over the string values ``s`` in it.

    Iterative: a stack of iterators, one per open container (its length is the depth). Each
    item has its own set of containers seen, by identity: a container met again within the
    item (shared, or a cycle) is not walked again. The budget of ``MAX_ESTIMATE_NODES`` values
    is shared by all items; when it runs out, the current item's partial sum is the last one
    yielded.
    """
    budget = C.MAX_ESTIMATE_NODES
    max_depth = C.MAX_ESTIMATE_DEPTH
    for item in items:
        if budget <= 0:
            return
        if isinstance(item, str):  # a plain prompt: no stack needed
            budget -= 1
            yield measure(item)
            continue
        seen: dict[int, object] = {}  # id -> container; holding it keeps the id unique
        stack: list[Iterator[object]] = [iter((item,))]
        total = 0
        while stack and budget > 0:
            for node in stack[-1]:
                budget -= 1
                if isinstance(node, str):
                    total += measure(node)
                else:
                    children: Iterable[object] | None
                    if isinstance(node, dict):
                        children = node.values()
                    elif isinstance(node, list | tuple):
                        children = node
                    elif isinstance(node, _SCALARS):  # cheaper than the Mapping ABC check
                        children = None
                    elif isinstance(node, Mapping):
                        children = node.values()
                    else:
                        children = None  # numbers, None, other objects: 0
                    if children is not None and len(stack) <= max_depth and id(node) not in seen:
                        seen[id(node)] = node
                        stack.append(iter(children))
                        break  # walk the child first
                if budget <= 0:
                    break
            else:
                stack.pop()  # this container is done
        yield total
