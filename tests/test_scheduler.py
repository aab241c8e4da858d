"""The scheduler's ordering rules, cancellation and admission."""

from __future__ import annotations

import itertools

import anyio
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
)

from llmpool._scheduler import QueueFull, Scheduler, Waiter

pytestmark = pytest.mark.anyio

HIGH, NORMAL, LOW = 0, 1, 2


def make(limit: int = 1, queue: int = 100, starvation: int = 10) -> Scheduler:
    return Scheduler(max_concurrency=limit, max_queue_size=queue, starvation_limit=starvation)


def drain(scheduler: Scheduler, waiters: list[Waiter]) -> list[Waiter]:
    """Release one slot at a time and return the waiters in the order they were granted."""
    order: list[Waiter] = []
    pending = list(waiters)
    while pending:
        scheduler.release()
        granted = [w for w in pending if w.granted]
        assert len(granted) == 1, "one release grants exactly one waiter"
        order.append(granted[0])
        pending.remove(granted[0])
    return order


def test_strict_priority_between_classes() -> None:
    """With one slot held, queued HIGH work is granted before NORMAL, NORMAL before LOW."""
    s = make()
    assert s.try_acquire()
    seq = itertools.count()
    low = s.enqueue(LOW, "a", next(seq))
    normal = s.enqueue(NORMAL, "b", next(seq))
    high = s.enqueue(HIGH, "c", next(seq))
    assert drain(s, [low, normal, high]) == [high, normal, low]


def test_round_robin_between_sessions_fifo_within() -> None:
    """A session with many queued requests does not starve another session's one request."""
    s = make()
    assert s.try_acquire()
    seq = itertools.count()
    a = [s.enqueue(NORMAL, "terminal-a", next(seq)) for _ in range(5)]
    b = s.enqueue(NORMAL, "terminal-b", next(seq))
    c = [s.enqueue(NORMAL, "terminal-c", next(seq)) for _ in range(2)]
    order = drain(s, [*a, b, *c])
    assert order == [a[0], b, c[0], a[1], c[1], a[2], a[3], a[4]]


def test_retry_goes_ahead_of_later_arrivals_in_its_class() -> None:
    """A request back from a backoff is granted before work of its class that arrived later."""
    s = make()
    assert s.try_acquire()
    early = 0
    later = [s.enqueue(NORMAL, f"s{i}", 10 + i) for i in range(3)]
    retry = s.enqueue(NORMAL, "s9", early, retry=True)
    high = s.enqueue(HIGH, "h", 20)
    assert drain(s, [*later, retry, high]) == [high, retry, *later]


def test_low_is_not_starved_under_sustained_high() -> None:
    """Under a continuous HIGH backlog, a waiting LOW request gets the slot after at most
    starvation_limit HIGH grants (the documented anti-starvation rule)."""
    limit = 4
    s = make(starvation=limit)
    assert s.try_acquire()
    seq = itertools.count()
    low = s.enqueue(LOW, "batch", next(seq))
    highs_granted = 0
    for _ in range(3 * limit):
        s.enqueue(HIGH, "live", next(seq))  # HIGH work keeps arriving
        s.release()
        if low.granted:
            break
        highs_granted += 1
    assert low.granted
    assert highs_granted == limit


def test_queue_full_rejects_new_work_but_admits_retries() -> None:
    """At max_queue_size a new waiter is refused at once; a retry is still admitted."""
    s = make(queue=2)
    assert s.try_acquire()
    s.enqueue(NORMAL, "a", 0)
    s.enqueue(NORMAL, "a", 1)
    with pytest.raises(QueueFull):
        s.enqueue(NORMAL, "b", 2)
    s.enqueue(NORMAL, "b", 3, retry=True)
    assert s.queued == 3


def test_withdraw_frees_the_place() -> None:
    """A withdrawn waiter is never granted and no longer counts against the queue."""
    s = make(queue=1)
    assert s.try_acquire()
    gone = s.enqueue(NORMAL, "a", 0)
    s.withdraw(gone)
    kept = s.enqueue(NORMAL, "a", 1)
    s.release()
    assert kept.granted
    assert not gone.granted
    assert s.queued == 0


