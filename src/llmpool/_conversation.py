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

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ._errors import InvalidConversationError

__all__ = ["Conversation"]

Api = Literal["responses", "chat"]


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
                "No tool call found for function call output with call_id …").
        """
        if call_id not in self.pending_call_ids():
            raise InvalidConversationError(
                f"add_tool_output: call_id {call_id!r} is not a tool call awaiting output "
                f"(awaiting: {self.pending_call_ids()})"
            )
        self._begin_turn()
        if self.api == "responses":
            self.items.append(
                {"type": "function_call_output", "call_id": call_id, "output": output}
            )
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

        Returns:
            Dicts with ``call_id``, ``name`` and ``arguments`` (JSON text).
        """
        calls: dict[str, dict[str, Any]] = {}
        for item in self.items:
            if item.get("type") == "function_call":
                calls[item["call_id"]] = {
                    "call_id": item["call_id"],
                    "name": item.get("name", ""),
                    "arguments": item.get("arguments", ""),
                }
            elif item.get("type") == "function_call_output" or item.get("role") == "tool":
                calls.pop(item.get("call_id") or item.get("tool_call_id") or "", None)
            elif item.get("role") == "assistant":
                for call in item.get("tool_calls") or []:
                    function = call.get("function") or {}
                    calls[call["id"]] = {
                        "call_id": call["id"],
                        "name": function.get("name", ""),
                        "arguments": function.get("arguments", ""),
                    }
        return list(calls.values())

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
