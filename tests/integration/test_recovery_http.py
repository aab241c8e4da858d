"""Recovering streams end to end: the real SDK, two simulated providers with separate response
stores, and two ConnectionManagers. Counts and bodies are what reached each server."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import openai
import pytest

from llmpool import ConnectionManager, PoolConfig, RetryPolicy
from llmpool._conversation import Conversation
from llmpool._errors import StreamInterruptedError
from llmpool._recovery import RecoveryPolicy
from llmpool._stream_events import StreamEvent
from llmpool._streams import stream_chat, stream_response
from llmpool.testing import FaultPlan, ScriptedFault, SimulatedProvider

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

FAST_RETRY = RetryPolicy(initial_backoff=0.01, max_backoff=0.05, jitter=0.0)
SERVER_ID = re.compile(r"\b(?:rs|fc|msg|resp)_[0-9a-f]{8,}")
TOOLS: Any = [
    {
        "type": "function",
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]
REASONING: Any = {"effort": "low"}
ENCRYPTED = ["reasoning.encrypted_content"]
SDK_CHAT_STREAM_TRIO_WARNING = pytest.mark.filterwarnings(
    # openai-python leaves the inner SSE generator of a chat stream unclosed after [DONE];
    # trio warns when it is garbage collected. Not llmpool's (see test_manager_http.py).
    "ignore:Async generator .* was garbage collected:ResourceWarning"
)


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[SimulatedProvider, SimulatedProvider]]:
    with SimulatedProvider(name="a") as a, SimulatedProvider(name="b") as b:
        yield a, b


@pytest.fixture
def sims(
    shared: tuple[SimulatedProvider, SimulatedProvider],
) -> tuple[SimulatedProvider, SimulatedProvider]:
    for sim in shared:
        sim.set_fault_plan(FaultPlan())
        sim.clear_requests()
    return shared


def factory_for(sim: SimulatedProvider) -> Any:
    def factory(index: int) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=sim.base_url, api_key="k", max_retries=0)

    return factory


@pytest.fixture
async def managers(
    sims: tuple[SimulatedProvider, SimulatedProvider],
) -> AsyncIterator[tuple[ConnectionManager, ConnectionManager]]:
    config = PoolConfig(pool_size=1, retry=FAST_RETRY)
    async with (
        ConnectionManager(config, client_factory=factory_for(sims[0])) as a,
        ConnectionManager(config, client_factory=factory_for(sims[1])) as b,
    ):
        yield a, b


async def collect(stream: Any) -> list[StreamEvent]:
    async with stream:
        return [event async for event in stream]


def text_of(events: list[StreamEvent]) -> str:
    return "".join(event.content for event in events if event.type == "chunk")


def types_of(events: list[StreamEvent]) -> list[str]:
    return [event.type for event in events]


async def test_conversation_hops_to_another_instance_and_recovers(
    sims: tuple[SimulatedProvider, SimulatedProvider],
    managers: tuple[ConnectionManager, ConnectionManager],
) -> None:
    """A conversation with a tool call and reasoning started on A continues on B: B's first
    call gets the 404, the rebuilt body B finally gets has no server ids, keeps the tool-call
    pair and every user word; the caller sees one `recovered` event and no duplicated text."""
    sim_a, sim_b = sims
    a, b = managers
    conversation = Conversation()
    conversation.add_user("What is the weather in Paris right now?")
    turn = dict(model="m", tools=TOOLS, reasoning=REASONING, include=ENCRYPTED)
    first = await collect(
        stream_response(a.with_options(session_id="t1"), conversation=conversation, **turn)
    )
    assert types_of(first)[-1] == "complete"
    calls = [event for event in first if event.type == "tool_call"]
    assert {event.name for event in calls} == {"get_weather"}
    [pending] = conversation.pending_tool_calls()
    assert "".join(event.arguments_delta for event in calls) == pending["arguments"]
    conversation.add_tool_output(pending["call_id"], '{"celsius": 18}')
    second = await collect(stream_response(a, conversation=conversation, **turn))
    assert text_of(second) == 'Simulated reply to tool output: {"celsius": 18}'
    assert [r.outcome for r in sim_a.requests] == ["ok", "ok"]
    assert "previous_response_id" in sim_a.requests[1].body

    # The application saves the conversation and continues it on instance B.
    restored = Conversation.from_json(conversation.to_json())
    restored.add_user("And tomorrow in Lyon, with an umbrella?")
    stream = stream_response(
        b.with_options(session_id="t1"), conversation=restored, model="m", reasoning=REASONING
    )
    third = await collect(stream)

    assert [r.outcome for r in sim_b.requests] == ["not_found", "ok"]
    rejected, accepted = (r.body for r in sim_b.requests)
    assert rejected["previous_response_id"] == conversation.last_response_id
    assert "previous_response_id" not in accepted
    assert SERVER_ID.search(json.dumps(accepted)) is None, accepted
    items = accepted["input"]
    call_ids = [i["call_id"] for i in items if i.get("type") == "function_call"]
    output_ids = [i["call_id"] for i in items if i.get("type") == "function_call_output"]
    assert call_ids == output_ids == [pending["call_id"]]
    assert [i["type"] for i in items if i.get("type") == "reasoning"] == ["reasoning"] * 2
    assert all(i.get("encrypted_content") for i in items if i.get("type") == "reasoning")
    sent = json.dumps(items)
    user_words = "What is the weather in Paris right now? And tomorrow in Lyon, with an umbrella?"
    for word in user_words.split():
        assert word in sent
    assert types_of(third).count("recovered") == 1
    recovered = third[0]
    assert recovered.type == "recovered"
    assert recovered.kind == "rebuilt"
    assert recovered.status == 404
    assert "not found" in recovered.reason
    assert text_of(third) == "Simulated reply to: And tomorrow in Lyon, with an umbrella?"
    assert types_of(third)[-1] == "complete"
    assert stream.attempts == 2
    assert stream.recoveries == 1
    # The recovered turn was stored on B: the next turn there uses previous_response_id.
    assert restored.last_response_id in sim_b.stored_response_ids
    assert b.stats().active_connections == 0


async def test_replayed_item_ids_without_a_conversation_are_rebuilt(
    sims: tuple[SimulatedProvider, SimulatedProvider],
    managers: tuple[ConnectionManager, ConnectionManager],
) -> None:
    """Without a Conversation, an input list carrying A's item ids gets B's 404 "Item with id
    … not found"; the stream rebuilds it from that list and sends it once more, id-free."""
    _, sim_b = sims
    a, b = managers
    first = await a.responses.create(model="m", input="hello there", reasoning=REASONING)
    replay: Any = [
        {"role": "user", "content": "hello there"},
        *(item.to_dict() for item in first.output),
        {"role": "user", "content": "second question"},
    ]
    events = await collect(stream_response(b, model="m", input=replay))
    assert [r.outcome for r in sim_b.requests] == ["not_found", "ok"]
    body = sim_b.requests[1].body
    assert SERVER_ID.search(json.dumps(body)) is None
    assert [i.get("role") for i in body["input"]] == ["user", "assistant", "user"]
    assert types_of(events)[0] == "recovered"
    assert text_of(events) == "Simulated reply to: second question"


