"""The chat protocol of ``/ws/chat/{session_id}``: client frames, server frames, codes.

Client -> server (JSON text frames):

* ``{"message": "..."}`` (the original protocol) or ``{"type": "message", "message": "..."}``
* ``{"type": "stop"}``: end the running turn now, keeping its partial text
* ``{"type": "resume", "last_seq": n}``: send the session's frames after ``n``
* ``{"type": "ping"}``: answered by ``{"type": "pong"}`` (keeps a browser's socket alive)
* ``{"type": "auth", "token": "..."}``: the first frame of a browser when a token is required

Server -> client: every frame is a JSON object with ``type``, ``seq`` and ``turn_id``. A
*session frame* (``chunk``, ``complete``, a turn's ``error``) takes the session's next ``seq``
(1, 2, 3… per session) and is kept for resume; a *reply* (``pong``, an ``error`` about one
client frame such as ``session_busy`` or ``invalid_message``) concerns one socket only, is not
kept, and carries the session's current ``seq`` (the last session frame's) so it never moves
a client's resume point. Frames are built here as JSON text once, and sent as is to every
socket of the session.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import IntEnum, StrEnum
from json.encoder import encode_basestring
from typing import Annotated, Any, Final, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

__all__ = [
    "AuthFrame",
    "ClientFrame",
    "CloseCode",
    "ErrorCode",
    "InvalidFrameError",
    "MessageFrame",
    "PingFrame",
    "ResumeFrame",
    "StopFrame",
    "chunk_frame",
    "complete_frame",
    "error_frame",
    "parse_client_frame",
    "pong_frame",
]


class ErrorCode(StrEnum):
    """The ``error`` field of an ``error`` frame: stable, for clients to branch on."""

    QUEUE_FULL = "queue_full"
    """The manager's queue is full (``QueueFullError``); try again later."""
    QUEUE_TIMEOUT = "queue_timeout"
    """The turn waited longer than the queue timeout for a slot (``QueueTimeoutError``)."""
    RATE_LIMITED = "rate_limited"
    """The endpoint kept answering 429 (retries ran out); ``retry_after_ms`` if it said."""
    UPSTREAM_ERROR = "upstream_error"
    """The endpoint failed in another way (a 4xx/5xx after retries, a timeout, a disconnect
    before output); ``status`` when it answered."""
    STREAM_INTERRUPTED = "stream_interrupted"
    """The answer broke after text was sent; the turn is not kept: send the message again."""
    SESSION_BUSY = "session_busy"
    """A turn of this session is running: one generation at a time per session."""
    SERVER_AT_CAPACITY = "server_at_capacity"
    """``max_connections`` sockets are open; the socket is closed with 1013."""
    MESSAGE_TOO_BIG = "message_too_big"
    """A frame over ``max_message_bytes`` (close 1009), or a turn whose prompt can never fit
    the token budget (the socket stays open)."""
    INVALID_MESSAGE = "invalid_message"
    """Malformed JSON, an unknown ``type``, a field of the wrong shape; the socket stays open."""
    UNAUTHORIZED = "unauthorized"
    """The token is wrong or missing; the socket is closed with 1008."""
    RESYNC_REQUIRED = "resync_required"
    """Frames this socket needs are no longer kept (a resume from too far back, or a socket
    too slow for the session's buffer): reload the session (``GET /api/sessions/{id}``)."""
    IDLE_TIMEOUT = "idle_timeout"
    """No client frame and no running turn for ``connection_timeout``; close 1001."""
    SERVER_SHUTTING_DOWN = "server_shutting_down"
    """The server is draining: new sockets are refused, idle ones closed, with 1012."""
    INTERNAL_ERROR = "internal_error"
    """A bug in the server; logged with its traceback."""


class CloseCode(IntEnum):
    """WebSocket close codes the server uses (RFC 6455 §7.4.1; 1012/1013 IANA-registered)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    """Closed for idleness (``idle_timeout``)."""
    POLICY_VIOLATION = 1008
    """Unauthorized, an invalid session id or priority, or a client that never reads."""
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    """The server is draining: reconnect (to another instance) after a backoff."""
    TRY_AGAIN_LATER = 1013
    """At capacity: reconnect after ``retry_after_ms``."""


class _Frame(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class MessageFrame(_Frame):
    """A user message: starts a turn (``type`` may be omitted, as in the original protocol)."""

    type: Literal["message"] = "message"
    message: str = Field(min_length=1, description="The user's text.")


class StopFrame(_Frame):
    """Stop the running turn."""

    type: Literal["stop"]


class ResumeFrame(_Frame):
    """Send the session's frames after ``last_seq`` (0: every frame still kept)."""

    type: Literal["resume"]
    last_seq: int = Field(ge=0, description="The last seq the client has, from 0.")


