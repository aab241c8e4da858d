"""The demo's summary, typed: what ``--json`` prints and what the report renders.

``summarize`` turns a ``DemoOutcome`` into a ``DemoSummary``, a tree of frozen pydantic models;
``DemoSummary.model_dump(mode="json")`` is the ``--json`` object described in ``docs/demo.md``
(its keys, in that order), and ``DemoSummary.model_json_schema()`` is its schema. Durations are
seconds, rounded to milliseconds. Above ``_options``, ``_results`` and ``_hop``; the report and
the run sit above this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

from pydantic import BaseModel, Field, JsonValue, SerializationInfo, field_serializer

from llmpool import ConnectionStats, LatencyStats, PoolConfig, Priority

from ._hop import SCRIPT_TURNS
from ._options import HOP_SESSION, Api, Backend, DemoOptions, terminal_priority
from ._results import (
    FROZEN,
    DemoOutcome,
    HopTurn,
    RequestResult,
    ServerSummary,
    SimulatorSummary,
)

__all__ = [
    "ConfigSummary",
    "DemoSummary",
    "FailureSummary",
    "GroupSummary",
    "HopSummary",
    "Percentiles",
    "TerminalSummary",
    "TotalsSummary",
    "summarize",
    "summarize_hop",
]


class Percentiles(BaseModel):
    """The median and 95th percentile of some durations, seconds (``LatencyStats``' method)."""

    model_config = FROZEN

    p50: float | None = Field(description="Median, seconds; null without samples.")
    p95: float | None = Field(description="95th percentile, seconds; null without samples.")

    @classmethod
    def of(cls, samples: Sequence[float]) -> Percentiles:
        """The percentiles of ``samples`` (seconds), rounded to milliseconds."""
        if not samples:
            return cls(p50=None, p95=None)
        stats = LatencyStats.of(samples)
        return cls(p50=round(stats.p50, 3), p95=round(stats.p95, 3))


class GroupSummary(BaseModel):
    """Counts and durations of a group of requests: a priority's (``per_priority``)."""

    model_config = FROZEN

    requests: int = Field(description="Requests sent.")
    succeeded: int = Field(description="Requests that returned a result of the API's type.")
    failed: int = Field(description="Requests that ended in an error or an unexpected type.")
    attempts: int = Field(description="Attempts made, retries included.")
    retries: int = Field(description="Attempts after each request's first.")
    queue_wait: Percentiles = Field(
        description="From the call to its first attempt, requests that ran."
    )
    latency: Percentiles = Field(description="From the call to its result, succeeded requests.")


class _GroupFields(TypedDict):
    requests: int
    succeeded: int
    failed: int
    attempts: int
    retries: int
    queue_wait: Percentiles
    latency: Percentiles


def _group_fields(results: Sequence[RequestResult]) -> _GroupFields:
    return {
        "requests": len(results),
        "succeeded": sum(1 for r in results if r.ok),
        "failed": sum(1 for r in results if not r.ok),
        "attempts": sum(r.attempts for r in results),
        "retries": sum(r.retries for r in results),
        "queue_wait": Percentiles.of([r.queue_wait for r in results if r.queue_wait is not None]),
        "latency": Percentiles.of([r.latency for r in results if r.ok]),
    }


class _PriorityField(BaseModel):
    # A base of TerminalSummary listed after GroupSummary: pydantic orders fields from the
    # last base to the first, so "priority" comes first in the JSON, as it always has.
    model_config = FROZEN

    priority: Priority = Field(description="The terminal's priority.")


class TerminalSummary(GroupSummary, _PriorityField):
    """One terminal's requests (``per_terminal``): its priority, then the group's fields."""


class TotalsSummary(GroupSummary):
    """Every terminal request (``totals``), with how many were expected and the run time."""

    expected: int = Field(description="Requests the run was to send: terminals x requests.")
    elapsed: float = Field(description="Seconds from opening the manager to the last end.")


class FailureSummary(BaseModel):
    """A request that failed (``failures``)."""

    model_config = FROZEN

    terminal: str = Field(description="The terminal's session id.")
    request: int = Field(description="The request's number within its terminal, from 1.")
    priority: Priority = Field(description="The terminal's priority.")
    request_id: str | None = Field(description="llmpool's request id; null if never admitted.")
    attempts: int = Field(description="Attempts made.")
    error: str | None = Field(
        description="The exception's class name, or 'UnexpectedResponseType'."
    )
    message: str | None = Field(description="The exception's message, or what came back.")


class ConfigSummary(BaseModel):
    """What was run (``config``)."""

    model_config = FROZEN

    terminals: int = Field(description="Terminals.")
    requests: int = Field(description="Requests per terminal.")
    stagger: float = Field(description="Seconds between two terminals' starts.")
    priority: Priority | None = Field(description="The forced priority; null: cycled.")
    api: Api = Field(description="'responses' or 'chat'.")
    model: str = Field(description="The model named in every request.")
    endpoint: str = Field(description="'simulated' or the base URL used.")
    backend: Backend = Field(description="The anyio backend: 'asyncio' or 'trio'.")
    pool: PoolConfig = Field(description="The manager's config.")
    fault_plan: Mapping[str, JsonValue] | None = Field(
        description="The simulator's FaultPlan; null against a real endpoint."
    )


class HopSummary(BaseModel):
    """The hopping terminal's conversation (``hop``)."""

    model_config = FROZEN

    session: str = Field(description="Its session id, 'terminal-hop'.")
    ok: bool = Field(
        description="Every turn of the script streamed, completed, and no text duplicated."
    )
    requests: int = Field(description="Streamed requests (a tool call adds one to its turn).")
    recoveries: int = Field(description="Requests rebuilt from the local transcript.")
    retries: int = Field(description="Requests retried before any output.")
    turns: tuple[HopTurn, ...] = Field(description="Every streamed request, in order.")


class DemoSummary(BaseModel):
    """A demo run: ``model_dump(mode="json")`` is what ``llmpool demo --json`` prints."""

    model_config = FROZEN

    ok: bool = Field(description="Every expected request succeeded (and the hop completed).")
    config: ConfigSummary
    per_terminal: Mapping[str, TerminalSummary] = Field(description="By session id, in order.")
    per_priority: Mapping[Priority, GroupSummary] = Field(
        description="By priority, high first; only the priorities used."
    )
    totals: TotalsSummary
    failures: tuple[FailureSummary, ...] = Field(description="In terminal, then request order.")
    simulator: SimulatorSummary | None = Field(description="Null against a real endpoint.")
    stats: ConnectionStats = Field(description="manager.stats() at the end, by alias.")
    hop: HopSummary | None = Field(description="Null when the hop did not run.")
    server: ServerSummary | None = Field(
        description="The in-process llmpool.server's metrics with --via-server; else null."
    )

    @field_serializer("stats")
    def _stats_by_alias(self, stats: ConnectionStats, info: SerializationInfo) -> dict[str, Any]:
        # The stats keep their documented camelCase names (docs/stats.md), like
        # ``stats().model_dump(by_alias=True)``; the summary's own names are snake_case.
        return stats.model_dump(by_alias=True, mode=info.mode)


def summarize_hop(turns: Sequence[HopTurn]) -> HopSummary:
    """The ``hop`` section of the summary, from ``_hop.run_hop``'s turns."""
    return HopSummary(
        session=HOP_SESSION,
        ok=bool(turns)
        and len({t.turn for t in turns}) == SCRIPT_TURNS
        and all(t.ok and not t.duplicated for t in turns),
        requests=len(turns),
        recoveries=sum(1 for t in turns if t.recovered == "rebuilt"),
        retries=sum(1 for t in turns if t.recovered == "retried"),
        turns=tuple(turns),
    )


def summarize(options: DemoOptions, outcome: DemoOutcome, endpoint: str) -> DemoSummary:
    """The summary of a run (what ``--json`` prints; see ``docs/demo.md``).

    Args:
        options: what was run.
        outcome: what the run produced.
        endpoint: ``"simulated"`` or the base URL used.

    Returns:
        The summary; ``ok`` is true when every expected request succeeded and, if the hopping
        terminal ran, it completed its conversation.
    """
    results = outcome.results
    per_terminal = {
        session: TerminalSummary(
            priority=terminal_priority(number, options.priority),
            **_group_fields([r for r in results if r.terminal == session]),
        )
        for number, session in enumerate(options.sessions, start=1)
    }
    per_priority = {
        p: GroupSummary(**_group_fields([r for r in results if r.priority is p]))
        for p in Priority
        if any(r.priority is p for r in results)
    }
    totals = TotalsSummary(
        **_group_fields(results),
        expected=options.terminals * options.requests,
        elapsed=round(outcome.elapsed, 3),
    )
    failures = tuple(
        FailureSummary(
            terminal=r.terminal,
            request=r.index,
            priority=r.priority,
            request_id=r.request_id,
            attempts=r.attempts,
            error=r.error,
            message=r.message,
        )
        for r in results
        if not r.ok
    )
    config = ConfigSummary(
        terminals=options.terminals,
        requests=options.requests,
        stagger=options.stagger,
        priority=options.priority,
        api=options.api,
        model=options.model,
        endpoint=endpoint,
        backend=options.backend,
        pool=options.pool,
        fault_plan=outcome.fault_plan,
    )
    hop = None if outcome.hop is None else summarize_hop(outcome.hop)
    complete = len(results) == totals.expected and not failures
    return DemoSummary(
        ok=complete and (hop is None or hop.ok),
        config=config,
        per_terminal=per_terminal,
        per_priority=per_priority,
        totals=totals,
        failures=failures,
        simulator=outcome.simulator,
        stats=outcome.stats,
        hop=hop,
        server=outcome.server,
    )
