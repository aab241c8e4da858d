"""manager.lease(): one slot and one client held for a long-lived operation, queued like run()."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import openai
import pytest
import respx

from llmpool import (
    ConnectionManager,
    ManagerClosedError,
    PoolConfig,
    Priority,
    QueueTimeoutError,
    RateLimitPolicy,
)
from llmpool.instrumentation import Instrument, RequestFinished

from .helpers import client_factory, counts

pytestmark = pytest.mark.anyio

BASE = "http://respx.test/v1"
COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "m-2025",
    "choices": [
        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
}


class Finished(Instrument):
    def __init__(self) -> None:
        self.events: list[RequestFinished] = []

    def on_request_finished(self, event: RequestFinished) -> None:
        self.events.append(event)


def manager(**config: Any) -> ConnectionManager:
    return ConnectionManager(PoolConfig(**config), client_factory=client_factory())


async def test_a_lease_holds_a_slot_until_the_block_exits() -> None:
    """While a lease is held its slot is in use; a run() queues behind it and runs after."""
    async with manager(max_concurrency=1) as m:
        order: list[str] = []

        async def call(client: openai.AsyncOpenAI) -> None:
            order.append("run")

        async with anyio.create_task_group() as tg, m.lease(session_id="ws-1") as lease:
            assert m.stats().active_connections == 1
            assert isinstance(lease.client, openai.AsyncOpenAI)
            tg.start_soon(m.run, call)
            await anyio.wait_all_tasks_blocked()
            assert m.stats().queued_requests == 1
            assert order == []
            order.append("lease released")
        assert order == ["lease released", "run"]
        assert m.stats().active_connections == 0
        assert counts(m)[:2] == (2, 0)


async def test_leases_wait_in_priority_order() -> None:
    """A queued HIGH lease is granted before a LOW run() that queued earlier."""
    async with manager(max_concurrency=1) as m:
        granted: list[str] = []

        async def low(client: openai.AsyncOpenAI) -> None:
            granted.append("low run")

        async def high() -> None:
            async with m.lease(priority=Priority.HIGH):
                granted.append("high lease")

        async with anyio.create_task_group() as tg, m.lease():
            tg.start_soon(lambda: m.run(low, priority="low"))
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(high)
            await anyio.wait_all_tasks_blocked()
            assert m.stats().queue_depth == {"high": 1, "normal": 0, "low": 1}
        assert granted == ["high lease", "low run"]


async def test_a_lease_raises_queue_timeout_when_no_slot_frees() -> None:
    """queue_timeout applies to a lease's wait: QueueTimeoutError, the slot never taken."""
    async with manager(max_concurrency=1, queue_timeout=0.05) as m, m.lease():
        with pytest.raises(QueueTimeoutError):
            async with m.lease():
                pytest.fail("granted while the only slot was held")
        assert m.stats().active_connections == 1
    assert m.stats().total_timeouts == 1


async def test_cancelling_a_queued_lease_frees_its_place() -> None:
    """A lease cancelled while queued leaves the queue at once and counts as cancelled."""
    async with manager(max_concurrency=1) as m, m.lease():
        async with anyio.create_task_group() as tg:

            async def wait_for_lease() -> None:
                async with m.lease():
                    pytest.fail("granted while the only slot was held")

            tg.start_soon(wait_for_lease)
            await anyio.wait_all_tasks_blocked()
            assert m.stats().queued_requests == 1
            tg.cancel_scope.cancel()
        assert m.stats().queued_requests == 0
        assert m.stats().cancelled_requests == 1


async def test_the_body_error_propagates_unchanged_and_counts_as_failed() -> None:
    """What the block raises leaves it unchanged; the lease is one failed request."""
    finished = Finished()
    async with ConnectionManager(
        PoolConfig(), client_factory=client_factory(), instruments=[finished]
    ) as m:
        with pytest.raises(KeyError, match="boom"):
            async with m.with_options(session_id="s1").lease(model="m"):
                raise KeyError("boom")
        assert m.stats().active_connections == 0
        assert counts(m)[:2] == (0, 1)
    (event,) = finished.events
    assert (event.operation, event.outcome, event.error) == ("lease", "failed", "KeyError")
    assert (event.session_id, event.model, event.attempts) == ("s1", "m", 1)


