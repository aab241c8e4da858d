"""``SimulatedProvider``: the simulator served over real HTTP on loopback by uvicorn.

uvicorn runs in a thread of its own with its own asyncio event loop, so the provider can be
used from synchronous code and from async tests on either anyio backend (asyncio or trio). The
listening socket is bound before the thread starts (port 0 picks a free port), so ``base_url``
is known at once; ``start`` returns when the server accepts connections.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from types import TracebackType
from typing import Self

import anyio.to_thread
import uvicorn

from ._app import SimulatorApp
from ._faults import FaultPlan
from ._realtime import REALTIME_PATH
from ._realtime_plan import RealtimePlan
from ._records import RecordedRealtimeSession, RecordedRequest

__all__ = ["SimulatedProvider"]

_START_TIMEOUT = 10.0  # seconds
_STOP_TIMEOUT = 5.0  # seconds, per phase (graceful, then forced)
_GRACEFUL_SHUTDOWN = 1  # seconds uvicorn waits for open connections when stopping


def _loopback(host: str) -> tuple[str, socket.AddressFamily]:
    """Validate ``host`` as a loopback address; return it as an IP and its address family."""
    if host == "localhost":
        host = "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"host must be a loopback IP address or 'localhost', not {host!r}"
        ) from None
    if not address.is_loopback:
        raise ValueError(f"host must be a loopback address, not {host!r}")
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    return str(address), family


class SimulatedProvider:
    """A real HTTP server speaking the OpenAI API (Responses and Chat Completions), with faults.

    Use it as a context manager, sync or async (the async form starts and stops it in a worker
    thread, so it never blocks the event loop)::

        with SimulatedProvider(FaultPlan(rate_limit_rate=0.1, seed=1)) as sim:
            client = openai.OpenAI(base_url=sim.base_url, api_key="test")

    Endpoints: ``POST /v1/responses`` (``stream`` supported; responses stored unless
    ``store`` is false), ``GET /v1/responses/{id}``, ``POST /v1/chat/completions`` (``stream``
    supported). Other paths answer a 404 JSON error. Every answer carries ``x-request-id``.
    The Realtime API's WebSocket is ``GET /v1/realtime?model=...`` (``realtime_url``), paced
    and broken by a ``RealtimePlan``; other WebSocket paths are refused with a 404.
    Stored responses belong to one instance: continuing a conversation (``previous_response_id``
    or output item ids) on another instance gets a 404, as with unshared servers.

    Args:
        fault_plan: the faults to inject; default ``FaultPlan()`` (none).
        host: loopback address to listen on (``"127.0.0.1"``, ``"::1"`` or ``"localhost"``).
            Default ``"127.0.0.1"``.
        port: TCP port; 0 (the default) picks a free one.
        api_key: when set, a request without ``Authorization: Bearer <api_key>`` gets a 401
            ``invalid_api_key`` error; so does a Realtime handshake with neither that header
            nor the subprotocol ``openai-insecure-api-key.<api_key>``. Default ``None`` (any
            key accepted).
        name: a label, used in the server thread's name and ``repr``. Default ``"sim"``.
        realtime: the Realtime endpoint's plan (delays in seconds, scripted faults); default
            ``RealtimePlan()`` (no delay, no fault).

    Raises:
        ValueError: if ``host`` is not a loopback address.
    """

    def __init__(
        self,
        fault_plan: FaultPlan | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        name: str = "sim",
        realtime: RealtimePlan | None = None,
    ) -> None:
        self._host, self._family = _loopback(host)
        self._requested_port = port
        self.name = name
        self._app = SimulatorApp(fault_plan or FaultPlan(), api_key=api_key, realtime=realtime)
        self._lifecycle = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self._error: BaseException | None = None
        self._stopped = False

    def __repr__(self) -> str:
        where = self.base_url if self._port is not None else "not started"
        return f"SimulatedProvider(name={self.name!r}, {where})"

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Bind the port, start the server thread and wait until it accepts connections.

        Raises:
            RuntimeError: if the provider was already started (a provider starts once), or the
                server failed to start within 10 seconds.
            OSError: if the address cannot be bound (e.g. the port is taken).
        """
        with self._lifecycle:
            if self._thread is not None or self._stopped:
                raise RuntimeError(f"{self!r} was already started; a provider starts once")
            # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted sockets only then
            # (without it, Nagle plus delayed ACKs add ~40 ms to every answer).
            sock = socket.socket(self._family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((self._host, self._requested_port))
            except OSError:
                sock.close()
                raise
            self._port = sock.getsockname()[1]
            config = uvicorn.Config(
                self._app,
                host=self._host,
                port=self._port,
                loop="asyncio",
                http="h11",
                # wsproto: pure Python, on h11 like the HTTP side. No keepalive pings from the
                # simulator, so the only frames a client sees are the ones a test scripted.
                ws="wsproto",
                ws_ping_interval=None,
                ws_ping_timeout=None,
                lifespan="off",
                log_level="warning",
                log_config=None,  # leave the process's logging configuration alone
                access_log=False,
                proxy_headers=False,
                timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN,
            )
            server = uvicorn.Server(config)
            thread = threading.Thread(
                target=self._serve,
                args=(server, sock),
                name=f"llmpool-sim-{self.name}",
                daemon=True,
            )
            self._server, self._thread = server, thread
            thread.start()
            deadline = time.monotonic() + _START_TIMEOUT
            while not server.started:
                if not thread.is_alive() or time.monotonic() > deadline:
                    server.should_exit = True
                    thread.join(_STOP_TIMEOUT)
                    sock.close()
                    self._stopped = True
                    raise RuntimeError(f"{self!r} failed to start") from self._error
                time.sleep(0.002)

    def _serve(self, server: uvicorn.Server, sock: socket.socket) -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # a thread must not die silently: start() re-raises it
            self._error = exc

    def stop(self) -> None:
        """Stop the server and join its thread; idempotent, a no-op before ``start``.

        Open connections get about a second to finish, then the server is forced down.
        """
        with self._lifecycle:
            server, thread = self._server, self._thread
            if server is None or thread is None:
                return
            self._stopped = True
            if not thread.is_alive():
                return
            server.should_exit = True
            thread.join(_STOP_TIMEOUT)
            if thread.is_alive():
                server.force_exit = True
                thread.join(_STOP_TIMEOUT)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        await anyio.to_thread.run_sync(self.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await anyio.to_thread.run_sync(self.stop)

    # -- addresses -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound TCP port.

        Raises:
            RuntimeError: before ``start``.
        """
        if self._port is None:
            raise RuntimeError(f"SimulatedProvider {self.name!r} is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """The API root for ``openai.OpenAI(base_url=...)``, e.g. ``http://127.0.0.1:PORT/v1``.

        Raises:
            RuntimeError: before ``start``.
        """
        return f"http://{self._netloc}/v1"

    @property
    def realtime_url(self) -> str:
        """The Realtime WebSocket URL, ``ws://127.0.0.1:PORT/v1/realtime`` (add ``?model=``).

        Raises:
            RuntimeError: before ``start``.
        """
        return f"ws://{self._netloc}{REALTIME_PATH}"

    @property
    def _netloc(self) -> str:
        host = f"[{self._host}]" if self._family == socket.AF_INET6 else self._host
        return f"{host}:{self.port}"

    # -- faults and records ----------------------------------------------------------------

    @property
    def fault_plan(self) -> FaultPlan:
        """The fault plan in force."""
        return self._app.fault_plan

    def set_fault_plan(self, fault_plan: FaultPlan) -> None:
        """Replace the fault plan at run time; its RNG, script and rpm window start afresh.

        Requests already being answered keep the decision they got.
        """
        self._app.set_fault_plan(fault_plan)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot (a new list) of every request received, in arrival order."""
        return self._app.records()

    def count(self, path: str | None = None) -> int:
        """Number of requests received, optionally only those whose URL path equals ``path``.

        Args:
            path: e.g. ``"/v1/responses"``; ``None`` (the default) counts every request.
        """
        records = self._app.records()
        if path is None:
            return len(records)
        return sum(1 for record in records if record.path == path)

    def clear_requests(self) -> None:
        """Forget the recorded requests (stored responses and the fault plan are kept)."""
        self._app.clear_records()

    @property
    def stored_response_ids(self) -> list[str]:
        """Ids of the responses this instance stored (``store`` not false), oldest first."""
        return self._app.stored_response_ids()

    # -- Realtime --------------------------------------------------------------------------

    @property
    def realtime_plan(self) -> RealtimePlan:
        """The Realtime plan in force."""
        return self._app.realtime.plan

    def set_realtime_plan(self, plan: RealtimePlan) -> None:
        """Replace the Realtime plan at run time; its script starts afresh.

        Connections already open keep the plan and fault they got at their handshake.
        """
        self._app.realtime.set_plan(plan)

    @property
    def realtime_sessions(self) -> list[RecordedRealtimeSession]:
        """Snapshots (a new list) of every WebSocket handshake received, in arrival order.

        Refused handshakes are included; an open connection shows the frames so far.
        """
        return self._app.realtime.sessions()

    @property
    def realtime_open(self) -> int:
        """Realtime connections accepted and not yet ended, count (0 when none is left open)."""
        return self._app.realtime.open

    def clear_realtime_sessions(self) -> None:
        """Forget the recorded handshakes (open connections keep running, uncounted there)."""
        self._app.realtime.clear()
