"""``llmpool demo``: many terminals sharing one ``ConnectionManager``, shown live.

N terminals (sessions ``terminal-1`` …) each send M requests in turn, with staggered starts and
mixed priorities, all through one ``ConnectionManager``. By default they talk to the simulated
provider (``llmpool.testing``) started in-process with a fault plan of 429s with Retry-After,
5xx answers and realistic latency; with a base URL they talk to that endpoint instead.

Each request runs inside ``llmpool.capture_requests()``: its ``RequestRecord`` says what the
manager did for it — request id, attempts, retries, queue wait, latency. A request counts as
succeeded only if it returned the API's type (``Response``, or ``ChatCompletion`` with
``--api chat``): a server that answers a non-streamed call with SSE text makes the SDK return
a ``str``, which is a failure here. The live display shows each terminal's request in progress
(queued, attempt n, backing off, upstream cooling), read from the manager's running requests.

Rendering lives in ``_demo_report`` (rich); this module needs no extra until ``run_demo``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

import anyio
import openai
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from . import _constants as C
from ._config import PoolConfig
from ._demo_hop import HOP_INSTANCES, HopTurn, run_hop, summarize_hop
from ._manager import ConnectionManager
from ._pool import ClientFactory
from ._record import RequestRecord, capture_requests
from ._stats import ConnectionStats, LatencyStats
from ._types import Priority

if TYPE_CHECKING:
    from ._facade import ManagerView
    from ._request import Request

__all__ = [
    "DEFAULT_FAULT_PLAN",
    "DemoOptions",
    "DemoOutcome",
    "MissingExtraError",
    "Observer",
    "RequestResult",
    "drive",
    "live_states",
    "resolve_endpoint",
    "run_demo",
    "summarize",
    "terminal_priority",
]

DEFAULT_TERMINALS: Final = C.DEMO_TERMINALS
DEFAULT_REQUESTS: Final = C.DEMO_REQUESTS
DEFAULT_STAGGER: Final = C.DEMO_STAGGER
DEFAULT_MODEL: Final = C.DEMO_MODEL
DEFAULT_SEED: Final = C.DEMO_SEED
SIMULATOR_API_KEY: Final = C.DEMO_SIMULATOR_API_KEY
_TICK = 0.1  # seconds between two refreshes of the live display
UNEXPECTED_RESPONSE: Final = "UnexpectedResponseType"
"""``RequestResult.error`` of a call that returned something else than the API's type."""

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

_PRIORITY_CYCLE: Final = (Priority.HIGH, Priority.NORMAL, Priority.LOW)

Api = Literal["responses", "chat"]
Backend = Literal["asyncio", "trio"]


class MissingExtraError(ImportError):
    """An optional dependency of the demo is not installed; the message names the extra."""


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
            hopping between two more simulated instances (``_demo_hop``).
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

    @property
    def sessions(self) -> list[str]:
        """The terminals' session ids, ``terminal-1`` to ``terminal-N``."""
        return [f"terminal-{n}" for n in range(1, self.terminals + 1)]


def terminal_priority(number: int, forced: Priority | None = None) -> Priority:
    """The priority of terminal ``number`` (1-based): ``forced``, or high/normal/low in turn."""
    return forced if forced is not None else _PRIORITY_CYCLE[(number - 1) % len(_PRIORITY_CYCLE)]


@dataclass(frozen=True, slots=True)
class RequestResult:
    """One demo request as the demo saw it. Durations are seconds.

    Attributes:
        terminal: the terminal's session id.
        index: the request's number within its terminal, from 1.
        priority: the terminal's priority.
        ok: whether the call returned a result.
        latency: from the call to its result or error.
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

        ``live`` maps a terminal's session id to what its request is doing (``live_states``).
        """


@dataclass(slots=True)
class DemoOutcome:
    """What a demo run produced: its results, the manager's final stats and the run time."""

    results: list[RequestResult]
    stats: ConnectionStats
    elapsed: float
    simulator: dict[str, Any] | None = None
    hop: list[HopTurn] | None = None


def _client_factory(base_url: str, api_key: str) -> ClientFactory:
    def build(index: int) -> openai.AsyncOpenAI:
        del index  # every client is alike; the pool spreads work over them
        return openai.AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0)

    return build


async def _call(view: ManagerView, options: DemoOptions, text: str) -> object:
    # ``object``: what the SDK returns is checked, not assumed (a server answering SSE text
    # to a non-streamed call makes the SDK return a str).
    if options.api == "chat":
        return await view.chat.completions.create(
            model=options.model, messages=[{"role": "user", "content": text}]
        )
    return await view.responses.create(model=options.model, input=text)


