"""A batch job next to interactive traffic: 500 LOW requests with back-pressure, HIGH keeps flowing.

Starts llmpool's simulated provider on a free loopback port (no network, no API key). One
``ConnectionManager`` with a small queue (``max_queue_size=40``) serves two kinds of work:

* a **batch** of 500 LOW requests. The producer keeps at most 64 items in flight (an
  ``anyio.CapacityLimiter``: its own memory stays bounded) and their view uses
  ``admission="wait"``: an item that finds the queue full (40 queued, 8 running) waits for a
  place instead of getting ``QueueFullError``, so no item is refused;
* **interactive** HIGH requests, one every 20 ms. A full queue still admits HIGH: the newest
  LOW waiter would be evicted to make room, and the batch waits with ``admission="wait"``, so
  here no batch item is refused either. HIGH is granted ahead of the batch's queued work.

A rich progress bar follows the batch; every item's result (or typed error) is kept, and the
script prints a summary: batch items done, and HIGH requests with their median latency.

Needs the ``demo`` extra (``pip install 'llmpool[demo]'``; ``make demo`` installs it).
Run it with::

    python examples/batch.py
"""

from __future__ import annotations

import time

import anyio
import openai
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from llmpool import ConnectionManager, PoolConfig, QueueFullError
from llmpool.testing import FaultPlan, SimulatedProvider

MODEL = "gpt-4o-mini"
BATCH = 500
HIGH_EVERY = 0.02  # seconds between two interactive requests


async def main() -> None:
    # Each reply takes 5-15 ms; no faults.
    plan = FaultPlan(latency_min=0.005, latency_max=0.015, seed=2)
    async with SimulatedProvider(plan) as sim:

        def client_factory() -> openai.AsyncOpenAI:
            return openai.AsyncOpenAI(base_url=sim.base_url, api_key="sim", max_retries=0)

        config = PoolConfig(pool_size=4, max_concurrency=8, max_queue_size=40)
        async with ConnectionManager(config, client_factory=client_factory) as manager:
            batch = manager.with_options(priority="low", session_id="batch", admission="wait")
            interactive = manager.with_options(priority="high", session_id="user")
            results: list[str | None] = [None] * BATCH
            high_waits: list[float] = []
            batch_done = anyio.Event()

            in_flight = anyio.CapacityLimiter(64)

            async def one_item(index: int, progress: Progress, task: int) -> None:
                try:
                    reply = await batch.responses.create(model=MODEL, input=f"item {index}")
                    results[index] = reply.output_text
                except QueueFullError as exc:  # not expected with admission="wait"
                    results[index] = f"refused: {exc}"
                except openai.APIError as exc:
                    results[index] = f"failed: {type(exc).__name__}"
                finally:
                    in_flight.release_on_behalf_of(index)
                progress.advance(task)

            async def producer(progress: Progress, task: int) -> None:
                async with anyio.create_task_group() as items:
                    for index in range(BATCH):
                        await in_flight.acquire_on_behalf_of(index)  # waits at 64 in flight
                        items.start_soon(one_item, index, progress, task)
                batch_done.set()

            async def interactive_user() -> None:
                while not batch_done.is_set():
                    started = time.perf_counter()
                    await interactive.responses.create(model=MODEL, input="a user's question")
                    high_waits.append(time.perf_counter() - started)
                    await anyio.sleep(HIGH_EVERY)

            columns = (
                TextColumn("batch"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
            )
            with Progress(*columns) as progress:
                task = progress.add_task("batch", total=BATCH)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(producer, progress, task)
                    tg.start_soon(interactive_user)

            ok = sum(1 for r in results if r is not None and r.startswith("Simulated reply"))
            print(f"batch: {ok}/{BATCH} items ok")
            for index in (0, 1, BATCH - 1):
                print(f"  item {index:3}: {results[index]}")
            high_waits.sort()
            median = high_waits[len(high_waits) // 2] * 1000
            print(f"high: {len(high_waits)} requests, all ok, median {median:.0f} ms")
            stats = manager.stats()
            print(
                f"completed {stats.completed_requests}, rejected {stats.rejected_requests}, "
                f"failed {stats.failed_requests}"
            )


if __name__ == "__main__":
    anyio.run(main)
