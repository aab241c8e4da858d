"""Shared budgets on a real Redis: several managers (instances) in one process, one quota.

What reaches the simulated provider is what is counted: arrival times for RPM (every pair of
arrivals is checked against the bucket's bound, C + r * (T + margin)), and the in-flight count
of the calls themselves for the global concurrency cap.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import anyio
import openai
import pytest

from llmpool import (
    ConnectionManager,
    PoolConfig,
    QueueTimeoutError,
    RateLimitPolicy,
)
from llmpool.redis import (
    RedisBudgets,
    RedisHealth,
    RedisState,
    SharedBudgetPolicy,
    window_allowance,
)
from llmpool.redis import _budgets as budgets_module
from llmpool.redis._shared_limits import SharedLimits, _Ask
from llmpool.testing import FaultPlan, ScriptedFault, SimulatedProvider
from tests.server.helpers import eventually

from .server import RedisServer

# coredis leaves the memory streams of a connection that failed to connect unclosed (one per
# failed attempt while Redis is away); the garbage collector reports them during whichever
# test runs next. Its warnings, not these tests' subject.
pytestmark = [
    pytest.mark.anyio,
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

MODEL = "gpt-4o-mini"


@pytest.fixture(autouse=True)
def _collect_here() -> Any:
    """Collect coredis's unclosed streams before the test ends, under this module's filter,
    rather than during some later test."""
    yield
    gc.collect()


@pytest.fixture(scope="module")
def sim() -> Any:
    with SimulatedProvider(FaultPlan(latency_min=0.02, latency_max=0.02)) as provider:
        yield provider


def factory(sim: SimulatedProvider) -> Callable[[int], openai.AsyncOpenAI]:
    def make(index: int = 0) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=sim.base_url, api_key="k", max_retries=0)

    return make


@contextlib.asynccontextmanager
async def instances(
    url: str,
    prefix: str,
    sim: SimulatedProvider,
    count: int,
    config: PoolConfig,
    policy: SharedBudgetPolicy,
) -> AsyncIterator[list[tuple[ConnectionManager, RedisBudgets]]]:
    """``count`` managers, each on its own RedisState (its own client), sharing ``prefix``."""
    async with contextlib.AsyncExitStack() as stack:
        opened: list[tuple[ConnectionManager, RedisBudgets]] = []
        for _ in range(count):
            state = await stack.enter_async_context(RedisState(url, prefix=prefix, budget=policy))
            stores = state.stores()
            manager = await stack.enter_async_context(
                ConnectionManager(config, client_factory=factory(sim), state=stores)
            )
            assert isinstance(stores.budgets, RedisBudgets)
            opened.append((manager, stores.budgets))
        yield opened


async def eventually_async(check: Callable[[], Awaitable[object]], within: float) -> None:
    """Wait until ``await check()`` is truthy (test-side polling of Redis)."""
    with anyio.fail_after(within):
        while not await check():  # noqa: ASYNC110  # polls Redis: no event to wait on
            await anyio.sleep(0.005)


def rpm_bound(rpm: int, burst: float, margin: float) -> Callable[[float], float]:
    """Most requests a window-safe bucket admits in T seconds."""
    return lambda seconds: window_allowance(rpm, seconds, burst=burst, margin=margin)


def worst_excess(arrivals: Sequence[float], bound: Callable[[float], float]) -> float:
    """max over every pair i <= j of (j - i + 1) - bound(t_j - t_i): > 0 is an overshoot."""
    times = sorted(arrivals)
    worst = -math.inf
    for i, start in enumerate(times):
        for j in range(i, len(times)):
            worst = max(worst, (j - i + 1) - bound(times[j] - start))
    return worst


async def callers(
    managers: Sequence[ConnectionManager],
    each: int,
    seconds: float,
    call: Callable[[ConnectionManager], Awaitable[None]],
) -> tuple[int, list[BaseException]]:
    """``each`` callers per manager calling ``call`` in a loop for ``seconds``."""
    done = 0
    errors: list[BaseException] = []
    deadline = anyio.current_time() + seconds

    async def caller(manager: ConnectionManager) -> None:
        nonlocal done
        while anyio.current_time() < deadline:
            try:
                await call(manager)
            except Exception as error:  # counted: every call ends in a result or an error
                errors.append(error)
            else:
                done += 1

    async with anyio.create_task_group() as group:
        for manager in managers:
            for _ in range(each):
                group.start_soon(caller, manager)
    return done, errors


async def respond(manager: ConnectionManager) -> None:
    await manager.responses.create(model=MODEL, input="hi")


async def test_two_instances_share_one_rpm_budget(
    redis_url: str, prefix: str, sim: SimulatedProvider
) -> None:
    """Two instances offering far more than 600 RPM: every interval of arrivals at the
    provider holds no more than the one shared bucket allows (C + r * (T + margin)), and
    the two together get at least 90 % of it over the run."""
    sim.clear_requests()
    policy = SharedBudgetPolicy()
    config = PoolConfig(max_concurrency=16, rate_limit=RateLimitPolicy(requests_per_minute=600))
    async with instances(redis_url, prefix, sim, 2, config, policy) as opened:
        started = time.monotonic()
        done, errors = await callers([m for m, _ in opened], 8, 2.0, respond)
    arrivals = [r.received_at for r in sim.requests if r.received_at >= started]
    assert errors == []
    assert len(arrivals) == done  # exactly what completed reached the provider
    bound = rpm_bound(600, 1.0, policy.window_margin)
    assert worst_excess(arrivals, bound) <= 0.0
    assert done >= 0.9 * (bound(2.0) - 1)


async def test_a_global_concurrency_cap_holds_across_instances(
    redis_url: str, prefix: str, sim: SimulatedProvider
) -> None:
    """A cap of 3 with 2 instances x 8 callers: 3 calls in flight at the peak, never 4, and
    every call completes."""
    calls = InFlight()

    async def run(manager: ConnectionManager) -> None:
        await manager.run(calls.call, model=MODEL)

    config = PoolConfig(max_concurrency=8)
    async with instances(
        redis_url, prefix, sim, 2, config, SharedBudgetPolicy(concurrency=3)
    ) as opened:
        done, errors = await callers([m for m, _ in opened], 8, 1.0, run)
        await no_lease_left(*opened[0])
    assert errors == []
    assert done > 20
    assert calls.peak == 3  # and every lease was released (above)


class InFlight:
    """A call through the manager's client that counts the calls in flight, and their peak."""

    def __init__(self) -> None:
        self.now = self.peak = 0

    async def call(self, client: openai.AsyncOpenAI) -> None:
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            await client.responses.create(model=MODEL, input="hi")
        finally:
            self.now -= 1


