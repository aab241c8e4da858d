"""The demo's driver: N terminals, M requests each, through one ``ConnectionManager``.

Terminal *n* starts ``(n - 1) * stagger`` seconds after the first and sends its requests one
after the other, at its priority, under its session id ``terminal-n``. Each request runs inside
``llmpool.capture_requests()``: its ``RequestRecord`` says what the manager did for it (request
id, attempts, retries, queue wait, latency). A request counts as succeeded only if it returned
the API's type (``Response``, or ``ChatCompletion`` with ``--api chat``): a server that answers
a non-streamed call with SSE text makes the SDK return a ``str``, which is a failure here.

Uses llmpool's public API only; the live display's view of the running requests comes from
an instrument (``LiveStates``). Above ``_options``, ``_results`` and ``_hop``; needs no extra.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Final

import anyio
import openai
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from llmpool import (
    ClientFactory,
    ConnectionManager,
    ManagerView,
    Priority,
    RequestRecord,
    capture_requests,
)
from llmpool.instrumentation import (
    AttemptStarted,
    Instrument,
    RequestFinished,
    RequestQueued,
    RetryScheduled,
)

from ._hop import run_hop
from ._options import HOP_INSTANCES, Api, DemoOptions, terminal_priority
from ._results import UNEXPECTED_RESPONSE, DemoOutcome, HopTurn, Observer, RequestResult

__all__ = ["TICK", "LiveStates", "client_factory", "drive"]

TICK: Final = 0.1
"""Seconds between two refreshes of the live display (and between two hop turns)."""


def client_factory(base_url: str, api_key: str) -> ClientFactory:
    """The demo's pooled clients: ``AsyncOpenAI`` on ``base_url`` with no SDK retries."""

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


class LiveStates(Instrument):
    """The live display's instrument: what each terminal's request in progress is doing.

    ``states(sessions)`` maps each busy session id to ``"queued"``, ``"attempt <n>"``,
    ``"backing off"`` or ``"upstream cooling"`` (its last attempt was a 429 that cooled its
    upstream), from the manager's events; a session whose request ended is not listed.
    """

    def __init__(self) -> None:
        self._states: dict[str, tuple[str, str]] = {}  # session id -> (request id, state)

    def _set(self, session_id: str | None, request_id: str, state: str) -> None:
        if session_id is not None:
            self._states[session_id] = (request_id, state)

    def on_request_queued(self, event: RequestQueued) -> None:
        """Queued."""
        self._set(event.session_id, event.request_id, "queued")

    def on_attempt_started(self, event: AttemptStarted) -> None:
        """An attempt runs."""
        self._set(event.session_id, event.request_id, f"attempt {event.attempt}")

    def on_retry_scheduled(self, event: RetryScheduled) -> None:
        """Between two attempts."""
        state = "upstream cooling" if event.cooldown else "backing off"
        self._set(event.session_id, event.request_id, state)

    def on_request_finished(self, event: RequestFinished) -> None:
        """Done: the session is idle again (unless it started another request already)."""
        session = event.session_id
        if session is not None and self._states.get(session, ("",))[0] == event.request_id:
            del self._states[session]

    def states(self, sessions: Sequence[str]) -> dict[str, str]:
        """The busy sessions among ``sessions`` and what their request is doing."""
        wanted = set(sessions)
        return {s: state for s, (_, state) in self._states.items() if s in wanted}


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
        The results (in terminal, then request order), the final stats, the run time and the
        hop's turns (``simulator`` and ``fault_plan`` are the caller's to fill in).
    """
    results: list[RequestResult] = []
    factory = client_factory(base_url, api_key)

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
            observer.tick(manager.stats(), live.states(options.sessions))
            await anyio.sleep(TICK)

    hop: tuple[HopTurn, ...] = ()

    async def hopper() -> None:
        nonlocal hop
        assert hop_urls is not None
        config = options.pool.model_copy(update={"pool_size": 1})
        async with (
            ConnectionManager(
                config, client_factory=client_factory(hop_urls[name], api_key)
            ) as east,
            ConnectionManager(
                config, client_factory=client_factory(hop_urls[other], api_key)
            ) as west,
        ):
            hop = await run_hop({name: east, other: west}, model=options.model, pause=TICK)

    name, other = HOP_INSTANCES
    began = time.perf_counter()
    live = LiveStates()
    async with ConnectionManager(
        options.pool, client_factory=factory, instruments=[live]
    ) as manager:
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
        results=tuple(results),
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
