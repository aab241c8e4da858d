"""The simulated provider (llmpool.testing) against the real openai SDK, over loopback HTTP."""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import anyio
import httpx
import openai
import pydantic
import pytest
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from llmpool.testing import FaultPlan, RecordedRequest, ScriptedFault, SimulatedProvider

from .fixtures import simulator_fixtures

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

# The openai SDK stops reading a chat stream at ``data: [DONE]`` without closing its inner
# async generators; on trio their garbage collection warns (an SDK issue, not the simulator's).
SDK_CHAT_STREAM_TRIO_WARNING = pytest.mark.filterwarnings(
    "ignore:Async generator .* was garbage collected:ResourceWarning"
)
PREFIX = "Simulated reply to: "


shared_sim, sim = simulator_fixtures("shared")


@pytest.fixture
async def client(sim: SimulatedProvider) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=sim.base_url, api_key="test", max_retries=0) as c:
        yield c


def outcomes(sim: SimulatedProvider) -> list[str]:
    return [record.outcome for record in sim.requests]


async def collect(stream: AsyncIterable[Any], sink: list[Any]) -> None:
    """Append the stream's items to sink as they arrive (kept if the stream then fails)."""
    async for item in stream:
        sink.append(item)  # noqa: PERF401 - items must be kept when iteration raises


# -- answers ---------------------------------------------------------------------------------


async def test_responses_create_parses_as_typed_response(client: openai.AsyncOpenAI) -> None:
    """POST /v1/responses answers a body openai's Response model validates, echoing the
    model, with the deterministic text built from the last user message and word counts."""
    raw = await client.responses.with_raw_response.create(
        model="gpt-sim",
        instructions="be brief",
        input=[
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "an answer"},
            {"role": "user", "content": [{"type": "input_text", "text": "second question here"}]},
        ],
    )
    assert raw.headers["x-request-id"].startswith("req_")
    validated = Response.model_validate(json.loads(raw.text))
    response = raw.parse()
    assert validated.id == response.id
    assert response.id.startswith("resp_")
    assert len(response.id) == len("resp_") + 24
    assert response.object == "response"
    assert response.status == "completed"
    assert response.model == "gpt-sim"
    assert response.output_text == PREFIX + "second question here"
    message = response.output[0]
    assert message.type == "message"
    assert message.id.startswith("msg_")
    assert response.usage is not None
    assert response.usage.input_tokens == 2 + 2 + 2 + 3  # instructions + every message's words
    assert response.usage.output_tokens == 6
    assert response.usage.total_tokens == 15


async def test_long_input_is_truncated_to_200_characters(client: openai.AsyncOpenAI) -> None:
    """The reply echoes at most 200 characters of the user's message."""
    response = await client.responses.create(model="m", input="x" * 500)
    assert response.output_text == PREFIX + "x" * 200


async def test_chat_completion_parses_as_typed_chat_completion(client: openai.AsyncOpenAI) -> None:
    """POST /v1/chat/completions answers a ChatCompletion with the deterministic text."""
    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-sim",
        messages=[
            {"role": "system", "content": "sys"},
            {"role": "user", "content": [{"type": "text", "text": "hello chat"}]},
        ],
    )
    completion = ChatCompletion.model_validate(json.loads(raw.text))
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "gpt-sim"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == PREFIX + "hello chat"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (3, 5)
    assert completion.usage.total_tokens == 8


async def test_responses_stream_events_in_order_rebuild_the_text(
    client: openai.AsyncOpenAI,
) -> None:
    """stream=True sends the Responses SSE events in the API's order with consecutive
    sequence numbers; the deltas rebuild the non-streamed text and completed carries usage."""
    expected = (await client.responses.create(model="m", input="stream me please")).output_text
    stream = await client.responses.create(model="m", input="stream me please", stream=True)
    events = [event async for event in stream]
    types = [event.type for event in events]
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * len(deltas),
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert len(deltas) == 6
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert "".join(deltas) == expected
    completed = events[-1]
    assert completed.type == "response.completed"
    assert completed.response.output_text == expected
    assert completed.response.usage is not None
    assert completed.response.usage.output_tokens == 6