async def test_recovery_is_bounded(
    sims: tuple[SimulatedProvider, SimulatedProvider],
    managers: tuple[ConnectionManager, ConnectionManager],
) -> None:
    """max_recoveries=0: the 404 reaches the caller unchanged after exactly one request."""
    _, sim_b = sims
    _, b = managers
    conversation = Conversation(last_response_id="resp_0123456789abcdef", synced=0)
    conversation.add_user("hi")
    stream = stream_response(
        b, conversation=conversation, policy=RecoveryPolicy(max_recoveries=0), model="m"
    )
    with pytest.raises(openai.NotFoundError):
        await collect(stream)
    assert sim_b.count() == 1


async def test_store_false_rebuild_asks_for_encrypted_reasoning(
    sims: tuple[SimulatedProvider, SimulatedProvider],
    managers: tuple[ConnectionManager, ConnectionManager],
) -> None:
    """A rebuild sent with store=false (RecoveryPolicy.store) includes
    reasoning.encrypted_content, and the turn is not stored: the conversation stops relying on
    previous_response_id."""
    _, sim_b = sims
    _, b = managers
    conversation = Conversation(last_response_id="resp_0123456789abcdef")
    conversation.add_user("keep it stateless")
    stream = stream_response(
        b,
        conversation=conversation,
        policy=RecoveryPolicy(store=False),
        model="m",
        reasoning=REASONING,
    )
    events = await collect(stream)
    assert [r.outcome for r in sim_b.requests] == ["not_found", "ok"]
    body = sim_b.requests[-1].body
    assert body["store"] is False
    assert body["include"] == ENCRYPTED
    complete = events[-1]
    assert complete.type == "complete"
    assert complete.response_id not in sim_b.stored_response_ids
    assert conversation.last_response_id is None
    assert conversation.items[-2]["type"] == "reasoning"
    assert conversation.items[-2]["encrypted_content"]


