"""``Conversation``: the locally kept transcript of one conversation, portable across instances.

The server's copy of a conversation (``previous_response_id``, stored item ids) lives on one
instance only; another instance answers 404 "Item with id … not found" or
``previous_response_not_found``. A ``Conversation`` keeps the *whole* transcript locally —
user input, assistant output items, tool calls and their outputs — so a recovering stream can
rebuild a self-contained request from it on any instance (``llmpool.stream_response``), and an
application can save it as JSON and continue elsewhere.

Items are kept in the shape of the API the conversation speaks: Responses API input/output
items (``api="responses"``) or Chat Completions messages (``api="chat"``).

A turn is all or nothing: the caller's input for it (``add_user``, ``add_tool_output``) is
kept from its first item (``turn_start``) until the assistant's side is recorded; a stream
whose turn fails removes that input again (``discard_turn``), so the turn is retried by adding
its input again, and that input is sent once.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from ._errors import InvalidConversationError
from ._pairing import PairKey, responses_call_key, responses_output_key

__all__ = ["Conversation"]

Api = Literal["responses", "chat"]

# Calls whose output ``add_tool_output`` builds from text: the output item type, per call type.
_TEXT_OUTPUTS: Final = {
    "function_call": "function_call_output",
    "custom_tool_call": "custom_tool_call_output",
}


def _as_dict(item: object) -> dict[str, Any]:
    """An SDK model (``to_dict``/``model_dump``) or a mapping, as a plain JSON-able dict."""
    to_dict = getattr(item, "to_dict", None)
    if callable(to_dict):
        return dict(to_dict(mode="json", exclude_unset=True))
    dump = getattr(item, "model_dump", None)
    if callable(dump):
        return dict(dump(mode="json", exclude_unset=True))
    if isinstance(item, Mapping):
        return dict(item)
    raise TypeError(f"a transcript item must be a mapping or a pydantic model, not {item!r}")


class Conversation(BaseModel):
    """The transcript of one conversation, kept by the caller across turns and instances.

    Add the caller's side with ``add_user`` and ``add_tool_output``; a recovering stream run
    with ``conversation=`` records the assistant's side (``record_response`` /
    ``record_chat_message``) when a turn completes. ``to_json()`` / ``from_json()`` save and
    restore it, e.g. to continue on another process or instance.

    A failed turn leaves no trace: when the stream fails, is cancelled or is closed before it
    completes, it removes the input added since the last completed turn (``discard_turn``).
    Retry the turn the way it was first made — ``add_user(...)`` again, stream again — and
    its input is in the transcript, and in the request, once::

        conversation.add_user("What is the weather in Paris?")
        try:
            await consume(stream_response(view, conversation=conversation, model="gpt-5"))
        except openai.APIError:
            conversation.add_user("What is the weather in Paris?")  # the failed turn left nothing
            await consume(stream_response(view, conversation=conversation, model="gpt-5"))

    Attributes:
        api: ``"responses"`` (Responses API items) or ``"chat"`` (Chat Completions messages).
            Default ``"responses"``.
        items: the whole transcript, oldest first, as plain dicts.
        last_response_id: id of the last stored response (Responses API); the next turn tries
            ``previous_response_id`` with it first. ``None`` if the last turn was not stored.
        synced: how many leading ``items`` the server holds under ``last_response_id``: the
            next turn sends only ``items[synced:]`` with ``previous_response_id``.
        turn_start: index in ``items`` of the first input added by ``add_user`` or
            ``add_tool_output`` since the last completed turn (the turn in progress), or
            ``None`` when there is none. Items appended to ``items`` directly are not tracked.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    api: Api = Field(default="responses", description="The API the items are shaped for.")
    items: list[dict[str, Any]] = Field(
        default_factory=list, description="The transcript, oldest first."
    )
    last_response_id: str | None = Field(
        default=None, description="Last stored response id, tried as previous_response_id."
    )
    synced: int = Field(
        default=0,
        ge=0,
        description="Leading items held by the server under last_response_id, count.",
    )
    turn_start: int | None = Field(
        default=None,
        ge=0,
        description="Index of the turn in progress' first input item; None: no turn pending.",
    )

    # -- the caller's side -------------------------------------------------------------------

    def add_user(self, content: str | list[dict[str, Any]]) -> None:
        """Append a user message.

        Args:
            content: the text, or a list of content parts (``input_text``, ``input_image``…
                for the Responses API; ``text``, ``image_url``… for Chat Completions).

        Raises:
            ValueError: ``content`` is empty.
        """
        if not content:
            raise ValueError("add_user: content must not be empty")
        self._begin_turn()
        if self.api == "responses":
            self.items.append({"type": "message", "role": "user", "content": content})
        else:
            self.items.append({"role": "user", "content": content})

    def add_tool_output(self, call_id: str, output: str) -> None:
        """Append the output of the tool call ``call_id``.

        Args:
            call_id: the ``call_id`` (Responses) or tool call ``id`` (Chat) the model sent.
            output: the tool's result, usually JSON text.

        Raises:
            InvalidConversationError: (a ``ValueError``) no tool call with this ``call_id`` is
                in the transcript, or it already has an output (the API would reject either:
                "No tool call found for function call output with call_id …"), or the call's
                output is not text (a computer, shell, apply-patch, program or tool-search call,
                an MCP approval request): append that output item to ``items`` instead.
        """
        pending = {call["call_id"]: call for call in self.pending_tool_calls()}
        call = pending.get(call_id)
        if call is None:
            raise InvalidConversationError(
                f"add_tool_output: call_id {call_id!r} is not a tool call awaiting output "
                f"(awaiting: {list(pending)})"
            )
        if self.api == "responses" and call["type"] not in _TEXT_OUTPUTS:
            raise InvalidConversationError(
                f"add_tool_output: call {call_id!r} is a {call['type']}, whose output is not "
                "text: append its output item to `items`"
            )
        self._begin_turn()
        if self.api == "responses":
            kind = _TEXT_OUTPUTS[call["type"]]
            self.items.append({"type": kind, "call_id": call_id, "output": output})
        else:
            self.items.append({"role": "tool", "tool_call_id": call_id, "content": output})

    def discard_turn(self) -> None:
        """Remove the turn in progress: the items from ``turn_start`` on.

        A recovering stream calls this when its turn fails (an error, an ``error`` event,
        cancellation, or being closed before it completed), so that retrying the turn sends
        its input once. Does nothing when no turn is in progress.
        """
        if self.turn_start is not None:
            del self.items[self.turn_start :]
            self.turn_start = None

    def _begin_turn(self) -> None:
        if self.turn_start is None or self.turn_start > len(self.items):
            self.turn_start = len(self.items)

    def pending_tool_calls(self) -> list[dict[str, Any]]:
        """The tool calls without an output yet, oldest first.

        Every call type ``ConversationSanitizer`` pairs: function, custom, shell, local shell,
        computer, apply-patch, program and tool-search calls with a ``call_id``, MCP approval
        requests, Chat ``tool_calls``. A call is answered by the next output of its kind and
        ``call_id`` after it (``_pairing``), so a ``call_id`` that a later turn uses again is
        pending again until that turn's output.

        Returns:
            Dicts with ``type`` (the call item's type; ``"function"`` for Chat), ``call_id``
            (an MCP approval request's ``id``), ``name`` (``""`` if the call has none),
            ``arguments`` (JSON text; a custom tool call's ``input``; ``""`` if none) and
            ``item``, a copy of the call item or Chat ``tool_calls`` entry.
        """
        pending: dict[PairKey, dict[str, Any]] = {}
        for item in self.items:
            if item.get("role") == "tool":
                pending.pop(("tool", item.get("tool_call_id") or ""), None)
            elif item.get("role") == "assistant":
                for call in item.get("tool_calls") or []:
                    if isinstance(call, Mapping) and isinstance(link := call.get("id"), str):
                        function = call.get("function") or {}
                        entry = _pending("function", link, function, copy.deepcopy(call))
                        pending.setdefault(("tool", link), entry)
            elif (key := responses_call_key(item)) is not None:
                entry = _pending(item["type"], key[1], item, copy.deepcopy(item))
                pending.setdefault(key, entry)  # a second call of the key while one waits
            elif (key := responses_output_key(item)) is not None:
                pending.pop(key, None)
        return list(pending.values())

    def pending_call_ids(self) -> list[str]:
        """The ``call_id`` of every tool call without an output yet."""
        return [call["call_id"] for call in self.pending_tool_calls()]

    # -- the assistant's side ----------------------------------------------------------------

    def record_response(self, response: object) -> None:
        """Append a Responses API response's output items (reasoning, tool calls, messages).

        Args:
            response: an SDK ``Response`` (or its dict). Its ``id`` becomes
                ``last_response_id`` if the response was stored (``store`` not false).
        """
        data = _as_dict(response)
        self.items.extend(_as_dict(item) for item in data.get("output") or [])
        stored = data.get("store") is not False
        self.last_response_id = data.get("id") if stored else None
        self.synced = len(self.items) if stored else 0
        self.turn_start = None

    def add_assistant(self, content: str) -> None:
        """Append an assistant message written by the caller, and end the turn in progress.

        For a turn the caller ended early (a chat server's "stop"): the stream's partial text
        is kept as the assistant's reply, after the turn's input. Without an ``id``, so it is
        portable (any instance and ``store=false`` accept it).

        Args:
            content: the assistant's text.

        Raises:
            ValueError: ``content`` is empty.
        """
        if not content:
            raise ValueError("add_assistant: content must not be empty")
        if self.api == "responses":
            self.items.append({"type": "message", "role": "assistant", "content": content})
        else:
            self.items.append({"role": "assistant", "content": content})
        self.turn_start = None

    def record_chat_message(self, message: object) -> None:
        """Append an assistant message (Chat Completions), e.g. ``choices[0].message``."""
        data = {k: v for k, v in _as_dict(message).items() if v is not None}
        data.setdefault("role", "assistant")
        self.items.append(data)
        self.turn_start = None

    # -- requests ----------------------------------------------------------------------------

    def continuation(self) -> tuple[list[dict[str, Any]], str | None]:
        """What the next Responses turn sends when it tries the server's copy first.

        Returns:
            ``(items[synced:], last_response_id)``; with no ``last_response_id``, the whole
            transcript and ``None`` (the caller sanitises it).
        """
        if self.last_response_id is None:
            return [dict(item) for item in self.items], None
        return [dict(item) for item in self.items[self.synced :]], self.last_response_id

    def forget_server_state(self) -> None:
        """Stop relying on ``previous_response_id`` (e.g. after moving to another instance)."""
        self.last_response_id = None
        self.synced = 0

    # -- persistence -------------------------------------------------------------------------

    def to_json(self) -> str:
        """The conversation as JSON text (``from_json`` reads it back)."""
        return self.model_dump_json()

    @classmethod
    def from_json(cls, data: str | bytes) -> Conversation:
        """Read a conversation written by ``to_json``.

        Raises:
            pydantic.ValidationError: ``data`` is not a conversation; the message names the
                field.
        """
        return cls.model_validate_json(data)


def _pending(kind: str, call_id: str, source: Mapping[str, Any], item: object) -> dict[str, Any]:
    arguments = source.get("arguments", source.get("input", ""))
    return {
        "type": kind,
        "call_id": call_id,
        "name": source.get("name") or "",
        "arguments": arguments if isinstance(arguments, str) else "",
        "item": item,
    }