@SDK_CHAT_STREAM_TRIO_WARNING
async def test_chat_stream_chunks_rebuild_the_text(client: openai.AsyncOpenAI) -> None:
    """A streamed chat completion sends the role first, then content chunks, a finish_reason
    chunk and, with include_usage, a usage chunk; the content equals the non-streamed text."""
    messages: Any = [{"role": "user", "content": "chat stream"}]
    expected = (await client.chat.completions.create(model="m", messages=messages)).choices[0]
    stream = await client.chat.completions.create(
        model="m", messages=messages, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == expected.message.content
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5


async def test_unknown_path_is_a_json_404(client: openai.AsyncOpenAI) -> None:
    """An unknown path answers 404 with an OpenAI error body, recorded as not_found."""
    with pytest.raises(openai.NotFoundError) as caught:
        await client.get("/embeddings-nope", cast_to=object)
    assert caught.value.response.headers["x-request-id"].startswith("req_")
    assert caught.value.request_id == caught.value.response.headers["x-request-id"]
    assert caught.value.type == "invalid_request_error"
    assert "Invalid URL (GET /v1/embeddings-nope)" in caught.value.message


async def test_malformed_requests_get_a_400(sim: SimulatedProvider) -> None:
    """A body that is not JSON, or one without a model, gets a 400 invalid_request_error;
    the unparsable body is recorded as None."""
    async with httpx.AsyncClient(base_url=sim.base_url) as http:
        unparsable = await http.post(
            "/responses", content=b"{not json", headers={"content-type": "application/json"}
        )
        no_model = await http.post("/chat/completions", json={"messages": []})
    assert unparsable.status_code == 400
    assert unparsable.json()["error"]["type"] == "invalid_request_error"
    assert no_model.status_code == 400
    assert no_model.json()["error"]["param"] == "model"
    assert [(r.body, r.outcome) for r in sim.requests] == [
        (None, "status:400"),
        ({"messages": []}, "status:400"),
    ]


# -- authentication --------------------------------------------------------------------------


async def test_wrong_api_key_gets_401_and_is_recorded_once() -> None:
    """With api_key set, another key gets a 401 invalid_api_key (one recorded request); the
    right key is answered; a request without Authorization gets a 401 too."""
    async with SimulatedProvider(api_key="sk-right-key-123456") as sim:
        async with openai.AsyncOpenAI(
            base_url=sim.base_url, api_key="sk-wrong-key-987654", max_retries=0
        ) as bad:
            with pytest.raises(openai.AuthenticationError) as caught:
                await bad.responses.create(model="m", input="hi")
        assert caught.value.status_code == 401
        assert caught.value.code == "invalid_api_key"
        assert caught.value.type == "invalid_request_error"
        assert caught.value.message.startswith("Error code: 401 - ")
        assert "Incorrect API key provided: sk-" in str(caught.value.body)
        assert "987654" not in str(caught.value.body)  # the key is masked
        assert [r.outcome for r in sim.requests] == ["unauthorized"]

        async with openai.AsyncOpenAI(
            base_url=sim.base_url, api_key="sk-right-key-123456", max_retries=0
        ) as good:
            assert (await good.responses.create(model="m", input="hi")).status == "completed"
        async with httpx.AsyncClient(base_url=sim.base_url) as http:
            missing = await http.post("/responses", json={"model": "m", "input": "hi"})
        assert missing.status_code == 401
        assert [r.outcome for r in sim.requests] == ["unauthorized", "ok", "unauthorized"]


# -- faults ----------------------------------------------------------------------------------


async def test_scripted_rate_limit_carries_retry_after(
    sim: SimulatedProvider, client: openai.AsyncOpenAI
) -> None:
    """A scripted 429 sends its retry-after / retry-after-ms values and extra headers
    verbatim (without either, the plan's retry_after), with code rate_limit_exceeded and
    type requests."""
    sim.set_fault_plan(
        FaultPlan(
            scripted=[
                ScriptedFault(kind="rate_limit", retry_after=2.5, headers={"x-should-retry": "no"}),
                ScriptedFault(kind="rate_limit", retry_after_ms=1500),
                ScriptedFault(kind="rate_limit"),
            ],
            retry_after=0.4,
        )
    )
    with pytest.raises(openai.RateLimitError) as first:
        await client.responses.create(model="m", input="hi")
    headers = first.value.response.headers
    assert headers["retry-after"] == "2.5"
    assert headers["x-should-retry"] == "no"
    assert "retry-after-ms" not in headers
    assert first.value.code == "rate_limit_exceeded"
    assert first.value.type == "requests"
    with pytest.raises(openai.RateLimitError) as second:
        await client.responses.create(model="m", input="hi")
    assert second.value.response.headers["retry-after-ms"] == "1500"
    assert "retry-after" not in second.value.response.headers
    with pytest.raises(openai.RateLimitError) as third:
        await client.responses.create(model="m", input="hi")
    assert third.value.response.headers["retry-after"] == "1"  # 0.4 s rounded up
    assert (await client.responses.create(model="m", input="hi")).status == "completed"
    assert outcomes(sim) == ["rate_limit", "rate_limit", "rate_limit", "ok"]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("retry-after", {"retry-after": "2"}),
        ("retry-after-ms", {"retry-after-ms": "1200"}),
        ("both", {"retry-after": "2", "retry-after-ms": "1200"}),
        ("none", {}),
    ],
)
async def test_random_rate_limit_retry_after_header_modes(
    sim: SimulatedProvider, client: openai.AsyncOpenAI, mode: Any, expected: dict[str, str]
) -> None:
    """rate_limit_rate=1 answers 429s whose wait (1.2 s) is sent in whole seconds rounded up
    (retry-after) and/or milliseconds (retry-after-ms), as retry_after_header says."""
    sim.set_fault_plan(FaultPlan(rate_limit_rate=1.0, retry_after=1.2, retry_after_header=mode))
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    headers = caught.value.response.headers
    sent = {name: headers[name] for name in ("retry-after", "retry-after-ms") if name in headers}
    assert sent == expected


