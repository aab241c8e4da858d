"""The running server's state: the manager, the sessions, the sockets, the turns, draining.

One ``Runtime`` per app (``app.state.llmpool``). Its task group (opened by the app's
lifespan) runs every turn, so a turn outlives the socket that started it. The lifecycle is
one enum with guarded transitions: starting -> serving -> draining -> drained.
"""

from __future__ import annotations

import logging
from enum import Enum
from typing import TYPE_CHECKING, Protocol

import anyio
import httpx
from anyio.abc import TaskGroup

from llmpool import ConnectionManager, Conversation, ManagerView, Priority

from ._config import ServerConfig
from ._logs import log_event, session_hash
from ._metrics import ServerMetrics
from ._protocol import CloseCode, ErrorCode
from ._session import Session, Sessions, Turn
from ._turn import TurnRunner

if TYPE_CHECKING:
    import prometheus_client

__all__ = ["Lifecycle", "Runtime"]


class OpenSocket(Protocol):
    """An accepted WebSocket, as draining sees it (``_socket.ChatSocket``)."""

    finished: anyio.Event

    def close(self, code: CloseCode, error: ErrorCode | None, message: str) -> None:
        """Close after the frames already due: ``error``, then ``code``."""

    def abort(self) -> None:
        """End now, without a close handshake."""


class Lifecycle(Enum):
    """Where the server is in its life."""

    STARTING = "starting"
    SERVING = "serving"
    DRAINING = "draining"
    DRAINED = "drained"


_NEXT = {
    Lifecycle.STARTING: {Lifecycle.SERVING, Lifecycle.DRAINING},
    Lifecycle.SERVING: {Lifecycle.DRAINING},
    Lifecycle.DRAINING: {Lifecycle.DRAINED},
    Lifecycle.DRAINED: set(),
}


