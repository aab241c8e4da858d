"""Recovering streams below the integration level: which errors mean "the server lost the
conversation", the event envelope, the SDK-event translators, and Azure's 400 variant of
previous_response_not_found over a mocked transport (respx)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pydantic
import pytest
import respx
from openai.types.chat import ChatCompletionChunk
from openai.types.responses import ResponseStreamEvent

from llmpool import ConnectionManager, PoolConfig, RetryPolicy
from llmpool._conversation import Conversation
from llmpool._errors import LLMPoolError, StreamInterruptedError
from llmpool._recovery import RecoveryPolicy, missing_reference, request_params
from llmpool._sanitizer import ConversationSanitizer
from llmpool._stream_events import (
    ChunkEvent,
    CompleteEvent,
    ErrorEvent,
    RecoveredEvent,
    ToolCallEvent,
    Usage,
    parse_stream_event,
)
from llmpool._stream_translate import (
    ChatTranslator,
    ResponsesTranslator,
    StreamFailure,
    StreamTruncated,
)
from llmpool._streams import stream_chat, stream_response
from llmpool.testing import _payloads as P
from tests.helpers import status_error

BASE = "http://respx.test/v1"
TOOLS = [{"type": "function", "name": "lookup", "parameters": {"properties": {"q": {}}}}]
EVENTS: pydantic.TypeAdapter[ResponseStreamEvent] = pydantic.TypeAdapter(ResponseStreamEvent)


def with_message(status: int, message: str, code: str | None = None) -> openai.APIStatusError:
    error = status_error(status, code=code)
    error.message = message
    return error


@pytest.mark.parametrize(
    ("exc", "lost"),
    [
        (with_message(404, "Item with id 'rs_abc' not found."), True),
        (with_message(400, "Item with id 'fc_abc' not found."), True),  # Azure answers 400
        (with_message(404, "Previous response with id 'resp_1' not found."), True),
        (with_message(400, "x", code="previous_response_not_found"), True),
        (with_message(404, "Invalid URL (POST /v1/responsez)"), False),
        (with_message(400, "Invalid value for 'model'."), False),
        (with_message(500, "Item with id 'rs_abc' not found."), False),
        (StreamFailure("gone", "previous_response_not_found"), True),
        (StreamFailure("boom", "server_error"), False),
        (openai.APIConnectionError(request=httpx.Request("GET", BASE)), False),
    ],
    ids=[
        "404-item",
        "400-item-azure",
        "404-previous-message",
        "400-previous-code",
        "404-other",
        "400-other",
        "500-item-text",
        "stream-error-previous",
        "stream-error-other",
        "connection",
    ],
)
def test_missing_reference(exc: BaseException, lost: bool) -> None:
    """Only a 404/400 that says the item or previous response is unknown triggers a rebuild."""
    assert (missing_reference(exc) is not None) is lost


@pytest.mark.parametrize(
    "event",
    [
        ChunkEvent(content="hi", model="m"),
        ToolCallEvent(call_id="call_1", name="f", arguments_delta='{"a"', index=1),
        RecoveredEvent(kind="rebuilt", reason="Item with id 'x' not found.", attempt=2, status=404),
        CompleteEvent(
            processing_time_ms=12.5,
            usage=Usage(prompt_tokens=1, completion_tokens=2, total_tokens=3),
            response_id="resp_1",
            finish_reason="stop",
            tools_used=["f"],
        ),
        ErrorEvent(error="APIConnectionError: x", partial_text="Sim", request_id="req_1"),
    ],
    ids=lambda event: event.type,
)
def test_events_round_trip_through_json(event: Any) -> None:
    """Every event serialises with its `type` and parses back to an equal event."""
    data = event.model_dump_json()
    assert json.loads(data)["type"] == event.type
    assert parse_stream_event(data) == event


def test_unknown_event_type_is_rejected() -> None:
    """The envelope is a closed set: an unknown type fails validation."""
    with pytest.raises(pydantic.ValidationError):
        parse_stream_event('{"type": "chunk_v2", "content": "x"}')


def sdk_events(request: dict[str, Any]) -> list[Any]:
    """The SDK's event objects for the simulator's answer to ``request``."""
    body = P.response_object(
        {"model": "m", **request}, response_id="resp_9", output=P.response_output(request)
    )
    return [EVENTS.validate_python(data) for _, data in P.response_events(body)]


def feed_all(translator: Any, events: list[Any]) -> list[Any]:
    out: list[Any] = []
    for event in events:
        out.extend(translator.feed(event))
    return out


def test_responses_translator_text_and_complete() -> None:
    """Text deltas become chunks in order; response.completed becomes `complete` with usage
    mapped to prompt/completion tokens and the processing time in milliseconds."""
    translator = ResponsesTranslator(started_at=10.0, clock=lambda: 10.25)
    out = feed_all(translator, sdk_events({"input": "a b c"}))
    assert [e.type for e in out] == ["chunk"] * 6 + ["complete"]
    assert "".join(e.content for e in out[:-1]) == "Simulated reply to: a b c"
    assert translator.text == "Simulated reply to: a b c"
    complete = out[-1]
    assert complete.usage == Usage(prompt_tokens=3, completion_tokens=6, total_tokens=9)
    assert complete.finish_reason == "stop"
    assert complete.response_id == "resp_9"
    assert complete.processing_time_ms == 250.0
    assert translator.finish() == []


def test_responses_translator_tool_call() -> None:
    """A function_call streams as tool_call events (name and call_id on each) whose deltas add
    up to the final arguments; `complete` says tool_calls; the done item is kept."""
    translator = ResponsesTranslator(started_at=0.0, clock=lambda: 0.0)
    out = feed_all(translator, sdk_events({"input": "where", "tools": TOOLS}))
    calls = [e for e in out if e.type == "tool_call"]
    assert {(e.name, e.call_id) for e in calls} == {("lookup", calls[0].call_id)}
    assert "".join(e.arguments_delta for e in calls) == '{"q": "where"}'
    assert out[-1].finish_reason == "tool_calls"
    assert out[-1].tools_used == ["lookup"]
    assert [item["type"] for item in translator.items] == ["function_call"]


def test_responses_translator_failures() -> None:
    """An error event raises StreamFailure with its code; a stream ending before
    response.completed raises StreamTruncated."""
    translator = ResponsesTranslator(started_at=0.0, clock=lambda: 0.0)
    error = EVENTS.validate_python(
        {"type": "error", "message": "overloaded", "code": "server_error", "sequence_number": 0}
    )
    with pytest.raises(StreamFailure) as info:
        translator.feed(error)
    assert info.value.code == "server_error"
    with pytest.raises(StreamTruncated):
        translator.finish()


def test_chat_translator_text_usage_and_tool_calls() -> None:
    """Chat chunks: empty role chunk yields nothing; words become chunks; tool-call deltas are
    assembled into the assistant message; usage from the last chunk."""
    translator = ChatTranslator(started_at=0.0, clock=lambda: 0.0)
    request = {"model": "m", "messages": [], "stream_options": {"include_usage": True}}
    chunks = [
        ChatCompletionChunk.model_validate(c)
        for c in P.chat_chunks(request, completion_id="chatcmpl-1", text="one two")
    ]
    base = chunks[0].model_dump()
    call_chunks = [
        {
            **base,
            "choices": [
                {
                    "index": 0,
                    "delta": {"tool_calls": [tool]},
                    "finish_reason": None,
                }
            ],
        }
        for tool in (
            {"index": 0, "id": "call_7", "function": {"name": "f", "arguments": '{"x"'}},
            {"index": 0, "function": {"arguments": ": 1}"}},
        )
    ]
    out = feed_all(
        translator,
        chunks[:1] + [ChatCompletionChunk.model_validate(c) for c in call_chunks] + chunks[1:],
    )
    assert [e.type for e in out] == ["tool_call", "tool_call", "chunk", "chunk"]
    assert out[1].call_id == "call_7"
    assert out[1].name == "f"
    [complete] = translator.finish()
    assert complete.usage is not None
    assert complete.usage == Usage(prompt_tokens=1, completion_tokens=2, total_tokens=3)
    assert complete.finish_reason == "stop"
    assert translator.final == {
        "role": "assistant",
        "content": "one two",
        "tool_calls": [
            {"id": "call_7", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}
        ],
    }


def test_interrupted_error_carries_the_partial_output() -> None:
    """StreamInterruptedError is an LLMPoolError with the partial text, items and ids."""
    error = StreamInterruptedError(
        "cut",
        partial_text="abc",
        partial_items=[{"type": "function_call"}],
        response_id="resp_1",
        request_id="req_1",
    )
    assert isinstance(error, LLMPoolError)
    assert error.partial_text == "abc"
    assert error.partial_items == [{"type": "function_call"}]
    assert "3 characters already streamed" in str(error)
    assert "request_id=req_1" in str(error)


def continued_conversation() -> Conversation:
    conversation = Conversation(last_response_id="resp_a", synced=2)
    conversation.add_user("first")
    conversation.items.append(
        {
            "type": "message",
            "role": "assistant",
            "id": "msg_0123456789",
            "content": [{"type": "output_text", "text": "answer"}],
        }
    )
    conversation.add_user("second")
    return conversation


def params_for(rebuild: bool, policy: RecoveryPolicy, **params: Any) -> dict[str, Any]:
    return request_params(
        "responses",
        {"model": "m", **params},
        conversation=continued_conversation(),
        policy=policy,
        sanitizer=ConversationSanitizer(),
        rebuild=rebuild,
    )


def test_first_attempt_continues_with_previous_response_id() -> None:
    """A conversation's first attempt sends only the new items with previous_response_id."""
    params = params_for(False, RecoveryPolicy())
    assert params["previous_response_id"] == "resp_a"
    assert params["input"] == [{"type": "message", "role": "user", "content": "second"}]
    assert params["stream"] is True


