"""The demo's hopping terminal: one multi-turn streamed conversation over two instances.

``terminal-hop`` keeps a ``Conversation`` and streams each turn with ``stream_response``
through the manager of the instance it is on. Its script: ask for the weather on instance
``east`` (the model calls a tool; the terminal answers it; the model replies), then continue on
``west`` — which does not know ``east``'s response id, answers 404, and the stream rebuilds the
request from the local transcript — then go back to ``east``, which does not know ``west``'s
id either. Each turn checks that the text streamed is the reply, once: no duplicated output.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final, Literal

import anyio

from llmpool import ConnectionManager, Conversation, Priority, stream_response

from ._options import HOP_SESSION
from ._results import HopTurn

__all__ = ["SCRIPT_TURNS", "run_hop"]

_TOOLS: Final[list[dict[str, Any]]] = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]
# (instance, user message, tools offered)
_SCRIPT: Final = (
    ("east", "What is the weather in Paris?", True),
    ("west", "And in Lyon tomorrow?", False),
    ("east", "Thanks. Summarise the forecast in one line.", False),
)
SCRIPT_TURNS: Final = len(_SCRIPT)
"""User turns in the script: a complete hop has requests for each of them."""


async def _stream_turn(
    manager: ConnectionManager,
    conversation: Conversation,
    turn: int,
    instance: str,
    model: str,
    tools: bool,
    priority: Priority,
) -> HopTurn:
    view = manager.with_options(priority=priority, session_id=HOP_SESSION)
    extra: dict[str, Any] = {"tools": _TOOLS} if tools else {}
    stream = stream_response(
        view,
        conversation=conversation,
        model=model,
        reasoning={"effort": "low"},
        include=["reasoning.encrypted_content"],
        **extra,
    )
    text = ""
    calls: list[str] = []
    recovered: Literal["rebuilt", "retried"] | None = None
    reason: str | None = None
    processing: float | None = None
    try:
        async with stream:
            async for event in stream:
                if event.type == "chunk":
                    text += event.content
                elif event.type == "tool_call" and event.name not in calls:
                    calls.append(event.name)
                elif event.type == "recovered":
                    recovered, reason = event.kind, event.reason
                elif event.type == "complete":
                    processing = round(event.processing_time_ms, 1)
    except Exception as exc:  # reported in the summary; the demo goes on
        return HopTurn(
            turn=turn,
            instance=instance,
            ok=False,
            text=text,
            tool_calls=tuple(calls),
            recovered=recovered,
            reason=f"{type(exc).__name__}: {exc}",
            attempts=stream.attempts,
            processing_ms=None,
            duplicated=False,
        )
    replies = [i for i in conversation.items if i.get("type") == "message"]
    last = replies[-1] if replies and replies[-1].get("role") == "assistant" else None
    expected = "" if last is None else "".join(p.get("text", "") for p in last["content"])
    return HopTurn(
        turn=turn,
        instance=instance,
        ok=True,
        text=text,
        tool_calls=tuple(calls),
        recovered=recovered,
        reason=reason,
        attempts=stream.attempts,
        processing_ms=processing,
        duplicated=bool(text) and text != expected,
    )


async def run_hop(
    managers: Mapping[str, ConnectionManager],
    *,
    model: str,
    priority: Priority = Priority.NORMAL,
    pause: float = 0.0,
) -> tuple[HopTurn, ...]:
    """Run the hopping terminal's script (see the module docstring).

    Args:
        managers: a manager per instance name (``_options.HOP_INSTANCES``).
        model: the model named in every request.
        priority: the terminal's priority.
        pause: seconds between two turns (a user reading).

    Returns:
        Every streamed request, in order (a tool call adds a second request to its turn).
    """
    conversation = Conversation()
    results: list[HopTurn] = []
    for turn, (instance, message, tools) in enumerate(_SCRIPT, start=1):
        if turn > 1:
            await anyio.sleep(pause)
        conversation.add_user(message)
        manager = managers[instance]
        result = await _stream_turn(manager, conversation, turn, instance, model, tools, priority)
        results.append(result)
        if result.ok and conversation.pending_tool_calls():
            for call in conversation.pending_tool_calls():
                answer = {"city": json.loads(call["arguments"] or "{}").get("city"), "celsius": 18}
                conversation.add_tool_output(call["call_id"], json.dumps(answer))
            results.append(
                await _stream_turn(manager, conversation, turn, instance, model, False, priority)
            )
        if not result.ok:
            break
    # Round trip through JSON, as an application moving the conversation would.
    Conversation.from_json(conversation.to_json())
    return tuple(results)