async def test_cancelled_acquire_frees_its_place_at_once() -> None:
    """Cancelling a queued acquire removes it; the next release goes to the next waiter."""
    s = make()
    assert s.try_acquire()
    got: list[str] = []

    async def waiter(name: str, scope: anyio.CancelScope) -> None:
        with scope:
            await s.acquire(NORMAL, name, 0)
            got.append(name)

    scopes = {name: anyio.CancelScope() for name in ("first", "second")}
    async with anyio.create_task_group() as tg:
        for name, scope in scopes.items():
            tg.start_soon(waiter, name, scope)
            await anyio.wait_all_tasks_blocked()
        assert s.queued == 2
        scopes["first"].cancel()
        await anyio.wait_all_tasks_blocked()
        assert s.queued == 1
        s.release()
    assert got == ["second"]
    assert s.in_use == 1


async def test_slot_granted_to_a_cancelled_waiter_is_passed_on() -> None:
    """A waiter granted a slot in the same step it is cancelled hands the slot on, not leaks it."""
    s = make()
    assert s.try_acquire()
    order: list[str] = []

    async def waiter(name: str, scope: anyio.CancelScope) -> None:
        with scope:
            await s.acquire(NORMAL, name, 0)
            order.append(name)

    first, second = anyio.CancelScope(), anyio.CancelScope()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter, "first", first)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(waiter, "second", second)
            await anyio.wait_all_tasks_blocked()
            first.cancel()  # "first" is being cancelled ...
            s.release()  # ... when the release grants it the slot
    assert order == ["second"]
    assert s.in_use == 1


class SchedulerMachine(RuleBasedStateMachine):
    """Random arrivals, releases and cancellations; the documented order holds throughout."""

    waiters = Bundle("waiters")

    def __init__(self) -> None:
        super().__init__()
        self.limit = 2
        self.starvation = 3
        self.s = make(limit=self.limit, queue=1000, starvation=self.starvation)
        self.seq = itertools.count()
        self.clock = itertools.count()
        self.live: list[Waiter] = []
        self.granted: list[Waiter] = []
        self.enqueued_at: dict[int, int] = {}
        self.bypassed = [0, 0, 0]
        self.last_grant: dict[tuple[int, str], int] = {}
        self.waiting_since: dict[tuple[int, str], int] = {}

    def _key(self, w: Waiter) -> tuple[int, str]:
        return (w.rank, w.session)

    @rule(
        target=waiters,
        rank=st.sampled_from([HIGH, NORMAL, LOW]),
        session=st.sampled_from(["a", "b", "c"]),
        retry=st.booleans(),
    )
    def arrive(self, rank: int, session: str, retry: bool) -> Waiter | None:
        if self.s.try_acquire():
            return None
        seq = next(self.seq)
        w = self.s.enqueue(rank, session, seq, retry=retry)
        self.enqueued_at[id(w)] = next(self.clock)
        if not retry:
            key = self._key(w)
            if not any(self._key(o) == key and not o.retry for o in self.live):
                self.waiting_since[key] = self.enqueued_at[id(w)]
        self.live.append(w)
        return w

    @precondition(lambda self: self.s.in_use > 0)
    @rule()
    def release(self) -> None:
        before = list(self.live)
        waiting_classes = {w.rank for w in before}
        self.s.release()
        now = next(self.clock)
        granted = [w for w in before if w.granted]
        assert len(granted) == (1 if before else 0)
        if not granted:
            return
        w = granted[0]
        self.live.remove(w)
        self.granted.append(w)
        # Strict priority, unless the chosen class had been passed over starvation_limit times.
        if any(rank < w.rank for rank in waiting_classes):
            assert self.bypassed[w.rank] >= self.starvation
        for rank in waiting_classes:
            if rank > w.rank:
                self.bypassed[rank] += 1
        self.bypassed[w.rank] = 0
        same_class = [o for o in before if o.rank == w.rank]
        retries = [o for o in same_class if o.retry]
        if retries:
            # The retry lane goes first, in arrival order.
            assert w.retry
            assert w.seq == min(o.seq for o in retries)
        else:
            key = self._key(w)
            mine = [o for o in same_class if self._key(o) == key]
            assert w.seq == min(o.seq for o in mine), "FIFO within a session"
            previous = self.last_grant.get(key)
            if previous is not None:
                for other in {self._key(o) for o in same_class if self._key(o) != key}:
                    assert self.waiting_since[other] > previous, "round-robin between sessions"
            self.last_grant[key] = now
            if any(self._key(o) == key and not o.retry for o in self.live):
                self.waiting_since[key] = now
        for rank in (0, 1, 2):
            if not any(o.rank == rank for o in self.live):
                self.bypassed[rank] = 0

    @rule(w=consumes(waiters))
    def cancel(self, w: Waiter | None) -> None:
        if w is None or w not in self.live:
            return
        self.s.withdraw(w)
        self.live.remove(w)
        key = self._key(w)
        if not w.retry and any(self._key(o) == key and not o.retry for o in self.live):
            pass  # the session keeps its place in the rotation
        if not any(o.rank == w.rank for o in self.live):
            self.bypassed[w.rank] = 0

    @invariant()
    def counts_agree(self) -> None:
        assert self.s.queued == len(self.live)
        assert 0 <= self.s.in_use <= self.limit
        assert sum(self.s.queue_depths()) == len(self.live)
        if self.live:
            assert self.s.in_use == self.limit, "nobody waits while a slot is free"

    @invariant()
    def no_double_grant(self) -> None:
        assert len({id(w) for w in self.granted}) == len(self.granted)


