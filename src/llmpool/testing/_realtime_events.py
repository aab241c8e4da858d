"""Server events of the simulated Realtime API, shaped like OpenAI's GA (non-beta) interface.

Pure builders: JSON objects in, JSON objects out, each with a fresh ``event_id``. The names are
the GA ones (``response.output_text.delta``, ``conversation.item.added``/``.done``), not the
beta ones (``response.text.delta``, ``conversation.item.created``). Replies are text only,
whatever ``output_modalities`` says. The reply text and the token counts follow ``_payloads``:
``"Simulated reply to: "`` plus the last user message, word counts for tokens.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from . import _payloads as P

__all__ = [
    "CLIENT_EVENT_TYPES",
    "error_event",
    "item_events",
    "merged_session",
    "response_events",
    "server_event",
    "session_object",
    "user_item",
]

JSON = dict[str, Any]

CLIENT_EVENT_TYPES = frozenset(
    {
        "session.update",
        "input_audio_buffer.append",
        "input_audio_buffer.commit",
        "input_audio_buffer.clear",
        "conversation.item.create",
        "conversation.item.retrieve",
        "conversation.item.truncate",
        "conversation.item.delete",
        "response.create",
        "response.cancel",
        "output_audio_buffer.clear",
    }
)
"""The Realtime API's client event types; any other ``type`` gets an ``error`` event."""

_SESSION_LIFETIME = 30 * 60  # seconds: the API's sessions expire after 30 minutes
_AUDIO_FORMAT: JSON = {"type": "audio/pcm", "rate": 24000}
_FIXED_SESSION_FIELDS = ("type", "object", "id", "model", "expires_at")


def server_event(type_: str, **fields: Any) -> JSON:
    """A server event: ``{"type": type_, "event_id": "event_…", **fields}``."""
    return {"type": type_, "event_id": P.new_id("event_", 22), **fields}


def session_object(model: str) -> JSON:
    """The session of ``session.created``: the API's GA defaults for a ``realtime`` session."""
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": P.new_id("sess_", 22),
        "model": model,
        "output_modalities": ["audio"],
        "instructions": "You are a simulated assistant.",
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "expires_at": int(time.time()) + _SESSION_LIFETIME,
        "audio": {
            "input": {
                "format": dict(_AUDIO_FORMAT),
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": 0.5,
                    "prefix_padding_ms": 300,
                    "silence_duration_ms": 200,
                    "idle_timeout_ms": None,
                    "create_response": True,
                    "interrupt_response": True,
                },
            },
            "output": {"format": dict(_AUDIO_FORMAT), "voice": "marin", "speed": 1.0},
        },
        "include": None,
    }


def merged_session(session: Mapping[str, Any], update: Mapping[str, Any]) -> JSON:
    """``session`` with ``update`` merged in: objects merge key by key, other values replace.

    ``type``, ``object``, ``id``, ``model`` and ``expires_at`` keep their values, as the API
    does not let a ``session.update`` change them.
    """
    merged = dict(session)
    for key, value in update.items():
        if key in _FIXED_SESSION_FIELDS and key in session:
            continue
        current = merged.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[key] = _deep_merge(current, value)
        else:
            merged[key] = value
    return merged


def _deep_merge(current: Mapping[str, Any], update: Mapping[str, Any]) -> JSON:
    merged = dict(current)
    for key, value in update.items():
        inner = merged.get(key)
        both = isinstance(inner, Mapping) and isinstance(value, Mapping)
        merged[key] = _deep_merge(inner, value) if both else value  # type: ignore[arg-type]
    return merged


def error_event(
    message: str,
    *,
    code: str | None,
    param: str | None = None,
    client_event_id: object = None,
    type_: str = "invalid_request_error",
) -> JSON:
    """An ``error`` event; ``client_event_id`` is the ``event_id`` of the client event, if any."""
    echoed = client_event_id if isinstance(client_event_id, str) else None
    error = {"type": type_, "code": code, "message": message, "param": param, "event_id": echoed}
    return server_event("error", error=error)


def user_item(item: Mapping[str, Any]) -> JSON:
    """The conversation item stored for a client's ``conversation.item.create``."""
    return {
        **item,
        "id": item.get("id") or P.new_id("item_", 22),
        "object": "realtime.item",
        "status": "completed",
    }


def item_events(item: JSON, previous_item_id: str | None) -> list[JSON]:
    """``conversation.item.added`` then ``conversation.item.done`` for a client's item."""
    return [
        server_event("conversation.item.added", previous_item_id=previous_item_id, item=item),
        server_event("conversation.item.done", previous_item_id=previous_item_id, item=item),
    ]


