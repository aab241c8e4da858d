"""ConversationSanitizer: conversation history made safe to send again, anywhere.

Pure functions: no I/O, no state, inputs never mutated (every returned dict and list is new).
The schema knowledge comes from the installed ``openai`` SDK's param TypedDicts
(``ResponseInputItemParam``, ``ChatCompletionMessageParam``): a field the schema *requires* is
never stripped, and nested values are only walked where the schema describes them, so a tool's
JSON schema or an ``env`` mapping with a key named ``status`` is left alone. The rules and their
sources are in ``docs/sanitizer.md``.

Junk policy: an item that is not a mapping or a pydantic model, a mapping with neither ``type``
nor ``role``, a non-string ``type``, a message with an unknown role or without usable
``content``, and a tool call/output without its string link (``call_id``, ``tool_call_id``…)
raise ``InvalidConversationError`` (a ``ValueError``) naming the item's index. An item of a
``type`` this SDK does not know is passed on (the API adds item types faster than SDKs ship),
with bookkeeping stripped at its top level and, in portable mode, without ``id``. Other missing
fields are left for the API to judge.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from typing import Any, Final

import typing_extensions
from openai.types.chat import ChatCompletionMessageParam
from openai.types.responses import ResponseInputItemParam
from openai.types.responses.easy_input_message_param import EasyInputMessageParam
from openai.types.responses.response_input_item_param import Message
from openai.types.responses.response_output_message_param import ResponseOutputMessageParam
from pydantic import BaseModel

from ._compact import (
    CALL_ID_OUTPUT_TYPES,
    CALL_ID_TYPES,
    chat_units,
    compact_units,
    responses_call_key,
    responses_output_key,
    responses_units,
)
from ._constants import SANITIZER_STRIP_FIELDS
from ._errors import InvalidConversationError

__all__ = ["PROTECTED_FIELDS", "ConversationSanitizer"]

PROTECTED_FIELDS: Final = frozenset(
    {"type", "role", "content", "text", "refusal", "phase", "id", "call_id", "tool_call_id"}
    | {"tool_calls", "function_call", "output", "arguments", "input", "encrypted_content"}
)
"""Fields ``strip_fields`` may not name: content, links and ``id`` (which has its own rule)."""

_MAX_DEPTH: Final = 64
_RESPONSES_ROLES: Final = frozenset({"user", "assistant", "system", "developer"})
_CHAT_ROLES: Final = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
# Types that name server-side state and nothing else: meaningless in another store.
_REFERENCE_TYPES: Final = frozenset({"item_reference"})
# Encrypted content is bound to the organisation that produced it (openai-agents-python#2063).
_ORG_BOUND_TYPES: Final = frozenset({"reasoning", "compaction"})
# The field that links a tool call and its output; the item is unusable without it.
_LINK_FIELDS: Final = {kind: "call_id" for kind in CALL_ID_TYPES | CALL_ID_OUTPUT_TYPES} | {
    "mcp_approval_request": "id",
    "mcp_approval_response": "approval_request_id",
}


@cache
def _literal_type(typed_dict: type) -> str | None:
    annotation = typing.get_type_hints(typed_dict).get("type")
    values = [v for v in typing.get_args(annotation) if isinstance(v, str)]
    for arg in typing.get_args(annotation):  # Optional[Literal[...]]
        values.extend(v for v in typing.get_args(arg) if isinstance(v, str))
    return values[0] if len(values) == 1 else None


_RESPONSES_SCHEMAS: Final[dict[str, type]] = {
    kind: member
    for member in typing.get_args(ResponseInputItemParam)
    if (kind := _literal_type(member)) is not None and kind != "message"
}
_CHAT_SCHEMAS: Final[dict[str, type]] = {
    role: member
    for member in typing.get_args(ChatCompletionMessageParam)
    for role in typing.get_args(typing.get_type_hints(member)["role"])
}


@cache
def _fields(typed_dict: type) -> tuple[dict[str, Any], frozenset[str]]:
    """A TypedDict's field annotations and its required keys.

    ``__required_keys__`` is empty for the SDK's classes (string annotations under
    ``from __future__ import annotations``), so ``Required[...]`` is read from the hints.
    """
    hints = typing.get_type_hints(typed_dict, include_extras=True)
    required = frozenset(
        key
        for key, hint in hints.items()
        if typing.get_origin(hint) in (typing.Required, typing_extensions.Required)
    )
    return typing.get_type_hints(typed_dict), required


def _dump(model: BaseModel) -> dict[str, Any]:
    # exclude_unset: a model parsed from the API holds exactly what the API sent.
    return model.model_dump(mode="json", by_alias=True, exclude_unset=True, warnings=False)


def _copy(value: object, depth: int = 0) -> object:
    """A deep copy of a JSON-like value's dicts and lists (other leaves are shared)."""
    if isinstance(value, BaseModel):
        value = _dump(value)
    if depth >= _MAX_DEPTH:
        return value
    if isinstance(value, Mapping):
        return {key: _copy(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_copy(item, depth + 1) for item in value]
    return value


def _is_sequence_hint(origin: object) -> bool:
    return origin in (list, Iterable, Sequence)


class _Cleaner:
    """Walks a value along its SDK annotation, dropping bookkeeping the schema does not require."""

    def __init__(self, strip: frozenset[str]) -> None:
        self.strip = strip

    def mapping(self, value: Mapping[Any, Any], typed_dict: type, depth: int) -> dict[str, Any]:
        hints, required = _fields(typed_dict)
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key in required:
                out[key] = self.value(item, hints[key], depth + 1)
            elif key in self.strip or (item is None and key in hints):
                continue  # bookkeeping, or null for "absent"
            elif key in hints:
                out[key] = self.value(item, hints[key], depth + 1)
            else:
                out[key] = _copy(item, depth + 1)
        return out

    def value(self, value: object, hint: object, depth: int) -> object:
        if isinstance(value, BaseModel):
            value = _dump(value)
        if depth >= _MAX_DEPTH:
            return _copy(value, depth)
        if typing_extensions.is_typeddict(hint) and isinstance(value, Mapping):
            return self.mapping(value, typing.cast(type, hint), depth)
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
        if origin is typing.Union:
            return self._union(value, args, depth)
        if _is_sequence_hint(origin) and args and isinstance(value, list | tuple):
            return [self.value(item, args[0], depth + 1) for item in value]
        return _copy(value, depth)

    def _union(self, value: object, members: tuple[object, ...], depth: int) -> object:
        if isinstance(value, Mapping):
            dicts = [m for m in members if typing_extensions.is_typeddict(m)]
            kind = value.get("type")
            chosen = [m for m in dicts if _literal_type(typing.cast(type, m)) == kind]
            if len(chosen) == 1 or len(dicts) == 1:
                return self.mapping(value, typing.cast(type, (chosen or dicts)[0]), depth)
        elif isinstance(value, list | tuple):
            for member in members:
                if _is_sequence_hint(typing.get_origin(member)):
                    return self.value(value, member, depth)
        return _copy(value, depth)


def _as_dict(item: object, index: int) -> dict[str, Any]:
    if isinstance(item, BaseModel):
        try:
            return _dump(item)
        except Exception as exc:  # pydantic serialization of a hand-built model
            raise InvalidConversationError(
                f"cannot serialize {type(item).__name__}: {exc}", index=index
            ) from exc
    if isinstance(item, Mapping):
        return dict(item)
    raise InvalidConversationError(
        f"expected a mapping or an SDK model, got {type(item).__name__}", index=index
    )


def _items(items: object) -> list[object]:
    if isinstance(items, str | Mapping | BaseModel | bytes | bytearray) or not isinstance(
        items, Iterable
    ):
        raise InvalidConversationError(
            f"expected a list of items or messages, got {type(items).__name__}"
        )
    return list(items)


def _link(item: Mapping[str, Any], key: str, index: int, kind: object) -> None:
    if not isinstance(item.get(key), str):
        raise InvalidConversationError(f"{kind} without a string {key!r}", index=index)


class ConversationSanitizer:
    """Makes Responses input items and Chat Completions messages safe to send again.

    Args:
        portable: ``True`` (default) for a conversation continued where the server does not hold
            its items: ``store=false``, another server instance, another organisation. No item
            ``id`` is sent, ``item_reference`` items are dropped and reasoning is kept only with
            its ``encrypted_content``. ``False`` for a continuation against the same store: ids,
            references and reasoning are kept as they are.
        same_organization: ``False`` drops reasoning and compaction items entirely: their
            encrypted content is bound to the organisation that produced it. Default ``True``.
        strip_fields: field names removed wherever the input schema does not require them;
            ``None`` (default) means ``SANITIZER_STRIP_FIELDS``.

    Raises:
        ValueError: ``strip_fields`` names a protected field (``PROTECTED_FIELDS``) or is a str.
    """

    def __init__(
        self,
        *,
        portable: bool = True,
        same_organization: bool = True,
        strip_fields: Iterable[str] | None = None,
    ) -> None:
        if isinstance(strip_fields, str):
            raise ValueError(f"strip_fields must be an iterable of names, got {strip_fields!r}")
        strip = SANITIZER_STRIP_FIELDS if strip_fields is None else frozenset(strip_fields)
        if protected := sorted(strip & PROTECTED_FIELDS):
            raise ValueError(f"strip_fields may not name {protected}: they carry content or links")
        self.portable = portable
        self.same_organization = same_organization
        self.strip_fields: frozenset[str] = strip
        self._cleaner = _Cleaner(strip)

    def __repr__(self) -> str:
        return (
            f"ConversationSanitizer(portable={self.portable}, "
            f"same_organization={self.same_organization}, "
            f"strip_fields={sorted(self.strip_fields)})"
        )

    # Responses API -------------------------------------------------------------------------

    def responses_input(
        self, items: str | Iterable[object], *, previous_response_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Sanitize Responses API ``input`` items.

        Args:
            items: a str (one user message), or a list of input params, SDK output models
                (``ResponseOutputItem``…) and plain dicts, in conversation order.
            previous_response_id: the id the request will continue from, if any. The server
                then holds earlier items, so an output whose call is not in ``items`` answers a
                server-held call and is kept.

        Returns:
            New plain dicts: assistant output messages as replayable input messages (text and
            ``phase`` kept), bookkeeping stripped, every call paired with its output.

        Raises:
            InvalidConversationError: an item cannot be read; the message names its index.
        """
        if isinstance(items, str):
            return [{"role": "user", "content": items}]
        cleaned = [self._responses_item(item, index) for index, item in enumerate(_items(items))]
        holds_calls = previous_response_id is not None or (
            not self.portable and any(item.get("type") in _REFERENCE_TYPES for item in cleaned)
        )
        keep = _pair(cleaned, holds_calls)
        out: list[dict[str, Any]] = []
        for index, item in enumerate(cleaned):
            if not keep[index] or not self._portable_keep(item, cleaned, keep):
                continue
            out.append(self._portable_form(item) if self.portable else item)
        return out

    def _responses_item(self, raw: object, index: int) -> dict[str, Any]:
        item = _as_dict(raw, index)
        kind = item.get("type")
        if kind is None and "role" not in item:
            if not isinstance(item.get("id"), str):
                raise InvalidConversationError(
                    "a mapping with neither 'type' nor 'role'", index=index
                )
            kind = item["type"] = "item_reference"  # ItemReference: ``type`` is optional
        if kind is not None and not isinstance(kind, str):
            raise InvalidConversationError(f"'type' must be a string, got {kind!r}", index=index)
        if kind is None or kind == "message":
            return self._responses_message(item, index)
        link = _LINK_FIELDS.get(kind)
        if kind == "local_shell_call_output" and not isinstance(item.get("call_id"), str):
            link = "id"  # its call's id, as the SDK documents
        if link is not None:
            _link(item, link, index, kind)
        schema = _RESPONSES_SCHEMAS.get(kind)
        if schema is not None:
            return self._cleaner.mapping(item, schema, 0)
        return {k: _copy(v) for k, v in item.items() if k not in self.strip_fields}

    def _responses_message(self, item: dict[str, Any], index: int) -> dict[str, Any]:
        role = item.get("role")
        if not isinstance(role, str) or role not in _RESPONSES_ROLES:
            raise InvalidConversationError(f"message with an unknown role {role!r}", index=index)
        content = item.get("content")
        if not isinstance(content, str | list | tuple):
            raise InvalidConversationError(
                f"{role} message 'content' must be a str or a list, got {type(content).__name__}",
                index=index,
            )
        if isinstance(content, str):
            schema: type = EasyInputMessageParam
        else:
            schema = ResponseOutputMessageParam if role == "assistant" else Message
        return self._cleaner.mapping(item, schema, 0)

    def _portable_keep(
        self, item: dict[str, Any], cleaned: list[dict[str, Any]], keep: list[bool]
    ) -> bool:
        kind = item.get("type")
        if kind in _ORG_BOUND_TYPES and not self.same_organization:
            return False
        if not self.portable:
            return True
        if kind in _REFERENCE_TYPES:
            return False
        if kind == "reasoning":
            encrypted = item.get("encrypted_content")
            return isinstance(encrypted, str) and bool(encrypted)
        if kind == "mcp_approval_request":
            return False  # answered by id: cannot travel without one
        if kind == "mcp_approval_response":  # keep only when it answers a server-held request
            ref = item.get("approval_request_id")
            return not any(
                other.get("type") == "mcp_approval_request" and other.get("id") == ref
                for other in cleaned
            )
        return True

    def _portable_form(self, item: dict[str, Any]) -> dict[str, Any]:
        out = dict(item)
        if out.get("type") != "local_shell_call_output" or "call_id" in out:
            out.pop("id", None)  # the Codex CLI pattern: no item id at all
        if out.get("type") == "mcp_call":
            out.pop("approval_request_id", None)
        if out.get("role") == "assistant":
            out.pop("status", None)  # the portable form of an output message: text and phase
        return out

    # Chat Completions ------------------------------------------------------------------------

    def chat_messages(self, messages: Iterable[object]) -> list[dict[str, Any]]:
        """Sanitize Chat Completions ``messages``.

        Args:
            messages: message params, ``ChatCompletionMessage`` models or plain dicts.

        Returns:
            New plain dicts: provider-only fields removed, content untouched, every assistant
            ``tool_calls`` entry answered by a ``tool`` message that follows it (unanswered
            calls and orphan ``tool`` messages are dropped; an assistant message left empty
            goes too).

        Raises:
            InvalidConversationError: a message cannot be read; the message names its index.
        """
        cleaned = [self._chat_message(m, index) for index, m in enumerate(_items(messages))]
        return _pair_chat(cleaned)

    def _chat_message(self, raw: object, index: int) -> dict[str, Any]:
        message = _as_dict(raw, index)
        role = message.get("role")
        if not isinstance(role, str) or role not in _CHAT_ROLES:
            raise InvalidConversationError(f"message with an unknown role {role!r}", index=index)
        content = message.get("content")
        if role != "assistant" and not isinstance(content, str | list | tuple):
            raise InvalidConversationError(
                f"{role} message 'content' must be a str or a list, got {type(content).__name__}",
                index=index,
            )
        if role == "tool":
            _link(message, "tool_call_id", index, "tool message")
        calls = message.get("tool_calls")
        if role == "assistant" and calls is not None:
            if not isinstance(calls, list | tuple):
                raise InvalidConversationError("'tool_calls' must be a list", index=index)
            for call in calls:
                call_dict = call.model_dump() if isinstance(call, BaseModel) else call
                if not isinstance(call_dict, Mapping) or not isinstance(call_dict.get("id"), str):
                    raise InvalidConversationError(
                        "each 'tool_calls' entry must be a mapping with a string 'id'", index=index
                    )
        out = self._cleaner.mapping(message, _CHAT_SCHEMAS[role], 0)
        audio = out.get("audio")
        if isinstance(audio, Mapping) and "id" in audio:
            out["audio"] = {"id": audio["id"]}  # the param form: a reference to the audio
        return out

    # Compaction ------------------------------------------------------------------------------

    def compact_responses_input(
        self,
        items: str | Iterable[object],
        *,
        max_items: int | None = None,
        max_tokens: int | None = None,
    ) -> list[dict[str, Any]]:
        """Sanitize, then build the smallest self-contained Responses input for a retry.

        Keeps every system/developer message, the latest user message and whole tool-call
        groups (a call never without its output, a reasoning item never without the call it
        precedes); never starts with a tool output. Without a budget: the instructions plus the
        latest user turn. With one: the newest whole units that fit (see ``compact_units``).

        Args:
            items: as for ``responses_input`` (no ``previous_response_id``: the result stands
                alone).
            max_items: at most this many items (>= 1), or ``None``.
            max_tokens: at most this many tokens by ``llmpool._tokens.estimate_tokens``
                (>= 1), or ``None``.

        Returns:
            New plain dicts, in conversation order.

        Raises:
            InvalidConversationError: an item cannot be read.
            CompactionBudgetError: the instructions and latest user message exceed the budget.
            ValueError: ``max_items`` or ``max_tokens`` is not a positive int.
        """
        _check_budget(max_items, max_tokens)
        items_out = self.responses_input(items)
        units = responses_units(items_out)
        return compact_units(items_out, units, max_items=max_items, max_tokens=max_tokens)

    def compact_chat_messages(
        self,
        messages: Iterable[object],
        *,
        max_items: int | None = None,
        max_tokens: int | None = None,
    ) -> list[dict[str, Any]]:
        """Sanitize, then build the smallest self-contained Chat Completions messages.

        The same rules as ``compact_responses_input``: an assistant message with ``tool_calls``
        and its ``tool`` messages are one group.

        Args:
            messages: as for ``chat_messages``.
            max_items: at most this many messages (>= 1), or ``None``.
            max_tokens: at most this many estimated tokens (>= 1), or ``None``.

        Returns:
            New plain dicts, in conversation order.

        Raises:
            InvalidConversationError: a message cannot be read.
            CompactionBudgetError: the instructions and latest user message exceed the budget.
            ValueError: ``max_items`` or ``max_tokens`` is not a positive int.
        """
        _check_budget(max_items, max_tokens)
        out = self.chat_messages(messages)
        return compact_units(out, chat_units(out), max_items=max_items, max_tokens=max_tokens)


def _check_budget(max_items: int | None, max_tokens: int | None) -> None:
    for name, value in (("max_items", max_items), ("max_tokens", max_tokens)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ValueError(f"{name} must be a positive int or None, got {value!r}")


def _pair(items: list[dict[str, Any]], holds_calls: bool) -> list[bool]:
    """Which items survive pairing: each call with its first later output, nothing orphaned.

    A reasoning item goes with the item that follows it. ``holds_calls``: an output whose call
    is nowhere in ``items`` answers a call the server holds (``previous_response_id``) and stays.
    """
    calls = [responses_call_key(item) for item in items]
    answers = [responses_output_key(item) for item in items]
    present = {key for key in calls if key is not None}
    keep = [True] * len(items)
    first_call: dict[tuple[str, str], int] = {}
    answered: set[tuple[str, str]] = set()
    for index, (call, answer) in enumerate(zip(calls, answers, strict=True)):
        if call is not None:
            if call in first_call:
                keep[index] = False  # a second call with the same call_id
            else:
                first_call[call] = index
        elif answer is not None:
            if answer in first_call and answer not in answered:
                answered.add(answer)
            elif answer in present or not holds_calls or answer in answered:
                keep[index] = False  # orphan, early or duplicate output
    for call, index in first_call.items():
        if call not in answered:
            keep[index] = False  # unanswered call
    following = True  # trailing reasoning stays: nothing after it was dropped
    for index in range(len(items) - 1, -1, -1):
        if items[index].get("type") == "reasoning":
            keep[index] = keep[index] and following
        else:
            following = keep[index]
    return keep


def _pair_chat(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    index = 0
    while index < len(messages):
        message = messages[index]
        index += 1
        if message["role"] in ("tool", "function"):
            continue  # not directly after its call: an orphan
        if message["role"] != "assistant":
            out.append(message)
            continue
        answer_role = "tool" if message.get("tool_calls") else "function"
        run: list[dict[str, Any]] = []
        while index < len(messages) and messages[index]["role"] == answer_role:
            run.append(messages[index])
            index += 1
        out.extend(_answered(message, run))
    return out


def _answered(assistant: dict[str, Any], run: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The assistant message with only its answered calls, then their first answers.

    The message goes only when it held calls, none was answered, and nothing else is left.
    """
    message = dict(assistant)
    answers: list[dict[str, Any]] = []
    if message.get("tool_calls"):
        ids = [call.get("id") for call in message["tool_calls"]]
        seen: set[str] = set()
        for tool in run:
            if tool["tool_call_id"] in ids and tool["tool_call_id"] not in seen:
                seen.add(tool["tool_call_id"])
                answers.append(tool)
        calls, kept_ids = [], set()
        for call in message["tool_calls"]:
            if call.get("id") in seen and call.get("id") not in kept_ids:
                kept_ids.add(call["id"])
                calls.append(call)
        message["tool_calls"] = calls
    elif message.get("function_call"):
        answers = run[:1]
    if not message.get("tool_calls"):
        message.pop("tool_calls", None)
    if message.get("function_call") and not answers:
        message.pop("function_call")
    has_body = any(message.get(k) not in (None, "", []) for k in ("content", "refusal", "audio"))
    had_calls = bool(assistant.get("tool_calls") or assistant.get("function_call"))
    if message.get("tool_calls") or message.get("function_call") or has_body or not had_calls:
        return [message, *answers]
    return []  # only unanswered calls were in it
