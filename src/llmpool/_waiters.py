"""The scheduler's waiters and queues: what a task waits on, how it is parked and woken.

``Waiter`` (a slot) and ``SpaceWaiter`` (a place in a full queue) are ``Entry`` records the
scheduler holds; a task parks on its entry the cheapest way its event loop allows (a bare
future on asyncio, the task itself on trio) and is woken once. ``ClassQueue`` keeps one
priority class's waiters: a retry lane, then sessions in round-robin, each withdrawn in
O(1). Used by ``_scheduler`` only.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Final, Protocol

import anyio
import anyio.lowlevel

if TYPE_CHECKING:
    import trio.lowlevel

__all__ = [
    "CLOSED",
    "COMPACT_SLACK",
    "EVICTED",
    "GRANTED",
    "QUEUED",
    "TIMED_OUT",
    "UNTIMED",
    "WITHDRAWN",
    "ClassQueue",
    "Entry",
    "EventParking",
    "FutureParking",
    "Lane",
    "Parking",
    "SpaceWaiter",
    "TaskParking",
    "Waiter",
    "find_parking",
    "no_wake",
]

UNTIMED: Final = math.inf  # ``deadline`` of an entry the timer does not hold
COMPACT_SLACK: Final = 32  # departed heap entries tolerated beyond the live ones

# An entry's ``state``. A space waiter is ``GRANTED`` when handed a place.
QUEUED: Final = 0
GRANTED: Final = 1
EVICTED: Final = 2
TIMED_OUT: Final = 3
WITHDRAWN: Final = 4
CLOSED: Final = 5


class _Awake:
    """``Entry.handle`` of an entry whose task is not parked right now (trio)."""

    __slots__ = ()


_AWAKE: Final = _Awake()


class Entry:
    """Something a task waits for: a slot (``Waiter``) or a place (``SpaceWaiter``).

    ``handle`` is how its task is woken: ``None`` when no task waits (sync use), else the
    parking's token (an asyncio future, a trio task, ``_AWAKE``). ``deadline`` is the queue
    deadline once the scheduler's timer holds the entry (else ``UNTIMED``); entries order
    by it in the timer's heap, and keep it when they leave (their stale entries stay put).
    """

    __slots__ = ("deadline", "handle", "state")

    def __init__(self) -> None:
        self.deadline = UNTIMED
        self.handle: Any = None
        self.state = QUEUED

    def __lt__(self, other: Entry) -> bool:
        return self.deadline < other.deadline

    def abort(self, raise_cancel: object) -> trio.lowlevel.Abort:
        """Trio's abort callback: the parked task is being cancelled; let it go."""
        import trio.lowlevel  # only trio calls it: trio is imported by then

        self.handle = _AWAKE
        return trio.lowlevel.Abort.SUCCEEDED


class Waiter(Entry):
    """A queued request's place: granted by ``Scheduler._dispatch``, woken through ``handle``."""

    __slots__ = ("claim", "key", "next", "poll_at", "prev", "rank", "retry", "seq", "session")

    def __init__(self, rank: int, session: str, seq: int, retry: bool, claim: Any = None) -> None:
        # Entry's fields, set here: no super().__init__() call on the hot path.
        self.deadline = UNTIMED
        self.handle = None
        self.state = QUEUED
        self.key: object = None  # the budget it draws on (``gate_key(claim)``)
        self.rank = rank
        self.session = session
        self.seq = seq
        self.retry = retry
        self.claim = claim  # what the gate reserves budget for (the manager's Request)
        self.poll_at: float | None = None  # woken to re-check the gate at this time
        self.prev: Waiter | None = None  # neighbours in its session's queue
        self.next: Waiter | None = None

    @property
    def granted(self) -> bool:
        """Whether it was granted a slot."""
        return self.state == GRANTED

    @property
    def evicted(self) -> bool:
        """Whether it was removed to make room for a higher class."""
        return self.state == EVICTED


class SpaceWaiter(Entry):
    """A caller waiting for a place in a full queue (``Scheduler.wait_for_space``)."""

    __slots__ = ("rank", "seq")

    def __init__(self, rank: int, seq: int) -> None:
        super().__init__()
        self.rank = rank
        self.seq = seq