async def test_shutdown_ends_a_held_lease_with_manager_closed() -> None:
    """After the grace period, shutdown cancels the lease's block: ManagerClosedError."""
    m = manager(shutdown_grace=0.0)
    async with m:
        entered = anyio.Event()

        async def hold() -> None:
            with pytest.raises(ManagerClosedError):  # noqa: PT012  (raised by the block's exit)
                async with m.lease():
                    entered.set()
                    await anyio.sleep_forever()

        async with anyio.create_task_group() as tg:
            tg.start_soon(hold)
            await entered.wait()
            await m.aclose()
    stats = m.stats()
    assert (stats.active_connections, stats.failed_requests) == (0, 1)


async def test_a_lease_is_refused_when_the_manager_is_closed() -> None:
    """Leasing from a closed manager raises ManagerClosedError at once."""
    m = manager()
    async with m:
        pass
    with pytest.raises(ManagerClosedError):
        async with m.lease():
            pytest.fail("granted by a closed manager")


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


async def test_the_lease_client_sends_the_session_and_usage_settles_the_budget(
    mock: respx.MockRouter,
) -> None:
    """lease.client carries x-session-id; learn() and record_usage() feed the model's budget:
    the 1,000-token estimate is settled to the 5 tokens reported."""
    route = mock.post("/chat/completions").mock(
        return_value=httpx.Response(
            200,
            json=COMPLETION,
            headers={"x-ratelimit-limit-requests": "100", "x-ratelimit-remaining-requests": "7"},
        )
    )

    def factory(index: int) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(api_key="k", base_url=BASE, http_client=httpx.AsyncClient())

    config = PoolConfig(rate_limit=RateLimitPolicy(tokens_per_minute=10_000))
    finished = Finished()
    async with ConnectionManager(config, client_factory=factory, instruments=[finished]) as m:
        async with m.lease(session_id="ws-7", model="m", estimated_tokens=1000) as lease:
            await lease.client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}]
            )
            (row,) = [r for r in m.stats().rate_limits if r.model == "m"]
            # The bucket holds one second of the limit (10,000 / 60): the estimate left a debt.
            assert row.tokens_available is not None
            assert row.tokens_available < 0
            lease.record_usage(5, input_tokens=3, output_tokens=2)
            with pytest.raises(ValueError, match="total_tokens"):
                lease.record_usage(-1)
        (row,) = [r for r in m.stats().rate_limits if r.model == "m"]
        assert row.tokens_available is not None
        assert row.tokens_available > 10_000 / 60 - 10  # refunded: only 5 tokens were used
        assert row.requests_per_minute is None
        async with m.lease(model="m") as lease:
            raw = await lease.client.chat.completions.with_raw_response.create(
                model="m", messages=[{"role": "user", "content": "hi"}]
            )
            lease.learn(raw.headers)
        (row,) = [r for r in m.stats().rate_limits if r.model == "m"]
        assert row.requests_per_minute == 100
    assert route.calls[0].request.headers["x-session-id"] == "ws-7"
    assert "x-session-id" not in route.calls[1].request.headers
    event = finished.events[0]
    assert (event.total_tokens, event.input_tokens, event.output_tokens) == (5, 3, 2)


async def test_an_error_in_the_managers_block_propagates_unchanged() -> None:
    """The manager's task group never wraps the block's own exception in a group, and an
    outer cancel scope still cancels the block (and is swallowed by its own scope)."""
    with pytest.raises(KeyError, match="mine"):
        async with manager():
            raise KeyError("mine")
    with anyio.move_on_after(0.01) as outer:
        async with manager() as m:
            await anyio.sleep_forever()
    assert outer.cancelled_caught
    assert m.stats().active_connections == 0
