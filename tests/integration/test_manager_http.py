"""ConnectionManager end to end: the real openai SDK over loopback HTTP to the simulated
provider, counting what reached the server.

Real time is measured here; every bound has its margin written next to it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import openai
import pytest
from openai.types.responses import Response

from llmpool import ConnectionManager, ManagerClosedError, PoolConfig, PooledStream, RetryPolicy
from llmpool.testing import FaultPlan, ScriptedFault, SimulatedProvider

from .fixtures import simulator_fixtures

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

FAST_RETRY = RetryPolicy(initial_backoff=0.05, max_backoff=0.2, jitter=0.0)
SDK_CHAT_STREAM_TRIO_WARNING = pytest.mark.filterwarnings(
    # openai-python leaves the inner SSE generator of a chat stream unclosed after [DONE];
    # trio warns when it is garbage collected. Not llmpool's: the same happens without it.
    "ignore:Async generator .* was garbage collected:ResourceWarning"
)


shared_sim, sim = simulator_fixtures("a", api_key="sk-good")


def factory_for(*sims: SimulatedProvider, api_key: str = "sk-good") -> Any:
    def factory(index: int) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=sims[index % len(sims)].base_url, api_key=api_key, max_retries=0
        )

    return factory


@pytest.fixture
async def manager(sim: SimulatedProvider) -> AsyncIterator[ConnectionManager]:
    config = PoolConfig(retry=FAST_RETRY)
    async with ConnectionManager(config, client_factory=factory_for(sim)) as m:
        yield m


async def ask(m: ConnectionManager, text: str = "hello", **options: Any) -> Response:
    return await m.with_options(**options).responses.create(model="sim-1", input=text)


async def test_call_through_the_facade(manager: ConnectionManager, sim: SimulatedProvider) -> None:
    """responses.create through the manager returns the SDK's Response, one request sent."""
    reply = await ask(manager, "what is a pool?")
    assert isinstance(reply, Response)
    assert reply.output_text == "Simulated reply to: what is a pool?"
    assert sim.count("/v1/responses") == 1


async def test_chat_completions_through_the_facade(
    manager: ConnectionManager, sim: SimulatedProvider
) -> None:
    """chat.completions.create through the manager returns the SDK's ChatCompletion."""
    completion = await manager.chat.completions.create(
        model="sim-1", messages=[{"role": "user", "content": "hi there"}]
    )
    assert completion.choices[0].message.content == "Simulated reply to: hi there"
    assert sim.count("/v1/chat/completions") == 1


async def test_401_reaches_the_server_exactly_once(sim: SimulatedProvider) -> None:
    """A bad key fails with the SDK's AuthenticationError after exactly one request."""
    factory = factory_for(sim, api_key="sk-wrong")
    async with ConnectionManager(PoolConfig(retry=FAST_RETRY), client_factory=factory) as m:
        with pytest.raises(openai.AuthenticationError):
            await ask(m)
    assert sim.count() == 1
    assert [r.outcome for r in sim.requests] == ["unauthorized"]


async def test_429_with_retry_after_is_retried_after_the_delay(
    manager: ConnectionManager, sim: SimulatedProvider
) -> None:
    """A 429 with retry-after: 1 is retried no sooner than 1 s later, and then succeeds."""
    sim.set_fault_plan(FaultPlan(scripted=[ScriptedFault(kind="rate_limit", retry_after=1)]))
    reply = await ask(manager)
    assert reply.output_text.startswith("Simulated reply")
    first, second = sim.requests
    assert (first.outcome, second.outcome) == ("rate_limit", "ok")
    # Lower bound exact (server hint); upper bound: 1 s + 1.5 s of scheduling on a loaded box.
    assert 1.0 <= second.received_at - first.received_at < 2.5


async def test_insufficient_quota_is_sent_once(
    manager: ConnectionManager, sim: SimulatedProvider
) -> None:
    """A 429 insufficient_quota propagates as RateLimitError after one request: no retry."""
    sim.set_fault_plan(FaultPlan(scripted=[ScriptedFault(kind="insufficient_quota")]))
    with pytest.raises(openai.RateLimitError) as info:
        await ask(manager)
    assert info.value.code == "insufficient_quota"
    assert sim.count() == 1


