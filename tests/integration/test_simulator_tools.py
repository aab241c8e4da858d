"""The simulated provider's tool calls, reasoning items and stored-item rules, over loopback
with the real SDK: answers shaped like the API's, and the API's 404/400 for replays it cannot
resolve."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from llmpool.testing import SimulatedProvider

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

TOOLS: Any = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
        "strict": True,
    }
]
REASONING: Any = {"effort": "low"}
ENCRYPTED: Any = ["reasoning.encrypted_content"]


@pytest.fixture(scope="module")
def sims() -> Iterator[tuple[SimulatedProvider, SimulatedProvider]]:
    with SimulatedProvider(name="a") as a, SimulatedProvider(name="b") as b:
        yield a, b


@pytest.fixture
def sim(sims: tuple[SimulatedProvider, SimulatedProvider]) -> SimulatedProvider:
    sims[0].clear_requests()
    return sims[0]


@pytest.fixture
def other(sims: tuple[SimulatedProvider, SimulatedProvider]) -> SimulatedProvider:
    sims[1].clear_requests()
    return sims[1]


def client_of(sim: SimulatedProvider) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=sim.base_url, api_key="k", max_retries=0)


async def test_tools_and_a_user_message_get_a_function_call() -> None:
    """With tools and a user message last, the output is one function_call of the first
    function tool, its arguments built from the user's text."""
    with SimulatedProvider() as sim:
        async with client_of(sim) as client:
            response = await client.responses.create(model="m", input="Paris please", tools=TOOLS)
    [call] = response.output
    assert call.type == "function_call"
    assert call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris please"}
    assert call.call_id.startswith("call_")
    assert call.id is not None
    assert call.id.startswith("fc_")


async def test_function_call_output_gets_a_message(sim: SimulatedProvider) -> None:
    """Sending the function_call_output (with previous_response_id) is answered with a message
    built from the tool's output, not with another call."""
    async with client_of(sim) as client:
        first = await client.responses.create(model="m", input="Rome", tools=TOOLS)
        call = first.output[0]
        assert call.type == "function_call"
        second = await client.responses.create(
            model="m",
            previous_response_id=first.id,
            input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
            tools=TOOLS,
        )
    assert second.output_text == "Simulated reply to tool output: sunny"
    assert [r.outcome for r in sim.requests] == ["ok", "ok"]


async def test_reasoning_item_and_encrypted_content(sim: SimulatedProvider) -> None:
    """A reasoning parameter adds a reasoning item first; encrypted_content only when include
    asks for reasoning.encrypted_content."""
    async with client_of(sim) as client:
        plain = await client.responses.create(model="m", input="hi", reasoning=REASONING)
        encrypted = await client.responses.create(
            model="m", input="hi", reasoning=REASONING, include=ENCRYPTED
        )
    assert [item.type for item in plain.output] == ["reasoning", "message"]
    reasoning = plain.output[0]
    assert reasoning.type == "reasoning"
    assert reasoning.id.startswith("rs_")
    assert reasoning.encrypted_content is None
    first = encrypted.output[0]
    assert first.type == "reasoning"
    assert first.encrypted_content
    assert plain.output_text == "Simulated reply to: hi"


async def test_replayed_items_work_on_the_same_instance_only(
    sim: SimulatedProvider, other: SimulatedProvider
) -> None:
    """Output items replayed with their ids are found on the instance that stored them; another
    instance answers the API's 404 "Item with id '…' not found"."""
    async with client_of(sim) as a, client_of(other) as b:
        first = await a.responses.create(model="m", input="Oslo", tools=TOOLS, reasoning=REASONING)
        items = [item.to_dict() for item in first.output]
        call_id = items[1]["call_id"]
        replay: Any = [
            {"role": "user", "content": "Oslo"},
            *items,
            {"type": "function_call_output", "call_id": call_id, "output": "cold"},
        ]
        again = await a.responses.create(model="m", input=replay, tools=TOOLS)
        with pytest.raises(openai.NotFoundError) as info:
            await b.responses.create(model="m", input=replay, tools=TOOLS)
    assert again.output_text == "Simulated reply to tool output: cold"
    assert info.value.status_code == 404
    assert f"Item with id '{items[0]['id']}' not found." in info.value.message
    assert [r.outcome for r in other.requests] == ["not_found"]


