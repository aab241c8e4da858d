"""Retryability (``classify``), Retry-After parsing and the backoff formula."""

from __future__ import annotations

import email.utils
import math

import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tenacity import RetryCallState

from llmpool import PoolConfig, RequestTimeoutError, RetryPolicy, classify, parse_retry_after
from llmpool._retry import backoff_strategy

from .helpers import REQUEST, status_error


@pytest.mark.parametrize(
    ("exc", "retry", "delay", "cooldown"),
    [
        pytest.param(openai.APIConnectionError(request=REQUEST), True, None, False, id="connect"),
        pytest.param(openai.APITimeoutError(request=REQUEST), True, None, False, id="sdk-timeout"),
        pytest.param(RequestTimeoutError("t"), True, None, False, id="attempt-timeout"),
        pytest.param(status_error(408), True, None, False, id="408"),
        pytest.param(status_error(409), True, None, False, id="409"),
        pytest.param(status_error(429), True, None, False, id="429-no-hint"),
        pytest.param(status_error(429, {"retry-after": "2"}), True, 2.0, True, id="429-ra"),
        pytest.param(status_error(429, {"retry-after-ms": "250"}), True, 0.25, True, id="429-ms"),
        pytest.param(status_error(500), True, None, False, id="500"),
        pytest.param(status_error(502), True, None, False, id="502"),
        pytest.param(status_error(503, {"retry-after": "3"}), True, 3.0, False, id="503-ra"),
        pytest.param(status_error(400), False, None, False, id="400"),
        pytest.param(status_error(401), False, None, False, id="401"),
        pytest.param(status_error(403), False, None, False, id="403"),
        pytest.param(status_error(404), False, None, False, id="404"),
        pytest.param(status_error(422), False, None, False, id="422"),
        pytest.param(
            status_error(429, {"retry-after": "1"}, code="insufficient_quota"),
            False,
            None,
            False,
            id="429-insufficient-quota",
        ),
        pytest.param(
            status_error(429, {"x-should-retry": "true"}, code="insufficient_quota"),
            False,
            None,
            False,
            id="insufficient-quota-beats-x-should-retry",
        ),
        pytest.param(status_error(400, {"x-should-retry": "true"}), True, None, False, id="xsr-t"),
        pytest.param(
            status_error(503, {"x-should-retry": "false"}), False, None, False, id="xsr-f"
        ),
        pytest.param(
            status_error(429, {"retry-after": "600"}), False, None, False, id="ra-too-long"
        ),
        pytest.param(ValueError("bug in the caller's fn"), False, None, False, id="caller-bug"),
        pytest.param(KeyboardInterrupt(), False, None, False, id="base-exception"),
    ],
)
def test_classify(exc: BaseException, retry: bool, delay: float | None, cooldown: bool) -> None:
    """Each failure is retried or not, with the server's delay and cooldown, as documented."""
    decision = classify(exc, max_retry_after=60.0)
    assert (decision.retry, decision.delay, decision.cooldown) == (retry, delay, cooldown)


def test_classify_reports_status() -> None:
    """The decision carries the HTTP status, which typed errors report as last_status."""
    assert classify(status_error(503)).status == 503
    assert classify(openai.APIConnectionError(request=REQUEST)).status is None


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({}, None, id="none"),
        pytest.param({"retry-after": "7"}, 7.0, id="seconds"),
        pytest.param({"retry-after": "1.5"}, 1.5, id="fractional-seconds"),
        pytest.param({"retry-after-ms": "20"}, 0.02, id="ms"),
        pytest.param({"retry-after-ms": "20", "retry-after": "9"}, 0.02, id="ms-wins"),
        pytest.param({"retry-after-ms": "junk", "retry-after": "9"}, 9.0, id="bad-ms-falls-back"),
        pytest.param({"retry-after": "-3"}, None, id="negative"),
        pytest.param({"retry-after": "nan"}, None, id="nan"),
        pytest.param({"retry-after": "inf"}, None, id="inf"),
        pytest.param({"retry-after": "soon"}, None, id="garbage"),
        pytest.param({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0, id="date-in-past"),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    """retry-after-ms wins, then Retry-After seconds, then an HTTP date; junk is ignored."""
    assert parse_retry_after(headers) == expected


def test_parse_retry_after_http_date() -> None:
    """An HTTP-date Retry-After gives the seconds from now until that date (MDN)."""
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after({"retry-after": date}, now=lambda: now) == pytest.approx(30.0)


@given(
    st.dictionaries(
        st.sampled_from(["retry-after", "retry-after-ms", "x-other"]),
        st.one_of(st.text(max_size=40), st.floats().map(str), st.integers().map(str)),
    )
)
def test_parse_retry_after_never_raises(headers: dict[str, str]) -> None:
    """Whatever the headers hold, the result is None or a finite number of seconds >= 0."""
    result = parse_retry_after(headers)
    assert result is None or (math.isfinite(result) and result >= 0)


def _state(attempt_number: int) -> RetryCallState:
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt_number
    return state


@given(
    initial=st.floats(0, 10),
    extra=st.floats(0, 100),
    jitter=st.floats(0, 5),
    attempt=st.integers(1, 60),
)
def test_backoff_stays_within_the_formula(
    initial: float, extra: float, jitter: float, attempt: int
) -> None:
    """Backoff before retry n is min(initial * 2**n + U(0, jitter), max_backoff), n from 0."""
    policy = RetryPolicy(initial_backoff=initial, max_backoff=initial + extra, jitter=jitter)
    delay = backoff_strategy(policy)(_state(attempt))
    base = initial * 2 ** (attempt - 1)
    assert 0 <= delay <= policy.max_backoff
    assert delay >= min(base, policy.max_backoff) - 1e-9
    assert delay <= min(base + jitter, policy.max_backoff) + 1e-9


def test_default_policy_is_the_documented_one() -> None:
    """The defaults: 4 attempts, 0.5 s initial backoff, 30 s cap, 1 s jitter, 60 s hint cap."""
    policy = PoolConfig().retry
    assert (policy.max_attempts, policy.initial_backoff, policy.max_backoff) == (4, 0.5, 30.0)
    assert (policy.jitter, policy.max_retry_after) == (1.0, 60.0)
