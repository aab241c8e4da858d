"""Per-request records and stream stats end to end: the real SDK over loopback HTTP to the
simulated provider. Counts are what reached the server and what ``stats()`` says."""

from __future__ import annotations

from typing import Any

import anyio
import openai
import pytest

from llmpool import (
    ConnectionManager,
    PoolConfig,
    RateLimitPolicy,
    RetryPolicy,
    capture_requests,
    stream_response,
)
from llmpool.testing import FaultPlan, ScriptedFault, SimulatedProvider
from tests.helpers import counts, read_all

from .fixtures import simulator_fixtures

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

FAST_RETRY = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.02, jitter=0.0)


shared_sim, sim = simulator_fixtures("rec", api_key="sk-good")


def manager_for(sim: SimulatedProvider, api_key: str = "sk-good", **config: Any) -> Any:
    def factory(index: int) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=sim.base_url, api_key=api_key, max_retries=0)

    return ConnectionManager(PoolConfig(retry=FAST_RETRY, **config), client_factory=factory)


async def test_disconnects_before_output_count_one_failed_stream(sim: SimulatedProvider) -> None:
    """Every stream cut before any text (max_attempts=3): three requests reach the server,
    stats() counts one failed stream and two retries."""
    sim.set_fault_plan(FaultPlan(stream_disconnect_rate=1.0, stream_disconnect_after=1))
    async with manager_for(sim) as m:
        with capture_requests() as records, pytest.raises(openai.APIConnectionError) as info:
            await read_all(stream_response(m, model="m", input="x"))
        assert sim.count() == 3
        assert counts(m) == (0, 1, 0, 2)
    [record] = records
    assert (record.outcome, len(record.attempts)) == ("failed", 3)
    assert info.value.llmpool_attempts == 3  # type: ignore[attr-defined]
    assert info.value.llmpool_request_id == record.request_id  # type: ignore[attr-defined]
    assert len(info.value.__notes__) == 1


async def test_disconnect_then_success_counts_one_completed_stream(
    sim: SimulatedProvider,
) -> None:
    """One cut before output, then the answer: one completed stream with one retry."""
    sim.set_fault_plan(
        FaultPlan(scripted=[ScriptedFault(kind="stream_disconnect", after_events=2)])
    )
    async with manager_for(sim) as m:
        events = await read_all(stream_response(m, model="m", input="x"))
        assert events[-1].type == "complete"
        assert counts(m) == (1, 0, 0, 1)


async def test_facade_call_records_tokens_and_attempts(sim: SimulatedProvider) -> None:
    """responses.create with a 503 first, under a token limit: the record has both attempts,
    the tokens estimated at admission and the tokens the answer used."""
    sim.set_fault_plan(FaultPlan(scripted=[ScriptedFault(kind="status", status=503)]))
    limits = RateLimitPolicy(tokens_per_minute=100_000)
    async with manager_for(sim, rate_limit=limits) as m:
        view = m.with_options(session_id="s1")
        with capture_requests() as records:
            reply = await view.responses.create(model="m", input="one two", max_output_tokens=50)
    [record] = records
    assert [(a.outcome, a.status) for a in record.attempts] == [("error", 503), ("ok", None)]
    assert record.session_id == "s1"
    assert record.estimated_tokens > 50  # the prompt's estimate plus max_output_tokens
    assert reply.usage is not None
    assert record.used_tokens == reply.usage.total_tokens
    assert all(sim.base_url.rsplit("/", 1)[0] in a.upstream for a in record.attempts)


async def test_pooled_stream_record_runs_to_the_end(sim: SimulatedProvider) -> None:
    """A façade stream's record: completed, one attempt lasting until the stream ended,
    the usage of response.completed."""
    sim.set_fault_plan(FaultPlan(stream_chunk_delay=0.01))
    async with manager_for(sim) as m:
        with capture_requests() as records:
            stream = await m.responses.create(model="m", input="a b c", stream=True)
            assert stream.record is None
            async with stream:
                async for _event in stream:
                    pass
    [record] = records
    assert record is not stream.record  # built once per reader, equal
    assert record == stream.record
    [attempt] = record.attempts
    assert attempt.outcome == "ok"
    assert attempt.duration >= 0.05  # 6+ events 0.01 s apart (margin: the first is sooner)
    assert record.used_tokens is not None


async def test_unauthorized_sdk_error_names_its_request(sim: SimulatedProvider) -> None:
    """A 401 through the façade propagates as the SDK's error with llmpool's request id."""
    async with manager_for(sim, api_key="sk-bad") as m:
        with capture_requests() as records, pytest.raises(openai.AuthenticationError) as info:
            await m.responses.create(model="m", input="x")
    [record] = records
    note = f"llmpool: request {record.request_id} after 1 attempt"
    assert info.value.__notes__ == [note]
    assert record.attempts[0].status == 401


async def test_cancelled_recovering_stream_counts_once_as_cancelled(
    sim: SimulatedProvider,
) -> None:
    """A recovering stream whose reader is cancelled mid-output: one cancelled request, its
    slot given back, its record cancelled."""
    sim.set_fault_plan(FaultPlan(stream_chunk_delay=0.05))  # ~10 events: about 0.5 s
    async with manager_for(sim) as m:
        stream = stream_response(m, model="m", input="one two three four")
        seen: list[str] = []
        with capture_requests() as records, anyio.move_on_after(0.15):  # a few events in
            async with stream:
                async for event in stream:
                    seen.append(event.type)  # noqa: PERF401 - kept when cancelled
        assert "complete" not in seen
        assert counts(m) == (0, 0, 1, 0)
        assert m.stats().active_connections == 0
    [record] = records
    assert record.outcome == "cancelled"
    assert record is stream.record
