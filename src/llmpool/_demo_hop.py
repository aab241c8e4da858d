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
from dataclasses import dataclass
from typing import Any, Final

import anyio

from ._conversation import Conversation
from ._manager import ConnectionManager
from ._streams import stream_response
from ._types import Priority

__all__ = ["HOP_INSTANCES", "HOP_SESSION", "HopTurn", "run_hop", "summarize_hop"]

HOP_SESSION: Final = "terminal-hop"
HOP_INSTANCES: Final = ("east", "west")
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


@dataclass(frozen=True, slots=True)
class HopTurn:
    """One streamed request of the hopping terminal.

    Attributes:
        turn: the user turn it belongs to, from 1.
        instance: ``"east"`` or ``"west"``.
        ok: whether the stream completed.
        text: the text streamed to the caller.
        tool_calls: names of the tools the model called.
        recovered: ``"rebuilt"`` / ``"retried"`` if the stream recovered, else ``None``.
        reason: the recovered failure, or the error when ``ok`` is false.
        attempts: stream attempts made.
        processing_ms: the ``complete`` event's processing time, milliseconds.
        duplicated: the text holds more than the one reply (never expected).
    """

    turn: int
    instance: str
    ok: bool
    text: str
    tool_calls: tuple[str, ...]
    recovered: str | None
    reason: str | None
    attempts: int
    processing_ms: float | None
    duplicated: bool


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
    text, calls, recovered, reason, processing = "", [], None, None, None
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
                    processing = event.processing_time_ms
    except Exception as exc:  # reported in the summary; the demo goes on
        return HopTurn(
            turn,
            instance,
            False,
            text,
            tuple(calls),
            recovered,
            f"{type(exc).__name__}: {exc}",
            stream.attempts,
            None,
            False,
        )
    replies = [i for i in conversation.items if i.get("type") == "message"]
    last = replies[-1] if replies and replies[-1].get("role") == "assistant" else None
    expected = "" if last is None else "".join(p.get("text", "") for p in last["content"])
    return HopTurn(
        turn,
        instance,
        True,
        text,
        tuple(calls),
        recovered,
        reason,
        stream.attempts,
        processing,
        bool(text) and text != expected,
    )


async def run_hop(
    managers: Mapping[str, ConnectionManager],
    *,
    model: str,
    priority: Priority = Priority.NORMAL,
    pause: float = 0.0,
) -> list[HopTurn]:
    """Run the hopping terminal's script (see the module docstring).

    Args:
        managers: a manager per instance name (``HOP_INSTANCES``).
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
    return results


def summarize_hop(turns: list[HopTurn]) -> dict[str, Any]:
    """The ``hop`` section of the demo's JSON summary."""
    return {
        "session": HOP_SESSION,
        "ok": bool(turns)
        and len({t.turn for t in turns}) == len(_SCRIPT)
        and all(t.ok and not t.duplicated for t in turns),
        "requests": len(turns),
        "recoveries": sum(1 for t in turns if t.recovered == "rebuilt"),
        "retries": sum(1 for t in turns if t.recovered == "retried"),
        "turns": [
            {
                "turn": t.turn,
                "instance": t.instance,
                "ok": t.ok,
                "text": t.text,
                "tool_calls": list(t.tool_calls),
                "recovered": t.recovered,
                "reason": t.reason,
                "attempts": t.attempts,
                "processing_ms": None if t.processing_ms is None else round(t.processing_ms, 1),
                "duplicated": t.duplicated,
            }
            for t in turns
        ],
    }
