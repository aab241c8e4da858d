"""HTTP-level unit tests with respx: real SDK request building and error mapping, mocked
transport. respx mocks the classic ``httpx`` package, so clients get
``http_client=httpx.AsyncClient()`` (the SDK accepts it) instead of its default httpx2 one.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
import respx

from llmpool import ConnectionManager, PoolConfig, RetryPolicy

pytestmark = pytest.mark.anyio

BASE = "http://respx.test/v1"
COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [
        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}
    ],
}
MESSAGES = [{"role": "user", "content": "hello"}]


def error(status: int, code: str | None = None, **headers: str) -> httpx.Response:
    body = {"error": {"message": "x", "type": "x", "param": None, "code": code}}
    return httpx.Response(status, json=body, headers=headers)


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


def manager() -> ConnectionManager:
    def factory(index: int) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(api_key="k", base_url=BASE, http_client=httpx.AsyncClient())

    config = PoolConfig(retry=RetryPolicy(initial_backoff=0.01, max_backoff=0.05, jitter=0))
    return ConnectionManager(config, client_factory=factory)


async def chat(m: ConnectionManager, **options: str) -> str | None:
    completion = await m.with_options(**options).chat.completions.create(
        model="m",
        messages=MESSAGES,  # type: ignore[arg-type]
    )
    return completion.choices[0].message.content


async def test_retry_after_http_date_is_honoured(mock: respx.MockRouter) -> None:
    """A 503 whose Retry-After is an HTTP date 2-3 s ahead is waited out before the retry."""
    date = email.utils.formatdate(math.ceil(time.time()) + 2, usegmt=True)  # 2-3 s ahead
    route = mock.post("/chat/completions")
    route.side_effect = [error(503, **{"retry-after": date}), httpx.Response(200, json=COMPLETION)]
    async with manager() as m:
        started = time.monotonic()
        assert await chat(m) == "hi"
        elapsed = time.monotonic() - started
    assert route.call_count == 2
    assert elapsed >= 1.5  # >= 2 s remained when the date was made; 0.5 s for a loaded box


async def test_connection_errors_are_retried(mock: respx.MockRouter) -> None:
    """A refused connection is retried; the second request succeeds."""
    route = mock.post("/chat/completions")
    route.side_effect = [httpx.ConnectError("refused"), httpx.Response(200, json=COMPLETION)]
    async with manager() as m:
        assert await chat(m) == "hi"
    assert route.call_count == 2


async def test_bad_request_is_sent_once(mock: respx.MockRouter) -> None:
    """A 400 reaches the server once and propagates as openai.BadRequestError."""
    route = mock.post("/chat/completions").mock(return_value=error(400))
    async with manager() as m:
        with pytest.raises(openai.BadRequestError):
            await chat(m)
    assert route.call_count == 1


async def test_every_request_carries_the_session_header(mock: respx.MockRouter) -> None:
    """The façade adds x-session-id next to the caller's own extra_headers."""
    route = mock.post("/chat/completions").mock(return_value=httpx.Response(200, json=COMPLETION))
    async with manager() as m:
        await m.with_options(session_id="tty-2").chat.completions.create(
            model="m",
            messages=MESSAGES,  # type: ignore[arg-type]
            extra_headers={"x-trace": "abc"},
        )
    sent = route.calls.last.request.headers
    assert (sent["x-session-id"], sent["x-trace"]) == ("tty-2", "abc")


async def test_sdk_does_not_retry_on_its_own(mock: respx.MockRouter) -> None:
    """Pooled clients have max_retries=0: with max_attempts=1, one 500 means one request."""
    route = mock.post("/chat/completions").mock(return_value=error(500))

    def factory(index: int) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(api_key="k", base_url=BASE, http_client=httpx.AsyncClient())

    config = PoolConfig(retry=RetryPolicy(max_attempts=1))
    async with ConnectionManager(config, client_factory=factory) as m:
        with pytest.raises(openai.InternalServerError):
            await chat(m)
    assert route.call_count == 1