class Parking(Protocol):
    """How a task parks on an entry and is woken (one implementation per event loop)."""

    def prepare(self, entry: Entry) -> None:
        """Mark ``entry`` as waited for by the current task (before any wake can reach it)."""

    def park(self, entry: Entry) -> Awaitable[object]:
        """What the current task awaits until ``wake(entry)`` or its cancellation."""

    def wake(self, entry: Entry) -> None:
        """Wake ``entry``'s task if it is parked (a no-op otherwise)."""


class FutureParking:
    """asyncio (uvloop included): the task awaits a bare future of the running loop.

    A future is what asyncio's and anyio's own ``Semaphore`` park on; awaited directly, not
    through an ``Event.wait`` coroutine, it adds no coroutine frame. Cancelling the task
    cancels the future, so ``wake`` tolerates a done future.
    """

    __slots__ = ("_create_future",)

    def __init__(self, create_future: Callable[[], Any]) -> None:
        self._create_future = create_future

    def prepare(self, entry: Entry) -> None:
        entry.handle = self._create_future()

    def park(self, entry: Entry) -> Awaitable[object]:
        future = entry.handle
        if future.done():  # woken or cancelled before: a future is set once
            future = entry.handle = self._create_future()
        return future  # type: ignore[no-any-return]

    @staticmethod
    def wake(entry: Entry) -> None:
        future = entry.handle
        if future is not None and not future.done():
            future.set_result(None)


class TaskParking:
    """trio: the task itself is parked (``trio.lowlevel.wait_task_rescheduled``).

    The cheapest park trio has: ``trio.Event`` (which anyio's ``Event`` wraps) adds a set of
    tasks, its own coroutine frame and anyio's. ``handle`` holds the task while it is parked,
    so it is rescheduled at most once per park (trio requires exactly one ``reschedule`` per
    wait, and a cancelled wait counts as one: ``Entry.abort`` clears ``handle``).
    """

    __slots__ = ("_current_task", "_reschedule", "_wait")

    def __init__(self) -> None:
        import trio.lowlevel  # built only while trio runs: no import at module level

        self._current_task = trio.lowlevel.current_task
        self._reschedule = trio.lowlevel.reschedule
        self._wait = trio.lowlevel.wait_task_rescheduled

    @staticmethod
    def prepare(entry: Entry) -> None:
        entry.handle = _AWAKE

    def park(self, entry: Entry) -> Awaitable[object]:
        entry.handle = self._current_task()
        return self._wait(entry.abort)

    def wake(self, entry: Entry) -> None:
        task = entry.handle
        if task is not None and task is not _AWAKE:
            entry.handle = _AWAKE
            self._reschedule(task)


class EventParking:
    """Any backend, on an anyio without ``lowlevel.current_token`` (< 4.11): an ``Event``."""

    __slots__ = ("_new_event",)

    def __init__(self) -> None:
        # anyio.Event() looks the backend up on every call; its class is built directly.
        self._new_event = type(anyio.Event())

    def prepare(self, entry: Entry) -> None:
        entry.handle = self._new_event()

    def park(self, entry: Entry) -> Awaitable[object]:
        event = entry.handle
        if event.is_set():
            event = entry.handle = self._new_event()
        return event.wait()  # type: ignore[no-any-return]

    @staticmethod
    def wake(entry: Entry) -> None:
        if entry.handle is not None:
            entry.handle.set()


def find_parking() -> Parking:
    """The running event loop's cheapest parking (found through anyio's public API)."""
    current_token = getattr(anyio.lowlevel, "current_token", None)
    if current_token is None:
        return EventParking()
    create_future = getattr(current_token().native_token, "create_future", None)
    if create_future is not None:
        return FutureParking(create_future)
    return TaskParking()


def no_wake(entry: Entry) -> None:
    """``Scheduler._wake`` before any task waited: no entry has a task to wake."""


class Lane:
    """One session's fresh waiters, FIFO: a doubly linked list through ``Waiter.prev/next``."""

    __slots__ = ("head", "tail")

    def __init__(self, waiter: Waiter) -> None:
        self.head: Waiter | None = waiter
        self.tail: Waiter | None = waiter