async def test_insufficient_quota_is_a_429_without_retry_after(
    sim: SimulatedProvider, client: openai.AsyncOpenAI
) -> None:
    """insufficient_quota answers 429 with code and type insufficient_quota, OpenAI's message
    and no retry-after header."""
    sim.set_fault_plan(FaultPlan(insufficient_quota_rate=1.0, retry_after=3.0))
    with pytest.raises(openai.RateLimitError) as caught:
        await client.responses.create(model="m", input="hi")
    assert caught.value.code == "insufficient_quota"
    assert caught.value.type == "insufficient_quota"
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["message"] == (
        "You exceeded your current quota, please check your plan and billing details."
    )
    assert "retry-after" not in caught.value.response.headers
    assert "retry-after-ms" not in caught.value.response.headers
    assert outcomes(sim) == ["insufficient_quota"]


async def test_server_errors_raise_internal_server_error(
    sim: SimulatedProvider, client: openai.AsyncOpenAI
) -> None:
    """A scripted 503 and a drawn 500 raise InternalServerError with a server_error body;
    a scripted 400 raises BadRequestError with invalid_request_error."""
    sim.set_fault_plan(
        FaultPlan(
            error_rates={500: 1.0},
            scripted=[
                ScriptedFault(kind="status", status=503),
                ScriptedFault(kind="status", status=400),
            ],
        )
    )
    with pytest.raises(openai.InternalServerError) as scripted:
        await client.responses.create(model="m", input="hi")
    assert scripted.value.status_code == 503
    assert scripted.value.type == "server_error"
    with pytest.raises(openai.BadRequestError) as bad:
        await client.responses.create(model="m", input="hi")
    assert bad.value.type == "invalid_request_error"
    with pytest.raises(openai.InternalServerError) as drawn:
        await client.responses.create(model="m", input="hi")
    assert drawn.value.status_code == 500
    assert outcomes(sim) == ["status:503", "status:400", "status:500"]


