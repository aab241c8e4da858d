"""Queue deadlines: enforced by the scheduler's one timer, or by each waiter without it.

Every test runs on asyncio (real clock, 1 unit = 20 ms) and on trio with ``MockClock``
(virtual clock, autojump, 1 unit = 1 s, times exact), and, where it matters, with the timer
running and without it (the two modes behave the same). Races are put in a fixed order
through two seams: ``Scheduler._expire`` (the timer's step) is wrapped to let another
task's operation land just before or just after it in the same tick, and a parking wrapper
lets an operation land between a waiter's cancelled park and its next step.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import anyio
import anyio.lowlevel
import pytest
from trio.testing import MockClock

from llmpool._scheduler import QueueEvicted, QueueTimedOut, Scheduler
from llmpool._waiters import (
    Entry,
    EventParking,
    FutureParking,
    Parking,
    TaskParking,
    find_parking,
)

from .test_scheduler_queues import check_invariants

pytestmark = pytest.mark.anyio

HIGH, NORMAL, LOW = 0, 1, 2
UPPER_MARGIN = 1.0  # seconds: asyncio (real clock) may run this late on a loaded machine


@pytest.fixture(
    params=[
        pytest.param("asyncio", id="asyncio"),
        pytest.param("trio", id="trio-mockclock"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    if request.param == "trio":
        return "trio", {"clock": MockClock(autojump_threshold=0)}
    return "asyncio"


@pytest.fixture
def unit(anyio_backend: Any) -> float:
    """Seconds per time unit: virtual on trio, kept short on asyncio's real clock."""
    return 1.0 if anyio_backend != "asyncio" else 0.02


def took(start: float, units: float, unit: float, end: float | None = None) -> None:
    """``end`` (default: now) is exactly ``units`` after ``start`` on trio's virtual clock; on
    asyncio no sooner, and not more than UPPER_MARGIN later."""
    elapsed = (anyio.current_time() if end is None else end) - start
    if unit == 1.0:
        assert elapsed == pytest.approx(units)
    else:
        assert units * unit <= elapsed < units * unit + UPPER_MARGIN


