"""Admission when the queue is full: priority survives it (eviction of the newest waiter of
the lowest class), and back-pressure (``admission="wait"``) instead of ``QueueFullError``."""

from __future__ import annotations

from typing import Any

import anyio
import openai
import pytest
from trio.testing import MockClock

from llmpool import PoolConfig, QueueFullError, QueueTimeoutError
from llmpool._scheduler import QueueEvicted, QueueFull, Scheduler

from .test_manager import Gate, manager

HIGH, NORMAL, LOW = 0, 1, 2


def full_of_low(size: int = 3) -> tuple[Scheduler, list[Any]]:
    scheduler = Scheduler(max_concurrency=1, max_queue_size=size, starvation_limit=10)
    assert scheduler.try_acquire()
    waiters = [scheduler.enqueue(LOW, f"s{i}", i) for i in range(size)]
    return scheduler, waiters


def test_high_evicts_the_newest_low_waiter() -> None:
    """A full queue of LOW admits HIGH: the newest LOW waiter is evicted, the others stay."""
    scheduler, lows = full_of_low()
    high = scheduler.enqueue(HIGH, "h", 10)
    assert [w.evicted for w in lows] == [False, False, True]
    assert scheduler.queued == 3
    assert scheduler.queue_depths() == (1, 0, 2)
    scheduler.release()
    assert high.granted


def test_normal_evicts_low_and_the_lowest_class_goes_first() -> None:
    """NORMAL over LOW too; with NORMAL and LOW queued, HIGH evicts a LOW waiter first."""
    scheduler = Scheduler(max_concurrency=1, max_queue_size=2, starvation_limit=10)
    assert scheduler.try_acquire()
    low = scheduler.enqueue(LOW, "a", 1)
    normal = scheduler.enqueue(NORMAL, "b", 2)
    scheduler.enqueue(HIGH, "c", 3)
    assert (low.evicted, normal.evicted) == (True, False)
    scheduler.enqueue(HIGH, "d", 4)
    assert normal.evicted


@pytest.mark.parametrize(
    ("rank", "fill"), [(LOW, LOW), (NORMAL, NORMAL), (HIGH, HIGH), (LOW, HIGH)]
)
def test_same_or_higher_class_only_is_refused(rank: int, fill: int) -> None:
    """A request that finds only its own class or higher queued is refused (QueueFull)."""
    scheduler = Scheduler(max_concurrency=1, max_queue_size=2, starvation_limit=10)
    assert scheduler.try_acquire()
    for i in range(2):
        scheduler.enqueue(fill, f"s{i}", i)
    with pytest.raises(QueueFull) as info:
        scheduler.enqueue(rank, "new", 9)
    assert not isinstance(info.value, QueueEvicted)


def test_retries_are_never_evicted() -> None:
    """Retries were admitted once: a full queue of LOW retries refuses new HIGH work."""
    scheduler = Scheduler(max_concurrency=1, max_queue_size=2, starvation_limit=10)
    assert scheduler.try_acquire()
    retries = [scheduler.enqueue(LOW, "r", i, retry=True) for i in range(2)]
    with pytest.raises(QueueFull):
        scheduler.enqueue(HIGH, "h", 5)
    assert not any(w.evicted for w in retries)


@pytest.mark.anyio
async def test_evicted_caller_gets_queue_full_error_and_high_runs_first() -> None:
    """Through the manager: the newest LOW caller gets QueueFullError saying why; HIGH is
    served before the remaining LOW, which still completes; stats count one rejection."""
    gate = Gate()
    results: dict[str, str] = {}

    async def call(name: str, priority: str) -> None:
        try:
            results[name] = await m.run(gate.fn(name), priority=priority)
        except QueueFullError as exc:
            results[name] = str(exc)

    async with manager(max_concurrency=1, max_queue_size=2) as m, anyio.create_task_group() as tg:
        tg.start_soon(call, "holder", "low")
        await anyio.wait_all_tasks_blocked()
        for name in ("low-1", "low-2"):
            tg.start_soon(call, name, "low")
            await anyio.wait_all_tasks_blocked()
        tg.start_soon(call, "high", "high")
        await anyio.wait_all_tasks_blocked()
        assert results["low-2"].startswith("evicted from the full queue to make room")
        assert m.stats().queue_depth == {"high": 1, "normal": 0, "low": 1}
        gate.open.set()
    assert gate.calls == ["holder", "high", "low-1"]
    assert results["high"] == "high"
    stats = m.stats()
    assert (stats.completed_requests, stats.rejected_requests, stats.failed_requests) == (3, 1, 1)


