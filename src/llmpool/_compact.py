"""Tool-call groups, and the compaction built on them.

A conversation is cut into *units*: the items that must stay together or go together. A unit is
one message, or one tool-call group: the calls, every output that answers them and the
reasoning items before the calls (the API links a reasoning item to the item that follows it).
A message between a call and its output is a unit of its own: dropping either keeps the rest
valid. Which output answers which call is ``_pairing``'s rule, shared with
``ConversationSanitizer``; ``compact_units`` keeps whole units only, so a compacted conversation
never holds an orphan output or an unanswered call.

Pure functions over already-sanitized plain dicts; nothing here does I/O or mutates its input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from ._errors import CompactionBudgetError
from ._pairing import PairKey, chat_groups, responses_call_key, responses_output_key
from ._tokens import estimate_tokens

__all__ = ["Unit", "chat_units", "check_budget", "compact_units", "responses_units"]

_INSTRUCTION_ROLES: Final = frozenset({"system", "developer"})


UnitKind = Literal["instruction", "user", "group", "other", "orphan"]


@dataclass(frozen=True, slots=True)
class Unit:
    """Items that stay together: ``indices`` into the conversation, in order.

    ``kind`` is ``instruction`` (a system/developer message), ``user`` (a user message), ``group``
    (a tool-call group), ``orphan`` (an output with no call before it: never kept by compaction)
    or ``other``.
    """

    indices: tuple[int, ...]
    kind: UnitKind


def _message_kind(item: Mapping[str, Any]) -> UnitKind:
    role = item.get("role")
    if role in _INSTRUCTION_ROLES:
        return "instruction"
    return "user" if role == "user" else "other"


def responses_units(items: Sequence[Mapping[str, Any]]) -> list[Unit]:
    """Cut sanitized Responses input items into units (see the module docstring)."""
    units: list[Unit] = []
    pending: list[int] = []  # reasoning waiting for the item it belongs to
    group: list[int] = []
    open_keys: set[PairKey] = set()
    for index, item in enumerate(items):
        call = responses_call_key(item)
        answer = responses_output_key(item)
        if open_keys and answer is None and call is None:
            if item.get("type") == "reasoning":
                group.append(index)  # reasoning before the next call of the group
            else:  # a message between a call and its output is a unit of its own
                units.append(Unit((index,), _message_kind(item)))
        elif answer is not None:
            if answer in open_keys:
                group.append(index)
                open_keys.discard(answer)
                if not open_keys:
                    units.append(Unit(tuple(group), "group"))
                    group = []
            else:
                units.append(Unit((*pending, index), "orphan"))
                pending = []
        elif call is not None:
            if not group:
                group, pending = [*pending], []
            group.append(index)
            open_keys.add(call)
        elif item.get("type") == "reasoning":
            pending.append(index)
        else:
            kind = _message_kind(item)
            if pending and kind != "other":  # reasoning belongs to model output, not to input
                units.append(Unit(tuple(pending), "other"))
                pending = []
            units.append(Unit((*pending, index), kind))
            pending = []
    if group:  # unanswered calls: cannot happen after sanitizing; never kept
        units.append(Unit(tuple(group), "orphan"))
    if pending:
        units.append(Unit(tuple(pending), "other"))
    return units


def chat_units(messages: Sequence[Mapping[str, Any]]) -> list[Unit]:
    """Cut sanitized Chat Completions messages into units.

    An assistant message with ``tool_calls`` (or a legacy ``function_call``) and the ``tool``
    (``function``) messages that follow it form one group (``_pairing.chat_groups``).
    """
    units: list[Unit] = []
    for start, end in chat_groups(messages):
        message = messages[start]
        role = message.get("role")
        if role == "assistant" and (message.get("tool_calls") or message.get("function_call")):
            units.append(Unit(tuple(range(start, end)), "group"))
            continue
        kind: UnitKind = "orphan" if role in {"tool", "function"} else _message_kind(message)
        units.append(Unit((start,), kind))
        units.extend(Unit((index,), "orphan") for index in range(start + 1, end))
    return units


def compact_units(
    items: Sequence[dict[str, Any]],
    units: Sequence[Unit],
    *,
    max_items: int | None,
    max_tokens: int | None,
) -> list[dict[str, Any]]:
    """Keep the instructions, the latest user message and the newest whole units that fit.

    Without a budget the result is the instructions plus the latest user turn (the latest user
    message and every unit after it). With ``max_items`` and/or ``max_tokens`` (estimated with
    ``llmpool._tokens.estimate_tokens``), units are added newest first and the first one that
    does not fit ends the search, so the kept history is a contiguous suffix.

    Raises:
        CompactionBudgetError: the instructions and the latest user message alone exceed the
            budget.
    """
    costs = [estimate_tokens([item]) for item in items]
    users = [position for position, unit in enumerate(units) if unit.kind == "user"]
    last_user = users[-1] if users else -1
    keep = {p for p, unit in enumerate(units) if unit.kind == "instruction" or p == last_user}
    used_items = sum(len(units[p].indices) for p in keep)
    used_tokens = sum(costs[i] for p in keep for i in units[p].indices)
    if (max_items is not None and used_items > max_items) or (
        max_tokens is not None and used_tokens > max_tokens
    ):
        raise CompactionBudgetError(
            f"budget max_items={max_items}, max_tokens={max_tokens} is smaller than the "
            f"instructions and the latest user message ({used_items} items, "
            f"~{used_tokens} tokens)"
        )
    for position in range(len(units) - 1, -1, -1):
        unit = units[position]
        if position in keep or unit.kind == "orphan":
            continue
        if max_items is None and max_tokens is None:
            if position < last_user:
                break
            keep.add(position)
            continue
        size = len(unit.indices)
        tokens = sum(costs[i] for i in unit.indices)
        if (max_items is not None and used_items + size > max_items) or (
            max_tokens is not None and used_tokens + tokens > max_tokens
        ):
            break
        keep.add(position)
        used_items += size
        used_tokens += tokens
    # Units interleave (a message between a call and its output): restore item order.
    return [items[i] for i in sorted(i for p in keep for i in units[p].indices)]


def check_budget(max_items: int | None, max_tokens: int | None) -> None:
    """Refuse a budget that is not a positive int (or ``None``).

    Raises:
        ValueError: ``max_items`` or ``max_tokens`` is a bool, not an int, or below 1.
    """
    for name, value in (("max_items", max_items), ("max_tokens", max_tokens)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ValueError(f"{name} must be a positive int or None, got {value!r}")