class PingFrame(_Frame):
    """An application-level ping (browsers cannot send protocol pings)."""

    type: Literal["ping"]


class AuthFrame(_Frame):
    """The bearer token, as a browser's first frame."""

    type: Literal["auth"]
    token: str = Field(description="The server's token.")


ClientFrame: TypeAlias = Annotated[
    MessageFrame | StopFrame | ResumeFrame | PingFrame | AuthFrame, Field(discriminator="type")
]
_CLIENT: TypeAdapter[ClientFrame] = TypeAdapter(ClientFrame)
_TYPES: Final = ("message", "stop", "resume", "ping", "auth")


class InvalidFrameError(ValueError):
    """A client frame that is not valid JSON or not one of the protocol's frames."""


def parse_client_frame(text: str) -> ClientFrame:
    """Read one client frame.

    Args:
        text: the frame's JSON text.

    Returns:
        The frame; ``{"message": ...}`` without a ``type`` is a ``MessageFrame``.

    Raises:
        InvalidFrameError: not JSON, not an object, an unknown ``type``, or a field of the
            wrong shape; the message says which, briefly (it is sent to the client).
    """
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InvalidFrameError(f"not JSON: {exc.args[0]}") from None
    if not isinstance(data, dict):
        raise InvalidFrameError(f"a frame must be a JSON object, not {type(data).__name__}")
    kind = data.setdefault("type", "message")
    if kind not in _TYPES:
        raise InvalidFrameError(f"unknown type {kind!r}; expected one of {', '.join(_TYPES)}")
    try:
        return _CLIENT.validate_python(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"][1:]) or "frame"
        raise InvalidFrameError(f"{kind}: {where}: {first['msg']}") from None


_string: Final = encode_basestring
"""A str as a JSON string, non-ASCII kept (json's C encoder, as ``ensure_ascii=False``)."""


def _dump(frame: dict[str, Any]) -> str:
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


def chunk_frame(
    seq: int,
    turn_id: str,
    content: str,
    model: str | None,
    *,
    finish_reason: str | None = None,
    usage: dict[str, int] | None = None,
    tools_used: list[str] | None = None,
) -> str:
    """A ``chunk`` frame: a piece of the answer (usage and finish_reason on the last one)."""
    if finish_reason is None and usage is None and not tools_used:
        # The hot path (every text delta): the same JSON as below, built without a dict.
        name = "null" if model is None else _string(model)
        return (
            f'{{"type":"chunk","seq":{seq:d},"turn_id":{_string(turn_id)},'
            f'"content":{_string(content)},"finish_reason":null,"model":{name},'
            '"usage":null,"tools_used":[]}'
        )
    return _dump(
        {
            "type": "chunk",
            "seq": seq,
            "turn_id": turn_id,
            "content": content,
            "finish_reason": finish_reason,
            "model": model,
            "usage": usage,
            "tools_used": tools_used or [],
        }
    )


def complete_frame(
    seq: int,
    turn_id: str,
    processing_time_ms: float,
    usage: dict[str, int] | None,
    *,
    stopped: bool,
) -> str:
    """A ``complete`` frame: the turn ended (``stopped``: by a ``stop`` frame)."""
    return _dump(
        {
            "type": "complete",
            "seq": seq,
            "turn_id": turn_id,
            "processing_time_ms": round(processing_time_ms, 3),
            "usage": usage,
            "stopped": stopped,
        }
    )


def error_frame(
    seq: int,
    turn_id: str | None,
    code: ErrorCode,
    message: str,
    *,
    request_id: str | None = None,
    status: int | None = None,
    retry_after_ms: int | None = None,
    extra: Mapping[str, int] | None = None,
) -> str:
    """An ``error`` frame; ``extra`` adds fields to ``error_details`` (e.g. ``oldest_seq``)."""
    return _dump(
        {
            "type": "error",
            "seq": seq,
            "turn_id": turn_id,
            "error": code.value,
            "error_details": {
                "message": message,
                "request_id": request_id,
                "status": status,
                "retry_after_ms": retry_after_ms,
                **(extra or {}),
            },
        }
    )


def pong_frame(seq: int, turn_id: str | None) -> str:
    """The answer to a client's ``ping``."""
    return _dump({"type": "pong", "seq": seq, "turn_id": turn_id})
