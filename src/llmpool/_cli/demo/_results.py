"""What a demo run produces, piece by piece, and who watches it happen.

``RequestResult`` is one terminal request, ``HopTurn`` one streamed request of the hopping
terminal, ``SimulatorSummary`` what the simulated provider saw, ``ServerSummary`` what the
in-process ``llmpool.server`` saw (``--via-server``); ``DemoOutcome`` holds them all once the
run is over. ``Observer`` is told about each request as it ends (the rich display in
``_report`` is one). Above ``_options``; below the hop, the driver, the summary and the report.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from llmpool import ConnectionStats, Priority

__all__ = [
    "FROZEN",
    "UNEXPECTED_RESPONSE",
    "DemoOutcome",
    "HopTurn",
    "Observer",
    "RequestResult",
    "ServerConnections",
    "ServerSummary",
    "SimulatorSummary",
]

FROZEN: Final = ConfigDict(frozen=True, extra="forbid")
"""The config of every model of the demo's summary: immutable, no unknown field."""

UNEXPECTED_RESPONSE: Final = "UnexpectedResponseType"
"""``RequestResult.error`` of a call that returned something else than the API's type."""


@dataclass(frozen=True, slots=True)
class RequestResult:
    """One demo request as the demo saw it. Durations are seconds.

    Attributes:
        terminal: the terminal's session id.
        index: the request's number within its terminal, from 1.
        priority: the terminal's priority.
        ok: whether the call returned a result of the API's type.
        latency: from the call to its result or error (the record's ``latency``).
        queue_wait: from the call to the start of its first attempt; ``None`` if it never ran.
        attempts: attempts made (the record's ``attempts``).
        retries: attempts after the first (the record's ``retries``).
        request_id: llmpool's request id, from the record (or the error, if refused at once).
        error: the exception's class name when the call failed, or ``UnexpectedResponseType``
            when it returned something else than the API's type.
        message: the exception's message, or what was returned instead, when it failed.
    """

    terminal: str
    index: int
    priority: Priority
    ok: bool
    latency: float
    queue_wait: float | None
    attempts: int
    retries: int
    request_id: str | None = None
    error: str | None = None
    message: str | None = None


class HopTurn(BaseModel):
    """One streamed request of the hopping terminal (a row of the summary's ``hop.turns``)."""

    model_config = FROZEN

    turn: int = Field(description="The user turn it belongs to, from 1.")
    instance: str = Field(description="The simulated instance it ran on: 'east' or 'west'.")
    ok: bool = Field(description="Whether the stream completed.")
    text: str = Field(description="The text streamed to the caller.")
    tool_calls: tuple[str, ...] = Field(description="Names of the tools the model called.")
    recovered: Literal["rebuilt", "retried"] | None = Field(
        description="How the stream recovered from a failure, or null if it did not need to."
    )
    reason: str | None = Field(
        description="The failure recovered from, or the error when 'ok' is false."
    )
    attempts: int = Field(description="Stream attempts made.")
    processing_ms: float | None = Field(
        description="The complete event's processing time, milliseconds (0.1 ms), or null."
    )
    duplicated: bool = Field(description="The text holds more than the one reply (never ok).")


class SimulatorSummary(BaseModel):
    """The HTTP requests the simulated provider served to the terminals."""

    model_config = FROZEN

    requests: int = Field(description="HTTP requests received (retries included).")
    outcomes: Mapping[str, int] = Field(
        description="Requests by outcome ('ok', 'rate_limit', 'status:503', …), sorted."
    )
    paths: Mapping[str, int] = Field(description="Requests by URL path, sorted.")


class ServerConnections(BaseModel):
    """The server's WebSocket connections (its ``/metrics.json`` ``connections``)."""

    model_config = FROZEN

    total: int = Field(description="Connections accepted under the cap.")
    peak: int = Field(description="The most open at once.")
    active: int = Field(description="Still open when the metrics were read (0 after a clean run).")
    rejected: int = Field(description="Connections refused: at capacity or draining.")


class ServerSummary(BaseModel):
    """What the in-process ``llmpool.server`` saw (``--via-server``), read from its endpoints."""

    model_config = FROZEN

    url: str = Field(description="The server's address, ws://127.0.0.1:<port>.")
    asgi: Literal["uvicorn", "hypercorn"] = Field(
        description="The ASGI server: uvicorn on asyncio, hypercorn on trio."
    )
    connections: ServerConnections = Field(description="From /metrics.json.")
    avg_session_duration: float = Field(
        description="Seconds a connection stayed open, on average (/metrics.json)."
    )
    turns: Mapping[str, int] = Field(
        description="Turns by outcome ('completed', or the error code), sorted (/metrics)."
    )
    disconnects: Mapping[str, int] = Field(
        description="Closed connections by close code, sorted (/metrics)."
    )
    reconnects: int = Field(
        description="Sockets the terminals opened again after one ended (client side)."
    )


@dataclass(frozen=True, slots=True)
class DemoOutcome:
    """What a demo run produced.

    Attributes:
        results: every terminal request, in terminal, then request order.
        stats: the manager's stats at the end of the run.
        elapsed: seconds from opening the manager to the last request's end.
        hop: the hopping terminal's streamed requests, or ``None`` if it did not run.
        simulator: what the simulated provider saw, or ``None`` against a real endpoint.
        fault_plan: the simulator's ``FaultPlan`` as JSON, or ``None`` against a real endpoint.
        server: what the in-process server saw, or ``None`` without ``--via-server``.
    """

    results: tuple[RequestResult, ...]
    stats: ConnectionStats
    elapsed: float
    hop: tuple[HopTurn, ...] | None = None
    simulator: SimulatorSummary | None = None
    fault_plan: Mapping[str, JsonValue] | None = None
    server: ServerSummary | None = None


class Observer:
    """Receives the demo's progress; this base class ignores it (``--json``)."""

    def __enter__(self) -> Observer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def started(self, terminal: str, index: int) -> None:
        """Terminal ``terminal`` sends its request number ``index`` (from 1)."""

    def finished(self, result: RequestResult) -> None:
        """A request ended (``result.ok`` tells how)."""

    def tick(self, stats: ConnectionStats, live: Mapping[str, str]) -> None:
        """Called every 0.1 s with the manager's stats and the busy terminals' states.

        ``live`` maps a terminal's session id to what its request is doing
        (``_drive.LiveStates``).
        """