async def no_lease_left(manager: ConnectionManager, budgets: RedisBudgets) -> None:
    """Wait (3 s at most) until the upstream's lease set on Redis is empty."""
    key = budgets.keys(_label(manager)).leases
    with anyio.fail_after(3):
        while await budgets._client.zcard(key) != 0:  # noqa: ASYNC110  # Redis's count
            await anyio.sleep(0.01)


def _label(manager: ConnectionManager) -> str:
    engine = manager._engine
    assert engine.pool is not None
    return engine.pool.upstreams[0].label


async def test_tokens_are_settled_with_the_usage_reported(
    redis_url: str, prefix: str, sim: SimulatedProvider
) -> None:
    """After one request the shared token bucket holds its capacity less the usage reported
    (the estimate was reserved, the difference given back), give or take the refill."""
    tpm = 60_000  # capacity 1,000 tokens, refilled at ~980/s
    config = PoolConfig(rate_limit=RateLimitPolicy(tokens_per_minute=tpm))
    async with instances(redis_url, prefix, sim, 1, config, SharedBudgetPolicy()) as opened:
        manager, budgets = opened[0]
        response = await manager.responses.create(
            model=MODEL, input="hello there", max_output_tokens=300
        )
        assert response.usage is not None
        used = response.usage.total_tokens
        await anyio.sleep(0.05)  # the settlement is pipelined after the answer
        key = budgets.keys(_label(manager)).budget(MODEL)
        level = float(await budgets._client.hget(key, "tl") or "nan")
    assert used < 300
    assert 1_000 - used <= level <= 1_000 - used + 0.2 * 980  # at most 0.2 s of refill


