"""The events a recovering stream yields: one typed envelope for both APIs.

The envelope mirrors a relay protocol common in chat front ends (``{"type": "chunk", "content":
…}``, ``{"type": "complete", "processing_time_ms": …}``, ``{"type": "error", "error": …,
"error_details": …}``), so each event can be sent as-is over a WebSocket with
``event.model_dump_json()``, and read back with ``parse_stream_event``. Durations are in
milliseconds here (``processing_time_ms``), as in that protocol.
"""

from __future__ import annotations

from typing import Annotated, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

__all__ = [
    "ChunkEvent",
    "CompleteEvent",
    "ErrorEvent",
    "RecoveredEvent",
    "StreamEvent",
    "ToolCallEvent",
    "Usage",
    "parse_stream_event",
]


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Usage(_Event):
    """Token counts of one completed turn (Responses ``input_tokens`` -> ``prompt_tokens``)."""

    prompt_tokens: int = Field(default=0, ge=0, description="Input tokens, count.")
    completion_tokens: int = Field(default=0, ge=0, description="Output tokens, count.")
    total_tokens: int = Field(default=0, ge=0, description="Input plus output tokens, count.")


class ChunkEvent(_Event):
    """A piece of the assistant's text, in order; concatenated they make the reply."""

    type: Literal["chunk"] = "chunk"
    content: str = Field(description="The text delta.")
    model: str | None = Field(default=None, description="The model answering, if known.")


class ToolCallEvent(_Event):
    """A piece of a tool call: the first for a call has its name and usually empty arguments."""

    type: Literal["tool_call"] = "tool_call"
    call_id: str = Field(description="The call's call_id (Responses) or id (Chat).")
    name: str = Field(description="The function's name.")
    arguments_delta: str = Field(description="The next piece of the JSON arguments text.")
    index: int = Field(
        default=0, ge=0, description="Output index (Responses) or tool index (Chat)."
    )


class RecoveredEvent(_Event):
    """The stream was restarted before any output reached the caller (at most one per stream).

    ``kind="rebuilt"``: the server had lost the conversation (404 "Item with id … not found" or
    ``previous_response_not_found``) and the request was rebuilt from the local transcript;
    ``kind="retried"``: a disconnect, 5xx or stream error before any output was retried.
    """

    type: Literal["recovered"] = "recovered"
    kind: Literal["rebuilt", "retried"] = Field(description="What was done.")
    reason: str = Field(description="The failure that was recovered from.")
    attempt: int = Field(ge=2, description="The stream attempt that succeeded, from 1.")
    status: int | None = Field(default=None, description="HTTP status of the last failure, if any.")


class CompleteEvent(_Event):
    """The turn is complete; always the last event of a successful stream."""

    type: Literal["complete"] = "complete"
    processing_time_ms: float = Field(
        ge=0.0, description="From the first attempt's start to completion, milliseconds."
    )
    usage: Usage | None = Field(default=None, description="Token counts, if the API sent them.")
    response_id: str | None = Field(default=None, description="resp_… or chatcmpl-… id.")
    finish_reason: str | None = Field(
        default=None, description="'stop', 'tool_calls', 'length', or the incomplete reason."
    )
    model: str | None = Field(default=None, description="The model that answered.")
    tools_used: list[str] = Field(
        default_factory=list, description="Names of the functions called, in order."
    )


class ErrorEvent(_Event):
    """The stream ended with an error (only with ``on_error="event"``; else it raises).

    Before output (an open refused, retries run out, the manager closed…) as after it (a
    disconnect, a stream ``error`` event), always the last event of its stream.
    """

    type: Literal["error"] = "error"
    error: str = Field(description="Short description: the error's class name and message.")
    error_details: str | None = Field(default=None, description="More detail, e.g. the API's code.")
    partial_text: str = Field(default="", description="Text already yielded before the error.")
    request_id: str | None = Field(default=None, description="llmpool's request id of the stream.")
    error_type: str | None = Field(
        default=None,
        description="The failure's class name: 'RateLimitError', 'APIConnectionError', "
        "'StreamFailure' (a stream error event), 'StreamTruncated' (no final event)…",
    )
    status: int | None = Field(default=None, description="HTTP status of the failure, if any.")
    retryable: bool = Field(
        default=False,
        description="Whether llmpool's retry rules treat this failure as transient (classify; "
        "a transient stream error code): sending the turn again may succeed.",
    )
    output_started: bool = Field(
        default=False,
        description="Whether output (text or tool-call deltas) had reached the caller.",
    )


StreamEvent: TypeAlias = Annotated[
    ChunkEvent | ToolCallEvent | RecoveredEvent | CompleteEvent | ErrorEvent,
    Field(discriminator="type"),
]
"""Any event of a recovering stream; ``event.type`` tells which."""

_ADAPTER: TypeAdapter[StreamEvent] = TypeAdapter(StreamEvent)


def parse_stream_event(data: str | bytes) -> StreamEvent:
    """Read one event from its JSON (``event.model_dump_json()``).

    Raises:
        pydantic.ValidationError: ``data`` is not an event.
    """
    return _ADAPTER.validate_json(data)