def test_rebuild_sends_the_whole_portable_transcript() -> None:
    """A rebuild sends every item, without server ids or previous_response_id; with
    policy.store=False it is unstored and asks for encrypted reasoning."""
    params = params_for(True, RecoveryPolicy(store=False), include=["message.output_text.logprobs"])
    assert "previous_response_id" not in params
    assert [item["role"] for item in params["input"]] == ["user", "assistant", "user"]
    assert "msg_0123456789" not in json.dumps(params)
    assert params["store"] is False
    assert params["include"] == ["message.output_text.logprobs", "reasoning.encrypted_content"]


def test_use_previous_response_id_false_always_sends_the_transcript() -> None:
    """RecoveryPolicy(use_previous_response_id=False): the whole transcript from the start."""
    params = params_for(False, RecoveryPolicy(use_previous_response_id=False))
    assert "previous_response_id" not in params
    assert len(params["input"]) == 3


def test_chat_params_ask_for_usage_and_leave_the_callers_dict_alone() -> None:
    """Chat: messages come from the conversation, include_usage is asked unless given; the
    caller's dict is not changed."""
    conversation = Conversation(api="chat")
    conversation.add_user("hi")
    caller: dict[str, Any] = {"model": "m"}
    params = request_params(
        "chat",
        caller,
        conversation=conversation,
        policy=RecoveryPolicy(),
        sanitizer=ConversationSanitizer(),
        rebuild=False,
    )
    assert params["messages"] == [{"role": "user", "content": "hi"}]
    assert params["stream_options"] == {"include_usage": True}
    assert caller == {"model": "m"}