async def test_disconnect_before_output_is_retried(
    sims: tuple[SimulatedProvider, SimulatedProvider],
    managers: tuple[ConnectionManager, ConnectionManager],
) -> None:
    """A stream cut after 2 events (before any text) is retried: exactly 2 requests, one
    `retried` event, the text once."""
    sim, _ = sims
    a, _ = managers
    sim.set_fault_plan(
        FaultPlan(scripted=[ScriptedFault(kind="stream_disconnect", after_events=2)])
    )
    events = await collect(stream_response(a, model="m", input="one two"))
    assert [r.outcome for r in sim.requests] == ["stream_disconnect", "ok"]
    assert types_of(events).count("recovered") == 1
    assert events[0].type == "recovered"
    assert events[0].kind == "retried"
    assert text_of(events) == "Simulated reply to: one two"
    assert a.stats().active_connections == 0


async def test_stream_retries_are_bounded_by_the_retry_policy(
    sims: tuple[SimulatedProvider, SimulatedProvider],
    managers: tuple[ConnectionManager, ConnectionManager],
) -> None:
    """Every stream cut before output: max_attempts (4) requests, then the SDK's
    APIConnectionError unchanged."""
    sim, _ = sims
    a, _ = managers
    sim.set_fault_plan(FaultPlan(stream_disconnect_rate=1.0, stream_disconnect_after=1))
    with pytest.raises(openai.APIConnectionError):
        await collect(stream_response(a, model="m", input="x"))
    assert sim.count() == FAST_RETRY.max_attempts
    assert a.stats().active_connections == 0


async def test_disconnect_after_output_raises_with_the_partial_text(
    sims: tuple[SimulatedProvider, SimulatedProvider],
    managers: tuple[ConnectionManager, ConnectionManager],
) -> None:
    """Cut after two text deltas: StreamInterruptedError carries exactly the text yielded; no
    second request is sent."""
    sim, _ = sims
    a, _ = managers
    sim.set_fault_plan(
        FaultPlan(scripted=[ScriptedFault(kind="stream_disconnect", after_events=6)])
    )
    seen: list[StreamEvent] = []

    async def consume() -> None:
        stream = stream_response(a.with_options(session_id="t9"), model="m", input="alpha beta")
        async with stream:
            async for event in stream:
                seen.append(event)  # noqa: PERF401 - keep what was seen before the error

    with pytest.raises(StreamInterruptedError) as info:
        await consume()
    assert text_of(seen) == "Simulated reply"
    assert info.value.partial_text == "Simulated reply"
    assert info.value.session_id == "t9"
    assert info.value.response_id is not None
    assert isinstance(info.value.__cause__, openai.APIConnectionError)
    assert sim.count() == 1
    assert a.stats().active_connections == 0


async def test_disconnect_after_output_as_an_error_event(
    sims: tuple[SimulatedProvider, SimulatedProvider],
    managers: tuple[ConnectionManager, ConnectionManager],
) -> None:
    """on_error="event": the stream ends with one `error` event carrying the partial text."""
    sim, _ = sims
    a, _ = managers
    sim.set_fault_plan(
        FaultPlan(scripted=[ScriptedFault(kind="stream_disconnect", after_events=5)])
    )
    events = await collect(stream_response(a, on_error="event", model="m", input="x y"))
    assert types_of(events) == ["chunk", "error"]
    error = events[-1]
    assert error.type == "error"
    assert error.partial_text == "Simulated"
    assert sim.count() == 1