async def test_unstored_items_are_not_found_even_on_the_same_instance(
    sim: SimulatedProvider,
) -> None:
    """store=false registers nothing: replaying its reasoning id (without encrypted_content)
    gets a 404 there too."""
    async with client_of(sim) as client:
        first = await client.responses.create(
            model="m", input="x", reasoning=REASONING, store=False
        )
        replay: Any = [first.output[0].to_dict(), {"role": "user", "content": "y"}]
        with pytest.raises(openai.NotFoundError):
            await client.responses.create(model="m", input=replay)
    assert first.id not in sim.stored_response_ids


async def test_reasoning_with_encrypted_content_needs_no_stored_id(
    other: SimulatedProvider,
) -> None:
    """A reasoning item carrying encrypted_content is accepted on any instance, id or not."""
    item: Any = {
        "type": "reasoning",
        "id": "rs_unknown",
        "summary": [],
        "encrypted_content": "gAAAAsim-abc",
    }
    async with client_of(other) as client:
        reply = await client.responses.create(
            model="m", input=[{"role": "user", "content": "q"}, item]
        )
    assert reply.status == "completed"


async def test_previous_response_on_another_instance_is_404(
    sim: SimulatedProvider, other: SimulatedProvider
) -> None:
    """previous_response_id from another instance: 404 previous_response_not_found."""
    async with client_of(sim) as a, client_of(other) as b:
        first = await a.responses.create(model="m", input="hi")
        with pytest.raises(openai.NotFoundError) as info:
            await b.responses.create(model="m", input="again", previous_response_id=first.id)
    assert info.value.code == "previous_response_not_found"


@pytest.mark.parametrize(
    "previous", [False, True], ids=["no-previous-response", "previous-without-the-call"]
)
async def test_orphan_tool_output_is_400(sim: SimulatedProvider, previous: bool) -> None:
    """A function_call_output whose call_id has no function_call in the input (or the previous
    response) is the API's 400 "No tool call found for function call output with call_id …"."""
    async with client_of(sim) as client:
        extra: Any = {}
        if previous:
            extra["previous_response_id"] = (await client.responses.create(model="m", input="a")).id
        orphan: Any = [{"type": "function_call_output", "call_id": "call_nope", "output": "1"}]
        with pytest.raises(openai.BadRequestError) as info:
            await client.responses.create(model="m", input=orphan, **extra)
    assert "No tool call found for function call output with call_id call_nope" in str(
        info.value.message
    )


async def test_streamed_function_call_and_reasoning_events(sim: SimulatedProvider) -> None:
    """Streaming a tool call and a reasoning item sends the real API's events, in order; the
    argument deltas add up to the final arguments; encrypted_content only in the done item."""
    async with client_of(sim) as client:
        stream = await client.responses.create(
            model="m",
            input="Lisbon today",
            tools=TOOLS,
            reasoning=REASONING,
            include=ENCRYPTED,
            stream=True,
        )
        events = [event async for event in stream]
    types = [event.type for event in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[2:4] == ["response.output_item.added", "response.output_item.done"]
    added, done = events[2], events[3]
    assert added.type == "response.output_item.added"
    assert added.item.type == "reasoning"
    assert getattr(added.item, "encrypted_content", None) is None
    assert done.type == "response.output_item.done"
    assert done.item.type == "reasoning"
    assert done.item.encrypted_content
    assert types[4] == "response.output_item.added"
    deltas = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    [final] = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert "".join(deltas) == final.arguments == json.dumps({"city": "Lisbon today"})
    assert types[-2:] == ["response.output_item.done", "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    completed = events[-1]
    assert completed.type == "response.completed"
    assert [item.type for item in completed.response.output] == ["reasoning", "function_call"]
