"""What the simulated provider saw, and what it did: HTTP requests and Realtime connections.

``RecordedRequest`` is one HTTP request; ``RecordedRealtimeSession`` one WebSocket handshake and
the connection it opened, with every ``RecordedFrame`` the client sent.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ._realtime_plan import RealtimeFaultKind

__all__ = ["RealtimeOutcome", "RecordedFrame", "RecordedRealtimeSession", "RecordedRequest"]


class RecordedRequest(BaseModel):
    """One request that reached the simulated provider, failed ones included.

    Attributes:
        method: HTTP method, e.g. ``"POST"``.
        path: URL path without the query string, e.g. ``"/v1/responses"``.
        headers: request headers by lower-cased name (repeated headers joined with ``", "``).
        body: the parsed JSON body, or ``None`` for an empty or non-JSON body.
        received_at: arrival time, ``time.monotonic()`` seconds.
        outcome: what the provider did: ``"ok"``, ``"status:<code>"`` (e.g. ``"status:500"``,
            also a 400 for an unparsable body), ``"rate_limit"``, ``"insufficient_quota"``,
            ``"drop"``, ``"stream_disconnect"``, ``"not_found"`` (unknown path, response or
            item id) or ``"unauthorized"`` (wrong or missing API key).
        finished_at: when the answer was over, ``time.monotonic()`` seconds: its last byte
            handed to the server (a stream's last event), or the request ended otherwise (a
            dropped connection, a client gone mid-stream). ``None`` while it is being answered.
            Together with ``received_at`` it gives the requests in flight at the provider.
        usage_tokens: the tokens the provider counted for the answer, input plus output (its
            ``usage.total_tokens``; a chat stream's even without ``include_usage``); ``None``
            when there was no complete answer to count (errors, drops, cut streams, the
            stored-response lookup ``GET /v1/responses/{id}``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: str = Field(description="HTTP method.")
    path: str = Field(description="URL path, without the query string.")
    headers: dict[str, str] = Field(description="Request headers by lower-cased name.")
    body: Any = Field(description="Parsed JSON body, or None.")
    received_at: float = Field(description="Arrival time, time.monotonic() seconds.")
    outcome: str = Field(description="What the provider did with the request.")
    finished_at: float | None = Field(
        default=None, description="End of the answer, time.monotonic() seconds; None if open."
    )
    usage_tokens: int | None = Field(
        default=None, description="Input + output tokens of the answer's usage, or None."
    )


class RecordedFrame(BaseModel):
    """One WebSocket message the simulated Realtime endpoint received from a client.

    Attributes:
        text: the data of a text frame, verbatim; ``None`` for a binary frame.
        data: the data of a binary frame; ``None`` for a text frame.
        received_at: arrival time, ``time.monotonic()`` seconds.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str | None = Field(description="Data of a text frame, verbatim; None if binary.")
    data: bytes | None = Field(default=None, description="Data of a binary frame; None if text.")
    received_at: float = Field(description="Arrival time, time.monotonic() seconds.")

    @property
    def event(self) -> Any:
        """The text frame parsed as JSON, or ``None`` (binary frame, invalid JSON)."""
        if self.text is None:
            return None
        try:
            return json.loads(self.text)
        except ValueError:
            return None

    @property
    def type(self) -> str | None:
        """The client event's ``type``, or ``None`` when the frame is not a JSON object with one."""
        event = self.event
        kind = event.get("type") if isinstance(event, dict) else None
        return kind if isinstance(kind, str) else None


RealtimeOutcome = Literal["accepted", "unauthorized", "not_found", "missing_model", "refused"]
"""What the Realtime endpoint did with a handshake."""


class RecordedRealtimeSession(BaseModel):
    """One WebSocket handshake that reached the simulated provider, and its connection.

    A snapshot: ``SimulatedProvider.realtime_sessions`` builds new ones on every read, so a
    connection still open shows the frames received so far and ``closed_at=None``.

    Attributes:
        path: URL path of the handshake, without the query string, e.g. ``"/v1/realtime"``.
        query: query parameters (the last value of a repeated one), e.g. ``{"model": "m"}``.
        headers: handshake headers by lower-cased name (repeated headers joined with ``", "``).
        subprotocols: the subprotocols the client offered, in its order.
        subprotocol: the subprotocol the endpoint chose (``"realtime"`` when offered), or
            ``None``.
        outcome: ``"accepted"``, ``"unauthorized"`` (wrong or missing key: 401),
            ``"not_found"`` (another path: 404), ``"missing_model"`` (no ``model``: 400) or
            ``"refused"`` (a scripted ``refuse``).
        status: 101 for an accepted handshake, else the HTTP status answered.
        fault: the kind of the scripted ``RealtimeFault`` this connection consumed, or
            ``None`` (none left, or refused before the script was reached).
        session_id: the ``sess_…`` id sent in ``session.created`` (once accepted), else ``None``.
        frames: every message received from the client, in arrival order.
        events_sent: server events sent to the client so far, count.
        opened_at: arrival time of the handshake, ``time.monotonic()`` seconds.
        closed_at: when the connection ended, ``time.monotonic()`` seconds; ``None`` while open
            (and for refused handshakes, which never open).
        close_code: the close code of the WebSocket, the client's or the server's; ``None``
            while open or if refused. A connection lost without a close frame is reported
            by uvicorn as 1005 (no status), like a close frame without a code.
        closed_by: ``"server"`` when a scripted ``close`` ended it, else ``"client"`` (the
            client's close, a lost connection, or the simulator stopping, which closes open
            sockets with 1012); ``None`` while open or if refused.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str = Field(description="URL path of the handshake, without the query string.")
    query: dict[str, str] = Field(description="Query parameters of the handshake URL.")
    headers: dict[str, str] = Field(description="Handshake headers by lower-cased name.")
    subprotocols: list[str] = Field(description="Subprotocols offered by the client.")
    subprotocol: str | None = Field(description="Subprotocol chosen by the endpoint, or None.")
    outcome: RealtimeOutcome = Field(description="What the endpoint did with the handshake.")
    status: int = Field(description="101 if accepted, else the HTTP status answered.")
    fault: RealtimeFaultKind | None = Field(
        description="Kind of the scripted fault consumed, or None."
    )
    session_id: str | None = Field(description="The session's sess_ id once accepted, or None.")
    frames: list[RecordedFrame] = Field(description="Messages received, in arrival order.")
    events_sent: int = Field(description="Server events sent so far, count.")
    opened_at: float = Field(description="Arrival of the handshake, time.monotonic() seconds.")
    closed_at: float | None = Field(description="End, time.monotonic() seconds; None if open.")
    close_code: int | None = Field(description="WebSocket close code; None while open.")
    closed_by: Literal["client", "server"] | None = Field(description="Who closed; None if open.")

    @property
    def types(self) -> list[str | None]:
        """The ``type`` of every received frame, in order (``None`` for a frame without one)."""
        return [frame.type for frame in self.frames]