async def test_drop_raises_api_connection_error(
    sim: SimulatedProvider, client: openai.AsyncOpenAI
) -> None:
    """A drop closes the connection before any answer: create() raises APIConnectionError
    (streamed or not; a scripted stream_disconnect on a non-streaming request is a drop too),
    and the server keeps answering later requests."""
    script = [ScriptedFault(kind="drop")] * 2 + [ScriptedFault(kind="stream_disconnect")]
    sim.set_fault_plan(FaultPlan(scripted=script))
    with pytest.raises(openai.APIConnectionError) as plain:
        await client.responses.create(model="m", input="hi")
    assert not isinstance(plain.value, openai.APITimeoutError)
    assert isinstance(plain.value.__cause__, Exception)
    assert "disconnected" in str(plain.value.__cause__)
    with pytest.raises(openai.APIConnectionError):
        await client.responses.create(model="m", input="hi", stream=True)
    with pytest.raises(openai.APIConnectionError):
        await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert (await client.responses.create(model="m", input="hi")).status == "completed"
    assert outcomes(sim) == ["drop", "drop", "drop", "ok"]


async def test_mid_stream_disconnect_after_exactly_n_events(
    sim: SimulatedProvider, client: openai.AsyncOpenAI
) -> None:
    """stream_disconnect sends exactly after_events SSE events, then closes the connection:
    iterating the SDK stream yields them and then raises APIConnectionError."""
    sim.set_fault_plan(
        FaultPlan(scripted=[ScriptedFault(kind="stream_disconnect", after_events=5)])
    )
    received: list[Any] = []
    stream = await client.responses.create(model="m", input="one two three", stream=True)
    with pytest.raises(openai.APIConnectionError):
        await collect(stream, received)
    assert len(received) == 5
    assert received[-1].type == "response.output_text.delta"
    assert outcomes(sim) == ["stream_disconnect"]


async def test_random_chat_stream_disconnect(
    sim: SimulatedProvider, client: openai.AsyncOpenAI
) -> None:
    """stream_disconnect_rate=1 cuts a chat stream after stream_disconnect_after chunks, and
    answers non-streaming requests normally."""
    sim.set_fault_plan(FaultPlan(stream_disconnect_rate=1.0, stream_disconnect_after=2))
    messages: Any = [{"role": "user", "content": "a b c"}]
    chunks: list[Any] = []
    stream = await client.chat.completions.create(model="m", messages=messages, stream=True)
    with pytest.raises(openai.APIConnectionError):
        await collect(stream, chunks)
    assert len(chunks) == 2
    completion = await client.chat.completions.create(model="m", messages=messages)
    assert completion.choices[0].message.content == PREFIX + "a b c"
    assert outcomes(sim) == ["stream_disconnect", "ok"]


async def test_scripted_faults_come_first_and_are_consumed_once_each(
    sim: SimulatedProvider, client: openai.AsyncOpenAI
) -> None:
    """Scripted faults are used before the random rates, each by exactly one request even
    when 12 requests arrive at once."""
    script = [ScriptedFault(kind="status", status=502)] * 5 + [ScriptedFault(kind="ok")]
    sim.set_fault_plan(FaultPlan(error_rates={500: 1.0}, scripted=script))
    statuses: list[int] = []

    async def one() -> None:
        try:
            await client.responses.create(model="m", input="hi")
        except openai.APIStatusError as exc:
            statuses.append(exc.status_code)
        else:
            statuses.append(200)

    async with anyio.create_task_group() as tg:
        for _ in range(12):
            tg.start_soon(one)
    assert sorted(statuses) == [200] + [500] * 6 + [502] * 5


async def test_rpm_limit_rejects_the_request_over_quota(
    sim: SimulatedProvider, client: openai.AsyncOpenAI
) -> None:
    """With rpm_limit=3, the 4th request within a minute gets a 429 rate_limit_exceeded
    whose retry-after is the whole seconds until the oldest request leaves the window."""
    sim.set_fault_plan(FaultPlan(rpm_limit=3))
    for _ in range(3):
        await client.responses.create(model="m", input="hi")
    with pytest.raises(openai.RateLimitError) as caught:
        await client.responses.create(model="m", input="hi")
    assert caught.value.code == "rate_limit_exceeded"
    assert "Limit 3, Used 3" in caught.value.message
    wait = int(caught.value.response.headers["retry-after"])
    assert 59 <= wait <= 60
    assert outcomes(sim) == ["ok", "ok", "ok", "rate_limit"]


