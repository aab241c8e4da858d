"""Bad input from the upstream or the caller: junk headers never change a call's outcome.

HTTP-level cases use respx, which mocks the classic ``httpx`` package: clients get
``http_client=httpx.AsyncClient()`` (see tests/test_http_respx.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest
import respx

from llmpool import ConnectionManager, PoolConfig, RetryPolicy, classify, parse_retry_after

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
# An HTTP date whose year the datetime module cannot hold: parsedate_to_datetime raised
# OverflowError ("signed integer is greater than maximum").
HUGE_YEAR_DATE = "Mon, 01 Jan 99999999999 00:00:00 GMT"


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


def manager(max_attempts: int = 2) -> ConnectionManager:
    def factory(index: int) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(api_key="k", base_url=BASE, http_client=httpx.AsyncClient())

    retry = RetryPolicy(max_attempts=max_attempts, initial_backoff=0.01, max_backoff=0.05, jitter=0)
    return ConnectionManager(PoolConfig(retry=retry), client_factory=factory)


async def chat(m: ConnectionManager) -> str | None:
    completion = await m.chat.completions.create(
        model="m",
        messages=MESSAGES,  # type: ignore[arg-type]
    )
    return completion.choices[0].message.content


# -- junk in the upstream's headers -------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({"retry-after": HUGE_YEAR_DATE}, None, id="date-year-overflow"),
        pytest.param({"retry-after": "1e400"}, None, id="seconds-overflow"),
        pytest.param({"retry-after-ms": "1e400", "retry-after": "2"}, 2.0, id="ms-overflow"),
        pytest.param({"retry-after": "-inf"}, None, id="minus-inf"),
        pytest.param({"retry-after": "Infinity"}, None, id="infinity"),
        pytest.param({"retry-after": "Mon, 99 Jan 2020 00:00:00 GMT"}, None, id="bad-day"),
        pytest.param({"retry-after": "Thu, 01 Jan 1970 00:00:00 +9999"}, None, id="bad-zone"),
    ],
)
def test_parse_retry_after_ignores_junk(headers: dict[str, str], expected: float | None) -> None:
    """Unusable Retry-After values give None (no hint), never an exception."""
    assert parse_retry_after(headers) == expected


def test_classify_survives_a_retry_after_it_cannot_read() -> None:
    """A 429 with an unreadable Retry-After is retried on the backoff, not an OverflowError."""
    response = httpx.Response(
        429,
        headers={"retry-after": HUGE_YEAR_DATE},
        request=httpx.Request("POST", f"{BASE}/chat/completions"),
    )
    exc = openai.RateLimitError("rate limited", response=response, body=None)  # type: ignore[arg-type]
    decision = classify(exc)
    assert (decision.retry, decision.delay, decision.cooldown) == (True, None, False)


JUNK_LIMIT_HEADERS = {
    "x-ratelimit-limit-requests": "inf",
    "x-ratelimit-remaining-requests": "1e400",
    "x-ratelimit-limit-tokens": "9" * 400,
    "x-ratelimit-remaining-tokens": "-inf",
    "x-ratelimit-reset-requests": "9" * 400 + "s",
}


@pytest.mark.anyio
async def test_success_with_junk_rate_limit_headers_returns_its_result(
    mock: respx.MockRouter,
) -> None:
    """A 200 whose x-ratelimit-* headers are inf / 1e400 returns the completion, sent once."""
    route = mock.post("/chat/completions").mock(
        return_value=httpx.Response(200, json=COMPLETION, headers=JUNK_LIMIT_HEADERS)
    )
    async with manager() as m:
        assert await chat(m) == "hi"
        assert m.stats().rate_limits == []  # nothing was learned from the junk
    assert route.call_count == 1


@pytest.mark.anyio
async def test_429_with_junk_headers_propagates_the_sdk_error(mock: respx.MockRouter) -> None:
    """A 429 with junk headers ends in the SDK's RateLimitError, not in a parsing error."""
    headers = {**JUNK_LIMIT_HEADERS, "retry-after": HUGE_YEAR_DATE}
    body = {"error": {"message": "slow down", "type": "x", "param": None, "code": None}}
    route = mock.post("/chat/completions").mock(
        return_value=httpx.Response(429, json=body, headers=headers)
    )
    async with manager(max_attempts=2) as m:
        with pytest.raises(openai.RateLimitError):
            await chat(m)
        assert m.stats().retries == 1
    assert route.call_count == 2
    assert m.stats().failed_requests == 1
