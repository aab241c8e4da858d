"""``--via-server``: the same terminals, each a WebSocket client of an in-process server.

The demo opens the manager it always opens (same config, same clients, same endpoint), puts
``llmpool.server`` in front of it (``create_app(config, manager=...)``), and serves that on a
free loopback port with ``serve``: uvicorn on asyncio, hypercorn on trio. Terminal *n* opens
one socket on its session ``terminal-n`` (``?priority=`` its priority) and sends its M
requests as chat turns, one after the other (``_client.ChatTerminal``); each turn is a
recovering stream through the manager (``stream_response``, or ``stream_chat`` with
``--api chat``), as the server runs every turn.

What a request's result holds, then: ``latency`` is the terminal's, from the message sent to
its ``complete`` or ``error`` frame; ``attempts``, ``retries`` and ``queue_wait`` (from the
message sent to the turn's first attempt) come from the manager's events for the terminal's
session (``TurnTally``, an instrument: the server's manager is the demo's own). At the end
the server's ``/metrics.json``, ``/metrics`` and ``/api/connection-stats`` are read over HTTP
(``ServerSummary``, and the stats of the summary), then the server drains and stops.
Above ``_drive`` and ``_client``; needs the ``server`` extra.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import quote, urlencode

import anyio
import httpx
import sniffio
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from llmpool import ConnectionManager, ConnectionStats, Priority
from llmpool.instrumentation import AttemptStarted, Instrument, RetryScheduled
from llmpool.server import ServerConfig, create_app, serve

from ._client import ChatTerminal, TurnEnd
from ._drive import TICK, LiveStates, client_factory
from ._options import DemoOptions, terminal_priority
from ._results import DemoOutcome, Observer, RequestResult, ServerConnections, ServerSummary

__all__ = ["METRICS_SETTLE", "TurnTally", "drive_via_server"]

METRICS_SETTLE: Final = 5.0
"""Seconds the end waits for the server to count every socket closed before reading."""
_HTTP: Final = 10.0  # seconds, httpx's timeout of each HTTP request to the server
_CLOSE_TIMEOUT: Final = 1.0  # seconds: the sockets are closed already when the server stops

Asgi = Literal["uvicorn", "hypercorn"]


@dataclass(slots=True)
class _Turn:
    started: float  # time.perf_counter() when the message went out
    first_attempt: float | None = None
    attempts: int = 0
    retries: int = 0
    request_id: str | None = None


class TurnTally(Instrument):
    """What the manager did for each terminal's running turn, from its events.

    ``begin(session)`` when a terminal sends its message, ``end(session)`` when its turn
    ended: the attempts started for that session in between (every open of a recovering
    stream included), the retries scheduled, when the first attempt started and the last
    request id. A session runs one turn at a time, so the events of a turn are the session's
    between the two calls.
    """

    def __init__(self) -> None:
        self._turns: dict[str, _Turn] = {}

    def begin(self, session: str) -> None:
        """A turn of ``session`` starts now."""
        self._turns[session] = _Turn(time.perf_counter())

    def end(self, session: str) -> _Turn:
        """The turn of ``session`` ended: what the manager did for it."""
        return self._turns.pop(session)

    def on_attempt_started(self, event: AttemptStarted) -> None:
        """Count an attempt; the first one ends the turn's wait."""
        turn = self._turns.get(event.session_id or "")
        if turn is not None:
            turn.attempts += 1
            turn.request_id = event.request_id
            if turn.first_attempt is None:
                turn.first_attempt = time.perf_counter()

    def on_retry_scheduled(self, event: RetryScheduled) -> None:
        """Count a retry (of an attempt, or of a stream's open)."""
        turn = self._turns.get(event.session_id or "")
        if turn is not None:
            turn.retries += 1


def server_config(options: DemoOptions) -> ServerConfig:
    """The in-process server's settings: a free loopback port, the demo's model and API.

    The connection cap is the server's default, or the number of terminals if larger: each
    terminal holds one socket.
    """
    return ServerConfig(
        host="127.0.0.1",
        port=0,
        model=options.model,
        api=options.api,
        pool=options.pool,
        max_connections=max(options.terminals, ServerConfig().max_connections),
        close_timeout=_CLOSE_TIMEOUT,
    )


def quiet_asgi_logs() -> None:
    """Give uvicorn's and hypercorn's loggers a ``NullHandler`` (once per process).

    With no handler of the application's, Python prints their warnings and errors on stderr
    (``logging.lastResort``): uvicorn's lifespan error on Ctrl-C, logged while ``anyio.run``
    cancels what is left, after the demo is done, would cut through its output. Their
    records still reach the root logger's handlers, if the application set some.
    """
    for name in ("uvicorn", "hypercorn"):
        logger = logging.getLogger(name)
        if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
            logger.addHandler(logging.NullHandler())


@asynccontextmanager
async def _serving(app: Starlette) -> AsyncIterator[int]:
    """Serve ``app`` (``serve``: uvicorn or hypercorn) until the block ends; its port."""
    stop = anyio.Event()
    quiet_asgi_logs()
    async with anyio.create_task_group() as tg:
        port: int = await tg.start(functools.partial(serve, app, shutdown_trigger=stop.wait))
        try:
            yield port
        finally:
            stop.set()  # serve drains (no socket is left open by then) and stops


def _socket_path(session: str, priority: Priority) -> str:
    """The session's socket, on the server's HTTP base: ``/ws/chat/{id}?priority=…``."""
    return f"/ws/chat/{quote(session, safe='')}?{urlencode({'priority': priority.value})}"