class ClassQueue:
    """Waiters of one priority class: a retry lane, then sessions in round-robin.

    ``sessions`` is in rotation order (next turn first) and holds only sessions with waiters,
    so a session whose last waiter leaves drops out of the rotation in O(1). The retry lane
    is a heap by arrival sequence; entries of waiters that left stay until they surface or
    outnumber the live ones (then the heap is rebuilt), so the caller sets a leaving
    waiter's ``state`` before ``remove``.
    """

    __slots__ = ("disordered", "live", "order", "retries", "retry_live", "sessions")

    def __init__(self) -> None:
        self.live = 0  # waiters queued, retries included
        self.retries: list[tuple[int, int, Waiter]] = []  # heap: (seq, push order, waiter)
        self.retry_live = 0
        self.order = itertools.count()  # retries of equal seq keep their arrival order
        self.sessions: OrderedDict[str, Lane] = OrderedDict()
        # Set when a waiter queues behind a newer one of its session (a request back after
        # waiting for a place): that session's last waiter may not be its newest. Leaving
        # never breaks the order, so only ``newest_fresh``'s full walk clears it.
        self.disordered = False

    def push(self, waiter: Waiter) -> None:
        self.live += 1
        if waiter.retry:
            heapq.heappush(self.retries, (waiter.seq, next(self.order), waiter))
            self.retry_live += 1
            return
        lane = self.sessions.get(waiter.session)
        if lane is None:
            self.sessions[waiter.session] = Lane(waiter)  # joins the rotation at the back
            return
        tail = lane.tail
        assert tail is not None
        if waiter.seq < tail.seq:
            self.disordered = True
        tail.next = waiter
        waiter.prev = tail
        lane.tail = waiter

    def _retry_head(self) -> Waiter:
        retries = self.retries
        while retries[0][2].state != QUEUED:
            heapq.heappop(retries)
        return retries[0][2]

    def peek(self) -> Waiter:
        if self.retry_live:
            return self._retry_head()
        head = next(iter(self.sessions.values())).head
        assert head is not None
        return head

    def pop(self) -> Waiter:
        """Take the next waiter in grant order (its session moves to the back of the turn)."""
        self.live -= 1
        if self.retry_live:
            waiter = self._retry_head()
            heapq.heappop(self.retries)
            self.retry_live -= 1
            return waiter
        sessions = self.sessions
        session = next(iter(sessions))
        lane = sessions[session]
        head = lane.head
        assert head is not None
        following = head.next
        if following is None:
            del sessions[session]
        else:
            following.prev = head.next = None
            lane.head = following
            sessions.move_to_end(session)
        return head

    def remove(self, waiter: Waiter) -> None:
        """Take ``waiter`` out wherever it is, without moving its session's turn."""
        self.live -= 1
        if waiter.retry:
            self.retry_live -= 1
            if len(self.retries) > 2 * self.retry_live + COMPACT_SLACK:
                self.retries = [e for e in self.retries if e[2].state == QUEUED]
                heapq.heapify(self.retries)
            return
        prev, following = waiter.prev, waiter.next
        if prev is None and following is None:
            del self.sessions[waiter.session]
            return
        lane = self.sessions[waiter.session]
        if prev is None:
            lane.head = following
        else:
            prev.next = following
        if following is None:
            lane.tail = prev
        else:
            following.prev = prev
        waiter.prev = waiter.next = None

    def newest_fresh(self) -> Waiter | None:
        """The most recently arrived waiter that is not a retry (highest ``seq``), or ``None``.

        While each session's waiters are in arrival order, the newest of the sessions' last
        waiters: O(sessions). After one queued out of order, every fresh waiter is compared,
        O(fresh waiters), until a walk finds every session back in order.
        """
        newest: Waiter | None = None
        if not self.disordered:
            for lane in self.sessions.values():
                tail = lane.tail
                assert tail is not None
                if newest is None or tail.seq > newest.seq:
                    newest = tail
            return newest
        disordered = False
        for lane in self.sessions.values():
            waiter = lane.head
            while waiter is not None:
                if newest is None or waiter.seq > newest.seq:
                    newest = waiter
                following = waiter.next
                if following is not None and following.seq < waiter.seq:
                    disordered = True
                waiter = following
        self.disordered = disordered
        return newest

    def waiters(self) -> Iterator[Waiter]:
        """Every waiter in grant order: the retry lane, then sessions in turn (FIFO each)."""
        for _, _, retry in sorted(self.retries):
            if retry.state == QUEUED:
                yield retry
        for lane in self.sessions.values():
            waiter = lane.head
            while waiter is not None:
                yield waiter
                waiter = waiter.next
