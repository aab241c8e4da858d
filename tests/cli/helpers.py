"""Builders of the demo's results, for tests that need no run."""

from __future__ import annotations

from typing import Any

from llmpool import ConnectionManager, Priority
from llmpool._cli.demo._results import (
    DemoOutcome,
    HopTurn,
    RequestResult,
    ServerConnections,
    ServerSummary,
    SimulatorSummary,
)


def result(
    terminal: str = "terminal-1",
    index: int = 1,
    priority: Priority = Priority.HIGH,
    *,
    ok: bool = True,
    latency: float = 0.5,
    queue_wait: float | None = 0.1,
    attempts: int = 2,
    retries: int = 1,
) -> RequestResult:
    """One request's result; a failure is an APIConnectionError."""
    return RequestResult(
        terminal=terminal,
        index=index,
        priority=priority,
        ok=ok,
        latency=latency,
        queue_wait=queue_wait,
        attempts=attempts,
        retries=retries,
        request_id="req_0123456789abcdef",
        error=None if ok else "APIConnectionError",
        message=None if ok else "Connection error.",
    )


def hop_turn(turn: int, instance: str, **changes: Any) -> HopTurn:
    """A streamed turn that completed without recovery; ``changes`` override its fields."""
    fields: dict[str, Any] = {
        "turn": turn,
        "instance": instance,
        "ok": True,
        "text": f"Simulated reply {turn}",
        "tool_calls": (),
        "recovered": None,
        "reason": None,
        "attempts": 1,
        "processing_ms": 12.5,
        "duplicated": False,
    }
    return HopTurn(**(fields | changes))


def complete_hop() -> tuple[HopTurn, ...]:
    """The hop's four streamed requests as a good run has them."""
    return (
        hop_turn(1, "east", text="", tool_calls=("get_weather",), recovered="retried",
                 reason="stream cut", attempts=2),
        hop_turn(1, "east"),
        hop_turn(2, "west", recovered="rebuilt", reason="404 not found", attempts=2),
        hop_turn(3, "east", recovered="rebuilt", reason="404 not found", attempts=2),
    )  # fmt: skip


def server_summary() -> ServerSummary:
    """What a clean --via-server run of 2 terminals x 2 requests reads from its server."""
    return ServerSummary(
        url="ws://127.0.0.1:40123",
        asgi="uvicorn",
        connections=ServerConnections(total=2, peak=2, active=0, rejected=0),
        avg_session_duration=1.25,
        turns={"completed": 4},
        disconnects={"1000": 2},
        reconnects=0,
    )


def outcome(
    results: tuple[RequestResult, ...],
    *,
    hop: tuple[HopTurn, ...] | None = None,
    simulated: bool = True,
    server: ServerSummary | None = None,
) -> DemoOutcome:
    """A finished run with these results, a fresh manager's stats, 1.2345 s elapsed."""
    return DemoOutcome(
        results=results,
        stats=ConnectionManager().stats(),
        elapsed=1.2345,
        hop=hop,
        simulator=SimulatorSummary(
            requests=sum(r.attempts for r in results),
            outcomes={"ok": sum(r.ok for r in results), "rate_limit": 1},
            paths={"/v1/responses": sum(r.attempts for r in results)},
        )
        if simulated
        else None,
        fault_plan={"latency_min": 0.2, "seed": 7} if simulated else None,
        server=server,
    )