def test_misuse_fails_at_once() -> None:
    """Bad arguments fail when the stream is built, naming what is wrong."""
    manager = ConnectionManager()
    with pytest.raises(ValueError, match="on_error"):
        stream_response(manager, on_error="ignore", model="m", input="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="input"):
        stream_response(manager, conversation=Conversation(), model="m", input="x")
    with pytest.raises(ValueError, match="speaks"):
        stream_response(manager, conversation=Conversation(api="chat"), model="m")
    with pytest.raises(ValueError, match="messages"):
        stream_chat(manager, conversation=Conversation(api="chat"), model="m", messages=[])


# -- Azure's 400 over a mocked transport -----------------------------------------------------


def sse(request: dict[str, Any]) -> bytes:
    body = P.response_object(
        {"model": "m", **request}, response_id="resp_b", output=P.response_output(request)
    )
    return b"".join(P.sse_event(data, name) for name, data in P.response_events(body))


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


@pytest.mark.anyio
async def test_azure_400_previous_response_not_found_is_recovered(
    mock: respx.MockRouter,
) -> None:
    """A 400 previous_response_not_found (Azure's answer) is recovered like the 404: the
    second request has no previous_response_id and the whole transcript; one `recovered`."""
    error = {
        "error": {
            "message": "Previous response with id 'resp_a' not found.",
            "type": "invalid_request_error",
            "param": "previous_response_id",
            "code": "previous_response_not_found",
        }
    }
    route = mock.post("/responses").mock(
        side_effect=[
            httpx.Response(400, json=error),
            httpx.Response(
                200,
                content=sse({"input": "second"}),
                headers={"content-type": "text/event-stream"},
            ),
        ]
    )

    def factory(index: int) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(api_key="k", base_url=BASE, http_client=httpx.AsyncClient())

    conversation = continued_conversation()
    config = PoolConfig(retry=RetryPolicy(initial_backoff=0.01, jitter=0.0))
    async with ConnectionManager(config, client_factory=factory) as manager:
        stream = stream_response(manager, conversation=conversation, model="m")
        async with stream:
            events = [event async for event in stream]
    first, second = (json.loads(call.request.content) for call in route.calls)
    assert first["previous_response_id"] == "resp_a"
    assert first["input"] == [{"type": "message", "role": "user", "content": "second"}]
    assert "previous_response_id" not in second
    assert [item["role"] for item in second["input"]] == ["user", "assistant", "user"]
    assert "msg_0123456789" not in json.dumps(second)
    assert [e.type for e in events].count("recovered") == 1
    recovered = events[0]
    assert recovered.type == "recovered"
    assert recovered.status == 400
    assert conversation.last_response_id == "resp_b"


def sse_events(*events: tuple[str, dict[str, Any]]) -> bytes:
    return b"".join(
        P.sse_event({"type": name, "sequence_number": n, **data}, name)
        for n, (name, data) in enumerate(events)
    )


def created() -> tuple[str, dict[str, Any]]:
    pending = P.response_object({"model": "m"}, response_id="resp_x", output=[], done=False)
    return ("response.created", {"response": pending})


def sse_response(body: bytes) -> httpx.Response:
    return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})


