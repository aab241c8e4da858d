"""The scheduler at scale: memory per queued waiter, the cost of cancelling 10^5 queued calls,
and contended acquire+release against ``asyncio.Semaphore``.

Standalone, from the repository root::

    PYTHONPATH=src python benchmarks/scale.py                 # everything, 10^5 queued
    PYTHONPATH=src python benchmarks/scale.py --only cancel --queued 20000 --backends trio

Measurements (the same as ``benchmarks/micro.py`` where it has one):

- ``memory``: bytes per waiter queued in a bare ``Scheduler`` (tracemalloc, after
  ``gc.collect()``), minus a baseline of as many tasks each waiting on an event (the caller's
  own floor), with and without a queue deadline per waiter (the scheduler's timer running).
- ``cancel``: seconds from cancelling the task group that holds ``--queued`` queued acquires
  to its exit, in a bare ``Scheduler`` and through ``ConnectionManager.run``.
- ``contended``: 64 tasks x 1000 acquire+release pairs on 4 slots, each holding its slot
  across one switch; microseconds per pair, median of 6 interleaved repeats (asyncio only:
  the reference is ``asyncio.Semaphore``).

It runs against any revision of ``llmpool._scheduler``: without ``Scheduler.run_timer`` the
deadline variants are reported as ``null``.
"""

from __future__ import annotations

import argparse
import asyncio  # noqa: TID251  the reference is asyncio.Semaphore; the loop is asyncio's
import functools
import gc
import itertools
import json
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import openai

import llmpool
from llmpool._scheduler import Scheduler

NORMAL = 1
DEADLINE_AHEAD = 3600.0  # seconds: deadlines far enough ahead that none passes during a run
# One name for every task spawned: anyio otherwise builds a name string per task from the
# function, which differs between the variants (a bound method's name costs ~80 bytes).
TASK_NAME = "queued"


def _scheduler(queued: int) -> Scheduler:
    return Scheduler(max_concurrency=1, max_queue_size=queued + 1, starvation_limit=10)


def _has_timer(scheduler: Scheduler) -> bool:
    return hasattr(scheduler, "run_timer")


async def _fill(tg: Any, scheduler: Scheduler, queued: int, deadline: float | None) -> None:
    """Queue ``queued`` acquires in ``tg`` (the slot is already held) and wait until they are."""
    acquire: Callable[..., Awaitable[None]] = scheduler.acquire
    if deadline is not None:
        acquire = functools.partial(scheduler.acquire, deadline=deadline)
    for seq in range(queued):
        tg.start_soon(acquire, NORMAL, "", seq, name=TASK_NAME)
    # Polling, not wait_all_tasks_blocked(): that is O(tasks) per step on asyncio.
    while scheduler.queued < queued:  # noqa: ASYNC110
        await anyio.sleep(0.01)


def _drain(scheduler: Scheduler, queued: int) -> None:
    """Grant every queued waiter (each returns at once, keeping its slot)."""
    for _ in range(queued):
        scheduler.release()


async def _baseline_bytes(queued: int) -> float:
    """Bytes per task that only waits on an event: the caller's floor, whatever the library."""
    gate = anyio.Event()
    async with anyio.create_task_group() as tg:
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(queued):
            tg.start_soon(gate.wait, name=TASK_NAME)
        for _ in range(3):  # new tasks take their first step (to the wait) on the next tick
            await anyio.sleep(0.01)
        assert gate.statistics().tasks_waiting == queued
        gc.collect()
        bare = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        gate.set()
    return bare / queued


async def _park_forever() -> None:
    """Park on the backend's cheapest primitive, in one coroutine frame (cancel to end)."""
    if anyio.lowlevel.current_token().native_token.__class__.__module__.startswith("trio"):
        import trio

        await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.SUCCEEDED)
    else:
        await asyncio.get_running_loop().create_future()


async def _bare_park_bytes(queued: int) -> float:
    """Bytes per task parked on a bare future (asyncio) or on itself (trio), in one frame:
    what a queued waiter costs at the least, without any queue."""
    async with anyio.create_task_group() as tg:
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(queued):
            tg.start_soon(_park_forever, name=TASK_NAME)
        for _ in range(3):
            await anyio.sleep(0.01)
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        tg.cancel_scope.cancel()
    return used / queued