async def test_latency_delays_answers(sim: SimulatedProvider, client: openai.AsyncOpenAI) -> None:
    """The plan's service time is waited before answering; a scripted latency overrides it."""
    sim.set_fault_plan(
        FaultPlan(
            latency_min=0.15, latency_max=0.2, scripted=[ScriptedFault(kind="ok", latency=0.0)]
        )
    )
    start = time.monotonic()
    await client.responses.create(model="m", input="hi")
    fast = time.monotonic() - start
    start = time.monotonic()
    await client.responses.create(model="m", input="hi")
    slow = time.monotonic() - start
    assert fast < 0.15 <= slow


async def test_stream_chunk_delay_spaces_events(
    sim: SimulatedProvider, client: openai.AsyncOpenAI
) -> None:
    """stream_chunk_delay is waited between consecutive SSE events."""
    sim.set_fault_plan(FaultPlan(stream_chunk_delay=0.01))
    start = time.monotonic()
    stream = await client.responses.create(model="m", input="a", stream=True)
    count = len([event async for event in stream])
    assert time.monotonic() - start >= 0.01 * (count - 1)


async def test_seeded_plans_are_reproducible(
    sim: SimulatedProvider, client: openai.AsyncOpenAI
) -> None:
    """The same seeded plan gives the same sequence of outcomes; set_fault_plan restarts it."""
    plan = FaultPlan(error_rates={500: 0.3}, rate_limit_rate=0.3, seed=1234)
    runs: list[list[str]] = []
    for _ in range(2):
        sim.set_fault_plan(plan)
        sim.clear_requests()
        for _ in range(12):
            with contextlib.suppress(openai.APIStatusError):
                await client.responses.create(model="m", input="hi")
        runs.append(outcomes(sim))
    assert runs[0] == runs[1]
    assert {"ok", "status:500", "rate_limit"} <= set(runs[0])


# -- stored responses ------------------------------------------------------------------------


async def test_conversation_state_belongs_to_one_instance(
    sim: SimulatedProvider, client: openai.AsyncOpenAI
) -> None:
    """A response stored on one instance continues there (previous_response_id, output item
    ids, item_reference, retrieve) but is unknown to another instance: 404s."""
    first = await client.responses.create(model="m", input="remember me")
    item_id = first.output[0].id
    follow = await client.responses.create(
        model="m", input="and then?", previous_response_id=first.id
    )
    assert follow.previous_response_id == first.id
    replay: Any = [
        {"type": "item_reference", "id": item_id},
        {"role": "user", "content": "again"},
    ]
    assert (await client.responses.create(model="m", input=replay)).status == "completed"
    assert (await client.responses.retrieve(first.id)).output_text == first.output_text

    async with (
        SimulatedProvider(name="other") as other,
        openai.AsyncOpenAI(base_url=other.base_url, api_key="test", max_retries=0) as elsewhere,
    ):
        with pytest.raises(openai.NotFoundError) as previous:
            await elsewhere.responses.create(model="m", input="hi", previous_response_id=first.id)
        assert previous.value.code == "previous_response_not_found"
        assert previous.value.param == "previous_response_id"
        assert f"Previous response with id '{first.id}' not found." in previous.value.message
        with pytest.raises(openai.NotFoundError) as item:
            await elsewhere.responses.create(model="m", input=replay)
        assert f"Item with id '{item_id}' not found." in item.value.message
        assert item.value.param == "input"
        with pytest.raises(openai.NotFoundError):
            await elsewhere.responses.retrieve(first.id)
        assert [r.outcome for r in other.requests] == ["not_found"] * 3
    assert outcomes(sim) == ["ok"] * 4


async def test_store_false_is_not_kept(sim: SimulatedProvider, client: openai.AsyncOpenAI) -> None:
    """A response created with store=False cannot be continued: previous_response_id 404s."""
    unstored = await client.responses.create(model="m", input="hi", store=False)
    assert unstored.id not in sim.stored_response_ids
    with pytest.raises(openai.NotFoundError):
        await client.responses.create(model="m", input="hi", previous_response_id=unstored.id)


