"""The priority scheduler: who gets the next concurrency slot.

Rules, in order:

1. **Strict priority** between classes (``HIGH`` > ``NORMAL`` > ``LOW``) ...
2. ... **except anti-starvation**: a class with waiters that has been passed over
   ``starvation_limit`` grants in a row gets the next grant. Under sustained ``HIGH`` load a
   waiting ``LOW`` request is therefore served within ``starvation_limit + 1`` grants, or
   ``starvation_limit + 2`` when ``NORMAL`` is starving at the same time (a grant to one lower
   class does not count as passing over the other).
3. Within a class, **retries first**: a request coming back from a backoff goes ahead of work
   that arrived after it (ordered by arrival sequence).
4. Then **round-robin between sessions**, **FIFO within a session**: a session with 100 queued
   requests gets one grant per turn like a session with one. Requests without a session id
   share one anonymous session.

5. **Budgets in the same decision**: with a ``gate`` (the manager's rate-limit and cooldown
   check), the chosen waiter is granted only if the gate can reserve its request and token
   budget now; otherwise nobody is granted (no overtaking: a large request is not starved by
   small ones) and the blocked head waiter is woken when the gate says budget will be back,
   to try again. So a slot is never held while waiting for budget, and budget is never spent
   on work that then waits for a slot. Budgets are per ``gate_key`` (the manager's: the
   request's model, whose rate limits are its own): a waiter of *another* key may overtake a
   head blocked on its key's budget, in the order above, so one model's exhausted budget
   never holds back another model's work. Within a key there is no overtaking.

6. **Priority survives a full queue**: when ``max_queue_size`` waiters are queued, a new
   request is still admitted if a waiter of a *lower* class is queued: the newest such waiter
   of the lowest class is evicted (its ``acquire`` raises ``QueueEvicted``, a ``QueueFull``)
   to make room. A request that finds only its own class or higher is refused. Retries are
   never evicted and always admitted. ``wait_for_space`` is the back-pressure alternative to
   a refusal: the caller waits, highest class first and FIFO within one, for a place.

7. **Queue deadlines**: ``acquire`` and ``wait_for_space`` take an absolute ``deadline`` on
   the event loop's clock (``anyio.current_time()``, seconds). A waiter still queued when it
   passes leaves the queue and raises ``QueueTimedOut``; one granted first keeps its slot.
   One timer enforces every deadline: the owner runs ``Scheduler.run_timer`` in its task
   group for the scheduler's life. Without it each waiter falls back to a cancel scope of
   its own, with the same outcomes.

The scheduler is a counter plus queues of waiters; it knows nothing of clients or HTTP. A
queued request is a small record (``Waiter``) in those queues while its task is parked once:
on a bare future (asyncio) or on the task itself (trio's ``wait_task_rescheduled``). Leaving
the queue is O(1) (amortized) whichever way (grant, cancellation, deadline, eviction; finding
the newest waiter to evict scans the class's sessions, or its waiters while one of them queued
behind a newer waiter of its session): session queues are linked lists, the retry lane, the
places queue and the timer's deadlines are heaps (the deadlines that come in order a deque)
whose departed entries are skipped, then compacted away once they outnumber the live ones.
A waiter removes itself when cancelled (its place is freed at once) and hands a slot it was
granted but can no longer use straight back. It raises only the private ``QueueFull`` and
``QueueTimedOut``; the manager turns them into typed errors with the request's context.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import Counter, deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, NoReturn

import anyio
import anyio.lowlevel

from ._waiters import (
    CLOSED,
    COMPACT_SLACK,
    EVICTED,
    GRANTED,
    QUEUED,
    TIMED_OUT,
    UNTIMED,
    WITHDRAWN,
    ClassQueue,
    Entry,
    Parking,
    SpaceWaiter,
    Waiter,
    find_parking,
    no_wake,
)

if TYPE_CHECKING:
    pass

__all__ = [
    "Gate",
    "QueueClosed",
    "QueueEvicted",
    "QueueFull",
    "QueueTimedOut",
    "Scheduler",
    "Waiter",
]

Gate = Callable[[Any], float]
"""``gate(claim) -> seconds``: reserve budget for ``claim`` and return 0.0, or return how many
seconds until it could (nothing reserved)."""

_CLASSES: Final = 3  # ranks 0 (HIGH), 1 (NORMAL), 2 (LOW)
_MIN_POLL: Final = 0.001  # seconds: the shortest wait before re-checking the gate


class QueueFull(Exception):
    """Internal: admission refused because the queue is at ``max_queue_size``."""


class QueueEvicted(QueueFull):
    """Internal: a queued waiter was evicted to make room for a higher-priority one."""


class QueueTimedOut(Exception):
    """Internal: the waiter's queue deadline passed before it was granted (or given a place)."""