@pytest.mark.anyio
async def test_wait_admission_applies_back_pressure() -> None:
    """admission="wait": 12 callers against a queue of 2 all complete; none is refused, the
    queue holds 2 while 9 wait for a place, and places are given in arrival order."""
    order: list[int] = []
    release = anyio.Event()

    async def fn(client: openai.AsyncOpenAI) -> None:
        await release.wait()

    async with manager(max_concurrency=1, max_queue_size=2, admission="wait") as m:
        async with anyio.create_task_group() as tg:

            async def call(i: int) -> None:
                await m.run(fn)
                order.append(i)

            for i in range(12):
                tg.start_soon(call, i)
                await anyio.wait_all_tasks_blocked()  # arrival order = i
            stats = m.stats()
            assert (stats.active_connections, stats.queued_requests) == (1, 2)
            assert len(m._engine.scheduler._space) == 9
            release.set()
        stats = m.stats()
    assert (stats.completed_requests, stats.rejected_requests) == (12, 0)
    assert order == list(range(12))


@pytest.mark.anyio
async def test_wait_admission_lets_high_in_first() -> None:
    """Waiting for a place, HIGH goes ahead of LOW callers that waited longer."""
    gate = Gate()
    async with manager(max_concurrency=1, max_queue_size=1) as m:
        view = m.with_options(priority="low", admission="wait")
        async with anyio.create_task_group() as tg:
            tg.start_soon(m.run, gate.fn("holder"))
            await anyio.wait_all_tasks_blocked()
            # HIGH fills the queue: nothing below HIGH to evict, so HIGH waits for a place too.
            tg.start_soon(m.with_options(priority="high").run, gate.fn("queued"))
            await anyio.wait_all_tasks_blocked()
            for i in range(3):
                tg.start_soon(view.run, gate.fn(f"low-{i}"))
                await anyio.wait_all_tasks_blocked()
            tg.start_soon(m.with_options(priority="high", admission="wait").run, gate.fn("high"))
            await anyio.wait_all_tasks_blocked()
            gate.open.set()
    assert gate.calls[:3] == ["holder", "queued", "high"]
    assert sorted(gate.calls[3:]) == ["low-0", "low-1", "low-2"]


def test_wait_admission_is_bounded_by_queue_timeout() -> None:
    """A caller that waits for a place gives up after queue_timeout (virtual time)."""

    async def main() -> float:
        gate = Gate()
        m = manager(max_concurrency=1, max_queue_size=1)
        async with m, anyio.create_task_group() as tg:
            tg.start_soon(m.run, gate.fn("holder"))
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(m.run, gate.fn("queued"))
            await anyio.wait_all_tasks_blocked()
            start = anyio.current_time()
            with pytest.raises(QueueTimeoutError):
                await m.with_options(admission="wait", queue_timeout=7.0).run(gate.fn("w"))
            waited = anyio.current_time() - start
            assert m.stats().queued_requests == 1
            gate.open.set()
        return waited

    waited = anyio.run(
        main, backend="trio", backend_options={"clock": MockClock(autojump_threshold=0)}
    )
    assert waited == pytest.approx(7.0)


