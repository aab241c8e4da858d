"""ConversationSanitizer: conversation history made safe to send again, anywhere.

Pure: no I/O, no state, inputs never mutated, every returned dict and list new all the way
down (a value the input shares is copied once and shared alike, as ``copy.deepcopy`` does; a
value that contains itself is refused). The schema knowledge is the installed ``openai`` SDK's
param TypedDicts: bookkeeping goes only where the type at that depth does not declare the
field, and values are walked only where the schema describes them (a tool's JSON schema with a
key named ``status`` is left alone). Pairing is ``_pairing``'s; rules and sources are in
``docs/sanitizer.md``.

Junk policy: an item that is not a mapping or a pydantic model, a mapping with neither ``type``
nor ``role``, a non-string ``type``, a message with an unknown role or without usable
``content``, a tool call/output without its string link (``call_id``, ``tool_call_id``…) and a
value that contains itself raise ``InvalidConversationError`` (a ``ValueError``) naming the
item's index. An item of a ``type`` this SDK does not know is passed on, with bookkeeping
stripped at its top level and, in portable mode, without ``id``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from openai.types.responses.easy_input_message_param import EasyInputMessageParam
from openai.types.responses.response_input_item_param import Message
from openai.types.responses.response_output_message_param import ResponseOutputMessageParam
from pydantic import BaseModel

from ._compact import chat_units, check_budget, compact_units, responses_units
from ._constants import SANITIZER_STRIP_FIELDS
from ._errors import InvalidConversationError
from ._pairing import (
    CALL_ID_OUTPUT_TYPES,
    CALL_ID_TYPES,
    pair_chat,
    pair_responses,
    reasoning_follows,
)
from ._walk import CHAT_SCHEMAS, RESPONSES_SCHEMAS, Walk, dump_model

__all__ = ["PROTECTED_FIELDS", "ConversationSanitizer"]

PROTECTED_FIELDS: Final = frozenset(
    {"type", "role", "content", "text", "refusal", "phase", "id", "call_id", "tool_call_id"}
    | {"tool_calls", "function_call", "output", "arguments", "input", "encrypted_content"}
)
"""Fields ``strip_fields`` may not name: content, links and ``id`` (which has its own rule)."""

_RESPONSES_ROLES: Final = frozenset({"user", "assistant", "system", "developer"})
_CHAT_ROLES: Final = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
# Types that name server-side state and nothing else: meaningless in another store.
_REFERENCE_TYPES: Final = frozenset({"item_reference"})
# Portable mode drops these (docs/sanitizer.md, "Hosted tool items"): answered by a server id
# (an approval request), or rejected or ignored by the API when replayed without its store.
_PORTABLE_DROPS: Final = _REFERENCE_TYPES | {
    "mcp_approval_request",
    "computer_call",
    "file_search_call",
    "code_interpreter_call",
    "image_generation_call",
    "mcp_list_tools",
    "mcp_call",
}
# Portable mode keeps these ids: replay state bound to the item (a program's fingerprint).
_PORTABLE_KEEPS_ID: Final = frozenset({"program", "program_output"})
# Encrypted content is bound to the organisation that produced it (openai-agents-python#2063).
_ORG_BOUND_TYPES: Final = frozenset({"reasoning", "compaction"})
# The field that links a tool call and its output; the item is unusable without it.
_LINK_FIELDS: Final = {kind: "call_id" for kind in CALL_ID_TYPES | CALL_ID_OUTPUT_TYPES} | {
    "mcp_approval_request": "id",
    "mcp_approval_response": "approval_request_id",
}


def _as_dict(item: object, index: int) -> dict[str, Any]:
    if isinstance(item, BaseModel):
        try:
            return dump_model(item)
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
            ``id`` is sent (except a program's, which is replay state), ``item_reference``
            items, MCP approval requests and the hosted-tool items that cannot be replayed
            without their store (``docs/sanitizer.md``) are dropped, reasoning is kept only with
            its ``encrypted_content`` and a Chat audio reply becomes its transcript. ``False``
            for a continuation against the same store: ids, references, reasoning and audio
            references are kept as they are.
        same_organization: ``False`` drops reasoning and compaction items entirely: their
            encrypted content is bound to the organisation that produced it. Default ``True``.
        strip_fields: field names removed wherever the input schema (at that depth) does not
            declare them; ``None`` (default) means ``SANITIZER_STRIP_FIELDS``.

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
            InvalidConversationError: an item cannot be read or contains itself; the message
                names its index.
        """
        if isinstance(items, str):
            return [{"role": "user", "content": items}]
        walk = Walk(self.strip_fields)
        cleaned = [
            self._responses_item(item, index, walk) for index, item in enumerate(_items(items))
        ]
        holds_calls = previous_response_id is not None or (
            not self.portable and any(item.get("type") in _REFERENCE_TYPES for item in cleaned)
        )
        paired, partner = pair_responses(cleaned, holds_calls=holds_calls)
        allowed = [self._allowed(item) for item in cleaned]
        keep = [  # a call and its output go together
            ok and allowed[index] and (other is None or allowed[other])
            for index, (ok, other) in enumerate(zip(paired, partner, strict=True))
        ]
        keep = reasoning_follows(cleaned, keep)
        return [
            self._portable_form(item) if self.portable else item
            for item, kept in zip(cleaned, keep, strict=True)
            if kept
        ]

    def _responses_item(self, raw: object, index: int, walk: Walk) -> dict[str, Any]:
        item = _as_dict(raw, index)
        walk.index = index
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
            return self._responses_message(item, index, walk)
        link = _LINK_FIELDS.get(kind)
        if kind == "local_shell_call_output" and not isinstance(item.get("call_id"), str):
            link = "id"  # its call's id, as the SDK documents
        if link is not None:
            _link(item, link, index, kind)
        return walk.item(item, RESPONSES_SCHEMAS.get(kind))

    def _responses_message(self, item: dict[str, Any], index: int, walk: Walk) -> dict[str, Any]:
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
        return walk.item(item, schema)

    def _allowed(self, item: dict[str, Any]) -> bool:
        """Whether this mode lets the item through (pairing and reasoning aside)."""
        kind = item.get("type")
        if kind in _ORG_BOUND_TYPES and not self.same_organization:
            return False
        if not self.portable:
            return True
        if kind == "reasoning":
            encrypted = item.get("encrypted_content")
            return isinstance(encrypted, str) and bool(encrypted)
        return kind not in _PORTABLE_DROPS

    @staticmethod
    def _portable_form(item: dict[str, Any]) -> dict[str, Any]:
        """The item without a store's ids (in place: top-level results are never shared)."""
        kind = item.get("type")
        shell_link = kind == "local_shell_call_output" and "call_id" not in item
        if kind not in _PORTABLE_KEEPS_ID and not shell_link:
            item.pop("id", None)  # the Codex CLI pattern: no item id at all
        if item.get("role") == "assistant":
            item.pop("status", None)  # the portable form of an output message: text and phase
        return item

    # Chat Completions ------------------------------------------------------------------------

    def chat_messages(self, messages: Iterable[object]) -> list[dict[str, Any]]:
        """Sanitize Chat Completions ``messages``.

        Args:
            messages: message params, ``ChatCompletionMessage`` models or plain dicts.

        Returns:
            New plain dicts: provider-only fields removed, content untouched, every assistant
            ``tool_calls`` entry answered by a ``tool`` message that follows it (unanswered
            calls and orphan ``tool`` messages are dropped; an assistant message left empty
            goes too). An assistant ``audio`` reply becomes ``{"id": …}``, or in portable mode
            its transcript as ``content``.

        Raises:
            InvalidConversationError: a message cannot be read or contains itself; the message
                names its index.
        """
        walk = Walk(self.strip_fields)
        cleaned = [
            self._chat_message(message, index, walk)
            for index, message in enumerate(_items(messages))
        ]
        return pair_chat(cleaned)

    def _chat_message(self, raw: object, index: int, walk: Walk) -> dict[str, Any]:
        message = _as_dict(raw, index)
        walk.index = index
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
        out = walk.item(message, CHAT_SCHEMAS[role])
        audio = out.get("audio")
        if isinstance(audio, Mapping) and self.portable:
            del out["audio"]  # a reference to audio the server holds until ``expires_at``
            transcript = audio.get("transcript")
            if out.get("content") in (None, "", []) and isinstance(transcript, str) and transcript:
                out["content"] = transcript  # the assistant's words
        elif isinstance(audio, Mapping) and "id" in audio:
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
        check_budget(max_items, max_tokens)
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
        check_budget(max_items, max_tokens)
        out = self.chat_messages(messages)
        return compact_units(out, chat_units(out), max_items=max_items, max_tokens=max_tokens)