class QueueClosed(Exception):
    """Internal: the scheduler was closed (shutdown): nobody waiting will be granted."""


class Scheduler:
    """Grants at most ``max_concurrency`` slots at once, in the order described above.

    Args:
        max_concurrency: slots that may be held at once (>= 1).
        max_queue_size: new waiters allowed at once; retries are always admitted.
        starvation_limit: grants in a row a waiting lower class may be passed over (>= 1).
        gate: budget check run before every grant (see the module docstring); none by default.
        gate_key: ``gate_key(claim) -> key``: which budget a claim draws on; waiters of another
            key may overtake a head the gate holds back. ``None``: one budget, no overtaking.
    """

    def __init__(
        self,
        *,
        max_concurrency: int,
        max_queue_size: int,
        starvation_limit: int,
        gate: Gate | None = None,
        gate_key: Callable[[Any], object] | None = None,
    ) -> None:
        self._gate = gate
        self._gate_key = gate_key
        self._keys: Counter[object] = Counter()  # queued waiters per budget key
        # A scheduler lives in one event loop: its parking is found at the first wait.
        self._parking: Parking | None = None
        self._wake: Callable[[Entry], None] = no_wake
        self._poller: Waiter | None = None  # the blocked head waiter that re-checks the gate
        self._limit = max_concurrency
        self._max_queue = max_queue_size
        self._starvation_limit = starvation_limit
        self._in_use = 0
        self._queued = 0
        self._classes = tuple(ClassQueue() for _ in range(_CLASSES))
        self._bypassed = [0] * _CLASSES
        # Callers waiting for a place in a full queue: a heap, highest class then arrival
        # first; entries of callers that left are skipped (``_space_live`` counts the rest).
        self._space: list[tuple[int, int, int, SpaceWaiter]] = []
        self._space_live = 0
        self._space_order = itertools.count()
        # The timer: the entries whose deadline it holds, departed ones included until they
        # surface or are compacted away. Deadlines that come in order (one queue_timeout for
        # all: the usual case) queue in arrival order, no comparisons needed; the others in
        # a heap. ``_timed`` counts the entries still waiting. Its sleep: None, not running.
        self._in_order: deque[Entry] = deque()
        self._deadlines: list[Entry] = []  # heap by deadline
        self._timed = 0
        self._timer: anyio.CancelScope | None = None
        self._closed = False  # close(): no waiter is granted, no new one queued
        self._timer_at = UNTIMED  # its sleep's deadline (read often, kept as a float)

    @property
    def in_use(self) -> int:
        """Slots held now."""
        return self._in_use

    @property
    def queued(self) -> int:
        """Waiters queued now (retries included)."""
        return self._queued

    def queue_depths(self) -> tuple[int, int, int]:
        """Waiters per class, as ``(high, normal, low)``."""
        high, normal, low = (c.live for c in self._classes)
        return high, normal, low

    def try_acquire(self, claim: Any = None) -> bool:
        """Take a slot if one is free, nobody is waiting and the gate admits ``claim``."""
        if self._queued == 0 and self._in_use < self._limit and not self._closed:
            if self._gate is not None and self._gate(claim) > 0.0:
                return False
            self._in_use += 1
            if self._space:
                # A caller woken for a place took a slot at once instead: the place it was
                # given is still free, so the next caller waiting for one gets it.
                self._wake_space()
            return True
        return False

    def _find_parking(self) -> Parking:
        parking = self._parking = find_parking()
        self._wake = parking.wake
        return parking

    def kick(self) -> None:
        """Re-run the grant loop: budget came back (a refund) outside ``release``."""
        self._dispatch()

    async def acquire(
        self,
        rank: int,
        session: str,
        seq: int,
        *,
        retry: bool = False,
        claim: Any = None,
        deadline: float | None = None,
    ) -> None:
        """Wait for a slot.

        Args:
            rank: priority class, 0 (highest) to 2.
            session: session key; FIFO within it, round-robin between sessions.
            seq: arrival sequence number, unique among queued waiters (the engine's arrival
                counter): it orders the retry lane and says which waiter is the newest to
                evict. A later arrival may carry an older number (a request back after
                waiting for a place).
            retry: the request is coming back from a backoff: it skips the size check and
                goes ahead of later arrivals in its class.
            claim: passed to the gate at grant time.
            deadline: absolute time on the event loop's clock (``anyio.current_time()``,
                seconds) by which the slot must be granted; ``None`` (default) or ``inf``:
                no deadline. A free slot is taken at once whatever the deadline.

        Raises:
            QueueFull: no slot is free and the queue is full (only when ``retry`` is false).
            QueueEvicted: evicted from the queue to make room for a higher class.
            QueueTimedOut: ``deadline`` passed before a grant.
            QueueClosed: the scheduler is (or was, while waiting) closed.
        """
        if self.try_acquire(claim):
            return
        waiter = self.enqueue(rank, session, seq, retry=retry, claim=claim)
        parking = self._parking or self._find_parking()
        parking.prepare(waiter)
        if deadline is not None and not deadline < UNTIMED:
            deadline = None
        try:
            if self._in_use < self._limit:
                self._dispatch()  # a free slot but no budget: arm the gate's re-check
            # The state is checked before every park: a grant can land while the waiter is
            # not parked (its timed park was just cancelled), and it must see it then.
            while waiter.state == QUEUED:
                wake_at = None
                if deadline is not None or waiter is self._poller:
                    wake_at = self._wake_at(waiter, deadline)
                if wake_at is None:
                    await parking.park(waiter)
                else:
                    with anyio.CancelScope(deadline=wake_at):
                        await parking.park(waiter)
                    if waiter.state == QUEUED:
                        self._due(waiter, deadline)
            if waiter.state != GRANTED:
                if waiter.state == EVICTED:
                    raise QueueEvicted
                raise QueueClosed if waiter.state == CLOSED else QueueTimedOut
        except BaseException:
            if waiter.state == GRANTED:
                self.release()  # granted while being cancelled: hand the slot on
            elif waiter.state == QUEUED:
                self.withdraw(waiter)
            raise

    def _wake_at(self, waiter: Waiter, deadline: float | None) -> float | None:
        """When ``waiter``'s own task must wake if nobody wakes it first, or ``None``.

        Its deadline goes to the timer if one runs (else the task keeps it); the gate's
        poller also wakes for its re-check.
        """
        at = None
        if deadline is not None and waiter.deadline == UNTIMED:
            timer = self._timer
            if timer is None:
                at = deadline
            else:
                self._track(timer, waiter, deadline)
        if waiter is self._poller:
            poll_at = waiter.poll_at
            if poll_at is not None and (at is None or poll_at < at):
                at = poll_at
        return at

    def _due(self, waiter: Waiter, deadline: float | None) -> None:
        """``waiter``'s timed park ended with nobody waking it: its deadline or re-check."""
        now = anyio.current_time()
        if deadline is not None and waiter.deadline == UNTIMED and now >= deadline:
            self._drop(waiter, TIMED_OUT)
        elif waiter is self._poller and waiter.poll_at is not None and now >= waiter.poll_at:
            self._poller = None
            waiter.poll_at = None
            self._dispatch()  # may grant this waiter, re-arm it, or arm another head

    def enqueue(
        self, rank: int, session: str, seq: int, *, retry: bool = False, claim: Any = None
    ) -> Waiter:
        """Queue a waiter without waiting (``acquire`` is this plus the wait).

        Raises:
            QueueFull: the queue holds ``max_queue_size`` waiters (only when ``retry`` is false).
            QueueClosed: the scheduler is closed.
        """
        if self._closed:
            raise QueueClosed
        if not retry and self._queued >= self._max_queue:
            self._evict_below(rank)
        waiter = Waiter(rank, session, seq, retry, claim)
        if self._gate_key is not None:
            waiter.key = self._gate_key(claim)
        self._classes[rank].push(waiter)
        self._queued += 1
        self._keys[waiter.key] += 1
        return waiter

    def _evict_below(self, rank: int) -> None:
        """Make room for a new waiter of ``rank`` by evicting a lower-priority one.

        The newest waiter of the lowest class below ``rank`` that has one goes; retries are
        never evicted.

        Raises:
            QueueFull: no lower class has a waiter to evict.
        """
        for lower in range(_CLASSES - 1, rank, -1):
            victim = self._classes[lower].newest_fresh()
            if victim is None:
                continue
            self._leave(victim, EVICTED)
            if victim is self._poller:
                self._poller = None  # the new waiter's acquire arms the next re-check
            self._wake(victim)
            return
        raise QueueFull

    def has_room(self, rank: int) -> bool:
        """Whether a new waiter of ``rank`` would be queued now (a place, or one to evict)."""
        if self._queued < self._max_queue:
            return True
        return any(self._classes[lower].sessions for lower in range(rank + 1, _CLASSES))

    async def wait_for_space(self, rank: int, seq: int, *, deadline: float | None = None) -> None:
        """Back-pressure: wait until a new waiter of ``rank`` can be queued.

        Returns at once when ``has_room(rank)``; otherwise waits, highest class first and in
        ``seq`` order within a class, until a place frees. Returns without a checkpoint after
        the check, so a following ``acquire`` queues without being overtaken. A caller
        cancelled after being woken passes the wake-up on.

        Args:
            rank: priority class, 0 (highest) to 2.
            seq: arrival sequence number (the order within a class).
            deadline: absolute time on the event loop's clock (seconds) by which a place
                must be found; ``None`` (default) or ``inf``: no deadline.

        Raises:
            QueueTimedOut: ``deadline`` passed first.
            QueueClosed: the scheduler was closed meanwhile.
        """
        if deadline is not None and not deadline < UNTIMED:
            deadline = None
        if self._closed:
            raise QueueClosed
        while not self.has_room(rank):
            entry = SpaceWaiter(rank, seq)
            heapq.heappush(self._space, (rank, seq, next(self._space_order), entry))
            self._space_live += 1
            parking = self._parking or self._find_parking()
            parking.prepare(entry)
            try:
                while entry.state == QUEUED:
                    at = None
                    if deadline is not None and entry.deadline == UNTIMED:
                        timer = self._timer
                        if timer is None:
                            at = deadline
                        else:
                            self._track(timer, entry, deadline)
                    if at is None:
                        await parking.park(entry)
                        continue
                    with anyio.CancelScope(deadline=at):
                        await parking.park(entry)
                    if entry.state == QUEUED and anyio.current_time() >= at:
                        self._leave_space(entry, TIMED_OUT)
                if entry.state == TIMED_OUT:
                    raise QueueTimedOut
                if entry.state == CLOSED:
                    raise QueueClosed
            except BaseException:
                if entry.state == GRANTED:
                    self._wake_space()  # woken and cancelled at once: the place is not lost
                elif entry.state == QUEUED:
                    self._leave_space(entry, WITHDRAWN)
                raise

    def _leave_space(self, entry: SpaceWaiter, state: int) -> None:
        """A caller stops waiting for a place (cancelled, timed out)."""
        entry.state = state
        self._space_live -= 1
        self._untrack(entry)
        space = self._space
        if len(space) > 2 * self._space_live + COMPACT_SLACK:
            space[:] = [e for e in space if e[3].state == QUEUED]
            heapq.heapify(space)

    def _wake_space(self) -> None:
        """A place freed: wake the first caller waiting for one."""
        space = self._space
        while space and self._queued < self._max_queue:
            entry = heapq.heappop(space)[3]
            if entry.state != QUEUED:
                continue  # it left: skip its entry
            entry.state = GRANTED
            self._space_live -= 1
            self._untrack(entry)
            self._wake(entry)
            return

    def close(self) -> None:
        """Shutdown: every waiter (queued, or waiting for a place) leaves with ``QueueClosed``.

        Later waits raise it at once, and ``try_acquire`` grants nothing more. Slots still
        held are released as usual. Idempotent.
        """
        self._closed = True
        self._poller = None
        for queue in self._classes:
            for waiter in list(queue.waiters()):
                self._leave(waiter, CLOSED)
                self._wake(waiter)
        for *_, entry in list(self._space):
            if entry.state == QUEUED:
                self._leave_space(entry, CLOSED)
                self._wake(entry)

    def withdraw(self, waiter: Waiter) -> None:
        """Remove a waiter that was not granted (cancelled, timed out): its place is freed."""
        self._drop(waiter, WITHDRAWN)

    def _drop(self, waiter: Waiter, state: int) -> None:
        """``waiter`` leaves the queue ungranted; a poller's re-check passes to another head."""
        self._leave(waiter, state)
        if self._space:
            self._wake_space()
        if waiter is self._poller:
            self._poller = None
            self._dispatch()  # someone else re-checks the gate

    def _leave(self, waiter: Waiter, state: int) -> None:
        """Take ``waiter`` out of the queue with its new ``state`` and fix every count."""
        waiter.state = state
        rank = waiter.rank
        queue = self._classes[rank]
        queue.remove(waiter)
        self._queued -= 1
        self._forget_key(waiter)
        if not queue.live:
            self._bypassed[rank] = 0
        self._untrack(waiter)

    def release(self) -> None:
        """Return a slot and grant it to the next waiter, if any."""
        self._in_use -= 1
        self._dispatch()

    def _dispatch(self) -> None:
        while self._queued and self._in_use < self._limit:
            rank = self._choose_class()
            queue = self._classes[rank]
            if self._gate is not None:
                head = queue.peek()
                delay = self._gate(head.claim)
                if delay > 0.0:
                    self._arm_poll(head, delay)
                    waiter = self._overtaker(head)
                    if waiter is None:
                        return
                    rank = waiter.rank
                    self._count_grant(rank)
                    waiter.state = GRANTED
                    self._classes[rank].remove(waiter)
                else:
                    self._count_grant(rank)
                    waiter = queue.pop()
            else:
                self._count_grant(rank)
                waiter = queue.pop()
            waiter.state = GRANTED
            self._queued -= 1
            self._forget_key(waiter)
            self._forget_if_empty(rank)
            if waiter.deadline != UNTIMED:
                self._untrack(waiter)
            if self._space:
                self._wake_space()
            if waiter is self._poller:
                self._poller = None
            self._in_use += 1
            self._wake(waiter)

    def _overtaker(self, blocked: Waiter) -> Waiter | None:
        """The first waiter of another key whose budget the gate reserves now, or ``None``.

        Waiters are tried in grant order, skipping keys found blocked (each is armed for its
        own re-check).

        Only runs when waiters of several keys are queued, and stops once every queued key
        was found blocked.
        """
        keys = self._keys
        if len(keys) < 2:
            return None
        gate = self._gate
        assert gate is not None
        held = {blocked.key}
        for queue in self._classes:
            for waiter in queue.waiters():
                if waiter.key in held:
                    continue
                delay = gate(waiter.claim)
                if delay <= 0.0:
                    return waiter
                self._arm_poll(waiter, delay)
                held.add(waiter.key)
                if len(held) >= len(keys):
                    return None
        return None

    def _forget_key(self, waiter: Waiter) -> None:
        keys = self._keys
        left = keys[waiter.key] - 1
        if left:
            keys[waiter.key] = left
        else:
            del keys[waiter.key]

    def _arm_poll(self, head: Waiter, delay: float) -> None:
        """Have ``head`` re-check the gate in ``delay`` seconds (unless a sooner check is due)."""
        if head.handle is None or not math.isfinite(delay):
            return  # sync use without waiting tasks, or a gate that never opens
        # At least _MIN_POLL: a re-check at the same clock reading would find the same
        # budget and spin.
        at = anyio.current_time() + max(delay, _MIN_POLL)
        poller = self._poller
        if poller is not None and poller.poll_at is not None and poller.poll_at <= at:
            return
        self._poller = head
        head.poll_at = at
        self._wake(head)

    def _choose_class(self) -> int:
        # The highest class with waiters, unless a lower one has been passed over
        # starvation_limit times. No list is built: this runs on every grant.
        classes, bypassed, limit = self._classes, self._bypassed, self._starvation_limit
        chosen = -1
        for rank in range(_CLASSES):
            if classes[rank].live:
                if chosen < 0:
                    chosen = rank
                elif bypassed[rank] >= limit:
                    return rank
        return chosen

    def _count_grant(self, chosen: int) -> None:
        classes, bypassed = self._classes, self._bypassed
        for rank in range(chosen + 1, _CLASSES):
            if classes[rank].live:
                bypassed[rank] += 1
        bypassed[chosen] = 0

    def _forget_if_empty(self, rank: int) -> None:
        if not self._classes[rank].live:
            self._bypassed[rank] = 0

    # The timer: one task enforces every queue deadline.

    async def run_timer(self) -> NoReturn:
        """Enforce the queue deadlines of every waiter, until cancelled.

        The scheduler's owner runs this in its task group for the scheduler's life (the
        manager starts it on entry and cancels it on exit). It keeps the deadlines in one heap
        and sleeps until the earliest (sooner when an earlier one arrives); each waiter still
        queued at its deadline leaves the queue and is woken to raise ``QueueTimedOut``.
        Without it, each waiter with a deadline keeps a cancel scope of its own; when it
        stops, the waiters it held get their deadlines back.

        Raises:
            RuntimeError: a timer already runs for this scheduler.
        """
        if self._timer is not None:
            raise RuntimeError("this scheduler's timer is already running")
        heap, in_order = self._deadlines, self._in_order
        try:
            while True:
                at = UNTIMED
                if in_order:
                    at = in_order[0].deadline
                if heap and heap[0].deadline < at:
                    at = heap[0].deadline
                self._timer_at = at
                with anyio.CancelScope(deadline=at) as sleep:
                    self._timer = sleep
                    await anyio.sleep_forever()
                self._expire()
        finally:
            self._timer = None
            # Hand the deadlines back: each waiter keeps its own from now on.
            for entry in itertools.chain(in_order, heap):
                if entry.state == QUEUED:
                    entry.deadline = UNTIMED
                    self._wake(entry)
            in_order.clear()
            heap.clear()
            self._timed = 0

    def _track(self, timer: anyio.CancelScope, entry: Entry, deadline: float) -> None:
        """The running ``timer`` takes ``entry``'s deadline."""
        entry.deadline = deadline
        in_order = self._in_order
        if not in_order or in_order[-1].deadline <= deadline:
            in_order.append(entry)
        else:
            heapq.heappush(self._deadlines, entry)
        self._timed += 1
        if deadline < self._timer_at:
            self._timer_at = timer.deadline = deadline  # wakes the timer sooner

    def _untrack(self, entry: Entry) -> None:
        """``entry`` stopped waiting (its state is set): its deadline entry is now stale."""
        if entry.deadline == UNTIMED:
            return
        self._timed -= 1
        in_order = self._in_order
        while in_order and in_order[0].state != QUEUED:
            in_order.popleft()  # the oldest leave first, mostly: nothing else to do
        heap = self._deadlines
        if len(in_order) + len(heap) > 2 * self._timed + COMPACT_SLACK:
            live = [e for e in in_order if e.state == QUEUED]
            in_order.clear()
            in_order.extend(live)  # in place: the timer holds these two
            heap[:] = [e for e in heap if e.state == QUEUED]
            heapq.heapify(heap)

    def _next_due(self, now: float) -> Entry | None:
        """Take the entry with the earliest deadline if it has passed ``now``, else ``None``."""
        in_order, heap = self._in_order, self._deadlines
        if heap and (not in_order or heap[0].deadline < in_order[0].deadline):
            return heapq.heappop(heap) if heap[0].deadline <= now else None
        if in_order and in_order[0].deadline <= now:
            return in_order.popleft()
        return None

    def _expire(self) -> None:
        """The timer's step: time out every waiter whose deadline has passed."""
        now = anyio.current_time()
        while (entry := self._next_due(now)) is not None:
            if entry.state != QUEUED:
                continue  # granted, withdrawn or evicted before its deadline
            if isinstance(entry, Waiter):
                self._drop(entry, TIMED_OUT)
            else:
                assert isinstance(entry, SpaceWaiter)
                self._leave_space(entry, TIMED_OUT)
            self._wake(entry)
