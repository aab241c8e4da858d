"""A conversation that hops between two servers and recovers: ``llmpool.stream_response``.

Two simulated providers stand for two instances that do not share storage (two regions, two
Azure deployments, a fail-over). The conversation starts on A: the model calls a tool, we send
the tool's output, the model answers. Then the conversation continues on B. B does not know
A's ``previous_response_id`` and answers 404; the recovering stream rebuilds a self-contained
input from the whole local transcript (no server ids, tool-call pairs whole, reasoning carried
as encrypted content), sends it again and keeps streaming, with one ``recovered`` event.

Needs the ``testing`` extra (``pip install 'llmpool[testing]'``; ``make demo`` installs it).
Run it with::

    python examples/multi_server.py
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import openai

from llmpool import (
    ConnectionManager,
    Conversation,
    PoolConfig,
    RecoveringStream,
    stream_response,
)
from llmpool.testing import SimulatedProvider

TOOLS: Any = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]
TURN: Any = {
    "model": "gpt-4o-mini",
    "tools": TOOLS,
    "reasoning": {"effort": "low"},
    "include": ["reasoning.encrypted_content"],
}


def manager_for(sim: SimulatedProvider) -> ConnectionManager:
    def factory(index: int) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=sim.base_url, api_key="sim", max_retries=0)

    return ConnectionManager(PoolConfig(pool_size=1), client_factory=factory)


async def show(label: str, stream: RecoveringStream) -> None:
    """Print one turn as the caller sees it."""
    print(f"[{label}] ", end="")
    async with stream:
        async for event in stream:
            if event.type == "chunk":
                print(event.content, end="", flush=True)
            elif event.type == "tool_call" and event.arguments_delta == "":
                print(f"<tool call {event.name}> ", end="")
            elif event.type == "recovered":
                print(f"<recovered: {event.kind} after {event.reason!r}> ", end="")
            elif event.type == "complete":
                print(f"  [complete: {event.finish_reason}, {event.response_id}]")


async def main() -> None:
    async with (
        SimulatedProvider(name="A") as sim_a,
        SimulatedProvider(name="B") as sim_b,
        manager_for(sim_a) as a,
        manager_for(sim_b) as b,
    ):
        conversation = Conversation()
        conversation.add_user("What is the weather in Paris?")
        await show("A", stream_response(a, conversation=conversation, **TURN))
        for call in conversation.pending_tool_calls():
            print(f"      tool {call['name']}({call['arguments']}) -> 18 C")
            conversation.add_tool_output(call["call_id"], json.dumps({"celsius": 18}))
        await show("A", stream_response(a, conversation=conversation, **TURN))

        # Save the transcript, pick it up elsewhere, continue on instance B.
        saved = conversation.to_json()
        print(f"saved the conversation: {len(conversation.items)} items, {len(saved)} bytes")
        moved = Conversation.from_json(saved)
        moved.add_user("And in Lyon tomorrow?")
        view = b.with_options(priority="high", session_id="terminal-1")
        stream = stream_response(view, conversation=moved, model="gpt-4o-mini")
        await show("B", stream)

        print("A saw:", [record.outcome for record in sim_a.requests])
        print("B saw:", [record.outcome for record in sim_b.requests])
        rebuilt = sim_b.requests[-1].body
        kinds = [item.get("type", "message") for item in rebuilt["input"]]
        print(f"B's accepted request: {len(kinds)} items: {', '.join(kinds)}")
        ids = [item["id"] for item in rebuilt["input"] if "id" in item]
        print(f"  previous_response_id sent: {'previous_response_id' in rebuilt}")
        print(f"  server ids sent: {ids}")
        print(f"stream attempts {stream.attempts}, recoveries {stream.recoveries}")


if __name__ == "__main__":
    anyio.run(main)