def respx_manager() -> ConnectionManager:
    def factory(index: int) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(api_key="k", base_url=BASE, http_client=httpx.AsyncClient())

    config = PoolConfig(retry=RetryPolicy(initial_backoff=0.01, max_backoff=0.02, jitter=0.0))
    return ConnectionManager(config, client_factory=factory)


ERROR_EVENT = {"message": "The server had an error.", "code": "server_error", "param": None}


@pytest.mark.anyio
@pytest.mark.parametrize(
    "first",
    [
        sse_events(created(), ("error", ERROR_EVENT)),
        sse_events(created(), ("response.in_progress", created()[1])),
    ],
    ids=["transient-error-event", "truncated"],
)
async def test_failure_before_output_is_retried(mock: respx.MockRouter, first: bytes) -> None:
    """A transient `error` event, or a stream ending before response.completed, is retried
    while nothing was yielded: two requests, one `retried` event, the reply once."""
    route = mock.post("/responses").mock(
        side_effect=[sse_response(first), sse_response(sse({"input": "q"}))]
    )
    async with respx_manager() as manager:
        stream = stream_response(manager, model="m", input="q")
        async with stream:
            events = [event async for event in stream]
    assert route.call_count == 2
    assert [e.type for e in events][:2] == ["recovered", "chunk"]
    assert events[0].type == "recovered"
    assert events[0].kind == "retried"
    assert "".join(e.content for e in events if e.type == "chunk") == "Simulated reply to: q"