async def _scheduler_bytes(queued: int, with_deadline: bool) -> float | None:
    """Bytes per waiter queued in a bare ``Scheduler`` (the caller's task included)."""
    scheduler = _scheduler(queued)
    if with_deadline and not _has_timer(scheduler):
        return None
    assert scheduler.try_acquire()
    async with anyio.create_task_group() as tg:
        if with_deadline:
            tg.start_soon(scheduler.run_timer)  # type: ignore[attr-defined]
            await anyio.sleep(0.01)
        deadline = anyio.current_time() + DEADLINE_AHEAD if with_deadline else None
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        await _fill(tg, scheduler, queued, deadline)
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        _drain(scheduler, queued)
        tg.cancel_scope.cancel()  # the timer
    return used / queued


async def _memory(queued: int) -> dict[str, Any]:
    baseline = await _baseline_bytes(queued)
    park = await _bare_park_bytes(queued)
    plain = await _scheduler_bytes(queued, with_deadline=False)
    timed = await _scheduler_bytes(queued, with_deadline=True)
    assert plain is not None
    return {
        "queued": queued,
        # micro.py's method: minus tasks waiting on an anyio.Event (the caller's floor)
        "bytes_per_waiting_task_baseline": baseline,
        "bytes_per_queued_waiter_total": plain,
        "bytes_per_queued_waiter_llmpool": plain - baseline,
        "bytes_per_queued_waiter_with_deadline_total": timed,
        "bytes_per_queued_waiter_with_deadline_llmpool": (
            None if timed is None else timed - baseline
        ),
        # the scheduler's own over the cheapest park there is (a bare future / trio task)
        "bytes_per_bare_parked_task": park,
        "bytes_over_bare_park": plain - park,
        "bytes_over_bare_park_with_deadline": None if timed is None else timed - park,
    }


async def _cancel_scheduler(queued: int, with_deadline: bool) -> float | None:
    """Seconds to cancel ``queued`` acquires queued in a bare ``Scheduler``."""
    scheduler = _scheduler(queued)
    if with_deadline and not _has_timer(scheduler):
        return None
    assert scheduler.try_acquire()
    async with anyio.create_task_group() as outer:
        if with_deadline:
            outer.start_soon(scheduler.run_timer)  # type: ignore[attr-defined]
        deadline = anyio.current_time() + DEADLINE_AHEAD if with_deadline else None
        async with anyio.create_task_group() as tg:
            await _fill(tg, scheduler, queued, deadline)
            start = time.perf_counter()
            tg.cancel_scope.cancel()
        elapsed = time.perf_counter() - start
        assert (scheduler.queued, scheduler.in_use) == (0, 1)
        outer.cancel_scope.cancel()
    return elapsed


async def _cancel_manager(queued: int) -> float:
    """Seconds to cancel ``queued`` calls queued in a ``ConnectionManager`` (one slot held)."""
    gate = anyio.Event()

    def factory(index: int) -> openai.AsyncOpenAI:
        del index  # never called upstream: every call below is a local coroutine
        return openai.AsyncOpenAI(base_url="http://127.0.0.1:9/v1", api_key="sk-x", max_retries=0)

    async def blocked(client: openai.AsyncOpenAI) -> None:
        await gate.wait()

    async def noop(client: openai.AsyncOpenAI) -> None:
        return None

    config = llmpool.PoolConfig(max_concurrency=1, max_queue_size=queued + 1)
    manager = llmpool.ConnectionManager(config, client_factory=factory)
    async with manager, anyio.create_task_group() as holder:
        holder.start_soon(manager.run, blocked)
        while manager.stats().active_connections < 1:  # noqa: ASYNC110
            await anyio.sleep(0.001)
        async with anyio.create_task_group() as tg:
            for _ in range(queued):
                tg.start_soon(manager.run, noop)
            while manager.stats().queued_requests < queued:  # noqa: ASYNC110
                await anyio.sleep(0.01)
            start = time.perf_counter()
            tg.cancel_scope.cancel()
        elapsed = time.perf_counter() - start
        assert manager.stats().queued_requests == 0
        gate.set()
    return elapsed


async def _contended(
    acquire: Callable[[], Awaitable[Any]], release: Callable[[], None], tasks: int, ops: int
) -> float:
    """``tasks`` tasks each do ``ops`` x (acquire, yield once while holding, release).

    Returns wall seconds per acquire+release pair (``benchmarks/micro.py``'s method).
    """

    async def worker() -> None:
        for _ in range(ops):
            await acquire()
            await asyncio.sleep(0)  # hold across a switch so the others queue up
            release()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    return (time.perf_counter() - start) / (tasks * ops)


