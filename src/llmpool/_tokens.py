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
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Final

__all__ = ["CHARS_PER_TOKEN", "TOKENS_PER_ITEM", "Tokenizer", "estimate_tokens", "text_chars"]

CHARS_PER_TOKEN: Final = 4.0
"""Characters per token of the character-based estimate."""

TOKENS_PER_ITEM: Final = 4
"""Tokens of framing added per message or input item."""

Tokenizer = Callable[[str], int]
"""A function returning the token count of one string (e.g. ``len(enc.encode(s))``)."""

_MAX_DEPTH: Final = 64


def text_chars(value: object, _depth: int = 0) -> int:
    """Characters in every string value of a JSON-like ``value`` (keys not counted).

    Objects that are neither str, Mapping nor list/tuple count 0; nesting deeper than 64 levels
    is not followed.
    """
    if isinstance(value, str):
        return len(value)
    if _depth >= _MAX_DEPTH:
        return 0
    if isinstance(value, Mapping):
        return sum(text_chars(item, _depth + 1) for item in value.values())
    if isinstance(value, list | tuple):
        return sum(text_chars(item, _depth + 1) for item in value)
    return 0


def estimate_tokens(value: object, *, tokenizer: Tokenizer | None = None) -> int:
    """Estimate the tokens of a prompt: a string, one item, or a list of items/messages.

    Args:
        value: a ``str``, a JSON-like mapping (one item/message) or a list of them.
        tokenizer: exact counter for one string; default: ``ceil(chars / CHARS_PER_TOKEN)``.

    Returns:
        Estimated tokens (>= 0): the text's tokens plus ``TOKENS_PER_ITEM`` per list element.
    """
    items = value if isinstance(value, list | tuple) else [value]
    framing = TOKENS_PER_ITEM * len(items) if isinstance(value, list | tuple) else 0
    if tokenizer is None:
        return framing + sum(math.ceil(text_chars(item) / CHARS_PER_TOKEN) for item in items)
    return framing + sum(_exact(item, tokenizer) for item in items)


def _exact(value: object, tokenizer: Tokenizer, depth: int = 0) -> int:
    if isinstance(value, str):
        return tokenizer(value)
    if depth >= _MAX_DEPTH:
        return 0
    if isinstance(value, Mapping):
        return sum(_exact(item, tokenizer, depth + 1) for item in value.values())
    if isinstance(value, list | tuple):
        return sum(_exact(item, tokenizer, depth + 1) for item in value)
    return 0