def live_states(manager: ConnectionManager, sessions: Sequence[str]) -> dict[str, str]:
    """What the request in progress of each busy terminal is doing, for the live display.

    ``"queued"``, ``"attempt <n>"``, ``"backing off"`` or ``"upstream cooling"`` (its last
    attempt was a 429 that cooled its upstream), per session id with a request running.
    Reads the manager's running requests (a private view: the display's only need; each
    request's story comes from its ``RequestRecord``).
    """
    wanted = set(sessions)
    running: list[Request] = list(manager._engine.active)
    states: dict[str, str] = {}
    for request in running:
        session = request.session_id
        if session not in wanted:
            continue
        if request.attempt_client is not None:
            states[session] = f"attempt {request.attempts}"
        elif request.attempts == 0:
            states[session] = "queued"
        elif request.decision is not None and request.decision.cooldown:
            states[session] = "upstream cooling"
        else:
            states[session] = "backing off"
    return states


async def drive(
    options: DemoOptions,
    *,
    base_url: str,
    api_key: str,
    observer: Observer,
    hop_urls: Mapping[str, str] | None = None,
) -> DemoOutcome:
    """Run the terminals against ``base_url`` through one ``ConnectionManager``.

    Args:
        options: what to run.
        base_url: the OpenAI-compatible endpoint, e.g. ``http://127.0.0.1:8000/v1``.
        api_key: the API key sent with every request.
        observer: told about every request and, every 0.1 s, the manager's stats.
        hop_urls: base URL of each hop instance (``east``, ``west``): also run
            ``terminal-hop`` alongside the terminals, one manager per instance.

    Returns:
        The results (in terminal, then request order), the final stats, the run time.
    """
    results: list[RequestResult] = []
    factory = _client_factory(base_url, api_key)

    async def terminal(number: int, session: str) -> None:
        await anyio.sleep((number - 1) * options.stagger)
        priority = terminal_priority(number, options.priority)
        view = manager.with_options(priority=priority, session_id=session)
        for index in range(1, options.requests + 1):
            observer.started(session, index)
            text = f"{session}, request {index} of {options.requests}: say hello."
            answer: object = None
            error: Exception | None = None
            start = time.perf_counter()
            with capture_requests() as records:
                try:
                    answer = await _call(view, options, text)
                except Exception as exc:  # every failure is reported, none stops the demo
                    error = exc
            record = records[0] if records else None
            result = _result(session, index, priority, start, record, options.api, answer, error)
            results.append(result)
            observer.finished(result)

    async def ticker() -> None:
        while True:
            observer.tick(manager.stats(), live_states(manager, options.sessions))
            await anyio.sleep(_TICK)

    hop: list[HopTurn] = []

    async def hopper() -> None:
        assert hop_urls is not None
        config = options.pool.model_copy(update={"pool_size": 1})
        async with (
            ConnectionManager(
                config, client_factory=_client_factory(hop_urls[name], api_key)
            ) as east,
            ConnectionManager(
                config, client_factory=_client_factory(hop_urls[other], api_key)
            ) as west,
        ):
            hop.extend(await run_hop({name: east, other: west}, model=options.model, pause=_TICK))

    name, other = HOP_INSTANCES
    began = time.perf_counter()
    async with ConnectionManager(options.pool, client_factory=factory) as manager:
        async with anyio.create_task_group() as outer:
            outer.start_soon(ticker)
            async with anyio.create_task_group() as terminals:
                for number, session in enumerate(options.sessions, start=1):
                    terminals.start_soon(terminal, number, session)
                if hop_urls is not None:
                    terminals.start_soon(hopper)
            outer.cancel_scope.cancel()
        stats = manager.stats()
        observer.tick(stats, {})
    results.sort(key=lambda r: (int(r.terminal.rsplit("-", 1)[1]), r.index))
    return DemoOutcome(
        results=results,
        stats=stats,
        elapsed=time.perf_counter() - began,
        hop=hop if hop_urls is not None else None,
    )