def _assistant_item(item_id: str, text: str | None) -> JSON:
    content = [] if text is None else [{"type": "output_text", "text": text}]
    return {
        "id": item_id,
        "type": "message",
        "object": "realtime.item",
        "status": "in_progress" if text is None else "completed",
        "role": "assistant",
        "content": content,
    }


def _usage(input_tokens: int, output_tokens: int) -> JSON:
    no_tokens = {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0}
    return {
        "total_tokens": input_tokens + output_tokens,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "input_token_details": {
            "text_tokens": input_tokens,
            "audio_tokens": 0,
            "image_tokens": 0,
            "cached_tokens": 0,
            "cached_tokens_details": no_tokens,
        },
        "output_token_details": {"text_tokens": output_tokens, "audio_tokens": 0},
    }


def _response(response_id: str, conversation_id: str | None, session: Mapping[str, Any]) -> JSON:
    audio = session.get("audio")
    output = audio.get("output") if isinstance(audio, Mapping) else None
    voice = output.get("voice", "marin") if isinstance(output, Mapping) else "marin"
    return {
        "object": "realtime.response",
        "id": response_id,
        "status": "in_progress",
        "status_details": None,
        "output": [],
        "conversation_id": conversation_id,
        "output_modalities": ["text"],
        "max_output_tokens": session.get("max_output_tokens", "inf"),
        "audio": {"output": {"format": dict(_AUDIO_FORMAT), "voice": voice}},
        "usage": None,
        "metadata": None,
    }


def response_events(
    *,
    conversation: list[JSON],
    instructions: object,
    conversation_id: str | None,
    session: Mapping[str, Any],
) -> tuple[list[JSON], JSON]:
    """The server events answering ``response.create``, and the assistant item they add.

    Args:
        conversation: the items the response reads (the conversation so far, or the
            ``response.input`` of an out-of-band response), oldest first.
        instructions: the instructions in force (counted as input tokens when a string).
        conversation_id: the ``conv_…`` id the response belongs to; ``None`` for a response
            outside the conversation (``"conversation": "none"``).
        session: the session in force (``max_output_tokens``, the output voice).

    Returns:
        ``(events, item)``: ``response.created``, ``response.output_item.added``,
        ``conversation.item.added``, ``response.content_part.added``, one
        ``response.output_text.delta`` per word, ``response.output_text.done``,
        ``response.content_part.done``, ``response.output_item.done``,
        ``conversation.item.done``, ``response.done`` (with ``usage``), then
        ``rate_limits.updated``; and the completed assistant item.
    """
    text = P.reply_text(conversation)
    response_id, item_id = P.new_id("resp_", 22), P.new_id("item_", 22)
    previous = conversation[-1].get("id") if conversation else None
    started = _response(response_id, conversation_id, session)
    part = {"response_id": response_id, "item_id": item_id, "output_index": 0, "content_index": 0}
    output = {"response_id": response_id, "output_index": 0}
    pending, item = _assistant_item(item_id, None), _assistant_item(item_id, text)
    input_tokens = P.input_tokens(conversation, instructions)
    output_tokens = max(1, P.count_words(text))
    done = {**started, "status": "completed", "output": [item]}
    done["usage"] = _usage(input_tokens, output_tokens)
    events = [
        server_event("response.created", response=started),
        server_event("response.output_item.added", **output, item=pending),
        server_event("conversation.item.added", previous_item_id=previous, item=pending),
        server_event("response.content_part.added", **part, part={"type": "text", "text": ""}),
        *(
            server_event("response.output_text.delta", **part, delta=delta)
            for delta in P.word_chunks(text)
        ),
        server_event("response.output_text.done", **part, text=text),
        server_event("response.content_part.done", **part, part={"type": "text", "text": text}),
        server_event("response.output_item.done", **output, item=item),
        server_event("conversation.item.done", previous_item_id=previous, item=item),
        server_event("response.done", response=done),
        server_event("rate_limits.updated", rate_limits=_rate_limits(input_tokens + output_tokens)),
    ]
    return events, item


def _rate_limits(tokens: int) -> list[JSON]:
    return [
        {"name": "requests", "limit": 5000, "remaining": 4999, "reset_seconds": 0.012},
        {"name": "tokens", "limit": 400000, "remaining": 400000 - tokens, "reset_seconds": 0.5},
    ]
