"""Shared drivers for the instrument tests: a real ``ConnectionManager`` whose SDK clients
talk to a respx-mocked upstream (respx mocks the classic ``httpx`` package, so clients get
``http_client=httpx.AsyncClient()``; see tests/test_http_respx.py).
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx
import openai
import pytest
import respx

from llmpool import ConnectionManager, PoolConfig, RetryPolicy
from llmpool.instrumentation import Instrument, RequestFinished

BASE = "http://respx.test/v1"
HOST = "respx.test"
API_KEY = "sk-test-instruments-0123456789"
MODEL = "m"
MESSAGES: Any = [{"role": "user", "content": "hello"}]
COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "m-2024",
    "choices": [
        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}
    ],
    "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
}
EMBEDDING = {
    "object": "list",
    "model": "e-2024",
    "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
    "usage": {"prompt_tokens": 4, "total_tokens": 4},
}


def error(status: int, **headers: str) -> httpx.Response:
    body = {"error": {"message": "x", "type": "x", "param": None, "code": None}}
    return httpx.Response(status, json=body, headers=headers)


def manager(*instruments: object, max_concurrency: int = 4) -> ConnectionManager:
    def factory(index: int) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            api_key=API_KEY, base_url=BASE, http_client=httpx.AsyncClient(), max_retries=0
        )

    config = PoolConfig(
        pool_size=1,
        max_concurrency=max_concurrency,
        retry=RetryPolicy(initial_backoff=0.01, max_backoff=0.02, jitter=0, max_attempts=2),
    )
    return ConnectionManager(config, client_factory=factory, instruments=instruments)


async def chat(m: ConnectionManager, **options: Any) -> Any:
    return await m.with_options(**options).chat.completions.create(model=MODEL, messages=MESSAGES)


async def mixed(mock: respx.MockRouter, *instruments: object) -> None:
    """One of each: a success, a 429 retried to success, a 500 that fails twice (both
    attempts), a cancelled ``run`` and an embedding; the chat calls one at a time."""
    mock.post("/chat/completions").side_effect = [
        httpx.Response(200, json=COMPLETION),
        error(429, **{"retry-after-ms": "10"}),
        httpx.Response(200, json=COMPLETION),
        error(500),
        error(500),
    ]
    mock.post("/embeddings").return_value = httpx.Response(200, json=EMBEDDING)
    async with manager(*instruments) as m:
        await chat(m, priority="high")
        await chat(m)
        try:
            await chat(m, priority="low")
        except openai.InternalServerError:
            pass
        else:
            raise AssertionError("the 500s must fail the request")
        with anyio.move_on_after(0.05):
            await m.run(lambda client: anyio.sleep_forever())
        await m.embeddings.create(model="e", input="x")


SDK_CHAT_STREAM_TRIO_WARNING = pytest.mark.filterwarnings(
    # openai-python leaves the inner SSE generator of a chat stream unclosed after [DONE];
    # trio warns when it is garbage collected. Not llmpool's (tests/integration do the same).
    "ignore:Async generator .* was garbage collected:ResourceWarning"
)


def sse(*chunks: dict[str, Any]) -> httpx.Response:
    """A Chat Completions stream answer: each chunk as an SSE ``data:`` line, then [DONE]."""
    body = "".join(f"data: {json.dumps(chunk)}\n\n" for chunk in chunks) + "data: [DONE]\n\n"
    return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})


def chunk(content: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-s",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m-2024",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}],
    }


async def stream_chat(m: ConnectionManager) -> str:
    """One streamed chat completion, read to its end: the concatenated text."""
    stream = await m.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    parts: list[str] = []
    async with stream:
        async for event in stream:
            parts.extend(choice.delta.content or "" for choice in event.choices)
    return "".join(parts)


class Finished(Instrument):
    """Keeps every ``RequestFinished`` event."""

    def __init__(self) -> None:
        self.events: list[RequestFinished] = []

    def on_request_finished(self, event: RequestFinished) -> None:
        self.events.append(event)
