"""The façade's one path serves create, parse and embeddings with the SDK's own types."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pydantic
import pytest
import respx
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ParsedChatCompletion
from openai.types.responses import ParsedResponse

from llmpool import ConnectionManager, PoolConfig, RateLimitPolicy
from llmpool.instrumentation import AttemptStarted, Instrument, RequestFinished

pytestmark = pytest.mark.anyio

BASE = "http://respx.test/v1"
LIMITS = {"x-ratelimit-limit-requests": "500", "x-ratelimit-remaining-requests": "499"}


class City(pydantic.BaseModel):
    name: str
    population: int


CITY = {"name": "Lyon", "population": 522000}
RESPONSE = {
    "id": "resp_1",
    "object": "response",
    "created_at": 1,
    "model": "gpt-x-2025",
    "status": "completed",
    "parallel_tool_calls": False,
    "tool_choice": "auto",
    "tools": [],
    "output": [
        {
            "type": "message",
            "id": "msg_1",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": json.dumps(CITY), "annotations": []}],
        }
    ],
    "usage": {
        "input_tokens": 11,
        "output_tokens": 7,
        "total_tokens": 18,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 0},
    },
}
COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-x-2025",
    "choices": [
        {
            "index": 0,
            "finish_reason": "stop",
            "message": {"role": "assistant", "content": json.dumps(CITY)},
        }
    ],
    "usage": {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15},
}
EMBEDDINGS = {
    "object": "list",
    "model": "emb-x",
    "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3]}],
    "usage": {"prompt_tokens": 4, "total_tokens": 4},
}


class Finished(Instrument):
    def __init__(self) -> None:
        self.events: list[RequestFinished] = []
        self.started: list[tuple[str | None, bool]] = []

    def on_attempt_started(self, event: AttemptStarted) -> None:
        self.started.append((event.operation, event.stream))

    def on_request_finished(self, event: RequestFinished) -> None:
        self.events.append(event)


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


def manager(finished: Finished, **config: Any) -> ConnectionManager:
    def factory(index: int) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(api_key="k", base_url=BASE, http_client=httpx.AsyncClient())

    return ConnectionManager(PoolConfig(**config), client_factory=factory, instruments=[finished])


async def test_responses_parse_returns_the_parsed_model(mock: respx.MockRouter) -> None:
    """responses.parse(text_format=City) returns the SDK's ParsedResponse[City]; the usage
    and the answering model reach the request's event; the headers are learned."""
    route = mock.post("/responses").mock(
        return_value=httpx.Response(200, json=RESPONSE, headers=LIMITS)
    )
    finished = Finished()
    async with manager(finished) as m:
        parsed = await m.with_options(session_id="t1").responses.parse(
            model="gpt-x", input="the largest city near the Rhône", text_format=City
        )
        assert isinstance(parsed, ParsedResponse)
        assert parsed.output_parsed == City(**CITY)
        (row,) = m.stats().rate_limits
        assert (row.model, row.requests_per_minute) == ("gpt-x", 500)
    sent = json.loads(route.calls.last.request.content)
    assert sent["text"]["format"]["type"] == "json_schema"
    assert route.calls.last.request.headers["x-session-id"] == "t1"
    (event,) = finished.events
    assert (event.operation, event.outcome, event.model) == ("responses", "completed", "gpt-x")
    assert (event.input_tokens, event.output_tokens, event.total_tokens) == (11, 7, 18)
    assert event.response_model == "gpt-x-2025"
    assert (event.server_address, event.server_port) == ("respx.test", 80)
    assert finished.started == [("responses", False)]  # known from the first event on


async def test_chat_parse_returns_the_parsed_model(mock: respx.MockRouter) -> None:
    """chat.completions.parse(response_format=City) returns ParsedChatCompletion[City]."""
    mock.post("/chat/completions").mock(return_value=httpx.Response(200, json=COMPLETION))
    finished = Finished()
    async with manager(finished) as m:
        parsed = await m.chat.completions.parse(
            model="gpt-x",
            messages=[{"role": "user", "content": "a city"}],
            response_format=City,
        )
        assert isinstance(parsed, ParsedChatCompletion)
        assert parsed.choices[0].message.parsed == City(**CITY)
    (event,) = finished.events
    assert (event.operation, event.input_tokens, event.output_tokens) == ("chat", 9, 6)


async def test_embeddings_create_is_retried_and_charges_only_its_input(
    mock: respx.MockRouter,
) -> None:
    """embeddings.create goes through the same path: a 503 is retried; with a token limit
    its estimate has no output part, and the usage settles it."""
    route = mock.post("/embeddings").mock(
        side_effect=[
            httpx.Response(503, json={"error": {"message": "busy", "type": "x"}}),
            httpx.Response(200, json=EMBEDDINGS),
        ]
    )
    finished = Finished()
    policy = RateLimitPolicy(tokens_per_minute=60_000, default_output_tokens=4096)
    async with manager(finished, rate_limit=policy) as m:
        answer = await m.with_options(max_attempts=2).embeddings.create(
            model="emb-x", input="four words of text"
        )
        assert isinstance(answer, CreateEmbeddingResponse)
        assert answer.data[0].embedding == [0.1, 0.2, 0.3]
    assert route.call_count == 2
    (event,) = finished.events
    assert (event.operation, event.attempts, event.outcome) == ("embeddings", 2, "completed")
    assert 0 < event.estimated_tokens < 100  # the input only: no 4,096-token output cap
    assert event.total_tokens == 4