@pytest.mark.anyio
async def test_space_waiter_cancelled_then_woken_passes_the_place_on() -> None:
    """Two callers wait for a place. The first is cancelled and, in the same instant, before
    its task runs, a place frees and is handed to it (the cancelled wait cannot take it):
    the place must go to the second caller, not be lost."""
    scheduler = Scheduler(max_concurrency=1, max_queue_size=1, starvation_limit=10)
    assert scheduler.try_acquire()
    first_waiter = scheduler.enqueue(NORMAL, "q", 0)
    entered: list[str] = []

    async def wait_then_queue(name: str, seq: int, scope: anyio.CancelScope) -> None:
        with scope:
            await scheduler.wait_for_space(NORMAL, seq)
            scheduler.enqueue(NORMAL, name, seq)
            entered.append(name)

    a_scope, b_scope = anyio.CancelScope(), anyio.CancelScope()
    async with anyio.create_task_group() as tg:
        tg.start_soon(wait_then_queue, "a", 1, a_scope)
        tg.start_soon(wait_then_queue, "b", 2, b_scope)
        await anyio.wait_all_tasks_blocked()
        a_scope.cancel()  # delivered to "a" at once ...
        scheduler.withdraw(first_waiter)  # ... then the freed place is handed to "a"
        await anyio.wait_all_tasks_blocked()
        assert entered == ["b"]
        assert scheduler.queued == 1
        assert scheduler._space == []
        b_scope.cancel()


@pytest.mark.anyio
async def test_evicted_waiting_request_waits_for_a_place_again() -> None:
    """admission="wait": a LOW request evicted by HIGH is not refused; it waits for a place
    again and completes after HIGH."""
    gate = Gate()
    async with manager(max_concurrency=1, max_queue_size=1) as m, anyio.create_task_group() as tg:
        tg.start_soon(m.run, gate.fn("holder"))
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(m.with_options(priority="low", admission="wait").run, gate.fn("low"))
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(m.with_options(priority="high").run, gate.fn("high"))
        await anyio.wait_all_tasks_blocked()
        assert m.stats().queue_depth == {"high": 1, "normal": 0, "low": 0}
        assert len(m._engine.scheduler._space) == 1  # the evicted LOW waits for a place
        gate.open.set()
    assert gate.calls == ["holder", "high", "low"]
    assert m.stats().rejected_requests == 0


@pytest.mark.anyio
async def test_request_back_after_eviction_is_not_evicted_again_before_a_newer_one() -> None:
    """admission="wait": a LOW request evicted for HIGH can come back to the queue behind a
    newer request of its session (that one took a place freed before the evicted one was
    back). The next eviction takes the newer request, the newest waiter, not the one already
    evicted once."""
    scheduler = Scheduler(max_concurrency=1, max_queue_size=2, starvation_limit=10)
    assert scheduler.try_acquire()
    scheduler.enqueue(LOW, "s", 1)
    outcomes: list[str] = []

    async def wait_then_queue(seq: int) -> None:
        # The engine's loop for admission="wait": evicted, it waits for a place again.
        while True:
            await scheduler.wait_for_space(LOW, seq)
            try:
                await scheduler.acquire(LOW, "s", seq)
            except QueueEvicted:
                outcomes.append("evicted")
                continue
            outcomes.append("granted")
            return

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait_then_queue, 2)
        await anyio.wait_all_tasks_blocked()
        scheduler.enqueue(HIGH, "h", 3)  # the queue is full: seq 2 is evicted
        scheduler.release()  # HIGH is granted: a place is free ...
        newer = scheduler.enqueue(LOW, "s", 4)  # ... and seq 4 takes it before seq 2 is back
        await anyio.wait_all_tasks_blocked()  # seq 2 waits for a place again
        scheduler.release()  # seq 1 is granted: seq 2 queues, behind seq 4
        await anyio.wait_all_tasks_blocked()
        assert [w.seq for w in scheduler._classes[LOW].waiters()] == [4, 2]
        scheduler.enqueue(HIGH, "h", 5)
        assert newer.evicted
        await anyio.wait_all_tasks_blocked()
        assert outcomes == ["evicted"]  # seq 2 is still queued
        scheduler.release()  # HIGH
        scheduler.release()  # seq 2
    assert outcomes == ["evicted", "granted"]


@pytest.mark.anyio
async def test_wait_admission_needs_a_queue() -> None:
    """admission="wait" with max_queue_size=0 has no place to wait for: refused at once, in
    the config and on a view, saying why."""
    with pytest.raises(ValueError, match="needs max_queue_size >= 1"):
        PoolConfig(max_queue_size=0, admission="wait")
    async with manager(max_queue_size=0) as m:
        with pytest.raises(ValueError, match="needs max_queue_size >= 1"):
            m.with_options(admission="wait")
