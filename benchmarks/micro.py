"""In-process micro-benchmarks: the scheduler's contended acquire+release, and the memory a
request costs while it is queued in a ``ConnectionManager``.
"""

from __future__ import annotations

import asyncio  # noqa: TID251  the reference is asyncio.Semaphore; the loop is asyncio's
import functools
import gc
import itertools
import statistics
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import openai

import llmpool
from llmpool._scheduler import Scheduler


async def _contended(
    acquire: Callable[[], Awaitable[Any]], release: Callable[[], None], tasks: int, ops: int
) -> tuple[float, float]:
    """``tasks`` tasks each do ``ops`` x (acquire, yield once while holding, release).

    Returns wall and CPU seconds per acquire+release pair.
    """

    async def worker() -> None:
        for _ in range(ops):
            await acquire()
            await asyncio.sleep(0)  # hold across a switch so the others queue up
            release()

    wall0, cpu0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    pairs = tasks * ops
    return (time.perf_counter() - wall0) / pairs, (time.process_time() - cpu0) / pairs


def _scheduler_acquire(scheduler: Scheduler, seq: Iterator[int]) -> Awaitable[None]:
    return scheduler.acquire(1, "", next(seq))  # one anonymous session, NORMAL priority


async def _scheduler_bench(tasks: int, limit: int, ops: int, repeats: int) -> dict[str, Any]:
    samples: dict[str, list[float]] = {
        "asyncio.Semaphore": [],
        "anyio.Semaphore": [],
        "llmpool Scheduler": [],
        "yield only (floor)": [],
    }
    for _ in range(repeats):  # interleaved, so drift bills every contender alike
        sem = asyncio.Semaphore(limit)
        wall, _cpu = await _contended(sem.acquire, sem.release, tasks, ops)
        samples["asyncio.Semaphore"].append(wall)

        any_sem = anyio.Semaphore(limit, fast_acquire=True)
        wall, _cpu = await _contended(any_sem.acquire, any_sem.release, tasks, ops)
        samples["anyio.Semaphore"].append(wall)

        scheduler = Scheduler(max_concurrency=limit, max_queue_size=tasks, starvation_limit=10)

        acquire = functools.partial(_scheduler_acquire, scheduler, itertools.count())
        wall, _cpu = await _contended(acquire, scheduler.release, tasks, ops)
        samples["llmpool Scheduler"].append(wall)

        async def nothing() -> None:
            return None

        wall, _cpu = await _contended(nothing, lambda: None, tasks, ops)
        samples["yield only (floor)"].append(wall)
    medians = {name: statistics.median(values) * 1e6 for name, values in samples.items()}
    return {
        "params": {"tasks": tasks, "limit": limit, "ops_per_task": ops, "repeats": repeats},
        "us_per_pair": medians,
        "raw_us_per_pair": {name: [v * 1e6 for v in vs] for name, vs in samples.items()},
        "ratio_vs_asyncio_semaphore": medians["llmpool Scheduler"] / medians["asyncio.Semaphore"],
    }


async def _queued_bytes(queued: int) -> dict[str, Any]:
    """Bytes per request queued in a ConnectionManager, and per bare waiting task (baseline)."""
    gate = anyio.Event()

    def factory(index: int) -> openai.AsyncOpenAI:
        del index  # never called upstream: every call below is a local coroutine
        return openai.AsyncOpenAI(base_url="http://127.0.0.1:9/v1", api_key="sk-x", max_retries=0)

    async def blocked(client: openai.AsyncOpenAI) -> None:
        await gate.wait()

    async def noop(client: openai.AsyncOpenAI) -> None:
        return None

    config = llmpool.PoolConfig(max_concurrency=1, max_queue_size=queued + 1)
    async with llmpool.ConnectionManager(config, client_factory=factory) as manager:
        async with anyio.create_task_group() as tg:
            tg.start_soon(manager.run, blocked)
            await anyio.wait_all_tasks_blocked()
            assert manager.stats().active_connections == 1
            gc.collect()
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(queued):
                tg.start_soon(manager.run, noop)
            # Polling, not wait_all_tasks_blocked(): that is O(tasks) per step on asyncio.
            while manager.stats().queued_requests < queued:  # noqa: ASYNC110
                await anyio.sleep(0.01)
            gc.collect()
            managed = tracemalloc.get_traced_memory()[0] - before
            tracemalloc.stop()
            assert manager.stats().queued_requests == queued
            gate.set()  # drain: every queued call runs its no-op and returns (cancelling
            # 10^5 queued tasks instead takes minutes: anyio re-delivers the cancellation)
        completed = manager.stats().completed_requests

    # Baseline: the same number of tasks, each only waiting on an event (the caller's floor).
    bare_gate = anyio.Event()
    async with anyio.create_task_group() as tg:
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(queued):
            tg.start_soon(bare_gate.wait)
        for _ in range(3):  # new tasks take their first step (to the wait) on the next tick
            await anyio.sleep(0.01)
        assert not bare_gate.statistics().tasks_waiting < queued
        gc.collect()
        bare = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        bare_gate.set()
    return {
        "queued": queued,
        "completed_after_drain": completed,
        "bytes_per_queued_request_total": managed / queued,
        "bytes_per_waiting_task_baseline": bare / queued,
        "bytes_per_queued_request_llmpool": (managed - bare) / queued,
    }


def run(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Run micro-benchmark ``kind`` (``scheduler`` or ``memory``) with ``spec``'s parameters."""
    if kind == "scheduler":
        return asyncio.run(
            _scheduler_bench(
                int(spec["tasks"]), int(spec["limit"]), int(spec["ops"]), int(spec["repeats"])
            )
        )
    return asyncio.run(_queued_bytes(int(spec["queued"])))