async def test_5xx_and_drops_are_retried(
    manager: ConnectionManager, sim: SimulatedProvider
) -> None:
    """A 500, a 503 and a dropped connection are each retried; the 4th request succeeds."""
    sim.set_fault_plan(
        FaultPlan(
            scripted=[
                ScriptedFault(kind="status", status=500),
                ScriptedFault(kind="drop"),
                ScriptedFault(kind="status", status=503),
            ]
        )
    )
    await ask(manager)
    assert [r.outcome for r in sim.requests] == ["status:500", "drop", "status:503", "ok"]
    assert manager.stats().retries == 3


async def test_retries_stop_at_max_attempts(
    manager: ConnectionManager, sim: SimulatedProvider
) -> None:
    """With every call failing, exactly max_attempts (4) requests reach the server."""
    sim.set_fault_plan(FaultPlan(error_rates={500: 1.0}))
    with pytest.raises(openai.InternalServerError):
        await ask(manager)
    assert sim.count() == 4


async def test_x_should_retry_false_is_obeyed(
    manager: ConnectionManager, sim: SimulatedProvider
) -> None:
    """A 503 carrying x-should-retry: false is not retried."""
    sim.set_fault_plan(
        FaultPlan(
            scripted=[ScriptedFault(kind="status", status=503, headers={"x-should-retry": "false"})]
        )
    )
    with pytest.raises(openai.InternalServerError):
        await ask(manager)
    assert sim.count() == 1


async def test_session_id_travels_as_a_header(
    manager: ConnectionManager, sim: SimulatedProvider
) -> None:
    """session_id reaches the server as x-session-id, on the façade and on run()."""
    await ask(manager, session_id="terminal-3")
    await manager.run(
        lambda client: client.responses.create(model="sim-1", input="x"), session_id="terminal-4"
    )
    await ask(manager)
    sessions = [r.headers.get("x-session-id") for r in sim.requests]
    assert sessions == ["terminal-3", "terminal-4", None]


async def test_stream_holds_its_slot_until_it_ends(sim: SimulatedProvider) -> None:
    """A streamed response keeps its concurrency slot while it is read and frees it after."""
    sim.set_fault_plan(FaultPlan(stream_chunk_delay=0.01))
    config = PoolConfig(max_concurrency=1, retry=FAST_RETRY)
    async with ConnectionManager(config, client_factory=factory_for(sim)) as m:
        stream = await m.with_options(priority="high", session_id="s1").responses.create(
            model="sim-1", input="stream me please", stream=True
        )
        assert isinstance(stream, PooledStream)
        types: list[str] = []
        text = ""
        async with stream:
            async for event in stream:
                types.append(event.type)
                if event.type == "response.output_text.delta":
                    text += event.delta
                assert m.stats().active_connections == 1
        assert m.stats().active_connections == 0
        assert m.stats().completed_requests == 1
    assert types[0] == "response.created"
    assert types[-1] == "response.completed"
    assert text == "Simulated reply to: stream me please"
    assert sim.requests[0].headers["x-session-id"] == "s1"


async def test_stream_closed_early_frees_its_slot(sim: SimulatedProvider) -> None:
    """Leaving a stream after its first event closes it and gives the slot back at once."""
    config = PoolConfig(max_concurrency=1, retry=FAST_RETRY)
    async with ConnectionManager(config, client_factory=factory_for(sim)) as m:
        async with await m.responses.create(model="sim-1", input="x", stream=True) as stream:
            async for _event in stream:
                break
        assert m.stats().active_connections == 0
        reply = await ask(m)  # would wait forever if the slot had leaked
        assert reply.output_text


@SDK_CHAT_STREAM_TRIO_WARNING
async def test_chat_stream_through_the_facade(sim: SimulatedProvider) -> None:
    """chat.completions.create(stream=True) yields the SDK's chunks through a PooledStream."""
    async with ConnectionManager(client_factory=factory_for(sim)) as m:
        stream = await m.chat.completions.create(
            model="sim-1", messages=[{"role": "user", "content": "yo"}], stream=True
        )
        async with stream:
            parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    assert "".join(parts) == "Simulated reply to: yo"


async def test_stream_opening_is_retried(
    manager: ConnectionManager, sim: SimulatedProvider
) -> None:
    """A 503 before the stream opens is retried like any call; the caller sees one stream."""
    sim.set_fault_plan(FaultPlan(scripted=[ScriptedFault(kind="status", status=503)]))
    async with await manager.responses.create(model="sim-1", input="x", stream=True) as stream:
        events = [event.type async for event in stream]
    assert events[-1] == "response.completed"
    assert [r.outcome for r in sim.requests] == ["status:503", "ok"]