# -- recording -------------------------------------------------------------------------------


async def test_requests_are_recorded_with_headers_and_bodies(
    sim: SimulatedProvider, client: openai.AsyncOpenAI
) -> None:
    """Every request is recorded in arrival order with lower-cased headers, its JSON body
    and its outcome; count filters by path and clear_requests forgets them."""
    await client.responses.create(
        model="m", input="hi", extra_headers={"X-Session-Id": "session-42"}
    )
    await client.chat.completions.create(model="c", messages=[{"role": "user", "content": "x"}])
    records = sim.requests
    assert all(isinstance(record, RecordedRequest) for record in records)
    first, second = records
    assert (first.method, first.path) == ("POST", "/v1/responses")
    assert first.headers["x-session-id"] == "session-42"
    assert first.headers["authorization"] == "Bearer test"
    assert first.body == {"model": "m", "input": "hi"}
    assert second.path == "/v1/chat/completions"
    assert second.body["model"] == "c"
    assert first.received_at <= second.received_at <= time.monotonic()
    assert sim.count() == 2
    assert sim.count(path="/v1/responses") == 1
    records.clear()  # a snapshot: the provider's list is untouched
    assert sim.count() == 2
    sim.clear_requests()
    assert sim.requests == []
    with pytest.raises(pydantic.ValidationError):
        first.outcome = "changed"  # type: ignore[misc]


# -- lifecycle and validation ----------------------------------------------------------------


def test_provider_starts_once_and_listens_on_loopback_only() -> None:
    """base_url needs a started provider, start() twice raises RuntimeError, stop() is
    idempotent and only loopback hosts are accepted."""
    sim = SimulatedProvider(name="lifecycle")
    with pytest.raises(RuntimeError):
        _ = sim.base_url
    sim.stop()  # before start: a no-op
    with sim:
        assert sim.base_url.startswith("http://127.0.0.1:")
        assert sim.port > 0
        with pytest.raises(RuntimeError, match="already started"):
            sim.start()
    sim.stop()
    with pytest.raises(RuntimeError):
        sim.start()
    with SimulatedProvider(host="localhost") as local:
        assert local.base_url.startswith("http://127.0.0.1:")
        with pytest.raises(OSError, match="in use"), SimulatedProvider(port=local.port):
            pass
    with pytest.raises(ValueError, match="loopback"):
        SimulatedProvider(host="0.0.0.0")
    with pytest.raises(ValueError, match="loopback"):
        SimulatedProvider(host="example.com")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"latency_min": -0.1}, "latency_min"),
        ({"latency_min": 0.5, "latency_max": 0.1}, "latency_max"),
        ({"rate_limit_rate": 1.5}, "rate_limit_rate"),
        ({"drop_rate": -0.1}, "drop_rate"),
        ({"error_rates": {500: 2.0}}, "error_rates"),
        ({"error_rates": {200: 0.1}}, "error_rates"),
        ({"rate_limit_rate": 0.6, "error_rates": {500: 0.6}}, "rate_limit_rate"),
        ({"rpm_limit": 0}, "rpm_limit"),
        ({"retry_after_header": "sometimes"}, "retry_after_header"),
        ({"stream_disconnect_after": -1}, "stream_disconnect_after"),
        ({"unknown_knob": 1}, "unknown_knob"),
    ],
)
def test_fault_plan_validation_names_the_field(kwargs: dict[str, Any], field: str) -> None:
    """FaultPlan rejects bad values with a ValidationError whose message names the field."""
    with pytest.raises(pydantic.ValidationError, match=field):
        FaultPlan(**kwargs)


def test_fault_plans_are_frozen_and_scripted_faults_validated() -> None:
    """FaultPlan is immutable; ScriptedFault checks its kind and status range."""
    plan = FaultPlan()
    with pytest.raises(pydantic.ValidationError):
        plan.drop_rate = 0.5  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError, match="kind"):
        ScriptedFault(kind="explode")
    with pytest.raises(pydantic.ValidationError, match="status"):
        ScriptedFault(kind="status", status=200)
    assert math.isclose(FaultPlan(error_rates={500: 0.5}, drop_rate=0.5).drop_rate, 0.5)
