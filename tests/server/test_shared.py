"""Two server instances sharing sessions through a real Redis (loopback, both backends)."""

from __future__ import annotations

import gc
import uuid
from collections.abc import Iterator

import pytest

from llmpool.testing import FaultPlan, SimulatedProvider
from llmpool.testing._payloads import REPLY_PREFIX

from .helpers import chat, served, text_of

# A Redis round trip over redis_timeout (a loaded loop) cancels coredis mid-connect, and
# coredis then leaves that connection's memory streams unclosed; the garbage collector
# reports them. coredis's warnings, not these tests' subject (tests/redis/ does the same).
pytestmark = [
    pytest.mark.anyio,
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture(autouse=True)
def _collect_here() -> Iterator[None]:
    """Collect them before the test ends, under this module's filter."""
    yield
    gc.collect()


LONG = " ".join(f"w{i}" for i in range(25))


@pytest.fixture
def prefix() -> str:
    return f"srv-{uuid.uuid4().hex[:10]}"


async def test_a_session_continues_on_another_instance(
    sim: SimulatedProvider, redis_url: str, prefix: str
) -> None:
    """The first turn on A, the second on B: B loads A's conversation from Redis, so its
    request carries the first turn (by previous_response_id, the provider being shared)
    and the transcript B keeps has both turns."""
    shared = {"redis_url": redis_url, "redis_prefix": prefix}
    async with served(sim, **shared) as a, served(sim, **shared) as b:
        async with chat(a, "roaming") as client:
            first = await client.turn("first question")
        async with chat(b, "roaming") as client:
            second = await client.turn("second question")
        transcript = (await b.http.get("/api/sessions/roaming")).json()["conversation"]
    assert text_of(first) == REPLY_PREFIX + "first question"
    assert text_of(second) == REPLY_PREFIX + "second question"
    assert [r.body.get("previous_response_id") is not None for r in sim.requests] == [
        False,
        True,
    ]
    users = [i["content"] for i in transcript["items"] if i.get("role") == "user"]
    assert users == ["first question", "second question"]


async def test_two_instances_never_run_two_turns_of_one_session(
    sim: SimulatedProvider, redis_url: str, prefix: str
) -> None:
    """While A streams a turn of a session, a message for it on B ends at once with
    session_busy (a frame of B's turn), and only A's request reaches the provider; once
    A's turn is done, B's next turn runs."""
    sim.set_fault_plan(FaultPlan(stream_chunk_delay=0.03))
    shared = {"redis_url": redis_url, "redis_prefix": prefix}
    async with (
        served(sim, **shared) as a,
        served(sim, **shared) as b,
        chat(a, "contested") as on_a,
        chat(b, "contested") as on_b,
    ):
        await on_a.send(type="message", message=LONG)
        await on_a.recv()
        busy = await on_b.turn("me too")
        rest = await on_a.until("complete")
        after = await on_b.turn("now me")
    assert [f["error"] for f in busy] == ["session_busy"]
    assert "another instance" in busy[0]["error_details"]["message"]
    assert rest[-1]["type"] == "complete"
    assert after[-1]["type"] == "complete"
    assert len(sim.requests) == 2


async def test_a_stopped_turn_is_saved_for_the_other_instance(
    sim: SimulatedProvider, redis_url: str, prefix: str
) -> None:
    """A stop on A keeps the partial text; B's next turn sends it."""
    sim.set_fault_plan(FaultPlan(stream_chunk_delay=0.05))
    shared = {"redis_url": redis_url, "redis_prefix": prefix}
    async with served(sim, **shared) as a, served(sim, **shared) as b:
        async with chat(a, "stopped") as client:
            await client.send(type="message", message=LONG)
            frames = [await client.recv(), await client.recv()]
            await client.send(type="stop")
            frames += await client.until("complete")
        sim.set_fault_plan(FaultPlan())
        async with chat(b, "stopped") as client:
            await client.turn("next")
    sent = [item.get("content") for item in sim.requests[-1].body["input"]]
    assert sent[-3:] == [LONG, text_of(frames), "next"]


async def test_instances_share_one_rate_limit_budget(
    sim: SimulatedProvider, redis_url: str, prefix: str
) -> None:
    """With redis_url the app's own manager takes its budgets from Redis: 60 RPM (a bucket of
    one request) on two instances lets one turn through at once, not one per instance; the
    second instance's turn waits for the shared refill (about a second)."""
    import time

    from llmpool import PoolConfig, RateLimitPolicy
    from llmpool.redis import RedisBudgets

    pool = PoolConfig(shutdown_grace=2.0, rate_limit=RateLimitPolicy(requests_per_minute=60))
    shared = {"redis_url": redis_url, "redis_prefix": prefix, "pool": pool}
    async with served(sim, **dict(shared)) as a, served(sim, **dict(shared)) as b:
        assert isinstance(a.runtime.manager._engine.stores.budgets, RedisBudgets)
        sim.clear_requests()
        async with chat(a, "one") as on_a, chat(b, "two") as on_b:
            await on_a.turn("first")
            started = time.monotonic()
            await on_b.turn("second")
            waited = time.monotonic() - started
    assert len(sim.requests) == 2
    assert waited >= 0.8  # one request per (60 + 0.25) / 59 s from the shared bucket
