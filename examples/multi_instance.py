"""Two instances, one quota: two managers share RPM and a global cap through ``RedisState``.

Each "instance" is a ``ConnectionManager`` with its own ``RedisState`` on the same Redis and
prefix, as two processes (two pods) would have; here both run in one process for brevity
(``llmpool demo --instances 3`` runs them as real processes). Together they may send 600
requests per minute and have 4 in flight; each alone would allow that much again. Both send
20 requests at once; the provider sees the shared bucket's burst (10), then about 10 a second.

Needs the ``testing`` and ``redis`` extras and redis-server on PATH (``llmpool.testing.
RedisServer`` starts one on a free loopback port). Run it with::

    python examples/multi_instance.py
"""

from __future__ import annotations

from collections import Counter

import anyio
import openai

from llmpool import ConnectionManager, PoolConfig, RateLimitPolicy
from llmpool.redis import RedisState, SharedBudgetPolicy
from llmpool.testing import FaultPlan, RedisServer, SimulatedProvider

CONFIG = PoolConfig(rate_limit=RateLimitPolicy(requests_per_minute=600))
BUDGET = SharedBudgetPolicy(concurrency=4)  # in flight at once, both instances together
REQUESTS = 20  # per instance


async def instance(name: str, redis_url: str, sim: SimulatedProvider, done: Counter[str]) -> None:
    """One instance: its own Redis client and manager; 20 requests at once."""

    def factory(index: int) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=sim.base_url, api_key="sim", max_retries=0)

    async with (
        RedisState(redis_url, prefix="example", budget=BUDGET) as redis,
        ConnectionManager(CONFIG, client_factory=factory, state=redis.stores()) as manager,
    ):

        async def call(n: int) -> None:
            await manager.responses.create(
                model="gpt-4o-mini", input=f"{name} {n}", max_output_tokens=32
            )
            done[name] += 1

        async with anyio.create_task_group() as tg:
            for n in range(REQUESTS):
                tg.start_soon(call, n)


async def main(redis_url: str) -> None:
    plan = FaultPlan(latency_min=0.05, latency_max=0.15, seed=1)
    async with SimulatedProvider(plan, api_key="sim") as sim:
        done: Counter[str] = Counter()
        async with anyio.create_task_group() as tg:
            tg.start_soon(instance, "A", redis_url, sim, done)
            tg.start_soon(instance, "B", redis_url, sim, done)
        for name in ("A", "B"):
            print(f"instance {name}: {done[name]} completed")
        print(f"total: {done.total()} completed")
        arrivals = sorted(r.received_at for r in sim.requests)
        print(f"the provider saw {len(arrivals)} requests")
        seconds = Counter(int(t - arrivals[0]) for t in arrivals)
        per_second = [seconds[s] for s in range(max(seconds) + 1)]
        print(f"arrivals per second: {per_second} (600 RPM shared: 10 at once, then ~10 a second)")


if __name__ == "__main__":
    with RedisServer() as server:
        anyio.run(main, server.url)