TestSchedulerMachine = SchedulerMachine.TestCase
TestSchedulerMachine.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)


def test_grant_between_poll_timeout_and_wakeup_is_not_lost() -> None:
    """Lost-wakeup regression (asyncio): the blocked head waiter's gate re-check times out,
    which cancels the bare future it is parked on; before its task runs again, another
    dispatch grants it (``granted=True``, slot taken) and ``set()`` on the cancelled future
    does nothing. The waiter must see its grant instead of parking on a fresh signal until
    the queue timeout.

    The interleaving is forced with the loop's ready queue: a callback that re-schedules
    itself with ``call_soon`` runs ahead of the waiter's wake-up callback, which the timeout
    queues behind it, and grants the moment it sees the future cancelled."""

    async def main() -> tuple[bool, int]:
        gate_open = False

        def gate(claim: object) -> float:
            return 0.0 if gate_open else 0.02

        scheduler = Scheduler(max_concurrency=1, max_queue_size=10, starvation_limit=10, gate=gate)
        loop = anyio.lowlevel.current_token().native_token
        granted = anyio.Event()
        gate_open = True
        assert scheduler.try_acquire()  # the slot is held
        gate_open = False

        async def waiter_task() -> None:
            await scheduler.acquire(NORMAL, "s", 1)
            granted.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter_task)
            await anyio.wait_all_tasks_blocked()
            scheduler.release()  # the gate refuses: the head is armed to re-check in 0.02 s
            await anyio.wait_all_tasks_blocked()  # it now waits inside _poll
            head = scheduler._poller
            assert head is not None
            assert head.poll_at is not None
            future = head.handle  # the bare future it is parked on

            def grant_when_cancelled() -> None:
                nonlocal gate_open
                if not future.cancelled():
                    loop.call_soon(grant_when_cancelled)
                    return
                gate_open = True
                scheduler.kick()  # another task's dispatch, before the waiter runs

            loop.call_at(head.poll_at - 0.005, grant_when_cancelled)
            with anyio.move_on_after(1.0):
                await granted.wait()
            tg.cancel_scope.cancel()
        return granted.is_set(), scheduler.in_use

    granted, in_use = anyio.run(main, backend="asyncio")
    assert granted, "the waiter was granted a slot but never woke"
    assert in_use == 1


def test_other_budget_key_overtakes_a_blocked_head_same_key_does_not() -> None:
    """The gate holds back key "big": a later "small" waiter is granted past the blocked
    head; a later "big" waiter is not (no overtaking within one budget)."""
    blocked = {"big"}

    def gate(claim: object) -> float:
        return 1.0 if claim in blocked else 0.0

    scheduler = Scheduler(
        max_concurrency=3, max_queue_size=10, starvation_limit=10, gate=gate, gate_key=str
    )
    assert scheduler.try_acquire("small")
    assert scheduler.try_acquire("small")
    big_head = scheduler.enqueue(HIGH, "a", 1, claim="big")
    big_late = scheduler.enqueue(HIGH, "b", 2, claim="big")
    small = scheduler.enqueue(LOW, "c", 3, claim="small")
    scheduler.kick()
    assert (big_head.granted, big_late.granted, small.granted) == (False, False, True)
    scheduler.release()  # a slot frees: the blocked head still cannot go, nor can "big" late
    assert (big_head.granted, big_late.granted) == (False, False)
    blocked.clear()
    scheduler.kick()
    assert big_head.granted
    assert not big_late.granted  # no slot left: 3 in use
    assert scheduler.queued == 1


