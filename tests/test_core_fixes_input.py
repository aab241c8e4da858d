"""Bad input from the upstream or the caller: junk headers never change a call's outcome.

HTTP-level cases use respx, which mocks the classic ``httpx`` package: clients get
``http_client=httpx.AsyncClient()`` (see tests/test_http_respx.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import openai
import pytest
import respx

from llmpool import (
    ConnectionManager,
    InvalidHeaderError,
    InvalidSessionIdError,
    PoolConfig,
    RetryPolicy,
    classify,
    parse_retry_after,
)
from llmpool._request import validate_session_id

from .test_http_respx import BASE, COMPLETION, MESSAGES

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


# -- session ids and extra_headers that HTTP cannot carry -----------------------------------


@pytest.mark.parametrize(
    ("session_id", "message"),
    [
        pytest.param(" t1", "session_id ' t1' starts with a space (position 0)", id="leading"),
        pytest.param("t1 ", "session_id 't1 ' ends with a space (position 2)", id="trailing"),
        pytest.param(" ", "session_id ' ' starts with a space (position 0)", id="only-space"),
        pytest.param("t1\t", "control or non-ASCII character '\\t' at position 2", id="tab"),
    ],
)
@pytest.mark.anyio
async def test_session_id_with_edge_whitespace_is_refused_before_sending(
    mock: respx.MockRouter, session_id: str, message: str
) -> None:
    """A session id is a header value: no leading/trailing whitespace (RFC 9110 §5.5)."""
    route = mock.post("/chat/completions").mock(return_value=httpx.Response(200, json=COMPLETION))
    async with manager() as m:
        with pytest.raises(InvalidSessionIdError, match=re.escape(message)):
            m.with_options(session_id=session_id)
        with pytest.raises(InvalidSessionIdError, match=re.escape(message)):
            await m.run(lambda client: client.models.list(), session_id=session_id)
        assert m.stats().retries == 0
    assert route.call_count == 0


def test_session_id_with_interior_spaces_is_valid() -> None:
    """Spaces inside the id are fine: only the edges are refused."""
    assert validate_session_id("terminal 1") == "terminal 1"


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        pytest.param(
            {"x-trace": "a\r\nx-evil: 1"},
            "extra_headers['x-trace']: value 'a\\r\\nx-evil: 1' has a carriage return (CR) "
            "'\\r' at position 1",
            id="crlf-injection",
        ),
        pytest.param({"x-trace": "ab\n"}, "has a line feed (LF) '\\n' at position 2", id="lf"),
        pytest.param({"x-trace": "a\x00"}, "has a NUL '\\x00' at position 1", id="nul"),
        pytest.param(
            {"x-trace": "a\x1bb"}, "has a control character '\\x1b' at position 1", id="esc"
        ),
        pytest.param({"x-trace": "a\x7f"}, "has a DEL '\\x7f' at position 1", id="del"),
        pytest.param(
            {"x-trace": "caf\u00e9"},
            "has a non-ASCII character '\u00e9' at position 3",
            id="non-ascii",
        ),
        pytest.param(
            {"x-trace": " abc"},
            "extra_headers['x-trace']: value ' abc' starts with whitespace (position 0)",
            id="leading-space",
        ),
        pytest.param({"x-trace": "abc\t"}, "ends with whitespace (position 3)", id="trailing-tab"),
        pytest.param(
            {"x trace": "v"},
            "extra_headers: header name 'x trace' has a space at position 1",
            id="name-space",
        ),
        pytest.param(
            {"x-trace:": "v"}, "header name 'x-trace:' has the character ':'", id="name-colon"
        ),
        pytest.param({"": "v"}, "header name '' is empty", id="name-empty"),
        pytest.param(
            {"x-caf\u00e9": "v"}, "has a non-ASCII character '\u00e9' at position 5", id="name-utf8"
        ),
        pytest.param({1: "v"}, "header name 1 is not a str (int)", id="name-int"),
    ],
)
@pytest.mark.anyio
async def test_bad_extra_headers_are_refused_before_queueing(
    mock: respx.MockRouter, headers: dict[object, str], message: str
) -> None:
    """extra_headers HTTP cannot carry raise InvalidHeaderError at once: never sent or retried."""
    route = mock.post("/chat/completions").mock(return_value=httpx.Response(200, json=COMPLETION))
    async with manager() as m:
        with pytest.raises(InvalidHeaderError, match=re.escape(message)):
            await m.with_options(session_id="t1").chat.completions.create(
                model="m",
                messages=MESSAGES,  # type: ignore[arg-type]
                extra_headers=headers,  # type: ignore[arg-type]
            )
        stats = m.stats()
        assert (stats.retries, stats.queued_requests, stats.active_connections) == (0, 0, 0)
    assert route.call_count == 0


@pytest.mark.anyio
async def test_extra_headers_that_http_accepts_are_sent(mock: respx.MockRouter) -> None:
    """Interior tabs and spaces, an empty value and openai.Omit() pass through unchanged."""
    route = mock.post("/chat/completions").mock(return_value=httpx.Response(200, json=COMPLETION))
    headers = {"x-trace": "a\tb c", "x-empty": "", "X-Stainless-Lang": openai.Omit()}
    async with manager() as m:
        await m.chat.completions.create(
            model="m",
            messages=MESSAGES,  # type: ignore[arg-type]
            extra_headers=headers,  # type: ignore[dict-item]
        )
    sent = route.calls.last.request.headers
    assert (sent["x-trace"], sent["x-empty"]) == ("a\tb c", "")
    assert "x-stainless-lang" not in sent


@pytest.mark.anyio
async def test_extra_headers_must_be_a_mapping(mock: respx.MockRouter) -> None:
    """A list of pairs is not the SDK's Headers mapping: refused with the type named."""
    async with manager() as m:
        with pytest.raises(InvalidHeaderError, match=r"must be a mapping .* got list"):
            await m.responses.create(
                model="m",
                input="hi",
                extra_headers=[("x-trace", "1")],  # type: ignore[typeddict-item]
            )
