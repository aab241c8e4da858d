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

The scheduler is a counter plus queues of waiters; it knows nothing of clients or HTTP. A
waiter removes itself when cancelled (its place is freed at once) and hands a slot it was
granted but can no longer use straight back. It raises only the private ``QueueFull``;
the manager turns it into a typed error with the request's context.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter, deque
from collections.abc import Callable, Iterator
from typing import Any, Final, Protocol, cast

import anyio
import anyio.lowlevel

__all__ = ["Gate", "QueueEvicted", "QueueFull", "Scheduler", "Signal", "Waiter", "signal_factory"]

Gate = Callable[[Any], float]
"""``gate(claim) -> seconds``: reserve budget for ``claim`` and return 0.0, or return how many
seconds until it could (nothing reserved)."""

_CLASSES: Final = 3  # ranks 0 (HIGH), 1 (NORMAL), 2 (LOW)
_MIN_POLL: Final = 0.001  # seconds: the shortest wait before re-checking the gate


class Signal(Protocol):
    """A one-shot wake-up: ``set`` once, ``wait`` until set (``anyio.Event``'s shape)."""

    def set(self) -> None: ...
    def is_set(self) -> bool: ...
    async def wait(self) -> None: ...


class _FutureSignal:
    """An asyncio future as a ``Signal``.

    A queued waiter is parked on one of these on asyncio. ``anyio.Event`` wraps an
    ``asyncio.Event``, whose ``collections.deque`` of waiters and instance dict cost about
    1 KB per queued request (tracemalloc, docs/performance.md); a bare future is what anyio's
    own asyncio ``Semaphore`` parks on. Cancelling the awaiting task cancels the future, so
    ``set`` must tolerate a done future.
    """

    __slots__ = ("_future",)

    def __init__(self, future: Any) -> None:
        self._future = future

    def set(self) -> None:
        if not self._future.done():
            self._future.set_result(None)

    def is_set(self) -> bool:
        # A future cancelled with its waiting task (a timeout) was not set.
        future = self._future
        return bool(future.done() and not future.cancelled())

    async def wait(self) -> None:
        await self._future


def signal_factory() -> Callable[[], Signal]:
    """The running event loop's cheapest ``Signal`` constructor.

    On asyncio (any loop with ``create_future``, uvloop included, found through anyio's public
    ``anyio.lowlevel.current_token()``): a ``_FutureSignal``. Elsewhere (trio), or on an anyio
    without ``current_token``: the backend's ``anyio.Event`` class, built directly
    (``anyio.Event()`` looks the backend up on every call).
    """
    current_token = getattr(anyio.lowlevel, "current_token", None)
    if current_token is not None:
        create_future = getattr(current_token().native_token, "create_future", None)
        if create_future is not None:
            return lambda: _FutureSignal(create_future())
    return cast(Callable[[], Signal], type(anyio.Event()))


class QueueFull(Exception):
    """Internal: admission refused because the queue is at ``max_queue_size``."""


class QueueEvicted(QueueFull):
    """Internal: a queued waiter was evicted to make room for a higher-priority one."""


class Waiter:
    """A queued request's place: granted by ``Scheduler._dispatch``, woken through ``event``."""

    __slots__ = (
        "claim",
        "event",
        "evicted",
        "granted",
        "key",
        "poll_at",
        "rank",
        "retry",
        "seq",
        "session",
    )

    def __init__(self, rank: int, session: str, seq: int, retry: bool, claim: Any = None) -> None:
        self.event: Signal | None = None  # set by ``acquire``; absent in sync tests
        self.granted = False
        self.evicted = False  # removed to make room for a higher class (set with ``event``)
        self.key: object = None  # the budget it draws on (``gate_key(claim)``)
        self.rank = rank
        self.session = session
        self.seq = seq
        self.retry = retry
        self.claim = claim  # what the gate reserves budget for (the manager's Request)
        self.poll_at: float | None = None  # woken to re-check the gate at this time


def _arrival(waiter: Waiter) -> int:
    return waiter.seq


class _SpaceWaiter:
    """A caller waiting for a place in a full queue (``Scheduler.wait_for_space``)."""

    __slots__ = ("rank", "seq", "signal", "woken")

    def __init__(self, rank: int, seq: int, signal: Signal) -> None:
        self.rank = rank
        self.seq = seq
        self.signal = signal
        self.woken = False  # handed a place (the signal may not reach a cancelled wait)


def _space_order(entry: _SpaceWaiter) -> tuple[int, int]:
    return entry.rank, entry.seq