async def test_a_crashed_instances_lease_comes_back_after_its_ttl(
    redis_url: str, prefix: str, sim: SimulatedProvider
) -> None:
    """A lease nobody renews (its instance crashed) holds its slot until its ttl, then the
    waiting request goes: woken by the timer set to the first lease's expiry, not by a poll."""
    config = PoolConfig()
    policy = SharedBudgetPolicy(concurrency=1, lease_ttl=30.0)
    async with instances(redis_url, prefix, sim, 1, config, policy) as opened:
        manager, budgets = opened[0]
        leases = budgets.keys(_label(manager)).leases
        now_ms = await budgets._client.eval(  # Redis's clock in ms, as the scripts read it
            "local t = redis.call('TIME') return t[1] * 1000 + math.floor(t[2] / 1000)"
        )
        await budgets._client.zadd(leases, {"ghost:1": int(str(now_ms)) + 400})
        started = time.monotonic()
        await manager.responses.create(model=MODEL, input="hi")
        waited = time.monotonic() - started
    assert 0.35 <= waited <= 1.5


def record_batches(budgets: RedisBudgets) -> list[tuple[float, list[str]]]:
    """Every round trip of the worker from now on: (when it was sent, what it carried)."""
    batches: list[tuple[float, list[str]]] = []
    execute = budgets._wire.execute
    names = {budgets._admit.sha: "admit", budgets._settle.sha: "settle"}

    async def recording(commands: Sequence[Sequence[str]]) -> list[Any]:
        batches.append(
            (
                anyio.current_time(),
                [names.get(c[1], c[0]) if c[0] == "EVALSHA" else c[0] for c in commands],
            )
        )
        return await execute(commands)

    budgets._wire.execute = recording  # type: ignore[method-assign]
    return batches


