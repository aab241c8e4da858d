"""Two upstreams through one ``client_factory``: a 429 with Retry-After moves work elsewhere.

Two simulated providers stand in for two OpenAI-compatible endpoints. The client factory gives
pool index 0 a client for ``sim-a`` and index 1 a client for ``sim-b``; clients with different
base URLs (or API keys) are different *upstreams*. ``sim-a`` answers its first request with a
429 and ``retry-after: 2``. llmpool then cools ``sim-a`` down for 2 s: no attempt is sent to it
while it cools, so the other requests go to ``sim-b``. The request that got the 429 does not
wait the 2 s: the hint binds ``sim-a`` only, and ``sim-b`` is healthy, so it retries there after
the ordinary backoff (0.5 to 1.5 s with the default ``RetryPolicy``). The example prints which
upstream answered each attempt, from ``sim.requests``.

Needs the ``testing`` extra (``pip install 'llmpool[testing]'``; ``make demo`` installs it).
Run it with::

    python examples/custom_factory.py
"""

from __future__ import annotations

import anyio
import openai

from llmpool import ConnectionManager, PoolConfig
from llmpool.testing import FaultPlan, ScriptedFault, SimulatedProvider

REQUESTS = 6


async def main() -> None:
    latency = {"latency_min": 0.02, "latency_max": 0.05, "seed": 1}
    rate_limited = FaultPlan(
        scripted=[ScriptedFault(kind="rate_limit", retry_after=2.0)], **latency
    )
    async with (
        SimulatedProvider(rate_limited, name="sim-a") as sim_a,
        SimulatedProvider(FaultPlan(**latency), name="sim-b") as sim_b,
    ):
        upstreams = [sim_a, sim_b]

        def client_factory(index: int) -> openai.AsyncOpenAI:
            sim = upstreams[index % len(upstreams)]
            return openai.AsyncOpenAI(base_url=sim.base_url, api_key="sim", max_retries=0)

        config = PoolConfig(pool_size=2, max_concurrency=2)
        async with ConnectionManager(config, client_factory=client_factory) as manager:

            async def ask(number: int) -> None:
                await manager.responses.create(model="gpt-4o-mini", input=f"request {number}")

            async with anyio.create_task_group() as tg:
                for number in range(1, REQUESTS + 1):
                    tg.start_soon(ask, number)
            stats = manager.stats()

    # Every attempt either upstream received, in arrival order.
    start = min(record.received_at for sim in upstreams for record in sim.requests)
    attempts = sorted(
        (record.received_at, sim.name, record.body["input"], record.outcome)
        for sim in upstreams
        for record in sim.requests
    )
    for received_at, name, text, outcome in attempts:
        print(f"{received_at - start:6.3f}s  {name}  {text:10}  {outcome}")
    print(f"sim-a answered {sim_a.count()} attempt(s), sim-b {sim_b.count()}")
    first = [(at, name) for at, name, text, _ in attempts if text == "request 1"]
    (failed_at, _), (retried_at, retried_on) = first[0], first[-1]
    print(
        f"request 1 retried on {retried_on} {retried_at - failed_at:.2f}s after its 429 "
        f"(sim-a asked for 2 s)"
    )
    print(
        f"{stats.completed_requests}/{REQUESTS} completed, "
        f"{stats.failed_requests} failed, {stats.retries} retried"
    )


if __name__ == "__main__":
    anyio.run(main)