class _ClassQueue:
    """Waiters of one priority class: a retry lane, then sessions in round-robin."""

    __slots__ = ("live", "retries", "rotation", "sessions")

    def __init__(self) -> None:
        self.live = 0
        self.retries: list[Waiter] = []  # sorted by arrival sequence
        self.sessions: dict[str, deque[Waiter]] = {}
        self.rotation: deque[str] = deque()  # sessions with waiters, next turn first

    def push(self, waiter: Waiter) -> None:
        self.live += 1
        if waiter.retry:
            bisect.insort(self.retries, waiter, key=_arrival)
            return
        queue = self.sessions.get(waiter.session)
        if queue is None:
            queue = self.sessions[waiter.session] = deque()
            self.rotation.append(waiter.session)
        queue.append(waiter)

    def peek(self) -> Waiter:
        if self.retries:
            return self.retries[0]
        return self.sessions[self.rotation[0]][0]

    def pop(self) -> Waiter:
        self.live -= 1
        if self.retries:
            return self.retries.pop(0)
        session = self.rotation.popleft()
        queue = self.sessions[session]
        waiter = queue.popleft()
        if queue:
            self.rotation.append(session)
        else:
            del self.sessions[session]
        return waiter

    def newest_fresh(self) -> Waiter | None:
        """The most recently arrived waiter that is not a retry, or ``None``."""
        newest: Waiter | None = None
        for queue in self.sessions.values():
            tail = queue[-1]
            if newest is None or tail.seq > newest.seq:
                newest = tail
        return newest

    def waiters(self) -> Iterator[Waiter]:
        """Every waiter in grant order: the retry lane, then sessions in turn (FIFO each)."""
        yield from self.retries
        for session in self.rotation:
            yield from self.sessions[session]

    def remove(self, waiter: Waiter) -> None:
        self.live -= 1
        if waiter.retry:
            self.retries.remove(waiter)
            return
        queue = self.sessions[waiter.session]
        queue.remove(waiter)
        if not queue:
            del self.sessions[waiter.session]
            self.rotation.remove(waiter.session)


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
        self._new_signal: Callable[[], Signal] | None = None
        self._poller: Waiter | None = None  # the blocked head waiter that re-checks the gate
        self._limit = max_concurrency
        self._max_queue = max_queue_size
        self._starvation_limit = starvation_limit
        self._in_use = 0
        self._queued = 0
        self._classes = tuple(_ClassQueue() for _ in range(_CLASSES))
        self._bypassed = [0] * _CLASSES
        # Callers waiting for a place in a full queue, highest class then arrival first.
        self._space: list[_SpaceWaiter] = []

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
        if self._queued == 0 and self._in_use < self._limit:
            if self._gate is not None and self._gate(claim) > 0.0:
                return False
            self._in_use += 1
            return True
        return False

    def _new_event(self) -> Signal:
        # A scheduler lives in one event loop: the backend's signal factory is found once.
        factory = self._new_signal
        if factory is None:
            factory = self._new_signal = signal_factory()
        return factory()

    def kick(self) -> None:
        """Re-run the grant loop: budget came back (a refund) outside ``release``."""
        self._dispatch()

    async def acquire(
        self, rank: int, session: str, seq: int, *, retry: bool = False, claim: Any = None
    ) -> None:
        """Wait for a slot.

        Args:
            rank: priority class, 0 (highest) to 2.
            session: session key; FIFO within it, round-robin between sessions.
            seq: arrival sequence number (orders the retry lane).
            retry: the request is coming back from a backoff: it skips the size check and
                goes ahead of later arrivals in its class.
            claim: passed to the gate at grant time.

        Raises:
            QueueFull: no slot is free and the queue is full (only when ``retry`` is false).
        """
        if self.try_acquire(claim):
            return
        waiter = self.enqueue(rank, session, seq, retry=retry, claim=claim)
        waiter.event = self._new_event()
        try:
            if self._in_use < self._limit:
                self._dispatch()  # a free slot but no budget: arm the gate's re-check
            # ``granted`` is checked before every wait: a grant can land while the waiter's
            # signal is unusable (an asyncio future cancelled by a timed-out re-check), and
            # the fresh signal installed after it would then never be set.
            while not waiter.granted:
                await waiter.event.wait()
                if waiter.evicted:
                    raise QueueEvicted
                if not waiter.granted:
                    await self._poll(waiter)
        except BaseException:
            if waiter.granted:
                self.release()  # granted while being cancelled: hand the slot on
            elif not waiter.evicted:  # an evicted waiter has already left the queue
                self.withdraw(waiter)
                if self._poller is waiter:
                    self._poller = None
                    self._dispatch()  # someone else re-checks the gate
            raise

    async def _poll(self, waiter: Waiter) -> None:
        """The blocked head's re-check of the gate.

        Sleeps until ``poll_at`` (cut short by a grant or a sooner re-check), then runs the
        grant loop again.
        """
        event = waiter.event = self._new_event()
        poll_at = waiter.poll_at
        if poll_at is not None:
            with anyio.move_on_after(max(0.0, poll_at - anyio.current_time())):
                await event.wait()
        if waiter.granted or waiter.evicted or event.is_set():
            # Granted (possibly between the timeout and this task running again, when the
            # cancelled future could not carry the wake-up), or asked to re-check sooner:
            # the caller's loop sees which.
            return
        # The timed-out wait may have consumed its signal (an asyncio future is cancelled
        # with the wait): the grant or re-arm below needs a fresh one.
        waiter.event = self._new_event()
        if self._poller is waiter:
            self._poller = None
        waiter.poll_at = None
        self._dispatch()  # may grant this waiter, re-arm it, or arm another head

    def enqueue(
        self, rank: int, session: str, seq: int, *, retry: bool = False, claim: Any = None
    ) -> Waiter:
        """Queue a waiter without waiting (``acquire`` is this plus the wait).

        Raises:
            QueueFull: the queue holds ``max_queue_size`` waiters (only when ``retry`` is false).
        """
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
            self._classes[lower].remove(victim)
            self._queued -= 1
            self._forget_key(victim)
            self._forget_if_empty(lower)
            victim.evicted = True
            if victim is self._poller:
                self._poller = None  # the new waiter's acquire arms the next re-check
            if victim.event is not None:
                victim.event.set()
            return
        raise QueueFull

    def has_room(self, rank: int) -> bool:
        """Whether a new waiter of ``rank`` would be queued now (a place, or one to evict)."""
        if self._queued < self._max_queue:
            return True
        return any(self._classes[lower].sessions for lower in range(rank + 1, _CLASSES))

    async def wait_for_space(self, rank: int, seq: int) -> None:
        """Back-pressure: wait until a new waiter of ``rank`` can be queued.

        Returns at once when ``has_room(rank)``; otherwise waits, highest class first and in
        ``seq`` order within a class, until a place frees. Returns without a checkpoint after
        the check, so a following ``acquire`` queues without being overtaken. A caller
        cancelled after being woken passes the wake-up on.
        """
        while not self.has_room(rank):
            entry = _SpaceWaiter(rank, seq, self._new_event())
            bisect.insort(self._space, entry, key=_space_order)
            try:
                await entry.signal.wait()
            except BaseException:
                if entry.woken:
                    self._wake_space()  # woken and cancelled at once: the place is not lost
                else:
                    self._space.remove(entry)
                raise

    def _wake_space(self) -> None:
        """A place freed: wake the first caller waiting for one."""
        if self._space and self._queued < self._max_queue:
            entry = self._space.pop(0)
            entry.woken = True
            entry.signal.set()

    def withdraw(self, waiter: Waiter) -> None:
        """Remove a waiter that was not granted (cancelled, timed out): its place is freed."""
        self._classes[waiter.rank].remove(waiter)
        self._queued -= 1
        self._forget_key(waiter)
        self._forget_if_empty(waiter.rank)
        if self._space:
            self._wake_space()

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
                    self._classes[rank].remove(waiter)
                else:
                    self._count_grant(rank)
                    waiter = queue.pop()
            else:
                self._count_grant(rank)
                waiter = queue.pop()
            self._queued -= 1
            self._forget_key(waiter)
            self._forget_if_empty(rank)
            if self._space:
                self._wake_space()
            waiter.granted = True
            if waiter is self._poller:
                self._poller = None
            self._in_use += 1
            if waiter.event is not None:
                waiter.event.set()

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
        if head.event is None or not math.isfinite(delay):
            return  # sync use without waiting tasks, or a gate that never opens
        # At least _MIN_POLL: a re-check at the same clock reading would find the same
        # budget and spin.
        at = anyio.current_time() + max(delay, _MIN_POLL)
        poller = self._poller
        if poller is not None and poller.poll_at is not None and poller.poll_at <= at:
            return
        self._poller = head
        head.poll_at = at
        head.event.set()

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
