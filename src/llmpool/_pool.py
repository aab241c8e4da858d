"""The pooled clients and their upstreams (key + base URL), with 429 cooldowns and budgets.

This module is the only place llmpool builds an ``openai.AsyncOpenAI`` (``default_client``);
everything else receives clients from a factory. Clients built with the same API key and base
URL share an *upstream*: a 429 with Retry-After cools the whole upstream down, so queued work
is not thrown at the same wall, and work goes to another upstream while one is cooling. Each
upstream also has its rate-limit budgets (``UpstreamLimits``); ``ClientPool.reserve`` is the
admission check the scheduler runs before it grants a slot.
"""

from __future__ import annotations

import hashlib
import inspect
import math
from collections.abc import Callable
from typing import Final, cast

import openai

from ._breaker import CircuitBreaker
from ._config import CircuitPolicy, RateLimitPolicy
from ._limits import UpstreamLimits
from ._state import BudgetStore, HealthStore, MemoryBudgets, MemoryHealth

__all__ = ["ClientFactory", "ClientPool", "PooledClient", "adapt_factory", "default_client"]

ClientFactory = Callable[[int], openai.AsyncOpenAI] | Callable[[], openai.AsyncOpenAI]
"""Builds one pooled client: ``factory(index) -> AsyncOpenAI`` or ``factory() -> AsyncOpenAI``.

The first form gets the pool index (0 to ``pool_size - 1``), to spread the pool over several
endpoints or keys; the second suits a pool of identical clients
(``lambda: openai.AsyncOpenAI(base_url=...)``). ``adapt_factory`` tells them apart.
"""

_FACTORY_FORMS = (
    "write client_factory=lambda index: openai.AsyncOpenAI(...) (index: the pool index, 0 to "
    "pool_size - 1) or client_factory=lambda: openai.AsyncOpenAI(...)"
)


def adapt_factory(factory: object) -> Callable[[int], openai.AsyncOpenAI]:
    """``factory`` as a function of the pool index, whichever ``ClientFactory`` form it has.

    The signature is read once, with ``inspect.signature``: a callable that accepts one
    positional argument (``def f(index)``, ``lambda i=0: ...``, ``def f(*args)``) is called
    with the index; one that accepts no argument (``lambda: ...``, ``openai.AsyncOpenAI``
    itself, whose parameters are keyword-only) is called with none. A callable whose
    signature cannot be read (some builtins and C extensions) is called with the index.

    Args:
        factory: the ``client_factory`` given to ``ConnectionManager``.

    Returns:
        ``factory`` itself, or a wrapper calling ``factory()`` and ignoring the index.

    Raises:
        TypeError: ``factory`` is not callable (e.g. an ``AsyncOpenAI`` instance instead of a
            function that builds one), or can be called neither with one positional argument
            nor with none (two required parameters, a required keyword-only one).
    """
    if not callable(factory):
        raise TypeError(
            f"client_factory must be callable, got {type(factory).__name__}; {_FACTORY_FORMS}"
        )
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # no signature to read: the documented form
        return cast(Callable[[int], openai.AsyncOpenAI], factory)
    if _accepts(signature, 0):
        return cast(Callable[[int], openai.AsyncOpenAI], factory)
    if _accepts(signature):
        build = cast(Callable[[], openai.AsyncOpenAI], factory)

        def indexed(index: int) -> openai.AsyncOpenAI:
            del index  # a zero-argument factory builds every client alike
            return build()

        return indexed
    name = getattr(factory, "__qualname__", type(factory).__name__)
    raise TypeError(
        f"client_factory {name}{signature} can be called neither as factory(index) nor as "
        f"factory(); {_FACTORY_FORMS}"
    )


def _accepts(signature: inspect.Signature, *args: object) -> bool:
    try:
        signature.bind(*args)
    except TypeError:
        return False
    return True


def default_client(index: int) -> openai.AsyncOpenAI:
    """The default client factory: ``AsyncOpenAI`` from the usual ``OPENAI_*`` variables.

    ``OPENAI_API_KEY``, ``OPENAI_BASE_URL``, ``OPENAI_ORG_ID`` and ``OPENAI_PROJECT_ID`` are
    read by the SDK itself. SDK retries are off (``max_retries=0``): llmpool retries.

    Args:
        index: the pool index (unused: every default client is alike).

    Raises:
        openai.OpenAIError: no API key is configured.
    """
    del index
    return openai.AsyncOpenAI(max_retries=0)


