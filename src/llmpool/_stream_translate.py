"""SDK stream events -> llmpool ``StreamEvent`` envelopes, one translator per attempt.

A translator sees the SDK's events of one streamed attempt and answers the envelope events to
yield (none for bookkeeping events such as ``response.created``). It keeps what has been
yielded (text, finished items) for a ``StreamInterruptedError``, and raises ``StreamFailure``
for an ``error`` / ``response.failed`` event and ``StreamTruncated`` for a stream that ended
without its final event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio

from ._stream_events import ChunkEvent, CompleteEvent, StreamEvent, ToolCallEvent, Usage

__all__ = ["ChatTranslator", "ResponsesTranslator", "StreamFailure", "StreamTruncated"]


class StreamFailure(Exception):
    """The API ended the stream with an ``error`` or ``response.failed`` event."""

    def __init__(self, message: str, code: str | None) -> None:
        super().__init__(f"{message} (code {code})" if code else message)
        self.code = code


class StreamTruncated(Exception):
    """The stream ended without its final event (``response.completed``)."""


def _get(obj: object, name: str) -> Any:
    return getattr(obj, name, None)


class _Translator:
    """Common state. ``started_at`` and ``clock()`` are seconds on the event loop's clock."""

    def __init__(self, started_at: float, clock: Callable[[], float] = anyio.current_time) -> None:
        self.started_at = started_at
        self._clock = clock
        self.text = ""
        self.items: list[dict[str, Any]] = []
        self.response_id: str | None = None
        self.model: str | None = None
        self.tools_used: list[str] = []
        self.final: Any = None  # the completed Response (Responses) / assistant message (Chat)

    def _elapsed_ms(self) -> float:
        return max(0.0, (self._clock() - self.started_at) * 1000.0)

    def _chunk(self, content: str) -> ChunkEvent:
        self.text += content
        return ChunkEvent(content=content, model=self.model)


class ResponsesTranslator(_Translator):
    """Translates ``ResponseStreamEvent``s (Responses API)."""

    def __init__(self, started_at: float, clock: Callable[[], float] = anyio.current_time) -> None:
        super().__init__(started_at, clock)
        self._calls: dict[str, tuple[str, str]] = {}  # item id -> (call_id, name)

    def feed(self, event: Any) -> list[StreamEvent]:
        """The envelope events for one SDK event.

        Raises:
            StreamFailure: an ``error`` or ``response.failed`` event.
        """
        kind = event.type
        if kind in ("response.created", "response.in_progress"):
            self.response_id = event.response.id
            self.model = event.response.model
        elif kind == "response.output_text.delta":
            return [self._chunk(event.delta)]
        elif kind == "response.output_item.added" and event.item.type == "function_call":
            item = event.item
            self._calls[item.id or ""] = (item.call_id, item.name)
            self.tools_used.append(item.name)
            return [
                ToolCallEvent(
                    call_id=item.call_id,
                    name=item.name,
                    arguments_delta=item.arguments or "",
                    index=event.output_index,
                )
            ]
        elif kind == "response.function_call_arguments.delta":
            call_id, name = self._calls.get(event.item_id, ("", ""))
            return [
                ToolCallEvent(
                    call_id=call_id,
                    name=name,
                    arguments_delta=event.delta,
                    index=event.output_index,
                )
            ]
        elif kind == "response.output_item.done":
            self.items.append(event.item.to_dict(mode="json", exclude_unset=True))
        elif kind in ("response.completed", "response.incomplete"):
            return [self._complete(event.response)]
        elif kind == "response.failed":
            error = event.response.error
            raise StreamFailure(
                _get(error, "message") or "response.failed", _get(error, "code") or None
            )
        elif kind == "error":
            raise StreamFailure(event.message, event.code)
        return []

    def _complete(self, response: Any) -> CompleteEvent:
        self.final = response
        usage = response.usage
        incomplete = response.incomplete_details
        if incomplete is not None:
            finish = incomplete.reason or "incomplete"
        elif any(item.type == "function_call" for item in response.output):
            finish = "tool_calls"
        else:
            finish = "stop"
        return CompleteEvent(
            processing_time_ms=self._elapsed_ms(),
            usage=None
            if usage is None
            else Usage(
                prompt_tokens=usage.input_tokens,
                completion_tokens=usage.output_tokens,
                total_tokens=usage.total_tokens,
            ),
            response_id=response.id,
            finish_reason=finish,
            model=response.model,
            tools_used=[item.name for item in response.output if item.type == "function_call"],
        )

    def finish(self) -> list[StreamEvent]:
        """The stream ended: fine after ``response.completed``.

        Raises:
            StreamTruncated: it ended before ``response.completed``.
        """
        if self.final is None:
            raise StreamTruncated("the stream ended before response.completed")
        return []


class ChatTranslator(_Translator):
    """Translates ``ChatCompletionChunk``s (Chat Completions)."""

    def __init__(self, started_at: float, clock: Callable[[], float] = anyio.current_time) -> None:
        super().__init__(started_at, clock)
        self._calls: dict[int, dict[str, Any]] = {}  # tool index -> assembled tool call
        self._finish: str | None = None
        self._usage: Usage | None = None

    def feed(self, chunk: Any) -> list[StreamEvent]:
        """The envelope events for one chunk."""
        self.response_id = chunk.id
        self.model = chunk.model
        if chunk.usage is not None:
            self._usage = Usage(
                prompt_tokens=chunk.usage.prompt_tokens,
                completion_tokens=chunk.usage.completion_tokens,
                total_tokens=chunk.usage.total_tokens,
            )
        events: list[StreamEvent] = []
        for choice in chunk.choices[:1]:
            delta = choice.delta
            if delta.content:
                events.append(self._chunk(delta.content))
            events.extend(self._tool_delta(call) for call in delta.tool_calls or [])
            if choice.finish_reason is not None:
                self._finish = choice.finish_reason
        return events

    def _tool_delta(self, call: Any) -> ToolCallEvent:
        function = call.function
        slot = self._calls.get(call.index)
        if slot is None:
            name = _get(function, "name") or ""
            slot = {
                "id": call.id or "",
                "type": "function",
                "function": {"name": name, "arguments": ""},
            }
            self._calls[call.index] = slot
            self.tools_used.append(name)
        piece = _get(function, "arguments") or ""
        slot["function"]["arguments"] += piece
        return ToolCallEvent(
            call_id=slot["id"],
            name=slot["function"]["name"],
            arguments_delta=piece,
            index=call.index,
        )

    def finish(self) -> list[StreamEvent]:
        """The stream ended: the assistant message is complete."""
        message: dict[str, Any] = {"role": "assistant", "content": self.text or None}
        if self._calls:
            message["tool_calls"] = [self._calls[index] for index in sorted(self._calls)]
        self.final = message
        return [
            CompleteEvent(
                processing_time_ms=self._elapsed_ms(),
                usage=self._usage,
                response_id=self.response_id,
                finish_reason=self._finish,
                model=self.model,
                tools_used=list(self.tools_used),
            )
        ]
