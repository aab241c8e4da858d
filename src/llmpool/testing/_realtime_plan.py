"""Realtime plans: how the simulated Realtime WebSocket endpoint paces itself and fails.

A ``RealtimePlan`` is a frozen description, like ``FaultPlan`` for the HTTP endpoints. Its
``scripted`` faults are consumed one per handshake that passes the endpoint's checks, in order;
replacing the plan with ``SimulatedProvider.set_realtime_plan`` starts the script afresh. A
connection keeps the plan that was in force when its handshake arrived. Every duration is a
float in seconds.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["RealtimeFault", "RealtimeFaultKind", "RealtimePlan"]

RealtimeFaultKind = Literal["ok", "refuse", "close", "stall", "update_error"]
"""What the endpoint does with one connection."""

# RFC 6455 section 7.4: 1004, 1005, 1006 and 1015 must never be sent in a close frame, and
# 1016-2999 are reserved for future versions of the protocol.
_SENDABLE_CLOSE_CODES = (range(1000, 1004), range(1007, 1015), range(3000, 5000))


class RealtimeFault(BaseModel):
    """One deterministic misbehaviour, consumed by exactly one Realtime connection.

    Scripted faults are used in order, one per handshake that passes the endpoint's own checks
    (a wrong path, a wrong key or a missing ``model`` is refused without consuming one).

    Attributes:
        kind: ``"ok"`` serves the connection normally; ``"refuse"`` answers the handshake with
            HTTP ``status`` and an OpenAI-shaped JSON error instead of accepting it;
            ``"close"`` accepts, sends ``after_frames`` server events, then closes the
            WebSocket with ``close_code``; ``"stall"`` accepts, sends ``after_frames`` server
            events, then stops answering (client frames are still read and recorded, the
            socket stays open until the client leaves); ``"update_error"`` serves normally but
            answers every ``session.update`` with an ``error`` event (code ``error_code``).
        status: HTTP status of a ``refuse``, 400-599: 401 gets ``invalid_api_key``, 429
            ``rate_limit_exceeded``, others a server or request error. Default 429.
        retry_after: sent as the ``retry-after`` header of a ``refuse``, seconds (``1.5`` is
            sent as ``"1.5"``). Default ``None`` (no header).
        close_code: WebSocket close code of a ``close``: 1000-1003, 1007-1014 or 3000-4999
            (RFC 6455 forbids sending 1004-1006 and 1015). Default 1011 (internal error).
        close_reason: close reason of a ``close``, at most 123 UTF-8 bytes. Default ``""``.
        after_frames: server events (``session.created`` is the first) sent before a
            ``close`` or ``stall``, count; 0 closes or stalls right after the accept. Default 1.
        error_code: ``error.code`` of the ``error`` answering a ``session.update`` under
            ``update_error``. Default ``"invalid_value"``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: RealtimeFaultKind = Field(description="What the endpoint does with the connection.")
    status: int = Field(
        default=429, ge=400, le=599, description="HTTP status of a refused handshake (400-599)."
    )
    retry_after: float | None = Field(
        default=None,
        ge=0.0,
        description="retry-after header of a refused handshake, seconds; None: not sent.",
    )
    close_code: int = Field(
        default=1011, description="WebSocket close code of kind='close' (RFC 6455 sendable)."
    )
    close_reason: str = Field(
        default="", description="Close reason of kind='close', at most 123 UTF-8 bytes."
    )
    after_frames: int = Field(
        default=1, ge=0, description="Server events sent before a close or stall, count."
    )
    error_code: str = Field(
        default="invalid_value",
        min_length=1,
        description="error.code answering session.update under kind='update_error'.",
    )

    @field_validator("close_code")
    @classmethod
    def _check_close_code(cls, code: int) -> int:
        if not any(code in codes for codes in _SENDABLE_CLOSE_CODES):
            raise ValueError(
                f"close_code {code} cannot be sent in a close frame "
                "(use 1000-1003, 1007-1014 or 3000-4999; RFC 6455 section 7.4)"
            )
        return code

    @field_validator("close_reason")
    @classmethod
    def _check_close_reason(cls, reason: str) -> str:
        if len(reason.encode()) > 123:
            raise ValueError("close_reason must be at most 123 UTF-8 bytes (RFC 6455 section 5.5)")
        return reason


class RealtimePlan(BaseModel):
    """How the simulated Realtime endpoint paces its events and which connections fail.

    Raises:
        pydantic.ValidationError: on construction, for a negative duration, an unknown field
            or an invalid scripted fault; the message names the field.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    session_created_delay: float = Field(
        default=0.0,
        ge=0.0,
        description="Wait between accepting the WebSocket and sending session.created, seconds.",
    )
    delta_delay: float = Field(
        default=0.0,
        ge=0.0,
        description="Pause before each response.output_text.delta after the first, seconds.",
    )
    scripted: list[RealtimeFault] = Field(
        default_factory=list,
        description="Faults consumed one per connection, in order; then connections are served.",
    )
