"""A failed turn leaves nothing behind in its Conversation: retrying it the way it was first
made (add the input, stream) sends the input once. Bodies are what reached the simulator."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from llmpool import (
    ConnectionManager,
    Conversation,
    PoolConfig,
    RetryPolicy,
    StreamInterruptedError,
    stream_chat,
    stream_response,
)
from llmpool.testing import FaultPlan, ScriptedFault, SimulatedProvider

from .fixtures import simulator_fixtures

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

FAST_RETRY = RetryPolicy(initial_backoff=0.01, max_backoff=0.02, jitter=0.0)
SDK_CHAT_STREAM_TRIO_WARNING = pytest.mark.filterwarnings(
    # openai-python leaves the inner SSE generator of a chat stream unclosed after [DONE];
    # trio warns when it is garbage collected. Not llmpool's (see test_manager_http.py).
    "ignore:Async generator .* was garbage collected:ResourceWarning"
)


shared_sim, sim = simulator_fixtures("conv")


def manager_for(sim: SimulatedProvider) -> ConnectionManager:
    def factory(index: int) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=sim.base_url, api_key="k", max_retries=0)

    return ConnectionManager(PoolConfig(pool_size=1, retry=FAST_RETRY), client_factory=factory)


async def read_all(stream: Any) -> list[Any]:
    async with stream:
        return [event async for event in stream]


def said(body: dict[str, Any], text: str) -> int:
    """How many input items of a Responses request are the user message ``text``."""
    return sum(
        1 for item in body["input"] if item.get("role") == "user" and item["content"] == text
    )


async def test_retried_first_turn_sends_the_user_message_once(sim: SimulatedProvider) -> None:
    """The first turn is refused (400, raised unchanged); the caller adds the message again
    and streams again: the request that succeeds carries it once, and so does the
    transcript."""
    sim.set_fault_plan(FaultPlan(scripted=[ScriptedFault(kind="status", status=400)]))
    conversation = Conversation()
    async with manager_for(sim) as m:
        conversation.add_user("hello there")
        with pytest.raises(openai.BadRequestError):
            await read_all(stream_response(m, conversation=conversation, model="m"))
        assert conversation.items == []
        conversation.add_user("hello there")
        events = await read_all(stream_response(m, conversation=conversation, model="m"))
    assert events[-1].type == "complete"
    assert [r.outcome for r in sim.requests] == ["status:400", "ok"]
    assert said(sim.requests[-1].body, "hello there") == 1
    roles = [item.get("role") for item in conversation.items]
    assert roles == ["user", "assistant"]


async def test_retried_later_turn_continues_with_the_message_once(
    sim: SimulatedProvider,
) -> None:
    """A second turn fails after output began (a disconnect): retried, it sends only its
    message, once, after the first turn's previous_response_id."""
    conversation = Conversation()
    async with manager_for(sim) as m:
        conversation.add_user("first")
        await read_all(stream_response(m, conversation=conversation, model="m"))
        stored = conversation.last_response_id
        sim.set_fault_plan(
            FaultPlan(scripted=[ScriptedFault(kind="stream_disconnect", after_events=6)])
        )
        conversation.add_user("second")
        with pytest.raises(StreamInterruptedError):
            await read_all(stream_response(m, conversation=conversation, model="m"))
        assert conversation.last_response_id == stored
        conversation.add_user("second")
        await read_all(stream_response(m, conversation=conversation, model="m"))
    body = sim.requests[-1].body
    assert body["previous_response_id"] == stored
    assert body["input"] == [{"type": "message", "role": "user", "content": "second"}]
    assert [i.get("role") for i in conversation.items] == ["user", "assistant"] * 2


@SDK_CHAT_STREAM_TRIO_WARNING
async def test_retried_chat_turn_sends_the_message_once(sim: SimulatedProvider) -> None:
    """Chat Completions: a turn cut after output, retried: its messages hold it once."""
    sim.set_fault_plan(
        FaultPlan(scripted=[ScriptedFault(kind="stream_disconnect", after_events=3)])
    )
    conversation = Conversation(api="chat")
    async with manager_for(sim) as m:
        conversation.add_user("blue")
        with pytest.raises(StreamInterruptedError):
            await read_all(stream_chat(m, conversation=conversation, model="m"))
        conversation.add_user("blue")
        await read_all(stream_chat(m, conversation=conversation, model="m"))
    assert sim.requests[-1].body["messages"] == [{"role": "user", "content": "blue"}]
    assert conversation.items[0] == {"role": "user", "content": "blue"}
    assert len(conversation.items) == 2