def _result(
    session: str,
    index: int,
    priority: Priority,
    start: float,
    record: RequestRecord | None,
    api: Api,
    answer: object,
    error: Exception | None,
) -> RequestResult:
    """One request's result from its record (``None``: refused before it was queued)."""
    end = time.perf_counter()
    kind: str | None = None if error is None else type(error).__name__
    message = None if error is None else str(error)
    expected = ChatCompletion if api == "chat" else Response
    if error is None and not isinstance(answer, expected):
        kind = UNEXPECTED_RESPONSE
        message = f"expected a {expected.__name__}, got {type(answer).__name__}: {answer!r:.80}"
    return RequestResult(
        terminal=session,
        index=index,
        priority=priority,
        ok=kind is None,
        latency=end - start if record is None else record.latency,
        queue_wait=None if record is None else record.queue_wait,
        attempts=0 if record is None else len(record.attempts),
        retries=0 if record is None else record.retries,
        request_id=getattr(error, "request_id", None) if record is None else record.request_id,
        error=kind,
        message=message,
    )


# -- the summary ------------------------------------------------------------------------------


def _percentiles(samples: Sequence[float]) -> dict[str, float | None]:
    if not samples:
        return {"p50": None, "p95": None}
    summary = LatencyStats.of(samples)
    return {"p50": round(summary.p50, 3), "p95": round(summary.p95, 3)}


def _group(results: Sequence[RequestResult]) -> dict[str, Any]:
    return {
        "requests": len(results),
        "succeeded": sum(1 for r in results if r.ok),
        "failed": sum(1 for r in results if not r.ok),
        "attempts": sum(r.attempts for r in results),
        "retries": sum(r.retries for r in results),
        "queue_wait": _percentiles([r.queue_wait for r in results if r.queue_wait is not None]),
        "latency": _percentiles([r.latency for r in results if r.ok]),
    }


def summarize(options: DemoOptions, outcome: DemoOutcome, endpoint: str) -> dict[str, Any]:
    """The machine-readable summary of a run (what ``--json`` prints; see ``docs/demo.md``).

    Args:
        options: what was run.
        outcome: what ``drive`` returned.
        endpoint: ``"simulated"`` or the base URL used.

    Returns:
        A JSON-ready dict with ``ok``, ``config``, ``per_terminal``, ``per_priority``,
        ``totals``, ``failures``, ``simulator``, ``stats`` and ``hop`` (``terminal-hop``'s
        turns, or ``None`` when it did not run).
    """
    results = outcome.results
    per_terminal: dict[str, Any] = {}
    for number, session in enumerate(options.sessions, start=1):
        group = _group([r for r in results if r.terminal == session])
        per_terminal[session] = {
            "priority": terminal_priority(number, options.priority).value,
            **group,
        }
    per_priority = {
        p.value: _group([r for r in results if r.priority is p])
        for p in Priority
        if any(r.priority is p for r in results)
    }
    totals = {
        **_group(results),
        "expected": options.terminals * options.requests,
        "elapsed": round(outcome.elapsed, 3),
    }
    failures = [
        {
            "terminal": r.terminal,
            "request": r.index,
            "priority": r.priority.value,
            "request_id": r.request_id,
            "attempts": r.attempts,
            "error": r.error,
            "message": r.message,
        }
        for r in results
        if not r.ok
    ]
    config = {
        "terminals": options.terminals,
        "requests": options.requests,
        "stagger": options.stagger,
        "priority": None if options.priority is None else options.priority.value,
        "api": options.api,
        "model": options.model,
        "endpoint": endpoint,
        "backend": options.backend,
        "pool": options.pool.model_dump(mode="json"),
        "fault_plan": outcome.simulator["fault_plan"] if outcome.simulator else None,
    }
    complete = len(results) == totals["expected"] and not failures
    hop = None if outcome.hop is None else summarize_hop(outcome.hop)
    return {
        "ok": complete and (hop is None or hop["ok"]),
        "config": config,
        "per_terminal": per_terminal,
        "per_priority": per_priority,
        "totals": totals,
        "failures": failures,
        "simulator": None
        if outcome.simulator is None
        else {k: v for k, v in outcome.simulator.items() if k != "fault_plan"},
        "stats": outcome.stats.model_dump(by_alias=True, mode="json"),
        "hop": hop,
    }


# -- running it ---------------------------------------------------------------------------------


def _need(module: str, extra: str) -> None:
    try:
        __import__(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"llmpool demo needs the '{extra}' extra: pip install 'llmpool[{extra}]' "
            f"({module} is missing)"
        ) from exc


