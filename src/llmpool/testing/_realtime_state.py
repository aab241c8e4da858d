"""State of the simulated Realtime endpoint shared with the test thread: plan, records, counts.

The endpoint runs on the server thread's event loop while tests read its records from their
own thread, so everything here is guarded by one ``threading.Lock`` (the app's, shared with
the HTTP records). ``RealtimeState`` holds the plan and its script, every connection's
``ConnectionState`` and the number of open connections; readers get frozen snapshots.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from ._realtime_plan import RealtimeFault, RealtimePlan
from ._records import RealtimeOutcome, RecordedFrame, RecordedRealtimeSession

__all__ = ["ConnectionState", "RealtimeState"]


class ConnectionState:
    """The record of one handshake and its connection, filled in as it goes.

    Args:
        lock: the lock guarding it (the app's).
        path, query, headers, subprotocols: the handshake, as recorded.
    """

    def __init__(
        self,
        lock: threading.Lock,
        *,
        path: str,
        query: dict[str, str],
        headers: dict[str, str],
        subprotocols: list[str],
    ) -> None:
        self._lock = lock
        self._path, self._query, self._headers = path, query, headers
        self._subprotocols = subprotocols
        self._opened_at = time.monotonic()
        self._subprotocol: str | None = None
        self._outcome: RealtimeOutcome = "accepted"
        self._status = 101
        self._fault: RealtimeFault | None = None
        self._session_id: str | None = None
        self._frames: list[RecordedFrame] = []
        self._events_sent = 0
        self._closed_at: float | None = None
        self._close_code: int | None = None
        self._closed_by: Literal["client", "server"] | None = None

    def decide(
        self,
        outcome: RealtimeOutcome,
        status: int,
        *,
        fault: RealtimeFault | None = None,
        subprotocol: str | None = None,
    ) -> None:
        """Record what the endpoint did with the handshake."""
        with self._lock:
            self._outcome, self._status = outcome, status
            self._fault, self._subprotocol = fault, subprotocol

    def set_session_id(self, session_id: str) -> None:
        """Record the ``sess_…`` id of the accepted connection."""
        with self._lock:
            self._session_id = session_id

    def add_frame(self, frame: RecordedFrame) -> None:
        """Append a frame received from the client."""
        with self._lock:
            self._frames.append(frame)

    def count_sent(self) -> None:
        """Count one server event sent."""
        with self._lock:
            self._events_sent += 1

    def close(self, code: int, *, by: Literal["client", "server"]) -> None:
        """Record the end of the connection; the first call wins."""
        with self._lock:
            if self._closed_at is None:
                self._closed_at, self._close_code, self._closed_by = time.monotonic(), code, by

    def snapshot(self) -> RecordedRealtimeSession:
        """A frozen copy; the caller holds the lock."""
        return RecordedRealtimeSession(
            path=self._path,
            query=dict(self._query),
            headers=dict(self._headers),
            subprotocols=list(self._subprotocols),
            subprotocol=self._subprotocol,
            outcome=self._outcome,
            status=self._status,
            fault=None if self._fault is None else self._fault.kind,
            session_id=self._session_id,
            frames=list(self._frames),
            events_sent=self._events_sent,
            opened_at=self._opened_at,
            closed_at=self._closed_at,
            close_code=self._close_code,
            closed_by=self._closed_by,
        )


class RealtimeState:
    """The Realtime endpoint's plan, script, connection records and open-connection count.

    Args:
        plan: the initial plan.
        lock: the lock guarding this state (the app's).
    """

    def __init__(self, plan: RealtimePlan, lock: threading.Lock) -> None:
        self._lock = lock
        self._plan = plan
        self._script: deque[RealtimeFault] = deque(plan.scripted)
        self._connections: list[ConnectionState] = []
        self._open = 0

    @property
    def lock(self) -> threading.Lock:
        """The lock guarding this state."""
        return self._lock

    @property
    def plan(self) -> RealtimePlan:
        """The plan in force."""
        with self._lock:
            return self._plan

    def set_plan(self, plan: RealtimePlan) -> None:
        """Replace the plan; its script starts afresh."""
        with self._lock:
            self._plan, self._script = plan, deque(plan.scripted)

    def take(self) -> tuple[RealtimePlan, RealtimeFault | None]:
        """The plan in force and the next scripted fault (``None`` when none is left)."""
        with self._lock:
            return self._plan, self._script.popleft() if self._script else None

    def add(self, connection: ConnectionState) -> None:
        """Record a new handshake."""
        with self._lock:
            self._connections.append(connection)

    def sessions(self) -> list[RecordedRealtimeSession]:
        """Snapshots of every recorded handshake, in arrival order."""
        with self._lock:
            return [connection.snapshot() for connection in self._connections]

    def clear(self) -> None:
        """Forget the recorded handshakes (the plan and the open count are kept)."""
        with self._lock:
            self._connections.clear()

    @property
    def open(self) -> int:
        """Connections accepted and not yet ended, count."""
        with self._lock:
            return self._open

    @contextmanager
    def opened(self) -> Iterator[None]:
        """Count a connection as open for the duration of the block."""
        with self._lock:
            self._open += 1
        try:
            yield
        finally:
            with self._lock:
                self._open -= 1