async def test_cooldown_holds_queued_work_back(sim: SimulatedProvider) -> None:
    """After a 429 with retry-after: 1, no new request reaches that upstream for 1 s."""
    sim.set_fault_plan(
        FaultPlan(
            latency_min=0.05,
            latency_max=0.05,
            scripted=[ScriptedFault(kind="rate_limit", retry_after=1, latency=0.0)],
        )
    )
    config = PoolConfig(max_concurrency=2, retry=FAST_RETRY)
    async with (
        ConnectionManager(config, client_factory=factory_for(sim)) as m,
        anyio.create_task_group() as tg,
    ):
        for i in range(6):
            tg.start_soon(ask, m, f"q{i}")
    records = sim.requests
    limited = next(r for r in records if r.outcome == "rate_limit")
    offsets = [r.received_at - limited.received_at for r in records if r is not limited]
    # The one request sent together with the 429'd one arrives within a few ms of it (0.1 s
    # margin); every request sent after the 429 came back waited out the 1 s cooldown (0.05 s
    # margin for clock reads across threads).
    assert [t for t in offsets if 0.1 < t < 0.95] == []
    assert sum(t >= 0.95 for t in offsets) >= 5
    assert sum(r.outcome == "ok" for r in records) == 6


async def test_work_moves_to_the_healthy_upstream() -> None:
    """With two upstreams, a 429 (retry-after: 5) on A sends the retry and the rest to B."""
    with (
        SimulatedProvider(
            FaultPlan(scripted=[ScriptedFault(kind="rate_limit", retry_after=5)]), name="A"
        ) as a,
        SimulatedProvider(name="B") as b,
    ):
        config = PoolConfig(pool_size=2, max_concurrency=1, retry=FAST_RETRY)
        started = time.monotonic()
        async with ConnectionManager(config, client_factory=factory_for(a, b)) as m:
            for i in range(4):
                await ask(m, f"q{i}")
        elapsed = time.monotonic() - started
        assert [r.outcome for r in a.requests] == ["rate_limit"]
        assert b.count() == 4
    assert elapsed < 4.0  # nobody waited out A's 5 s cooldown (4 s: margin for a slow box)


async def test_queue_full_sends_nothing(sim: SimulatedProvider) -> None:
    """Work refused at admission never reaches the server."""
    sim.set_fault_plan(FaultPlan(latency_min=0.3, latency_max=0.3))
    config = PoolConfig(max_concurrency=1, max_queue_size=1, retry=FAST_RETRY)
    results: list[str] = []

    async def submit(name: str, m: ConnectionManager) -> None:
        try:
            await ask(m, name)
            results.append("ok")
        except Exception as exc:
            results.append(type(exc).__name__)

    async with (
        ConnectionManager(config, client_factory=factory_for(sim)) as m,
        anyio.create_task_group() as tg,
    ):
        for i in range(3):
            tg.start_soon(submit, f"q{i}", m)
            await anyio.sleep(0.05)
    assert sorted(results) == ["QueueFullError", "ok", "ok"]
    assert sim.count() == 2


async def test_shutdown_closes_a_stream_still_being_read(sim: SimulatedProvider) -> None:
    """A stream still open when the grace period ends is closed; its reader gets
    ManagerClosedError (not a bare connection error) and the slot is given back."""
    sim.set_fault_plan(FaultPlan(stream_chunk_delay=0.5))
    config = PoolConfig(shutdown_grace=0.3, retry=FAST_RETRY)
    seen: list[str] = []
    async with (
        anyio.create_task_group() as tg,
        ConnectionManager(config, client_factory=factory_for(sim)) as m,  # closes first
    ):
        stream = await m.responses.create(model="sim-1", input="a long answer", stream=True)

        async def read() -> None:
            try:
                async for event in stream:
                    seen.append(event.type)  # noqa: PERF401 - kept when iteration raises
            except ManagerClosedError:
                seen.append("closed")

        tg.start_soon(read)
        await anyio.sleep(0.1)
    assert seen[-1] == "closed"
    assert 0 < len(seen) < 5
    stats = m.stats()
    assert (stats.active_connections, stats.failed_requests, stats.completed_requests) == (0, 1, 0)
