"""Rate limits end to end: the simulator sends OpenAI's x-ratelimit-* headers, the manager
learns them through the real SDK and paces its requests.

Real time is measured here; every bound has its margin written next to it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import openai
import pytest

from llmpool import (
    ConnectionManager,
    PoolConfig,
    RateLimitPolicy,
    RequestTooLargeError,
    RetryPolicy,
)
from llmpool._limits import parse_duration
from llmpool.testing import FaultPlan, SimulatedProvider

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

FAST_RETRY = RetryPolicy(initial_backoff=0.05, max_backoff=0.2, jitter=0.0)


@pytest.fixture
def sim() -> Iterator[SimulatedProvider]:
    with SimulatedProvider(name="limits", fault_plan=FaultPlan(rpm_limit=120)) as sim:
        yield sim


def factory_for(sim: SimulatedProvider) -> Any:
    def factory(index: int) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=sim.base_url, api_key="sk-test", max_retries=0)

    return factory


async def burst(sim: SimulatedProvider, policy: RateLimitPolicy) -> list[float]:
    """One call to learn, then 6 concurrent calls; returns the server arrival times of those 6."""
    config = PoolConfig(max_concurrency=8, retry=FAST_RETRY, rate_limit=policy)
    async with ConnectionManager(config, client_factory=factory_for(sim)) as m:
        await m.responses.create(model="gpt-test", input="warm up")
        sim.clear_requests()
        async with anyio.create_task_group() as tg:
            for i in range(6):
                tg.start_soon(lambda i=i: m.responses.create(model="gpt-test", input=f"q{i}"))
    assert [r.outcome for r in sim.requests] == ["ok"] * 6
    return sorted(r.received_at for r in sim.requests)


def test_simulator_sends_ratelimit_headers(sim: SimulatedProvider) -> None:
    """Every answer carries limit, remaining (counting this request) and reset headers."""
    client = openai.OpenAI(base_url=sim.base_url, api_key="sk-test", max_retries=0)
    first = client.responses.with_raw_response.create(model="gpt-test", input="a")
    second = client.responses.with_raw_response.create(model="gpt-test", input="b")
    assert first.headers["x-ratelimit-limit-requests"] == "120"
    assert first.headers["x-ratelimit-remaining-requests"] == "119"
    assert second.headers["x-ratelimit-remaining-requests"] == "118"
    reset = parse_duration(second.headers["x-ratelimit-reset-requests"])
    assert reset is not None
    assert 59.0 <= reset <= 60.0  # the window empties 60 s after the last request
    client.close()


async def test_learned_limit_paces_requests(sim: SimulatedProvider) -> None:
    """Learned 120 RPM (2/s, bucket 2): of 6 concurrent calls, 2 go at once and the other 4
    follow 0.5 s apart, so the last reaches the server >= 2 s after the first (1.8 s:
    margin for timer granularity); none gets a 429."""
    arrivals = await burst(sim, RateLimitPolicy())
    assert arrivals[-1] - arrivals[0] >= 1.8
    assert arrivals[-1] - arrivals[0] < 4.0  # paced, not stalled (margin for a slow box)


async def test_without_learning_nothing_is_paced(sim: SimulatedProvider) -> None:
    """With learn_from_headers=False and no limit configured, the same 6 calls go at once."""
    arrivals = await burst(sim, RateLimitPolicy(learn_from_headers=False))
    assert arrivals[-1] - arrivals[0] < 1.0  # all concurrent (1 s: margin for a slow box)


async def test_learned_tpm_limit_paces_but_never_refuses(sim: SimulatedProvider) -> None:
    """A tokens-per-minute limit learned from headers paces requests but never refuses one:
    a request estimated above it is still sent (the server's answer decides), so a later
    header can correct a wrong limit. Only a configured limit refuses at once."""
    sim.set_fault_plan(FaultPlan(tpm_limit=1000))
    config = PoolConfig(retry=RetryPolicy(max_attempts=1))
    async with ConnectionManager(config, client_factory=factory_for(sim)) as m:
        await m.responses.create(model="gpt-test", input="hi", max_output_tokens=10)
        assert m.stats().rate_limits[0].tokens_per_minute == 1000  # learned
        sim.clear_requests()
        with pytest.raises(openai.RateLimitError):  # the simulator's own 1000 TPM says no
            await m.responses.create(model="gpt-test", input="hi", max_output_tokens=5000)
    assert len(sim.requests) == 1
    configured = PoolConfig(rate_limit=RateLimitPolicy(tokens_per_minute=1000))
    async with ConnectionManager(configured, client_factory=factory_for(sim)) as m:
        sim.clear_requests()
        with pytest.raises(RequestTooLargeError):
            await m.responses.create(model="gpt-test", input="hi", max_output_tokens=5000)
    assert sim.requests == []