def _result(
    session: str, index: int, priority: Priority, turn: _Turn, end: TurnEnd
) -> RequestResult:
    wait = None if turn.first_attempt is None else turn.first_attempt - turn.started
    return RequestResult(
        terminal=session,
        index=index,
        priority=priority,
        ok=end.ok,
        latency=time.perf_counter() - turn.started,
        queue_wait=wait,
        attempts=turn.attempts,
        retries=turn.retries,
        request_id=end.request_id or turn.request_id,
        error=end.error if not end.ok else None,
        message=end.message if not end.ok else None,
    )


async def drive_via_server(
    options: DemoOptions,
    *,
    base_url: str,
    api_key: str,
    observer: Observer,
) -> DemoOutcome:
    """Run the terminals as WebSocket clients of a server in front of the manager.

    Args:
        options: what to run.
        base_url: the OpenAI-compatible endpoint the manager's clients use.
        api_key: the API key those clients send.
        observer: told about every turn and, every 0.1 s, the manager's stats.

    Returns:
        The results (in terminal, then request order), the stats the server reported at the
        end, the run time and the server's summary (``simulator`` and ``fault_plan`` are
        the caller's to fill in).
    """
    results: list[RequestResult] = []
    terminals: list[ChatTerminal] = []
    live, tally = LiveStates(), TurnTally()
    config = server_config(options)

    async def terminal(http: httpx.AsyncClient, number: int, session: str) -> None:
        await anyio.sleep((number - 1) * options.stagger)
        priority = terminal_priority(number, options.priority)
        async with ChatTerminal(http, _socket_path(session, priority)) as chat:
            terminals.append(chat)
            for index in range(1, options.requests + 1):
                observer.started(session, index)
                text = f"{session}, request {index} of {options.requests}: say hello."
                tally.begin(session)
                end = await chat.turn(text)
                result = _result(session, index, priority, tally.end(session), end)
                results.append(result)
                observer.finished(result)

    async def ticker(manager: ConnectionManager) -> None:
        while True:
            observer.tick(manager.stats(), live.states(options.sessions))
            await anyio.sleep(TICK)

    began = time.perf_counter()
    asgi: Asgi = "hypercorn" if sniffio.current_async_library() == "trio" else "uvicorn"
    # No pool limit below the terminals' sockets; no idle keep-alive connection, which would
    # hold hypercorn's shutdown for its graceful timeout (the client closes before the server).
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    async with (
        ConnectionManager(
            options.pool,
            client_factory=client_factory(base_url, api_key),
            instruments=[live, tally],
        ) as manager,
        _serving(create_app(config, manager=manager)) as port,
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=_HTTP, limits=limits
        ) as http,
    ):
        async with anyio.create_task_group() as outer:
            outer.start_soon(ticker, manager)
            async with anyio.create_task_group() as tg:
                for number, session in enumerate(options.sessions, start=1):
                    tg.start_soon(terminal, http, number, session)
            outer.cancel_scope.cancel()
        elapsed = time.perf_counter() - began
        reconnects = sum(t.reconnects for t in terminals)
        summary, stats = await read_metrics(http, f"ws://127.0.0.1:{port}", asgi, reconnects)
        observer.tick(stats, {})
    results.sort(key=lambda r: (int(r.terminal.rsplit("-", 1)[1]), r.index))
    return DemoOutcome(
        results=tuple(results), stats=stats, elapsed=elapsed, hop=None, server=summary
    )


async def read_metrics(
    http: httpx.AsyncClient, url: str, asgi: Asgi, reconnects: int
) -> tuple[ServerSummary, ConnectionStats]:
    """The server's summary and the manager's stats, read from its HTTP endpoints.

    Waits up to ``METRICS_SETTLE`` seconds for the server to have counted every socket
    closed (``connections.active`` 0), then reads ``/metrics.json`` (connections),
    ``/metrics`` (turns by outcome, disconnects by close code) and
    ``/api/connection-stats`` (``manager.stats()``).

    Raises:
        httpx.HTTPError: the server did not answer, or answered an error.
    """
    data = await _json(http, "/metrics.json")
    with anyio.move_on_after(METRICS_SETTLE):
        # Polled over HTTP, as any client of the server would: nothing to wait on here.
        while data["connections"]["active"]:
            await anyio.sleep(TICK / 10)
            data = await _json(http, "/metrics.json")
    prometheus = await http.get("/metrics")
    prometheus.raise_for_status()
    turns: Counter[str] = Counter()
    disconnects: Counter[str] = Counter()
    for family in text_string_to_metric_families(prometheus.text):
        for sample in family.samples:
            if sample.name == "llmpool_server_turns_total":
                turns[sample.labels["outcome"]] += int(sample.value)
            elif sample.name == "llmpool_server_disconnects_total":
                disconnects[sample.labels["code"]] += int(sample.value)
    stats = ConnectionStats.model_validate(await _json(http, "/api/connection-stats"))
    connections = data["connections"]
    summary = ServerSummary(
        url=url,
        asgi=asgi,
        connections=ServerConnections(
            total=connections["total"],
            peak=connections["peak"],
            active=connections["active"],
            rejected=connections["rejected"],
        ),
        avg_session_duration=float(data["performance"]["avg_session_duration"].rstrip("s")),
        turns=dict(sorted(turns.items())),
        disconnects=dict(sorted(disconnects.items())),
        reconnects=reconnects,
    )
    return summary, stats


async def _json(http: httpx.AsyncClient, path: str) -> dict[str, Any]:
    response = await http.get(path)
    response.raise_for_status()
    data: dict[str, Any] = response.json()
    return data
