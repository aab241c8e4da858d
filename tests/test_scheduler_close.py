"""Scheduler.close(): shutdown wakes every waiter with QueueClosed; nothing is granted after."""

from __future__ import annotations

import anyio
import pytest

from llmpool._scheduler import QueueClosed, Scheduler

pytestmark = pytest.mark.anyio


def scheduler(**kw: int) -> Scheduler:
    return Scheduler(
        max_concurrency=kw.get("max_concurrency", 1),
        max_queue_size=kw.get("max_queue_size", 10),
        starvation_limit=3,
    )


async def test_close_wakes_queued_and_space_waiters_and_refuses_later_ones() -> None:
    """Queued waiters (with and without a deadline) and a caller waiting for a place all raise
    QueueClosed; counts return to zero; a later acquire raises at once and try_acquire grants
    nothing, while the held slot is released as usual."""
    s = scheduler(max_queue_size=2)
    assert s.try_acquire()
    ended: list[str] = []

    async def queued(name: str, deadline: float | None) -> None:
        try:
            await s.acquire(1, name, len(ended), deadline=deadline)
        except QueueClosed:
            ended.append(name)

    async def space() -> None:
        try:
            await s.wait_for_space(1, 99)
        except QueueClosed:
            ended.append("space")

    async with anyio.create_task_group() as tg:
        tg.start_soon(queued, "a", None)
        tg.start_soon(queued, "b", anyio.current_time() + 60)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(space)
        await anyio.wait_all_tasks_blocked()
        assert s.queued == 2
        s.close()
    assert sorted(ended) == ["a", "b", "space"]
    assert (s.queued, s.queue_depths()) == (0, (0, 0, 0))
    with pytest.raises(QueueClosed):
        await s.acquire(0, "c", 5)
    with pytest.raises(QueueClosed):
        await s.wait_for_space(0, 6)  # the queue has room, but the scheduler is closed
    s.release()
    assert s.in_use == 0
    assert not s.try_acquire()
    s.close()  # idempotent