class Upstream:
    """An API key + base URL pair, shared by the clients built with it.

    It has a cooldown (a 429 with ``Retry-After``), a circuit breaker (hintless 429s, bursts
    of 5xx) and rate-limit budgets per model (``budget(model)``): OpenAI's limits are per
    model on one key, so one model's exhausted budget never holds back another's.

    Args:
        label: base URL and a hash of the key, for logs and stats.
        policy: the rate-limit policy (configured limits, per model).
        circuit: the circuit-breaker policy; ``None`` or disabled: no breaker.
        address: the base URL's host, for instruments; default ``None``.
        port: the base URL's port, for instruments; default ``None``.
        budgets: the budget store (``_state``); in memory by default.
        health: the health store (cooldown, breaker); in memory by default.
    """

    __slots__ = ("_store", "address", "budgets", "health", "label", "policy", "port")

    def __init__(
        self,
        label: str,
        policy: RateLimitPolicy,
        circuit: CircuitPolicy | None = None,
        *,
        address: str | None = None,
        port: int | None = None,
        budgets: BudgetStore | None = None,
        health: HealthStore | None = None,
    ) -> None:
        self.label = label
        self.address = address  # the base URL's host (OpenTelemetry's server.address)
        self.port = port  # its port, the scheme's default if the URL names none
        self.policy = policy
        self._store = MemoryBudgets() if budgets is None else budgets
        self.budgets = self._store.models(label)  # the store's live mapping, by model
        self.health = (MemoryHealth() if health is None else health).view(label, circuit)
        # Configured limits are in stats() from the start; other models' budgets appear on use.
        if policy.requests_per_minute is not None or policy.tokens_per_minute is not None:
            self.budget(None)
        for model in policy.models:
            self.budget(model)

    @property
    def breaker(self) -> CircuitBreaker | None:
        """The circuit breaker (the health view's), or ``None`` when disabled."""
        return self.health.breaker

    @property
    def cooldown_until(self) -> float:
        """When the cooldown ends (event-loop clock, seconds); ``0.0`` for none."""
        return self.health.cooldown_until

    def budget(self, model: str | None) -> UpstreamLimits:
        """The budgets of ``model`` here (created on first use, full)."""
        budget = self.budgets.get(model)
        if budget is None:
            budget = self._store.limits(self.label, model, self.policy)
        return budget

    def wait_for(self, tokens: int, now: float, model: str | None = None) -> float:
        """Seconds until a request of ``tokens`` for ``model`` may start here.

        The circuit breaker first (``inf`` while a half-open probe is out), then the cooldown,
        then the model's budgets.
        """
        health = self.health
        breaker = health.breaker
        if breaker is not None and not breaker.closed:
            wait = breaker.wait(now)
            if wait > 0.0:
                return wait
        limits = self.budget(model)
        until = health.cooldown_until
        cooling = until - now
        if cooling > 0.0:
            return cooling + limits.wait_for(tokens, until)
        health.cooldown_until = 0.0  # over: forgotten, so idle() can skip the clock
        return limits.wait_for(tokens, now) if limits.limited else 0.0

    def idle(self, model: str | None = None) -> bool:
        """No cooldown, circuit closed, no limits for ``model``: nothing to wait for."""
        health = self.health
        breaker = health.breaker
        return (
            health.cooldown_until == 0.0
            and (breaker is None or breaker.closed)
            and not self.budget(model).limited
        )

    def cooling(self, now: float) -> bool:
        """Whether the upstream is in a cooldown at ``now`` (event-loop clock, seconds)."""
        return now < self.health.cooldown_until


class PooledClient:
    """One pooled client with its upstream and its count of attempts in flight."""

    __slots__ = ("client", "in_flight", "index", "upstream")

    def __init__(self, index: int, client: openai.AsyncOpenAI, upstream: Upstream) -> None:
        self.index = index
        self.client = client
        self.upstream = upstream
        self.in_flight = 0


_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


def _port(client: openai.AsyncOpenAI) -> int | None:
    """The port of the client's base URL (its scheme's default when the URL names none)."""
    url = client.base_url
    return url.port or _DEFAULT_PORTS.get(url.scheme)


def _upstream_label(client: openai.AsyncOpenAI) -> str:
    # The key is hashed: labels appear in logs and stats, keys must not.
    digest = hashlib.sha256(client.api_key.encode()).hexdigest()[:8]
    return f"{client.base_url}#{digest}"