@pytest.fixture(params=["timer", "standalone"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@asynccontextmanager
async def running(s: Scheduler, mode: str = "timer") -> AsyncIterator[anyio.abc.TaskGroup]:
    """A task group for the test's tasks, with the scheduler's timer in it (``mode="timer"``)."""
    async with anyio.create_task_group() as tg:
        if mode == "timer":
            tg.start_soon(s.run_timer)
            await anyio.wait_all_tasks_blocked()
            assert s._timer is not None
        yield tg
        tg.cancel_scope.cancel()


def make(limit: int = 1, queue: int = 100, **kwargs: Any) -> Scheduler:
    return Scheduler(max_concurrency=limit, max_queue_size=queue, starvation_limit=10, **kwargs)


class Outcomes:
    """Runs acquires and records how each ended: granted, timed_out, evicted or cancelled."""

    def __init__(self, s: Scheduler) -> None:
        self.s = s
        self.ended: dict[str, str] = {}
        self.at: dict[str, float] = {}
        self.scopes: dict[str, anyio.CancelScope] = {}
        self._changed: anyio.Event | None = None

    async def ended_all(self, *names: str) -> None:
        """Wait until every one of ``names`` has ended."""
        while not all(name in self.ended for name in names):
            self._changed = anyio.Event()
            await self._changed.wait()

    async def acquire(
        self, name: str, rank: int, session: str, seq: int, deadline: float | None = None
    ) -> None:
        try:
            with anyio.CancelScope() as scope:
                self.scopes[name] = scope
                try:
                    await self.s.acquire(rank, session, seq, deadline=deadline)
                except QueueTimedOut:
                    self._end(name, "timed_out")
                except QueueEvicted:
                    self._end(name, "evicted")
                else:
                    self._end(name, "granted")
                return
        except anyio.get_cancelled_exc_class():  # an enclosing scope (the task group's)
            self._end(name, "cancelled")
            raise
        self._end(name, "cancelled")  # its own scope

    async def wait_for_space(self, name: str, rank: int, seq: int, deadline: float) -> None:
        try:
            await self.s.wait_for_space(rank, seq, deadline=deadline)
        except QueueTimedOut:
            self._end(name, "timed_out")
        else:
            self._end(name, "room")

    def _end(self, name: str, how: str) -> None:
        assert name not in self.ended, "an acquire ends once"
        self.ended[name] = how
        self.at[name] = anyio.current_time()
        if self._changed is not None:
            self._changed.set()


def around_timer_step(
    s: Scheduler, before: Callable[[], None] | None = None, after: Callable[[], None] | None = None
) -> None:
    """At the timer's next step, run ``before`` just before it and ``after`` just after it,
    in the same tick (what another task's operation due at the same instant does)."""
    step = s._expire

    def wrapped() -> None:
        s._expire = step  # type: ignore[method-assign]
        if before is not None:
            before()
        step()
        if after is not None:
            after()

    s._expire = wrapped  # type: ignore[method-assign]


class BetweenAbortAndWakeup:
    """Parking whose first cancelled park (a deadline, a cancel) runs ``action`` after the
    cancellation has reached the park and before the waiter's task resumes, from outside
    that task: another task's operation landing in between. On asyncio it is a done callback
    of the future, run ahead of the task's own wake-up callback (registered later, when the
    task awaits); on trio it runs inside the abort callback, called by whoever cancels."""

    def __init__(self, action: Callable[[], None]) -> None:
        self.real = find_parking()
        self.action: Callable[[], None] | None = action

    def prepare(self, entry: Entry) -> None:
        self.real.prepare(entry)

    def wake(self, entry: Entry) -> None:
        self.real.wake(entry)

    def park(self, entry: Entry) -> Awaitable[object]:
        real = self.real
        if isinstance(real, FutureParking):
            future: Any = real.park(entry)
            future.add_done_callback(lambda f: f.cancelled() and self._fire())
            return cast("Awaitable[object]", future)
        assert isinstance(real, TaskParking)
        entry.handle = real._current_task()

        def abort(raise_cancel: Any) -> Any:
            result = entry.abort(raise_cancel)
            self._fire()
            return result

        return real._wait(abort)

    def _fire(self) -> None:
        action, self.action = self.action, None
        if action is not None:
            action()


def arrive_high(s: Scheduler) -> None:
    s.enqueue(HIGH, "h", 99)  # a HIGH arrival in a full queue evicts the newest LOW


def install(s: Scheduler, parking: Parking) -> None:
    s._parking = parking
    s._wake = parking.wake


async def test_deadline_times_out_a_queued_waiter(mode: str, unit: float) -> None:
    """A waiter still queued at its deadline raises QueueTimedOut then, and its place is
    freed; the held slot is untouched."""
    s = make()
    assert s.try_acquire()
    out = Outcomes(s)
    async with running(s, mode) as tg:
        start = anyio.current_time()
        tg.start_soon(out.acquire, "w", NORMAL, "", 0, start + 3 * unit)
        await anyio.wait_all_tasks_blocked()
        assert s.queued == 1
        assert s._timed == (1 if mode == "timer" else 0)
        with anyio.fail_after(10 * unit + UPPER_MARGIN):
            await out.ended_all("w")
        assert out.ended == {"w": "timed_out"}
        took(start, 3, unit, out.at["w"])
        assert (s.queued, s.in_use) == (0, 1)
        check_invariants(s)


async def test_grant_before_the_deadline_wins(mode: str, unit: float) -> None:
    """A waiter granted before its deadline keeps the slot; the deadline passing later does
    nothing (the timer skips its entry)."""
    s = make()
    assert s.try_acquire()
    out = Outcomes(s)
    async with running(s, mode) as tg:
        start = anyio.current_time()
        tg.start_soon(out.acquire, "w", NORMAL, "", 0, start + 3 * unit)
        await anyio.sleep(unit)
        s.release()
        await anyio.sleep(4 * unit)
        assert out.ended == {"w": "granted"}
        assert (s.queued, s.in_use, s._timed) == (0, 1, 0)
        check_invariants(s)


async def test_a_free_slot_is_taken_whatever_the_deadline(mode: str, unit: float) -> None:
    """A deadline already past does not refuse a free slot; without one, the waiter times out
    at once."""
    s = make()
    out = Outcomes(s)
    async with running(s, mode) as tg:
        past = anyio.current_time() - unit
        await s.acquire(NORMAL, "", 0, deadline=past)
        assert s.in_use == 1
        start = anyio.current_time()
        tg.start_soon(out.acquire, "late", NORMAL, "", 1, past)
        with anyio.fail_after(unit + UPPER_MARGIN):
            await out.ended_all("late")
        took(start, 0, unit)
        assert out.ended == {"late": "timed_out"}
        assert (s.queued, s.in_use) == (0, 1)


async def test_infinite_deadline_is_no_deadline(mode: str, unit: float) -> None:
    """deadline=inf is the same as none: nothing for the timer to hold, no time-out."""
    s = make()
    assert s.try_acquire()
    out = Outcomes(s)
    async with running(s, mode) as tg:
        tg.start_soon(out.acquire, "w", NORMAL, "", 0, float("inf"))
        await anyio.sleep(5 * unit)
        assert (s.queued, s._timed, out.ended) == (1, 0, {})
        s.release()
        await anyio.wait_all_tasks_blocked()
        assert out.ended == {"w": "granted"}


async def test_an_earlier_deadline_wakes_the_timer_sooner(unit: float) -> None:
    """The timer sleeps until the earliest deadline: one arriving earlier than the one it
    sleeps for is still enforced on time, and the later one after it."""
    s = make()
    assert s.try_acquire()
    out = Outcomes(s)
    async with running(s) as tg:
        start = anyio.current_time()
        tg.start_soon(out.acquire, "late", NORMAL, "", 0, start + 10 * unit)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(out.acquire, "early", NORMAL, "", 1, start + 2 * unit)
        await anyio.wait_all_tasks_blocked()
        assert s._timer is not None
        assert s._timer.deadline == start + 2 * unit
        with anyio.fail_after(20 * unit + UPPER_MARGIN):
            await out.ended_all("early", "late")
        assert out.ended == {"early": "timed_out", "late": "timed_out"}
        took(start, 2, unit, out.at["early"])
        took(start, 10, unit, out.at["late"])


async def test_grant_in_the_same_tick_just_before_the_timer_step(unit: float) -> None:
    """A release lands at the deadline, just before the timer's step: the waiter is granted
    and keeps the slot; the timer finds it gone and times out nobody."""
    s = make()
    assert s.try_acquire()
    out = Outcomes(s)
    async with running(s) as tg:
        start = anyio.current_time()
        tg.start_soon(out.acquire, "w", NORMAL, "", 0, start + 2 * unit)
        await anyio.wait_all_tasks_blocked()
        around_timer_step(s, before=s.release)
        await anyio.sleep(3 * unit)
        assert out.ended == {"w": "granted"}
        assert (s.queued, s.in_use, s._timed) == (0, 1, 0)
        check_invariants(s)


async def test_grant_in_the_same_tick_just_after_the_timer_step(unit: float) -> None:
    """A release lands at the deadline just after the timer's step, before the timed-out
    waiter's task runs: the slot goes to the next waiter, the timed-out one raises
    QueueTimedOut, and no slot is leaked."""
    s = make()
    assert s.try_acquire()
    out = Outcomes(s)
    async with running(s) as tg:
        start = anyio.current_time()
        tg.start_soon(out.acquire, "w", NORMAL, "a", 0, start + 2 * unit)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(out.acquire, "next", NORMAL, "b", 1)
        await anyio.wait_all_tasks_blocked()
        around_timer_step(s, after=s.release)
        await anyio.sleep(3 * unit)
        assert out.ended == {"w": "timed_out", "next": "granted"}
        assert (s.queued, s.in_use) == (0, 1)
        s.release()
        assert s.in_use == 0
        check_invariants(s)


async def test_grant_between_a_waiters_own_deadline_and_its_next_step(unit: float) -> None:
    """Without a timer: the waiter's own deadline cancels its park and, before its task runs
    again, a release grants it. It must take the grant (it holds the slot), not time out and
    leak it. On trio this also checks that the cancelled park is not woken a second time."""
    s = make()
    assert s.try_acquire()
    out = Outcomes(s)
    async with running(s, "standalone") as tg:
        install(s, BetweenAbortAndWakeup(s.release))
        start = anyio.current_time()
        tg.start_soon(out.acquire, "w", NORMAL, "", 0, start + 2 * unit)
        with anyio.fail_after(5 * unit + UPPER_MARGIN):
            await out.ended_all("w")
        assert out.ended == {"w": "granted"}
        assert (s.queued, s.in_use) == (0, 1)


async def test_timed_out_poller_hands_the_gate_recheck_to_the_next_head(
    mode: str, unit: float
) -> None:
    """The gate holds budget back until t=5 with a slot free. The head waiter re-checks it,
    but its deadline is t=2: when it times out, the next head must take over the re-check
    and is granted at t=5 (else nobody would ever look again)."""
    opens_at = anyio.current_time() + 5 * unit

    def gate(claim: object) -> float:
        return max(0.0, opens_at - anyio.current_time())

    s = make(gate=gate)
    out = Outcomes(s)
    async with running(s, mode) as tg:
        start = opens_at - 5 * unit
        tg.start_soon(out.acquire, "head", NORMAL, "a", 0, start + 2 * unit)
        await anyio.wait_all_tasks_blocked()
        assert s._poller is not None
        assert s._poller.seq == 0
        tg.start_soon(out.acquire, "next", NORMAL, "b", 1)
        with anyio.fail_after(10 * unit + UPPER_MARGIN):
            await out.ended_all("head", "next")
        assert out.ended == {"head": "timed_out", "next": "granted"}
        took(start, 2, unit, out.at["head"])
        took(start, 5, unit, out.at["next"])
        assert (s.queued, s.in_use) == (0, 1)


async def test_eviction_just_before_the_timer_step(unit: float) -> None:
    """At its deadline a LOW waiter is evicted by a HIGH arrival just before the timer's step:
    it raises QueueEvicted (once), and the timer skips it."""
    s = make(queue=2)
    assert s.try_acquire()
    out = Outcomes(s)
    async with running(s) as tg:
        start = anyio.current_time()
        tg.start_soon(out.acquire, "old", LOW, "", 0)
        await anyio.wait_all_tasks_blocked()  # queued in this order: "w" is the newest
        tg.start_soon(out.acquire, "w", LOW, "", 1, start + 2 * unit)
        await anyio.wait_all_tasks_blocked()
        around_timer_step(s, before=lambda: arrive_high(s))
        await anyio.sleep(3 * unit)
        assert out.ended == {"w": "evicted"}
        assert s.queue_depths() == (1, 0, 1)
        assert s._timed == 0
        check_invariants(s)


async def test_eviction_just_after_the_timer_step(unit: float) -> None:
    """The timer times the LOW waiter out first: the HIGH arrival just after finds a free
    place and evicts nobody (the older LOW waiter stays)."""
    s = make(queue=2)
    assert s.try_acquire()
    out = Outcomes(s)
    async with running(s) as tg:
        start = anyio.current_time()
        tg.start_soon(out.acquire, "old", LOW, "", 0)
        await anyio.wait_all_tasks_blocked()  # queued in this order: "w" is the newest
        tg.start_soon(out.acquire, "w", LOW, "", 1, start + 2 * unit)
        await anyio.wait_all_tasks_blocked()
        around_timer_step(s, after=lambda: arrive_high(s))
        await anyio.sleep(3 * unit)
        assert out.ended == {"w": "timed_out"}
        assert s.queue_depths() == (1, 0, 1)
        check_invariants(s)


@pytest.mark.parametrize("order", ["cancel-first", "timeout-first"])
async def test_cancellation_and_timeout_in_the_same_tick(order: str, unit: float) -> None:
    """The waiter's task is cancelled in the tick its deadline passes, before or after the
    timer's step: it ends once (cancelled, or QueueTimedOut when the time-out came first and
    the backend delivers the cancellation later), leaves the queue once, and the next
    release goes to the other waiter."""
    s = make()
    assert s.try_acquire()
    out = Outcomes(s)
    async with running(s) as tg:
        start = anyio.current_time()
        tg.start_soon(out.acquire, "w", NORMAL, "a", 0, start + 2 * unit)
        tg.start_soon(out.acquire, "other", NORMAL, "b", 1)
        await anyio.wait_all_tasks_blocked()

        def cancel() -> None:
            out.scopes["w"].cancel()

        if order == "cancel-first":
            around_timer_step(s, before=cancel)
        else:
            around_timer_step(s, after=cancel)
        await anyio.sleep(3 * unit)
        expected = {"cancelled"} if order == "cancel-first" else {"cancelled", "timed_out"}
        assert out.ended.keys() == {"w"}
        assert out.ended["w"] in expected
        assert (s.queued, s.in_use) == (1, 1)
        check_invariants(s)
        s.release()
        await anyio.wait_all_tasks_blocked()
        assert out.ended["other"] == "granted"


async def test_deadlines_outlive_the_timer(unit: float) -> None:
    """The timer stops (cancelled, as at shutdown) while waiters with deadlines queue: each
    takes its deadline back and still times out on time, also with a new timer running (a
    waiter keeps the deadline it took back), and one without a deadline keeps waiting."""
    s = make()
    assert s.try_acquire()
    out = Outcomes(s)
    async with anyio.create_task_group() as tg:
        start = anyio.current_time()
        async with anyio.create_task_group() as timer:
            timer.start_soon(s.run_timer)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(out.acquire, "first", NORMAL, "", 0, start + 3 * unit)
            tg.start_soon(out.acquire, "second", NORMAL, "", 1, start + 8 * unit)
            tg.start_soon(out.acquire, "forever", NORMAL, "", 2)
            await anyio.sleep(unit)
            assert s._timed == 2
            timer.cancel_scope.cancel()
        assert (s._timer, s._timed, s._deadlines, list(s._in_order)) == (None, 0, [], [])
        await anyio.sleep(4 * unit)
        assert out.ended == {"first": "timed_out"}
        async with anyio.create_task_group() as timer:
            timer.start_soon(s.run_timer)
            await out.ended_all("second")
            timer.cancel_scope.cancel()
        assert out.ended == {"first": "timed_out", "second": "timed_out"}
        took(start, 3, unit, out.at["first"])
        took(start, 8, unit, out.at["second"])
        assert s.queued == 1
        tg.cancel_scope.cancel()
    assert out.ended["forever"] == "cancelled"
    assert s.queued == 0


async def test_one_timer_per_scheduler() -> None:
    """A second timer for the same scheduler is refused; the first keeps running."""
    s = make()
    async with anyio.create_task_group() as tg:
        tg.start_soon(s.run_timer)
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(RuntimeError, match="already running"):
            await s.run_timer()
        assert s._timer is not None
        tg.cancel_scope.cancel()


async def test_wait_for_space_deadline(mode: str, unit: float) -> None:
    """A caller waiting for a place in a full queue gives up with QueueTimedOut at its
    deadline; one whose place frees first gets it."""
    s = make(queue=1)
    assert s.try_acquire()
    queued = s.enqueue(NORMAL, "q", 0)
    out = Outcomes(s)
    async with running(s, mode) as tg:
        start = anyio.current_time()
        tg.start_soon(out.wait_for_space, "gives-up", NORMAL, 1, start + 2 * unit)
        tg.start_soon(out.wait_for_space, "patient", NORMAL, 2, start + 10 * unit)
        await anyio.wait_all_tasks_blocked()
        assert s._space_live == 2
        await anyio.sleep(3 * unit)
        assert out.ended == {"gives-up": "timed_out"}
        assert s._space_live == 1
        s.withdraw(queued)
        await anyio.wait_all_tasks_blocked()
        assert out.ended == {"gives-up": "timed_out", "patient": "room"}
        took(start, 2, unit, out.at["gives-up"])
        assert (s._space_live, s._timed) == (0, 0)
        check_invariants(s)


@pytest.mark.parametrize("order", ["place-first", "timeout-first"])
async def test_place_and_deadline_in_the_same_tick(order: str, unit: float) -> None:
    """A place frees in the tick a waiting caller's deadline passes: if the place came
    first the caller has it (returns); if the time-out came first it raises QueueTimedOut
    and the place stays free for the next comer."""
    s = make(queue=1)
    assert s.try_acquire()
    queued = s.enqueue(NORMAL, "q", 0)
    out = Outcomes(s)
    async with running(s) as tg:
        start = anyio.current_time()
        tg.start_soon(out.wait_for_space, "w", NORMAL, 1, start + 2 * unit)
        await anyio.wait_all_tasks_blocked()

        def free() -> None:
            s.withdraw(queued)

        if order == "place-first":
            around_timer_step(s, before=free)
        else:
            around_timer_step(s, after=free)
        await anyio.sleep(3 * unit)
        assert out.ended == {"w": "room" if order == "place-first" else "timed_out"}
        assert s.has_room(NORMAL)
        assert (s._space_live, s._timed) == (0, 0)


async def test_event_parking_without_current_token(
    monkeypatch: pytest.MonkeyPatch, mode: str, unit: float
) -> None:
    """On an anyio without lowlevel.current_token (< 4.11) waiters park on the backend's
    Event: grants, deadlines and cancellation work the same."""
    monkeypatch.delattr(anyio.lowlevel, "current_token")
    s = make()
    assert s.try_acquire()
    out = Outcomes(s)
    async with running(s, mode) as tg:
        start = anyio.current_time()
        tg.start_soon(out.acquire, "granted", NORMAL, "", 0)
        tg.start_soon(out.acquire, "timed", NORMAL, "", 1, start + 2 * unit)
        tg.start_soon(out.acquire, "cancelled", NORMAL, "", 2)
        await anyio.wait_all_tasks_blocked()
        assert isinstance(s._parking, EventParking)
        out.scopes["cancelled"].cancel()
        await anyio.sleep(3 * unit)
        s.release()
        await anyio.wait_all_tasks_blocked()
        assert out.ended == {"granted": "granted", "timed": "timed_out", "cancelled": "cancelled"}
        assert (s.queued, s.in_use) == (0, 1)


def test_random_deadlines_each_expire_exactly_on_time() -> None:
    """200 waiters with deadlines in and out of arrival order (so both of the timer's lanes
    fill), grants and cancellations in between, on trio's virtual clock: each waiter that
    times out does so exactly at its deadline, each granted one before it, and the counts
    agree at every step."""

    async def main() -> None:
        rng = random.Random(3)
        s = make(queue=1000)
        assert s.try_acquire()
        out = Outcomes(s)
        deadlines: dict[str, float] = {}
        async with running(s) as tg:
            start = anyio.current_time()
            for i in range(200):
                name = f"w{i}"
                # Deadlines on half-units, grants and cancellations on quarter-units: no ties.
                deadline = start + rng.randrange(2, 200) / 2 if i % 5 else start + i / 2 + 1
                deadlines[name] = deadline
                tg.start_soon(out.acquire, name, rng.choice([HIGH, NORMAL, LOW]), "", i, deadline)
                await anyio.wait_all_tasks_blocked()
            assert len(s._in_order) >= 5  # both of the timer's lanes are in use
            assert len(s._deadlines) >= 5
            check_invariants(s)
            for step in range(400):
                await anyio.sleep_until(start + step / 4 + 0.25)
                if rng.random() < 0.3 and s.queued:
                    s.release()  # the holder is done: the slot goes to the next waiter
                elif rng.random() < 0.1:
                    live = [n for n in deadlines if n not in out.ended and n in out.scopes]
                    if live:
                        out.scopes[rng.choice(live)].cancel()
                await anyio.wait_all_tasks_blocked()
                check_invariants(s)
            await out.ended_all(*deadlines)
        outcomes = Counter(out.ended.values())
        assert outcomes["timed_out"] > 20
        assert outcomes["granted"] > 20
        assert outcomes["cancelled"] > 5
        for name, how in out.ended.items():
            if how == "timed_out":
                assert out.at[name] == deadlines[name], name
            elif how == "granted":
                assert out.at[name] < deadlines[name], name

    anyio.run(main, backend="trio", backend_options={"clock": MockClock(autojump_threshold=0)})
