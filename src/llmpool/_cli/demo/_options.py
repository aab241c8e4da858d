"""What ``llmpool demo`` is asked to do: its options, their defaults, the terminals' names.

The bottom of the demo: every other demo module may import this one; it imports only llmpool's
public API and ``llmpool._constants`` (where the demo's defaults live with every other one).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from llmpool import PoolConfig, Priority
from llmpool import _constants as C

__all__ = [
    "CLUSTER_PREFIX",
    "DEFAULT_FAULT_PLAN",
    "DEFAULT_MODEL",
    "DEFAULT_REQUESTS",
    "DEFAULT_SEED",
    "DEFAULT_STAGGER",
    "DEFAULT_TERMINALS",
    "HOP_INSTANCES",
    "HOP_SESSION",
    "SIMULATOR_API_KEY",
    "Api",
    "Backend",
    "ClusterOptions",
    "DemoOptions",
    "terminal_priority",
]

DEFAULT_TERMINALS: Final = C.DEMO_TERMINALS
DEFAULT_REQUESTS: Final = C.DEMO_REQUESTS
DEFAULT_STAGGER: Final = C.DEMO_STAGGER
DEFAULT_MODEL: Final = C.DEMO_MODEL
DEFAULT_SEED: Final = C.DEMO_SEED
SIMULATOR_API_KEY: Final = C.DEMO_SIMULATOR_API_KEY

DEFAULT_FAULT_PLAN: Final[Mapping[str, Any]] = {
    "latency_min": 0.2,
    "latency_max": 0.8,
    "error_rates": {500: 0.05, 503: 0.03},
    "rate_limit_rate": 0.08,
    "retry_after": 1.0,
    # A quota far above the demo's load: the simulator then sends x-ratelimit-* headers, the
    # manager learns the limit, and the final stats show it under rateLimits.
    "rpm_limit": 600,
}
"""The simulator's default ``FaultPlan`` fields (the seed is added from ``--seed``)."""

CLUSTER_PREFIX: Final = "llmpool-demo"
"""The Redis key prefix of ``--instances``: every instance's budgets under one namespace."""

HOP_SESSION: Final = "terminal-hop"
"""The session id of the hopping terminal (``_hop``)."""
HOP_INSTANCES: Final = ("east", "west")
"""The two simulated instances the hopping terminal moves between, first one first."""

_PRIORITY_CYCLE: Final = (Priority.HIGH, Priority.NORMAL, Priority.LOW)

Api = Literal["responses", "chat"]
Backend = Literal["asyncio", "trio"]


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """Everything ``llmpool demo`` was asked to do (see ``docs/demo.md``).

    Attributes:
        terminals: number of terminals (sessions ``terminal-1`` …), at least 1.
        requests: requests each terminal sends, one after the other, at least 1.
        stagger: seconds between two terminals' starts.
        priority: every terminal's priority, or ``None`` to cycle high, normal, low.
        api: ``"responses"`` (``responses.create``) or ``"chat"`` (``chat.completions.create``).
        model: the model named in every request.
        base_url: an OpenAI-compatible endpoint, or ``None`` for the simulated provider.
        api_key: the key sent; ``None``: ``OPENAI_API_KEY`` (or the simulator's key).
        fault_plan: ``FaultPlan`` fields for the simulator (ignored with ``base_url``).
        pool: the manager's config.
        json: print one JSON summary instead of the rich display.
        backend: the anyio backend, ``"asyncio"`` or ``"trio"``.
        hop: with the simulator, also run ``terminal-hop``: a streamed multi-turn conversation
            hopping between two more simulated instances (``_hop``); never with ``via_server``.
        via_server: each terminal is a WebSocket client of an in-process ``llmpool.server``
            in front of the manager, its requests chat turns (``_via_server``).
    """

    terminals: int = DEFAULT_TERMINALS
    requests: int = DEFAULT_REQUESTS
    stagger: float = DEFAULT_STAGGER
    priority: Priority | None = None
    api: Api = "responses"
    model: str = DEFAULT_MODEL
    base_url: str | None = None
    api_key: str | None = None
    fault_plan: Mapping[str, Any] = field(
        default_factory=lambda: {**DEFAULT_FAULT_PLAN, "seed": DEFAULT_SEED}
    )
    pool: PoolConfig = field(default_factory=PoolConfig)
    json: bool = False
    backend: Backend = "asyncio"
    hop: bool = True
    via_server: bool = False

    @property
    def sessions(self) -> list[str]:
        """The terminals' session ids, ``terminal-1`` to ``terminal-N``."""
        return [f"terminal-{n}" for n in range(1, self.terminals + 1)]


def terminal_priority(number: int, forced: Priority | None = None) -> Priority:
    """The priority of terminal ``number`` (1-based): ``forced``, or high/normal/low in turn."""
    return forced if forced is not None else _PRIORITY_CYCLE[(number - 1) % len(_PRIORITY_CYCLE)]


@dataclass(frozen=True, slots=True)
class ClusterOptions:
    """What ``llmpool demo --instances N`` was asked to do (see ``docs/demo.md``).

    N processes, each with its own ``ConnectionManager`` on one ``RedisState``, share one
    quota: ``rpm`` and ``tpm`` for the model, ``concurrency`` requests in flight at once.
    Each instance's ``callers`` send requests back to back for ``duration`` seconds, far more
    than the quota admits; the requests still queued then finish before the report.

    Attributes:
        instances: worker processes (``instance-1`` …), at least 1.
        callers: callers per instance, each sending one request after the other, at least 1.
        duration: seconds the callers keep sending new requests.
        rpm: the shared requests-per-minute limit (``RateLimitPolicy.requests_per_minute``).
        tpm: the shared tokens-per-minute limit (``RateLimitPolicy.tokens_per_minute``).
        concurrency: requests in flight at once, every instance together
            (``SharedBudgetPolicy.concurrency``).
        max_output_tokens: each request's ``max_output_tokens``: its token estimate's bound.
        model: the model named in every request.
        latency_min: the simulated provider's shortest service time, seconds.
        latency_max: its longest service time, seconds.
        seed: the seed of its latencies.
        backend: the anyio backend of every instance, ``"asyncio"`` or ``"trio"``.
        prefix: the Redis key prefix the instances share.
    """

    instances: int = C.DEMO_CLUSTER_INSTANCES
    callers: int = C.DEMO_CLUSTER_CALLERS
    duration: float = C.DEMO_CLUSTER_DURATION
    rpm: int = C.DEMO_CLUSTER_RPM
    tpm: int = C.DEMO_CLUSTER_TPM
    concurrency: int = C.DEMO_CLUSTER_CONCURRENCY
    max_output_tokens: int = C.DEMO_CLUSTER_MAX_OUTPUT_TOKENS
    model: str = DEFAULT_MODEL
    latency_min: float = C.DEMO_CLUSTER_LATENCY_MIN
    latency_max: float = C.DEMO_CLUSTER_LATENCY_MAX
    seed: int = DEFAULT_SEED
    backend: Backend = "asyncio"
    prefix: str = CLUSTER_PREFIX

    @property
    def names(self) -> list[str]:
        """The instances' names, ``instance-1`` to ``instance-N``."""
        return [f"instance-{n}" for n in range(1, self.instances + 1)]