async def test_waiter_woken_twice_in_one_tick_is_granted_once() -> None:
    """In one tick the gate's head waiter is woken to re-check sooner and then granted: its
    task is woken once (trio allows one reschedule per park) and it holds the slot."""
    delay = 10.0

    def gate(claim: object) -> float:
        return delay

    scheduler = Scheduler(max_concurrency=1, max_queue_size=10, starvation_limit=10, gate=gate)
    granted = anyio.Event()

    async def waiter() -> None:
        await scheduler.acquire(NORMAL, "s", 0)
        granted.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            assert scheduler._poller is not None  # parked until its re-check in 10 s
            delay = 1.0
            scheduler.kick()  # a sooner re-check: the waiter is woken ...
            delay = 0.0
            scheduler.kick()  # ... and granted before it runs
            await granted.wait()
    assert (scheduler.in_use, scheduler.queued) == (1, 0)


async def test_places_go_highest_class_first_then_by_arrival() -> None:
    """Callers waiting for a place in a full queue get one as grants free them: highest class
    first, arrival order within a class; one that stopped waiting (cancelled) is passed over
    and its turn is not lost."""
    scheduler = Scheduler(max_concurrency=1, max_queue_size=1, starvation_limit=10)
    assert scheduler.try_acquire()
    order: list[str] = []
    scopes: dict[str, anyio.CancelScope] = {}

    async def wait_then_queue(name: str, rank: int, seq: int) -> None:
        with anyio.CancelScope() as scopes[name]:
            await scheduler.wait_for_space(rank, seq)
            order.append(name)
            await scheduler.acquire(rank, name, seq)
            scheduler.release()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_then_queue, "first", HIGH, 0)  # nobody can evict it
            await anyio.wait_all_tasks_blocked()
            for name, rank, seq in [
                ("low-1", LOW, 1),
                ("high-3", HIGH, 3),
                ("normal-2", NORMAL, 2),
                ("high-4", HIGH, 4),
                ("high-0", HIGH, 0),
            ]:
                tg.start_soon(wait_then_queue, name, rank, seq)
            await anyio.wait_all_tasks_blocked()
            assert scheduler._space_live == 5
            scopes["high-3"].cancel()
            await anyio.wait_all_tasks_blocked()
            assert scheduler._space_live == 4
            scheduler.release()  # "first" is granted: its place goes to high-0, and so on
    assert order == ["first", "high-0", "high-4", "normal-2", "low-1"]
    assert (scheduler.in_use, scheduler.queued, scheduler._space_live) == (0, 0, 0)


async def test_place_not_used_because_a_slot_was_free_is_passed_on() -> None:
    """A caller woken for a place finds the queue empty and a slot free, and takes the slot
    at once without queueing: the place it was given is still free, so the next caller
    waiting for one must get it (else it waits for good with the queue empty)."""
    scheduler = Scheduler(max_concurrency=1, max_queue_size=1, starvation_limit=10)
    assert scheduler.try_acquire()
    queued = scheduler.enqueue(NORMAL, "q", 0)
    entered: list[str] = []

    async def wait_then_acquire(name: str, seq: int) -> None:
        await scheduler.wait_for_space(NORMAL, seq)
        entered.append(name)
        await scheduler.acquire(NORMAL, name, seq)
        scheduler.release()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_then_acquire, "first", 1)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(wait_then_acquire, "second", 2)
            await anyio.wait_all_tasks_blocked()
            scheduler.release()  # "q" is granted: its place goes to "first" ...
            assert queued.granted
            scheduler.release()  # ... and "q" is done before "first" runs: a slot is free
            assert (scheduler.in_use, scheduler.queued) == (0, 0)
    assert entered == ["first", "second"]
    assert (scheduler.in_use, scheduler.queued, scheduler._space_live) == (0, 0, 0)