async def test_a_settlement_rides_with_the_next_question_and_never_waits_for_long(
    redis_url: str, prefix: str, sim: SimulatedProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the linger made 1 s (so no stall can split a pair): ten sequential calls make
    eleven round trips, the first a question alone, then each call's settlement with the
    next call's question, settlement first, sent as soon as the question comes (not at the
    linger's end); the last settlement, with no question after it, goes alone after the
    linger."""
    monkeypatch.setattr(budgets_module, "SETTLE_LINGER", 1.0)
    async with instances(
        redis_url, prefix, sim, 1, PoolConfig(), SharedBudgetPolicy(concurrency=4)
    ) as opened:
        manager, budgets = opened[0]
        await respond(manager)  # the view exists, the connection is made
        await eventually(lambda: not budgets._held.get(_label(manager)), within=1.0)
        await anyio.sleep(1.2)  # that call's settlement has gone
        batches = record_batches(budgets)
        took: list[float] = []
        for _ in range(10):
            began = anyio.current_time()
            await respond(manager)
            took.append(anyio.current_time() - began)
        ended = anyio.current_time()
        await eventually(lambda: len(batches) == 11, within=3.0)
    kinds = [kinds for _, kinds in batches]
    assert kinds == [["admit"]] + [["settle", "admit"]] * 9 + [["settle"]]
    assert max(took) < 0.5  # no question waited for the 1 s linger
    assert 0.9 <= batches[-1][0] - ended < 2.0  # the last settlement: after the linger


async def test_a_release_wakes_a_waiter_on_another_instance_at_once(
    redis_url: str, prefix: str, sim: SimulatedProvider
) -> None:
    """Cap 1: instance B waits while A holds a lease; A's release reaches B through pub/sub
    and B's request is admitted within 250 ms (its lease timer is 30 s away)."""
    async with instances(
        redis_url, prefix, sim, 2, PoolConfig(), SharedBudgetPolicy(concurrency=1)
    ) as opened:
        (first, _), (second, second_budgets) = opened
        await eventually(lambda: second_budgets.subscribed, within=2.0)
        released_at = 0.0
        admitted_at = 0.0

        async def waiter() -> None:
            nonlocal admitted_at

            async def call(client: openai.AsyncOpenAI) -> None:
                nonlocal admitted_at
                admitted_at = time.monotonic()
                await client.responses.create(model=MODEL, input="hi")

            await second.run(call, model=MODEL)

        async with anyio.create_task_group() as group:
            held = first.lease(model=MODEL)
            await held.__aenter__()
            group.start_soon(waiter)
            await anyio.sleep(0.3)
            assert admitted_at == 0.0  # held by A's lease
            released_at = time.monotonic()
            await held.__aexit__(None, None, None)
    assert admitted_at > released_at
    assert admitted_at - released_at < 0.25


async def test_a_release_that_overtakes_the_answer_is_not_lost(redis_url: str, prefix: str) -> None:
    """The interleavings the subscription and the release epoch guard, step by step: a view
    asks only once the listener hears its upstream's channel; a head asks, a release message
    arrives before the answer "every slot is leased" (given before that release), and the
    view asks again at once instead of waiting for the first lease's expiry."""
    async with RedisState(redis_url, prefix=prefix) as state:
        budgets = RedisBudgets(
            state.client, prefix=prefix, policy=SharedBudgetPolicy(concurrency=1), url=redis_url
        )
        woken: list[int] = []
        from llmpool._state import ClockSeam

        budgets.attach(ClockSeam(anyio.current_time), lambda: woken.append(1))
        view = budgets.limits("up", None, RateLimitPolicy())
        assert isinstance(view, SharedLimits)
        inbox = budgets._asks_in
        assert inbox is not None
        now = anyio.current_time()

        # Not subscribed to the upstream's channel yet: the view does not ask (a release
        # published before the subscription would be lost); the subscription wakes it.
        assert view.wait_for(0, now) == math.inf
        with pytest.raises(anyio.WouldBlock):
            inbox.receive_nowait()
        await budgets._heard_from({budgets.keys("up").channel: "up"})
        assert woken == [1]

        assert view.wait_for(0, now) == math.inf
        first = inbox.receive_nowait()
        assert isinstance(first, _Ask)
        budgets._released("up")  # the message overtakes the answer
        budgets._answer([first], [[-1, 30_000]])
        assert (view.asking, view.blocked) == (False, False)
        assert woken == [1, 1]
        assert view.wait_for(0, now) == math.inf  # asked again
        second = inbox.receive_nowait()
        assert isinstance(second, _Ask)

        # Without a release since the question, the same answer blocks the view until the
        # timer (set to the first lease's expiry) or a release.
        budgets._answer([second], [[-1, 30_000]])
        assert (view.asking, view.blocked) == (False, True)
        assert view.wait_for(0, now) == math.inf
        with pytest.raises(anyio.WouldBlock):
            inbox.receive_nowait()  # blocked: nobody asks
        budgets._released("up")
        assert view.blocked is False


async def test_an_upstream_that_appears_later_is_heard_before_it_asks(
    redis_url: str, prefix: str
) -> None:
    """The listener subscribed with no upstream known; a view made afterwards asks only once
    its channel is subscribed too, and then a release on that channel unblocks it."""
    async with RedisState(redis_url, prefix=prefix) as state:
        budgets = RedisBudgets(
            state.client, prefix=prefix, policy=SharedBudgetPolicy(concurrency=1), url=redis_url
        )
        woken: list[int] = []
        from llmpool._state import ClockSeam

        budgets.attach(ClockSeam(anyio.current_time), lambda: woken.append(1))
        async with anyio.create_task_group() as group:
            group.start_soon(budgets.run)
            await eventually(lambda: budgets.subscribed, within=2.0)
            view = budgets.limits("late", None, RateLimitPolicy())
            assert isinstance(view, SharedLimits)
            assert not budgets.hears("late")
            await eventually(lambda: budgets.hears("late"), within=2.0)
            assert woken  # the subscription woke the scheduler
            view.blocked = True  # as after an answer "every slot is leased"
            await state.client.publish(budgets.keys("late").channel, "release")
            await eventually(lambda: not view.blocked, within=2.0)
            group.cancel_scope.cancel()


async def test_without_redis_each_instance_takes_its_share_then_returns(
    own_redis: RedisServer, prefix: str, sim: SimulatedProvider, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis killed under load: within 1 s both instances are alone (a warning says so), the
    arrivals stay within one bucket's bound throughout, nothing is lost; Redis back: both
    share again."""
    sim.clear_requests()
    policy = SharedBudgetPolicy(heartbeat_interval=0.1, lease_ttl=1.0, probe_interval=0.1)
    config = PoolConfig(max_concurrency=8, rate_limit=RateLimitPolicy(requests_per_minute=1200))
    caplog.set_level(logging.WARNING, logger="llmpool.redis")
    async with instances(own_redis.url, prefix, sim, 2, config, policy) as opened:
        managers = [m for m, _ in opened]
        stores = [b for _, b in opened]
        await anyio.sleep(0.3)  # heartbeats: each counts 2 live instances
        assert [b.live for b in stores] == [2, 2]
        started = time.monotonic()
        killed_at = returned_at = 0.0

        async def chaos() -> None:
            nonlocal killed_at, returned_at
            await anyio.sleep(0.8)
            own_redis.kill()  # SIGKILL: a crash
            killed_at = time.monotonic()
            await eventually(lambda: all(b.alone for b in stores), within=1.0)
            await anyio.sleep(1.0)
            await anyio.to_thread.run_sync(own_redis.restart)  # the same port, empty
            await eventually(lambda: not any(b.alone for b in stores), within=2.0)
            returned_at = time.monotonic()

        async with anyio.create_task_group() as group:
            group.start_soon(chaos)
            done, errors = await callers(managers, 6, 3.5, respond)
    arrivals = [r.received_at for r in sim.requests if r.received_at >= started]
    assert errors == []
    assert len(arrivals) == done
    assert killed_at > 0
    assert returned_at > killed_at
    assert all(b.switches == 1 for b in stores)
    bound = rpm_bound(1200, 1.0, policy.window_margin)
    assert worst_excess(arrivals, bound) <= 0.0
    alone = [t for t in arrivals if killed_at + 0.05 < t < returned_at - 0.05]
    assert len(alone) > 5  # each went on with its share
    assert any("Redis unreachable" in r.getMessage() for r in caplog.records)
    assert any("shared again" in r.getMessage() for r in caplog.records)


async def test_an_instance_that_joins_is_counted_before_the_next_heartbeat(
    own_redis: RedisServer, prefix: str, sim: SimulatedProvider, caplog: pytest.LogCaptureFixture
) -> None:
    """With heartbeats 20 s apart, the first instance counts the second within 1 s of its
    joining (its join is published), so Redis lost right after leaves each instance half of
    every limit, never the whole: the interleaving that made an instance opened first take a
    full limit alone."""
    policy = SharedBudgetPolicy(heartbeat_interval=20.0, lease_ttl=60.0, probe_interval=0.1)
    config = PoolConfig(rate_limit=RateLimitPolicy(requests_per_minute=600))
    caplog.set_level(logging.WARNING, logger="llmpool.redis")
    async with contextlib.AsyncExitStack() as stack:
        first = await stack.enter_async_context(
            instances(own_redis.url, prefix, sim, 1, config, policy)
        )
        await first[0][0].responses.create(model=MODEL, input="hi")  # its view exists
        await eventually(lambda: first[0][1]._counted, within=2.0)
        assert first[0][1].live == 1
        second = await stack.enter_async_context(
            instances(own_redis.url, prefix, sim, 1, config, policy)
        )
        # within 1 s (eventually fails otherwise): far sooner than the 20 s heartbeat
        await eventually(lambda: first[0][1].live == 2, within=1.0)
        await eventually(lambda: second[0][1]._counted, within=2.0)
        assert second[0][1].live == 2
        own_redis.kill()
        stores = [first[0][1], second[0][1]]
        await eventually(lambda: all(b.alone for b in stores), within=2.0)
        assert [b.share for b in stores] == [2, 2]
        messages = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(messages) == 2
        assert all("each of 2 live instance(s)" in m for m in messages)
        await anyio.to_thread.run_sync(own_redis.restart)
        await eventually(lambda: not any(b.alone for b in stores), within=3.0)


async def test_fail_closed_holds_requests_while_redis_is_away(
    own_redis: RedisServer, prefix: str, sim: SimulatedProvider
) -> None:
    """fail_closed: with Redis gone, a request is held and fails with QueueTimeoutError after
    queue_timeout; nothing reaches the provider."""
    policy = SharedBudgetPolicy(fail_closed=True, heartbeat_interval=0.1, lease_ttl=1.0)
    config = PoolConfig(queue_timeout=0.3, rate_limit=RateLimitPolicy(requests_per_minute=600))
    async with instances(own_redis.url, prefix, sim, 1, config, policy) as opened:
        manager, budgets = opened[0]
        await manager.responses.create(model=MODEL, input="hi")
        own_redis.stop()
        await eventually(lambda: budgets.alone, within=1.0)
        before = sim.count()
        with pytest.raises(QueueTimeoutError):
            await manager.responses.create(model=MODEL, input="hi")
        assert sim.count() == before


@contextlib.asynccontextmanager
async def instance(
    url: str, prefix: str, sim: SimulatedProvider, config: PoolConfig, policy: SharedBudgetPolicy
) -> AsyncIterator[tuple[ConnectionManager, RedisBudgets, RedisHealth]]:
    """One manager on its own RedisState, with its budget and health stores."""
    async with RedisState(url, prefix=prefix, budget=policy) as state:
        stores = state.stores()
        assert isinstance(stores.budgets, RedisBudgets)
        assert isinstance(stores.health, RedisHealth)
        async with ConnectionManager(config, client_factory=factory(sim), state=stores) as manager:
            yield manager, stores.budgets, stores.health


@pytest.mark.parametrize("joins", ["before", "during"])
async def test_a_cooldown_reaches_the_other_instance(
    redis_url: str, prefix: str, sim: SimulatedProvider, joins: str
) -> None:
    """A 429 with Retry-After: 0.5 on instance A: instance B, open before (the message reaches
    it) or opened during the cooldown (it reads the cooldown's key once subscribed), hears of
    it within 1 s, and its request then reaches the provider only once the cooldown is over."""
    sim.clear_requests()
    sim.set_fault_plan(
        FaultPlan(
            latency_min=0.01,
            latency_max=0.01,
            scripted=[ScriptedFault(kind="rate_limit", retry_after=0.5)],
        )
    )
    config, policy = PoolConfig(), SharedBudgetPolicy()

    async def second_hears_then_calls(second: ConnectionManager, health: RedisHealth) -> None:
        await eventually(lambda: health.received == 1, within=1.0)
        await respond(second)

    async def published(first_budgets: RedisBudgets, first: ConnectionManager) -> None:
        cooldown = first_budgets.keys(_label(first)).cooldown
        async with RedisState(redis_url, prefix=prefix) as probe:
            await eventually_async(lambda: probe.client.get(cooldown), within=1.0)

    try:
        async with contextlib.AsyncExitStack() as stack:
            first, first_budgets, _ = await stack.enter_async_context(
                instance(redis_url, prefix, sim, config, policy)
            )
            if joins == "before":
                second, second_budgets, health = await stack.enter_async_context(
                    instance(redis_url, prefix, sim, config, policy)
                )
                await eventually(lambda: second_budgets.subscribed, within=2.0)
            async with anyio.create_task_group() as group:
                group.start_soon(respond, first)  # gets the 429, then retries after 0.5 s
                await eventually(lambda: any(r.outcome == "rate_limit" for r in sim.requests))
                if joins == "before":
                    await second_hears_then_calls(second, health)
                else:
                    await published(first_budgets, first)
                    async with instance(redis_url, prefix, sim, config, policy) as opened:
                        await second_hears_then_calls(opened[0], opened[2])
        records = sim.requests
    finally:
        sim.set_fault_plan(FaultPlan(latency_min=0.02, latency_max=0.02))
    refused = [r for r in records if r.outcome == "rate_limit"]
    assert len(refused) == 1
    later = [r.received_at - refused[0].received_at for r in records if r.outcome == "ok"]
    assert len(later) == 2
    assert min(later) >= 0.45


async def test_the_scripts_run_on_a_redis_cluster(
    redis_cluster_url: str, prefix: str, sim: SimulatedProvider
) -> None:
    """On a cluster node every script's keys are in one slot (no CROSSSLOT)."""
    config = PoolConfig(
        rate_limit=RateLimitPolicy(requests_per_minute=600, tokens_per_minute=60_000)
    )
    async with instances(
        redis_cluster_url, prefix, sim, 1, config, SharedBudgetPolicy(concurrency=2)
    ) as opened:
        manager, budgets = opened[0]
        for _ in range(3):
            await manager.responses.create(model=MODEL, input="hi", max_output_tokens=20)
        assert budgets.switches == 0  # a CROSSSLOT refusal would have sent it alone


async def test_stress_three_instances_with_stalls_and_cancellations(
    redis_url: str, prefix: str, sim: SimulatedProvider
) -> None:
    """Three instances x 8 callers against a cap of 3 and 1,200 RPM, with event-loop stalls
    (the whole loop blocked 5-30 ms at random) and callers cancelling at random: never more
    than 3 in flight, every call ends in a result, a typed error or its cancellation, the
    arrivals stay within the bucket's bound, and no lease is left behind."""
    import random

    rng = random.Random(7)
    sim.clear_requests()
    calls = InFlight()
    started_calls = ended = cancelled = 0

    async def caller(manager: ConnectionManager, until: float) -> None:
        nonlocal started_calls, ended, cancelled
        while anyio.current_time() < until:
            started_calls += 1
            with anyio.move_on_after(rng.uniform(0.01, 0.4)) as scope:
                await manager.run(calls.call, model=MODEL)
                ended += 1
            if scope.cancelled_caught:
                cancelled += 1

    async def stalls(until: float) -> None:
        while anyio.current_time() < until:
            await anyio.sleep(rng.uniform(0.02, 0.08))
            time.sleep(rng.uniform(0.005, 0.03))  # noqa: ASYNC251  # the stall itself

    policy = SharedBudgetPolicy(concurrency=3)
    config = PoolConfig(max_concurrency=8, rate_limit=RateLimitPolicy(requests_per_minute=1200))
    begun = time.monotonic()
    async with instances(redis_url, prefix, sim, 3, config, policy) as opened:
        until = anyio.current_time() + 2.5
        async with anyio.create_task_group() as group:
            group.start_soon(stalls, until)
            for manager, _ in opened:
                for _ in range(8):
                    group.start_soon(caller, manager, until)
        await no_lease_left(*opened[0])
    arrivals = [r.received_at for r in sim.requests if r.received_at >= begun]
    assert calls.peak <= 3
    assert started_calls == ended + cancelled
    assert ended > 10
    assert ended <= len(arrivals) <= ended + cancelled
    assert worst_excess(arrivals, rpm_bound(1200, 1.0, policy.window_margin)) <= 0.0


async def test_alone_a_learned_limit_does_not_raise_the_share(redis_url: str, prefix: str) -> None:
    """Alone on 1 of 2 instances, the share is 300 of 600 RPM; a response saying the key's
    limit is 600 goes to the mirror for the way back, and the share stays 300."""
    async with RedisState(redis_url, prefix=prefix) as state:
        budgets = RedisBudgets(
            state.client, prefix=prefix, policy=SharedBudgetPolicy(), url=redis_url
        )
        from llmpool._state import ClockSeam

        budgets.attach(ClockSeam(anyio.current_time), lambda: None)
        view = budgets.limits("up", None, RateLimitPolicy(requests_per_minute=600))
        assert isinstance(view, SharedLimits)
        budgets.live = 2
        budgets._counted = True
        budgets._lost(OSError("gone"))
        assert view.requests is not None
        assert view.requests.limit == 300
        headers = {"x-ratelimit-limit-requests": "500", "x-ratelimit-remaining-requests": "499"}
        assert view.learn(headers, anyio.current_time())
        assert view.requests.limit == 300
        view.come_back()
        assert view.requests is not None
        assert view.requests.limit == 500  # learned, for the shared budget
