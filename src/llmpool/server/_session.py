"""Chat sessions: a conversation, its numbered frames, its running turn and its sockets.

A turn writes frames into its session (``emit``); it never waits for a socket. Each socket
has its own sender that reads the session's frames after its cursor (``frame``), so a slow
socket never stalls the upstream stream, and every socket of a session sees the same frames.
The session keeps the last ``buffer_frames`` frames: enough for a client to come back with
``resume`` and get exactly what it missed; a socket that falls further behind is told to
reload (``resync_required``).

Waking the senders cannot be lost: a sender checks for frames and, finding none, parks on
its own event with no await in between; ``emit`` appends first and then sets each
subscriber's event (one event loop thread, so the two never interleave).
"""

from __future__ import annotations

import math
import secrets
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Protocol

import anyio

from llmpool import Conversation

__all__ = ["Session", "SessionLimitError", "Sessions", "Subscriber", "Turn"]


class Subscriber(Protocol):
    """A socket following a session (``_socket.ChatSocket``)."""

    def wake(self) -> None:
        """New frames (or a close) to send."""

    def turn_changed(self) -> None:
        """A turn of the session started or ended (the idle deadline moves)."""


class SessionLimitError(Exception):
    """``max_sessions`` sessions are in use and none is idle (a socket or a turn on each)."""


class Turn:
    """One generation of a session: its id, its cancel scope and the text so far.

    Attributes:
        id: ``turn_`` and 16 hex characters, in every frame of the turn.
        scope: cancelled by ``stop`` (and at shutdown); the turn's stream runs inside it.
        parts: the text chunks sent so far, in order.
        started_at: loop time the message arrived, seconds.
        stop_requested: whether a client asked to stop (the turn then completes stopped).
        done: set when the turn's last frame is emitted.
    """

    __slots__ = ("done", "id", "parts", "scope", "started_at", "stop_requested")

    def __init__(self, started_at: float) -> None:
        self.id = "turn_" + secrets.token_hex(8)
        self.scope = anyio.CancelScope()
        self.parts: list[str] = []
        self.started_at = started_at
        self.stop_requested = False
        self.done = anyio.Event()

    def stop(self) -> None:
        """End the turn now; it completes with ``stopped: true`` and keeps its partial text."""
        self.stop_requested = True
        self.scope.cancel()


class Session:
    """One chat session (see the module docstring).

    Args:
        session_id: the client's session id (validated by the caller).
        conversation: its transcript, new or restored.
        buffer_frames: frames kept, count.
        now: the loop clock, seconds.
    """

    def __init__(
        self,
        session_id: str,
        conversation: Conversation,
        *,
        buffer_frames: int,
        now: Callable[[], float],
    ) -> None:
        self.id = session_id
        self.conversation = conversation
        self.turn: Turn | None = None
        self.last_seq = 0
        self.subscribers: set[Subscriber] = set()
        self._frames: dict[int, str] = {}
        self._keep = buffer_frames
        self._now = now
        self.idle_since = now()  # when the last socket left or the last turn ended
        self.opened_at = self.idle_since  # when a socket last opened it
        self.turn_ended_at = -math.inf  # when the last turn ended
        self.version = 0  # the conversation's version in a shared store (0: none saved)

    @property
    def first_seq(self) -> int:
        """The oldest seq still kept (``last_seq + 1`` when none is)."""
        return self.last_seq - len(self._frames) + 1

    @property
    def idle(self) -> bool:
        """No socket follows it and no turn runs: it may be dropped."""
        return not self.subscribers and self.turn is None

    def frame(self, seq: int) -> str | None:
        """The frame numbered ``seq``, or ``None`` if it is no longer (or not yet) kept."""
        return self._frames.get(seq)

    def emit(self, build: Callable[[int], str]) -> int:
        """Append the frame ``build(seq)`` with the next seq and wake every sender.

        Returns:
            The frame's seq.
        """
        seq = self.last_seq + 1
        self._frames[seq] = build(seq)
        self._frames.pop(seq - self._keep, None)
        self.last_seq = seq
        for subscriber in self.subscribers:
            subscriber.wake()
        return seq

    def begin(self) -> Turn:
        """Start a turn (the caller checked ``turn is None``)."""
        turn = self.turn = Turn(self._now())
        for subscriber in self.subscribers:
            subscriber.turn_changed()
        return turn

    def end(self, turn: Turn) -> None:
        """The turn emitted its last frame."""
        if self.turn is turn:
            self.turn = None
            self.idle_since = self.turn_ended_at = self._now()
        turn.done.set()
        for subscriber in self.subscribers:
            subscriber.turn_changed()

    def subscribe(self, subscriber: Subscriber) -> None:
        """A socket follows the session."""
        self.subscribers.add(subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """A socket left."""
        self.subscribers.discard(subscriber)
        if not self.subscribers:
            self.idle_since = self._now()


class Sessions:
    """The sessions of one server, created on first use, least recently used first.

    Args:
        make_conversation: a new session's transcript.
        buffer_frames: frames each session keeps, count.
        max_sessions: sessions kept, count.
        ttl: seconds an idle session is kept.
        now: the loop clock, seconds.
    """

    def __init__(
        self,
        make_conversation: Callable[[], Conversation],
        *,
        buffer_frames: int,
        max_sessions: int,
        ttl: float,
        now: Callable[[], float],
    ) -> None:
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._make = make_conversation
        self._buffer = buffer_frames
        self._max = max_sessions
        self._ttl = ttl
        self._now = now

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._sessions.values()))

    def get(self, session_id: str) -> Session | None:
        """The session, if it exists (does not create it)."""
        return self._sessions.get(session_id)

    def open(self, session_id: str) -> Session:
        """The session ``session_id``, created on first use.

        Idle sessions past their ``ttl`` are dropped first; a new session over
        ``max_sessions`` drops the least recently used idle one.

        Raises:
            SessionLimitError: a new session is needed, ``max_sessions`` are kept and none
                of them is idle.
        """
        self._expire()
        session = self._sessions.get(session_id)
        if session is not None:
            self._sessions.move_to_end(session_id)
            session.opened_at = self._now()
            return session
        if len(self._sessions) >= self._max and not self._evict_one():
            raise SessionLimitError(f"{self._max} sessions are active")
        session = Session(session_id, self._make(), buffer_frames=self._buffer, now=self._now)
        self._sessions[session_id] = session
        return session

    def running(self) -> list[Turn]:
        """Every running turn."""
        return [s.turn for s in self._sessions.values() if s.turn is not None]

    def _expire(self) -> None:
        # Least recently opened first: stop at the first one opened within the ttl.
        horizon = self._now() - self._ttl
        for session in list(self._sessions.values()):
            if session.opened_at > horizon:
                break
            if session.idle and session.idle_since <= horizon:
                del self._sessions[session.id]

    def _evict_one(self) -> bool:
        for session in self._sessions.values():  # least recently used first
            if session.idle:
                del self._sessions[session.id]
                return True
        return False