class ClientPool:
    """Chooses a client for each attempt.

    The least busy client on an upstream that is not cooling wins; equals take turns.

    Args:
        clients: the clients, in pool order. A client whose ``max_retries`` is not 0 is
            replaced by a copy with ``max_retries=0`` (the SDK's own retries would multiply
            llmpool's).
        rate_limit: the rate-limit policy of every upstream; none by default.
        circuit: the circuit-breaker policy of every upstream; none by default.
        now: clock reading for the budgets, seconds.
        budgets: where the upstreams' budgets live; in memory by default.
        health: where their cooldowns and breakers live; in memory by default.
    """

    def __init__(
        self,
        clients: list[openai.AsyncOpenAI],
        rate_limit: RateLimitPolicy | None = None,
        circuit: CircuitPolicy | None = None,
        now: float = 0.0,
        *,
        budgets: BudgetStore | None = None,
        health: HealthStore | None = None,
    ) -> None:
        policy = RateLimitPolicy() if rate_limit is None else rate_limit
        budgets = MemoryBudgets() if budgets is None else budgets
        self._health = MemoryHealth() if health is None else health
        upstreams: dict[str, Upstream] = {}
        self.clients: list[PooledClient] = []
        for index, client in enumerate(clients):
            if client.max_retries != 0:
                client = client.with_options(max_retries=0)
            label = _upstream_label(client)
            upstream = upstreams.get(label)
            if upstream is None:
                upstream = upstreams[label] = Upstream(
                    label,
                    policy,
                    circuit,
                    address=client.base_url.host or None,
                    port=_port(client),
                    budgets=budgets,
                    health=self._health,
                )
            self.clients.append(PooledClient(index, client, upstream))
        self.upstreams = list(upstreams.values())
        self._next = 0

    def reserve(
        self,
        tokens: int,
        clock: Callable[[], float],
        *,
        avoid: Upstream | None = None,
        model: str | None = None,
    ) -> tuple[Upstream | None, float, object | None]:
        """Admission: find an upstream that can take one request of ``tokens`` now.

        An upstream qualifies when it is not cooling and both its budgets have room; the
        one to ``avoid`` (that just failed) is used only if no other qualifies; then the one
        with the least busy client. Its budgets are spent.

        Args:
            tokens: the request's estimated tokens.
            clock: the event loop's clock, seconds; read only when some upstream has a
                cooldown or a limit.
            avoid: the upstream that just failed.
            model: the request's model: its budgets are the ones spent.

        Returns:
            ``(upstream, 0.0, permit)`` (``permit``: what the budget's ``take`` returned), or
            ``(None, seconds, None)`` until the first upstream could qualify.
        """
        upstreams = self.upstreams
        if len(upstreams) == 1:  # the common case, kept cheap: run() calls this every time
            only = upstreams[0]
            if only.idle(model):
                return only, 0.0, None
            wait = only.wait_for(tokens, clock(), model)
            if wait > 0.0:
                return None, wait, None
            return only, 0.0, only.budget(model).take(tokens)
        best: Upstream | None = None
        best_rank = (True, 0)
        soonest = math.inf
        now = clock()
        for upstream in upstreams:
            wait = upstream.wait_for(tokens, now, model)
            if wait > 0.0:
                soonest = min(soonest, wait)
                continue
            rank = (upstream is avoid, self._least_busy(upstream))
            if best is None or rank < best_rank:
                best, best_rank = upstream, rank
        if best is None:
            return None, soonest, None
        return best, 0.0, best.budget(model).take(tokens)

    def _least_busy(self, upstream: Upstream) -> int:
        return min(c.in_flight for c in self.clients if c.upstream is upstream)

    def pick(
        self,
        now: float,
        *,
        avoid: Upstream | None = None,
        peek: bool = False,
        upstream: Upstream | None = None,
    ) -> PooledClient | None:
        """The client for the next attempt, or ``None`` while every upstream is cooling.

        Args:
            now: event-loop clock, seconds.
            avoid: an upstream to use only if no other is available (the one that just failed).
            peek: only look: the round-robin turn does not advance.
            upstream: choose among this upstream's clients only, cooling or not (its budget
                was reserved at admission).
        """
        best: PooledClient | None = None
        size = len(self.clients)
        for offset in range(size):
            candidate = self.clients[(self._next + offset) % size]
            if upstream is not None:
                if candidate.upstream is not upstream:
                    continue
            elif candidate.upstream.cooling(now):
                continue
            if best is None or _rank(candidate, avoid) < _rank(best, avoid):
                best = candidate
        if best is not None and not peek:
            self._next = (best.index + 1) % size
        return best

    def cooldown_ends(self) -> float:
        """The earliest time (event-loop clock) at which some upstream stops cooling."""
        return min(upstream.cooldown_until for upstream in self.upstreams)

    def cool_down(self, upstream: Upstream, until: float) -> None:
        """Hold back work for ``upstream`` until ``until`` (event-loop clock, seconds).

        The health store is told (a shared one tells the other processes).
        """
        health = upstream.health
        if until > health.cooldown_until:
            health.cooldown_until = until
            self._health.cooled(upstream.label, until)

    async def aclose(self) -> None:
        """Close every client (and its HTTP connection pool)."""
        for pooled in self.clients:
            await pooled.client.close()


def _rank(candidate: PooledClient, avoid: Upstream | None) -> tuple[bool, int]:
    return (candidate.upstream is avoid, candidate.in_flight)