async def test_open_retries_stay_the_managers(
    sims: tuple[SimulatedProvider, SimulatedProvider],
    managers: tuple[ConnectionManager, ConnectionManager],
) -> None:
    """A 503 on open is retried by the manager (2 requests), not again by the stream: one
    stream attempt, no `recovered` event."""
    sim, _ = sims
    a, _ = managers
    sim.set_fault_plan(FaultPlan(scripted=[ScriptedFault(kind="status", status=503)]))
    stream = stream_response(a, model="m", input="z")
    events = await collect(stream)
    assert [r.outcome for r in sim.requests] == ["status:503", "ok"]
    assert "recovered" not in types_of(events)
    assert stream.attempts == 1


@SDK_CHAT_STREAM_TRIO_WARNING
async def test_chat_disconnect_before_output_is_retried(
    sims: tuple[SimulatedProvider, SimulatedProvider],
    managers: tuple[ConnectionManager, ConnectionManager],
) -> None:
    """Chat Completions: a cut after the role chunk (no text yet) is retried; the assistant
    message lands in the conversation once, with usage in `complete`."""
    sim, _ = sims
    a, _ = managers
    sim.set_fault_plan(
        FaultPlan(scripted=[ScriptedFault(kind="stream_disconnect", after_events=1)])
    )
    conversation = Conversation(api="chat")
    conversation.add_user("red green")
    events = await collect(stream_chat(a, conversation=conversation, model="m"))
    assert [r.outcome for r in sim.requests] == ["stream_disconnect", "ok"]
    assert types_of(events)[0] == "recovered"
    assert text_of(events) == "Simulated reply to: red green"
    complete = events[-1]
    assert complete.type == "complete"
    assert complete.usage is not None
    assert complete.usage.completion_tokens == 5
    assert conversation.items[-1] == {
        "role": "assistant",
        "content": "Simulated reply to: red green",
    }


@SDK_CHAT_STREAM_TRIO_WARNING
async def test_chat_disconnect_after_output_raises(
    sims: tuple[SimulatedProvider, SimulatedProvider],
    managers: tuple[ConnectionManager, ConnectionManager],
) -> None:
    """Chat Completions: cut after two words: StreamInterruptedError with that text, one
    request, and the conversation keeps no half answer (nor the failed turn's input)."""
    sim, _ = sims
    a, _ = managers
    sim.set_fault_plan(
        FaultPlan(scripted=[ScriptedFault(kind="stream_disconnect", after_events=3)])
    )
    conversation = Conversation(api="chat")
    conversation.add_user("blue")
    with pytest.raises(StreamInterruptedError) as info:
        await collect(stream_chat(a, conversation=conversation, model="m"))
    assert info.value.partial_text == "Simulated reply"
    assert sim.count() == 1
    assert conversation.items == []


async def test_every_open_of_a_recovering_stream_ends_its_events(
    sims: tuple[SimulatedProvider, SimulatedProvider],
) -> None:
    """A stream cut before output and reopened: each open's request id ends with one
    RequestFinished (the replaced one marked superseded), stats count the stream once, and
    the OpenTelemetry instrument keeps no span open."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from llmpool.instrumentation import Instrument, RequestFinished
    from llmpool.instrumentation.opentelemetry import OpenTelemetryInstrument

    class Ids(Instrument):
        def __init__(self) -> None:
            self.seen: set[str] = set()
            self.finished: list[RequestFinished] = []

        def on_attempt_started(self, event: Any) -> None:
            self.seen.add(event.request_id)

        def on_request_finished(self, event: RequestFinished) -> None:
            self.finished.append(event)

    sim, _ = sims
    sim.set_fault_plan(
        FaultPlan(scripted=[ScriptedFault(kind="stream_disconnect", after_events=2)])
    )
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel = OpenTelemetryInstrument(tracer_provider=provider)
    ids = Ids()
    config = PoolConfig(pool_size=1, retry=FAST_RETRY)
    async with ConnectionManager(
        config, client_factory=factory_for(sim), instruments=[ids, otel]
    ) as m:
        events = await collect(stream_response(m, model="m", input="one two"))
        assert text_of(events) == "Simulated reply to: one two"
        stats = m.stats()
    assert len(ids.seen) == 2  # two opens, two request ids
    assert sorted(e.request_id for e in ids.finished) == sorted(ids.seen)
    assert [e.superseded for e in ids.finished] == [True, False]
    assert ids.finished[-1].outcome == "completed"
    assert (stats.completed_requests, stats.failed_requests, stats.retries) == (1, 0, 1)
    assert otel.open_requests == 0
    assert len(exporter.get_finished_spans()) == 2