def _scheduler_acquire(
    scheduler: Scheduler, seq: Iterator[int], deadline: float | None
) -> Awaitable[None]:
    if deadline is None:
        return scheduler.acquire(NORMAL, "", next(seq))
    return scheduler.acquire(NORMAL, "", next(seq), deadline=deadline)  # type: ignore[call-arg]


async def _contended_bench(tasks: int, limit: int, ops: int, repeats: int) -> dict[str, Any]:
    samples: dict[str, list[float]] = {
        "asyncio.Semaphore": [],
        "llmpool Scheduler": [],
        "llmpool Scheduler, deadline + timer": [],
    }
    for _ in range(repeats):  # interleaved, so drift bills every contender alike
        sem = asyncio.Semaphore(limit)
        samples["asyncio.Semaphore"].append(await _contended(sem.acquire, sem.release, tasks, ops))

        scheduler = Scheduler(max_concurrency=limit, max_queue_size=tasks, starvation_limit=10)
        acquire = functools.partial(_scheduler_acquire, scheduler, itertools.count(), None)
        samples["llmpool Scheduler"].append(
            await _contended(acquire, scheduler.release, tasks, ops)
        )

        scheduler = Scheduler(max_concurrency=limit, max_queue_size=tasks, starvation_limit=10)
        if _has_timer(scheduler):
            timer = asyncio.ensure_future(scheduler.run_timer())  # type: ignore[attr-defined]
            await asyncio.sleep(0)
            deadline = asyncio.get_running_loop().time() + DEADLINE_AHEAD
            acquire = functools.partial(_scheduler_acquire, scheduler, itertools.count(), deadline)
            samples["llmpool Scheduler, deadline + timer"].append(
                await _contended(acquire, scheduler.release, tasks, ops)
            )
            timer.cancel()
            await asyncio.gather(timer, return_exceptions=True)
    medians = {
        name: statistics.median(values) * 1e6 if values else None
        for name, values in samples.items()
    }
    reference = medians["asyncio.Semaphore"]
    assert reference is not None
    return {
        "params": {"tasks": tasks, "limit": limit, "ops_per_task": ops, "repeats": repeats},
        "us_per_pair": medians,
        "ratio_vs_asyncio_semaphore": {
            name: None if value is None else value / reference
            for name, value in medians.items()
            if name != "asyncio.Semaphore"
        },
    }


def _run(backend: str, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    return anyio.run(fn, *args, backend=backend)


def _revision() -> str:
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queued", type=int, default=100_000, help="waiters queued at once")
    parser.add_argument(
        "--manager-queued",
        type=int,
        default=None,
        help="calls queued for the ConnectionManager cancel measurement (default: --queued)",
    )
    parser.add_argument("--only", default="memory,cancel,contended", help="comma-separated")
    parser.add_argument("--backends", default="asyncio,trio", help="comma-separated")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    backends = args.backends.split(",")
    manager_queued = args.queued if args.manager_queued is None else args.manager_queued
    results: dict[str, Any] = {
        "revision": _revision(),
        "python": sys.version.split()[0],
        "anyio": anyio.__version__ if hasattr(anyio, "__version__") else None,
    }
    for backend in backends:
        if "memory" in only:
            results[f"memory/{backend}"] = _run(backend, _memory, args.queued)
            print(f"memory/{backend}", json.dumps(results[f"memory/{backend}"]), flush=True)
        if "cancel" in only:
            cancel = {
                "queued": args.queued,
                "scheduler_s": _run(backend, _cancel_scheduler, args.queued, False),
                "scheduler_with_deadline_s": _run(backend, _cancel_scheduler, args.queued, True),
            }
            print(f"cancel/{backend}", json.dumps(cancel), flush=True)
            if manager_queued > 0:
                cancel["manager_queued"] = manager_queued
                cancel["manager_s"] = _run(backend, _cancel_manager, manager_queued)
                print(f"cancel/{backend}", json.dumps(cancel), flush=True)
            results[f"cancel/{backend}"] = cancel
    if "contended" in only:
        results["contended/asyncio"] = asyncio.run(_contended_bench(64, 4, 1000, 6))
        print("contended/asyncio", json.dumps(results["contended/asyncio"]), flush=True)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=2)
    return results


if __name__ == "__main__":
    main()