@pytest.mark.anyio
async def test_non_transient_error_event_is_not_retried(mock: respx.MockRouter) -> None:
    """An `error` event with a non-transient code ends the stream with StreamInterruptedError
    carrying that code, after one request."""
    error = {**ERROR_EVENT, "code": "invalid_prompt", "message": "Invalid prompt."}
    route = mock.post("/responses").mock(
        return_value=sse_response(sse_events(created(), ("error", error)))
    )
    async with respx_manager() as manager:
        stream = stream_response(manager.with_options(session_id="s"), model="m", input="q")
        with pytest.raises(StreamInterruptedError) as info:
            async with stream:
                await stream.__anext__()
    assert route.call_count == 1
    assert info.value.code == "invalid_prompt"
    assert info.value.partial_text == ""
    assert info.value.session_id == "s"


@pytest.mark.anyio
async def test_error_before_output_as_an_event(mock: respx.MockRouter) -> None:
    """on_error="event": an API error that is not recovered becomes the only event."""
    body = {"error": {"message": "Invalid value.", "type": "x", "param": None, "code": None}}
    route = mock.post("/responses").mock(return_value=httpx.Response(400, json=body))
    async with respx_manager() as manager:
        stream = stream_response(manager, on_error="event", model="m", input="q")
        async with stream:
            events = [event async for event in stream]
    assert route.call_count == 1
    [error] = events
    assert error.type == "error"
    assert error.error.startswith("BadRequestError")


@pytest.mark.anyio
async def test_error_event_before_output_describes_the_failure(mock: respx.MockRouter) -> None:
    """on_error="event", before any output: a 400 becomes an `error` event with its class,
    status, not retryable, no output; 503s until retries run out: retryable, status 503."""
    body = {"error": {"message": "Invalid value.", "type": "x", "param": None, "code": None}}
    mock.post("/responses").mock(
        side_effect=[httpx.Response(400, json=body)] + [httpx.Response(503, json=body)] * 4
    )
    async with respx_manager() as m:
        refused = stream_response(m, on_error="event", model="m", input="q")
        async with refused:
            [first] = [event async for event in refused]
        exhausted = stream_response(m, on_error="event", model="m", input="q")
        async with exhausted:
            [second] = [event async for event in exhausted]
    assert isinstance(first, ErrorEvent)
    assert (first.error_type, first.status, first.retryable, first.output_started) == (
        "BadRequestError",
        400,
        False,
        False,
    )
    assert first.request_id == refused.request_id is not None
    assert isinstance(second, ErrorEvent)
    assert (second.error_type, second.status, second.retryable, second.output_started) == (
        "InternalServerError",
        503,
        True,
        False,
    )


def cut_after_output(last: tuple[str, dict[str, Any]] | None) -> bytes:
    """The simulated answer to "a b c" without its response.completed, then ``last``."""
    body = P.response_object(
        {"model": "m", "input": "a b c"}, response_id="resp_c", output=P.response_output({})
    )
    events = list(P.response_events(body))[:-1]
    if last is not None:
        events.append(last)
    return b"".join(
        P.sse_event({"sequence_number": 90 + n, **data} | {"type": name}, name)
        for n, (name, data) in enumerate(events)
    )


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("last", "error_type", "retryable"),
    [
        (("error", {**ERROR_EVENT, "code": "invalid_prompt"}), "StreamFailure", False),
        (None, "StreamTruncated", True),
    ],
    ids=["non-transient-error-event", "truncated"],
)
async def test_error_event_after_output_describes_the_failure(
    mock: respx.MockRouter, last: Any, error_type: str, retryable: bool
) -> None:
    """on_error="event", after text was yielded: the `error` event says output had started,
    carries the partial text, the failure's class and whether it was transient; one request."""
    route = mock.post("/responses").mock(return_value=sse_response(cut_after_output(last)))
    async with respx_manager() as m:
        stream = stream_response(m, on_error="event", model="m", input="a b c")
        async with stream:
            events = [event async for event in stream]
    assert route.call_count == 1
    *chunks, error = events
    assert {e.type for e in chunks} == {"chunk"}
    assert isinstance(error, ErrorEvent)
    assert (error.error_type, error.status, error.retryable, error.output_started) == (
        error_type,
        None,
        retryable,
        True,
    )
    assert error.partial_text == "".join(e.content for e in chunks)
    assert error.partial_text
