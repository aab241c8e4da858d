"""A storm of 429s without any hint, over loopback HTTP with the real SDK: the circuit breaker
keeps the upstream's load low and every caller still succeeds; gateway hint headers are read."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import anyio
import openai
import pytest

from llmpool import ConnectionManager, PoolConfig, RetryPolicy
from llmpool.testing import FaultPlan, ScriptedFault, SimulatedProvider

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

CALM = FaultPlan(latency_min=0.02, latency_max=0.02, seed=3)
STORM = CALM.model_copy(update={"rate_limit_rate": 1.0, "retry_after": None})


@pytest.fixture
def sim() -> Iterator[SimulatedProvider]:
    with SimulatedProvider(name="storm", fault_plan=STORM) as sim:
        yield sim


def factory_for(sim: SimulatedProvider) -> Any:
    def factory() -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=sim.base_url, api_key="sk-test", max_retries=0)

    return factory


async def test_hintless_storm_every_caller_succeeds_with_few_requests(
    sim: SimulatedProvider,
) -> None:
    """30 callers at once, 5 s of 429s with no Retry-After and no x-ratelimit-*, then 200s,
    queue_timeout 60 s: all 30 succeed, and at most 15 requests reach the upstream during
    the storm (10 in the first wave, then one probe per growing cooldown). The raw SDK with
    its default retries sends 90 and fails every caller (benchmarks: `hintless`)."""
    results: list[str] = []
    config = PoolConfig(max_concurrency=10, queue_timeout=60.0)
    start = time.monotonic()

    async def end_storm() -> None:
        await anyio.sleep(5.0)
        sim.set_fault_plan(CALM)

    async def call(m: ConnectionManager, i: int) -> None:
        response = await m.responses.create(model="gpt-test", input=f"caller {i}")
        results.append(response.output_text)

    async with ConnectionManager(config, client_factory=factory_for(sim)) as m:
        async with anyio.create_task_group() as tg:
            tg.start_soon(end_storm)
            for i in range(30):
                tg.start_soon(call, m, i)
        stats = m.stats()
    during = [r for r in sim.requests if r.received_at - start < 5.0]
    assert len(results) == 30
    assert len(during) <= 15, len(during)
    assert all(r.outcome == "rate_limit" for r in during)
    assert sum(1 for r in sim.requests if r.outcome == "ok") == 30
    assert (stats.completed_requests, stats.failed_requests, stats.open_circuits) == (30, 0, 0)


async def test_gateway_retry_after_is_honoured(sim: SimulatedProvider) -> None:
    """A 429 whose only hint is LiteLLM's llm_provider-retry-after is waited out for that long
    (a cooldown), not treated as hintless."""
    hinted = ScriptedFault(kind="rate_limit", headers={"llm_provider-retry-after": "0.5"})
    sim.set_fault_plan(CALM.model_copy(update={"scripted": [hinted], "retry_after": None}))
    config = PoolConfig(retry=RetryPolicy(jitter=0.0))
    async with ConnectionManager(config, client_factory=factory_for(sim)) as m:
        await m.responses.create(model="gpt-test", input="hi")
        assert m.stats().open_circuits == 0
    first, second = sim.requests
    assert (first.outcome, second.outcome) == ("rate_limit", "ok")
    assert second.received_at - first.received_at == pytest.approx(0.52, abs=0.15)
