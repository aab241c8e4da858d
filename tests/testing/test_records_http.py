"""What the simulated provider records about each answer: when it finished and the tokens
its usage counted (``RecordedRequest.finished_at`` and ``usage_tokens``), over loopback."""

from __future__ import annotations

from collections.abc import AsyncIterable

import anyio
import openai
import pytest

from llmpool.testing import FaultPlan, ScriptedFault, SimulatedProvider, window_peaks
from tests.integration.fixtures import simulator_fixtures

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

shared_sim, sim = simulator_fixtures("records")
LATENCY = 0.05  # seconds of service time; finished_at must come after it


def client(sim: SimulatedProvider) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=sim.base_url, api_key="test", max_retries=0)


async def ask(c: openai.AsyncOpenAI) -> None:
    await c.responses.create(model="m", input="hi")


async def read(stream: AsyncIterable[object]) -> None:
    async for _ in stream:
        pass


async def test_an_answer_records_its_end_and_usage(sim: SimulatedProvider) -> None:
    """finished_at comes after the service time; usage_tokens is the answer's total_tokens."""
    sim.set_fault_plan(FaultPlan(latency_min=LATENCY, latency_max=LATENCY))
    async with client(sim) as c:
        response = await c.responses.create(model="m", input="tok tok tok", max_output_tokens=9)
    (record,) = sim.requests
    assert record.finished_at is not None
    assert record.finished_at - record.received_at >= LATENCY
    assert response.usage is not None
    assert record.usage_tokens == response.usage.total_tokens == 3 + 6  # 3 words, 6 back


# The openai SDK stops reading a chat stream at ``data: [DONE]`` without closing its inner
# async generators; on trio their garbage collection warns (an SDK issue, not the simulator's).
@pytest.mark.filterwarnings("ignore:Async generator .* was garbage collected:ResourceWarning")
async def test_a_stream_ends_after_its_last_event(sim: SimulatedProvider) -> None:
    """A streamed answer finishes once its last event is sent, its pauses included; a chat
    stream without include_usage still records the tokens the provider counted."""
    delay = 0.01
    sim.set_fault_plan(FaultPlan(stream_chunk_delay=delay))
    async with client(sim) as c:
        stream = await c.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "a b c"}], stream=True
        )
        chunks = [chunk async for chunk in stream]
    (record,) = sim.requests
    assert record.finished_at is not None
    assert record.finished_at - record.received_at >= delay * (len(chunks) - 1)
    assert record.usage_tokens == 3 + 6  # "a b c", then "Simulated reply to: a b c"


@pytest.mark.parametrize(
    "fault",
    [ScriptedFault(kind="status", status=503), ScriptedFault(kind="drop")],
    ids=["error", "drop"],
)
async def test_no_usage_without_a_complete_answer(
    sim: SimulatedProvider, fault: ScriptedFault
) -> None:
    """An error or a dropped connection is finished too, with no tokens counted."""
    sim.set_fault_plan(FaultPlan(scripted=[fault]))
    async with client(sim) as c:
        with pytest.raises(openai.APIError):
            await c.responses.create(model="m", input="hi")
    (record,) = sim.requests
    assert record.finished_at is not None
    assert record.usage_tokens is None


async def test_a_cut_stream_counts_no_tokens(sim: SimulatedProvider) -> None:
    sim.set_fault_plan(FaultPlan(scripted=[ScriptedFault(kind="stream_disconnect")]))
    async with client(sim) as c:
        stream = await c.responses.create(model="m", input="hi", stream=True)
        with pytest.raises(openai.APIError):
            await read(stream)
    (record,) = sim.requests
    assert (record.outcome, record.usage_tokens) == ("stream_disconnect", None)
    assert record.finished_at is not None


async def test_an_answer_in_progress_is_not_finished(sim: SimulatedProvider) -> None:
    """While the provider is still answering, the record is there with finished_at None;
    records cleared meanwhile stay cleared when it ends."""
    sim.set_fault_plan(FaultPlan(scripted=[ScriptedFault(kind="ok", latency=0.3)]))
    async with client(sim) as c, anyio.create_task_group() as tg:
        tg.start_soon(ask, c)
        with anyio.fail_after(5):
            while sim.count() == 0:  # noqa: ASYNC110  (the provider runs in its own thread)
                await anyio.sleep(0.005)
        (record,) = sim.requests
        assert record.finished_at is None
        assert window_peaks(sim.requests).concurrency == 1
        sim.clear_requests()
    assert sim.requests == []


async def test_concurrent_answers_overlap_at_the_provider(sim: SimulatedProvider) -> None:
    """Four requests answered at once are four in flight, by their recorded intervals."""
    sim.set_fault_plan(FaultPlan(latency_min=0.2, latency_max=0.2))
    async with client(sim) as c, anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(ask, c)
    peaks = window_peaks(sim.requests)
    assert (peaks.requests, peaks.concurrency) == (4, 4)
    assert peaks.tokens == sum(r.usage_tokens or 0 for r in sim.requests) > 0
