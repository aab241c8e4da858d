"""Token estimates (``_tokens``): characters / 4 plus framing per item, or a given tokenizer."""

from __future__ import annotations

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