def resolve_endpoint(
    options: DemoOptions, environ: Mapping[str, str] | None = None
) -> tuple[str | None, str | None]:
    """The real endpoint and key to use, or ``(None, key)`` for the simulated provider.

    ``options.base_url`` wins over ``OPENAI_BASE_URL``; ``options.api_key`` over
    ``OPENAI_API_KEY``.
    """
    env = os.environ if environ is None else environ
    base_url = options.base_url or env.get("OPENAI_BASE_URL") or None
    api_key = options.api_key or (env.get("OPENAI_API_KEY") if base_url else None) or None
    return base_url, api_key


def run_demo(options: DemoOptions) -> int:
    """Run the demo and print its report (or its JSON summary with ``options.json``).

    Args:
        options: what to run.

    Returns:
        0 if every request completed, 1 otherwise.

    Raises:
        MissingExtraError: ``rich`` (the ``demo`` extra), the simulated provider's
            dependencies (the ``testing`` extra) or ``trio`` (for ``backend="trio"``) is not
            installed.
        ValueError: a real endpoint is configured without an API key.
    """
    _need("rich", "demo")
    if options.backend == "trio":
        try:
            import trio  # noqa: F401  (anyio imports it itself; check first for a clear message)
        except ImportError as exc:
            raise MissingExtraError("--backend trio needs trio: pip install trio") from exc
    from . import _demo_report as report  # rich is only imported here

    base_url, api_key = resolve_endpoint(options)
    if base_url is not None and api_key is None:
        raise ValueError(
            f"no API key for {base_url}: pass --api-key or set OPENAI_API_KEY "
            "(local servers such as vLLM or Ollama accept any value, e.g. --api-key none)"
        )
    console = report.make_console()
    observer: Observer = Observer() if options.json else report.observer_for(console, options)
    if base_url is not None:
        assert api_key is not None
        endpoint = base_url
        if not options.json:
            report.print_header(console, options, endpoint, None)
        with observer:
            outcome = anyio.run(
                _drive_kw, options, base_url, api_key, observer, backend=options.backend
            )
    else:
        _need("starlette", "testing")
        _need("uvicorn", "testing")
        from .testing import FaultPlan, SimulatedProvider

        endpoint = "simulated"
        plan = FaultPlan.model_validate(dict(options.fault_plan))
        if not options.json:
            report.print_header(console, options, endpoint, plan)
        with (
            SimulatedProvider(plan, api_key=SIMULATOR_API_KEY) as sim,
            _hop_simulators(options, plan) as hop_urls,
            observer,
        ):
            outcome = anyio.run(
                _drive_kw,
                options,
                sim.base_url,
                options.api_key or SIMULATOR_API_KEY,
                observer,
                hop_urls,
                backend=options.backend,
            )
            seen = sim.requests
            outcome.simulator = {
                "requests": len(seen),
                "outcomes": dict(sorted(Counter(r.outcome for r in seen).items())),
                "paths": dict(sorted(Counter(r.path for r in seen).items())),
                "fault_plan": plan.model_dump(mode="json"),
            }
    summary = summarize(options, outcome, endpoint)
    if options.json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    else:
        report.print_report(console, summary)
    return 0 if summary["ok"] else 1


async def _drive_kw(
    options: DemoOptions,
    base_url: str,
    api_key: str,
    observer: Observer,
    hop_urls: Mapping[str, str] | None = None,
) -> DemoOutcome:
    # anyio.run passes positional arguments only.
    return await drive(
        options, base_url=base_url, api_key=api_key, observer=observer, hop_urls=hop_urls
    )


@contextmanager
def _hop_simulators(options: DemoOptions, plan: Any) -> Iterator[dict[str, str] | None]:
    """Two more simulated instances for ``terminal-hop`` (separate stores), or ``None``.

    They take the main plan's service time; ``east`` cuts its first stream after two events
    (before any text), so the hop shows a retried stream as well as rebuilt ones.
    """
    if not options.hop:
        yield None
        return
    from .testing import FaultPlan, ScriptedFault, SimulatedProvider

    east_plan = FaultPlan(
        latency_min=plan.latency_min,
        latency_max=plan.latency_max,
        stream_chunk_delay=min(0.03, plan.latency_max / 10),
        scripted=[ScriptedFault(kind="stream_disconnect", after_events=2)],
    )
    west_plan = east_plan.model_copy(update={"scripted": []})
    east_name, west_name = HOP_INSTANCES
    with (
        SimulatedProvider(east_plan, api_key=SIMULATOR_API_KEY, name=east_name) as east,
        SimulatedProvider(west_plan, api_key=SIMULATOR_API_KEY, name=west_name) as west,
    ):
        yield {east_name: east.base_url, west_name: west.base_url}