class Runtime:
    """Everything one app shares between its routes (see the module docstring).

    Args:
        config: the server's settings.
        manager: the connection manager every turn goes through.
        registry: the app's Prometheus registry.
    """

    def __init__(
        self,
        config: ServerConfig,
        manager: ConnectionManager,
        registry: prometheus_client.CollectorRegistry,
    ) -> None:
        self.config = config
        self.manager = manager
        self.registry = registry
        self.metrics = ServerMetrics(registry, config.max_connections)
        self.now = anyio.current_time
        self.sessions = Sessions(
            self._new_conversation,
            buffer_frames=config.session_buffer_frames,
            max_sessions=config.max_sessions,
            ttl=config.session_ttl,
            now=lambda: self.now(),
        )
        self.runner = TurnRunner(config, lambda: self.now(), self._turn_ended)
        self.sockets: set[OpenSocket] = set()
        self.state = Lifecycle.STARTING
        self._task_group: TaskGroup | None = None
        self._drained = anyio.Event()
        self._next_connection = 0
        self._relay_http: httpx.AsyncClient | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def _to(self, state: Lifecycle) -> None:
        if state not in _NEXT[self.state]:
            raise RuntimeError(f"server lifecycle: {self.state.value} -> {state.value}")
        self.state = state

    def start(self, task_group: TaskGroup) -> None:
        """Serve, running turns in ``task_group`` (the lifespan's).

        A drain asked for before the lifespan started (SIGTERM during startup) stands.
        """
        self._task_group = task_group
        if self.state is Lifecycle.STARTING:
            self._to(Lifecycle.SERVING)

    @property
    def ready(self) -> bool:
        """Whether ``/readyz`` passes: serving, and under the cap unless ``ready_when_full``."""
        if self.state is not Lifecycle.SERVING:
            return False
        return self.config.ready_when_full or self.metrics.active < self.config.max_connections

    async def drain(self, grace: float | None = None) -> None:
        """Drain: refuse new sockets and turns, let running turns finish, then close.

        Readiness fails at once and new connections are refused (``server_shutting_down``,
        close 1012). Running turns get ``grace`` seconds (default the manager's
        ``shutdown_grace``) to finish, their frames still reaching their sockets; a turn
        still running then ends with ``server_shutting_down``. Every socket then gets that
        error and close 1012; one that has not closed within ``close_timeout`` seconds is
        dropped. Idempotent: a second call waits for the first.
        """
        if self.state in (Lifecycle.DRAINING, Lifecycle.DRAINED):
            await self._drained.wait()
            return
        self._to(Lifecycle.DRAINING)
        log_event("drain", sockets=len(self.sockets), turns=len(self.sessions.running()))
        grace = self.config.pool.shutdown_grace if grace is None else grace
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(grace):
                while running := self.sessions.running():
                    await running[0].done.wait()
            for turn in self.sessions.running():
                turn.scope.cancel()  # not a stop: the turn ends with server_shutting_down
            with anyio.move_on_after(self.config.close_timeout):
                while running := self.sessions.running():
                    await running[0].done.wait()
            for sock in list(self.sockets):
                sock.close(
                    CloseCode.SERVICE_RESTART,
                    ErrorCode.SERVER_SHUTTING_DOWN,
                    "the server is restarting: reconnect",
                )
            with anyio.move_on_after(self.config.close_timeout):
                while self.sockets:
                    await next(iter(self.sockets)).finished.wait()
            for sock in list(self.sockets):
                sock.abort()
        self._to(Lifecycle.DRAINED)
        self._drained.set()

    # -- sessions and turns ------------------------------------------------------------------

    def _new_conversation(self) -> Conversation:
        conversation = Conversation(api=self.config.api)
        if self.config.api == "chat" and self.config.instructions is not None:
            conversation.items.append({"role": "system", "content": self.config.instructions})
        return conversation

    def relay_http(self) -> httpx.AsyncClient:
        """The HTTP client the relay opens upstream sockets with (one per app, lazily)."""
        if self._relay_http is None:
            # Each relay session holds one connection for its life: no pool limit of httpx's
            # own (100 by default) below max_connections, which bounds the sessions.
            self._relay_http = httpx.AsyncClient(
                timeout=self.config.relay.connect_timeout,
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=0),
            )
        return self._relay_http

    async def aclose(self) -> None:
        """Close what the runtime opened (the relay's HTTP client)."""
        if self._relay_http is not None:
            await self._relay_http.aclose()
            self._relay_http = None

    def view(self, priority: str | None, session_id: str) -> ManagerView:
        """The manager view a connection's calls go through.

        Args:
            priority: the connection's ``?priority=`` (``None``: ``default_priority``).
            session_id: its session, sent upstream as ``x-session-id``.

        Raises:
            ValueError: ``priority`` is not a priority.
            InvalidSessionIdError: ``session_id`` is not a valid session id.
        """
        chosen = self.config.default_priority if priority is None else Priority.parse(priority)
        return self.manager.with_options(priority=chosen, session_id=session_id)

    def connection_id(self) -> str:
        """A new connection's id for logs: ``c`` and a counter."""
        self._next_connection += 1
        return f"c{self._next_connection}"

    def start_turn(
        self, session: Session, message: str, view: ManagerView, connection_id: str
    ) -> Turn:
        """Start a turn of ``session`` (no turn may be running) in the runtime's task group."""
        assert self._task_group is not None, "the app's lifespan has not started"
        turn = session.begin()
        log_event(
            "turn_start",
            connection_id=connection_id,
            session=session_hash(session.id),
            turn_id=turn.id,
            message=message if self.config.log_content else None,
        )
        self._task_group.start_soon(self.runner.run, session, turn, message, view, name=turn.id)
        return turn

    def _turn_ended(
        self, session: Session, turn: Turn, outcome: str, request_id: str | None
    ) -> None:
        self.metrics.turn_ended(outcome)
        level = logging.INFO if outcome in ("completed", "stopped") else logging.WARNING
        log_event(
            "turn_end",
            level,
            session=session_hash(session.id),
            turn_id=turn.id,
            request_id=request_id,
            outcome=outcome,
        )
