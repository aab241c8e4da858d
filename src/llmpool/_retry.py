"""Retryability as one pure function, and the tenacity strategies built on it.

``classify(exc)`` answers, for one failed attempt: retry or not, after how long if the server
said (``retry-after-ms`` / ``Retry-After``), and whether the upstream should cool down. The
rules follow openai-python's ``_should_retry`` (``x-should-retry``, 408, 409, 429, 5xx,
connection errors and timeouts), with two differences: a 429 whose error code is
``insufficient_quota`` is never retried (billing, not load), and a server hint longer than
``RetryPolicy.max_retry_after`` ends the retries instead of being shortened.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import openai
from tenacity import wait_exponential_jitter

from . import _constants as C
from ._breaker import FailureKind
from ._config import RetryPolicy
from ._errors import RequestTimeoutError
from ._limits import has_ratelimit_headers

__all__ = ["RetryDecision", "backoff_strategy", "classify", "parse_retry_after", "server_hint"]


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """What to do after one failed attempt.

    Attributes:
        retry: try again (if attempts remain).
        delay: seconds the server asked to wait, or ``None`` to use the backoff.
        cooldown: the upstream said it is rate limited for ``delay`` seconds: hold back all
            work bound for it, not only this request.
        reason: a short label for logs (``"status 429"``, ``"connection"``…).
        status: the HTTP status of the failure, if there was one.
        breaker: what the failure means to the upstream's circuit breaker: ``"trip"`` (a 429
            with no hint: open it), ``"failure"`` (a 5xx, connection error or timeout: count
            it), or ``None`` (no news about the upstream's health).
    """

    retry: bool
    reason: str
    delay: float | None = None
    cooldown: bool = False
    status: int | None = None
    breaker: FailureKind | None = None


def parse_retry_after(
    headers: Mapping[str, str], *, now: Callable[[], float] = time.time
) -> float | None:
    """Seconds the server asks the client to wait, from response headers.

    ``retry-after-ms`` (milliseconds, OpenAI's) wins over ``Retry-After``, which is either
    delay-seconds or an HTTP-date (MDN, "Retry-After"; RFC 9110 §10.2.3). A date in the past
    gives 0. Malformed, negative or non-finite values, and dates the ``datetime`` module cannot
    represent (year 99999999999), are ignored: this never raises.

    Args:
        headers: response headers; names are matched case-insensitively if ``headers`` is an
            ``httpx`` ``Headers`` (as the SDK's are), else they must be lower-case.
        now: wall clock for HTTP dates, seconds since the epoch.

    Returns:
        The delay in seconds, or ``None`` if no usable hint was sent.
    """
    ms = _number(headers.get("retry-after-ms"))
    if ms is not None:
        return ms / 1000.0
    raw = headers.get("retry-after")
    if raw is None:
        return None
    seconds = _number(raw)
    if seconds is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(raw).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError, OSError):
        return None  # OverflowError: a year past the C int range; OSError: mktime's range
    return max(0.0, when - now())


class _Prefixed(Mapping[str, str]):
    """``headers`` seen through a name prefix.

    ``view["retry-after"]`` reads ``headers["llm_provider-retry-after"]``.
    """

    __slots__ = ("_headers", "_prefix")

    def __init__(self, headers: Mapping[str, str], prefix: str) -> None:
        self._headers = headers
        self._prefix = prefix

    def __getitem__(self, name: str) -> str:
        return self._headers[self._prefix + name]

    def __iter__(self) -> Iterator[str]:
        size = len(self._prefix)
        return (k[size:] for k in self._headers if k.lower().startswith(self._prefix))

    def __len__(self) -> int:
        return sum(1 for _ in self)


def server_hint(headers: Mapping[str, str]) -> float | None:
    """Seconds the server (or a gateway in front of it) asks to wait, or ``None``.

    ``parse_retry_after`` on the response's own headers; failing that, on the provider's
    headers a gateway passed on under ``llm_provider-`` (LiteLLM's proxy sends
    ``llm_provider-retry-after`` and no ``Retry-After``).
    """
    hint = parse_retry_after(headers)
    if hint is None:
        hint = parse_retry_after(_Prefixed(headers, C.GATEWAY_HEADER_PREFIX))
    return hint


def _number(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def classify(
    exc: BaseException, *, max_retry_after: float = C.DEFAULT_MAX_RETRY_AFTER
) -> RetryDecision:
    """Decide whether a failed attempt is retried.

    Args:
        exc: what the attempt raised.
        max_retry_after: longest server-requested wait honoured, seconds; a longer one gives up.

    Returns:
        The decision. Cancellation and every ``BaseException`` that is not an ``Exception`` are
        never retried.
    """
    if not isinstance(exc, Exception):
        return RetryDecision(retry=False, reason="cancelled")
    if isinstance(exc, RequestTimeoutError):
        return RetryDecision(retry=True, reason="request timeout", breaker="failure")
    if isinstance(exc, openai.APITimeoutError):
        return RetryDecision(retry=True, reason="timeout", breaker="failure")
    if isinstance(exc, openai.APIConnectionError):
        return RetryDecision(retry=True, reason="connection", breaker="failure")
    if not isinstance(exc, openai.APIStatusError):
        return RetryDecision(retry=False, reason=type(exc).__name__)
    status = exc.status_code
    reason = f"status {status}"
    headers = exc.response.headers
    hint = server_hint(headers)
    if status == 429 and exc.code in C.NON_TRANSIENT_429_CODES:
        return RetryDecision(retry=False, reason=f"{reason} {exc.code}", status=status)
    # What the answer says about the upstream's health, whether or not it is retried: every
    # 5xx is a failure, a 429 without any hint trips the circuit.
    breaker: FailureKind | None = None
    if status >= 500:
        breaker = "failure"
    elif status == 429 and hint is None and not has_ratelimit_headers(headers):
        breaker = "trip"
        reason = f"{reason} without a hint"
    if hint is not None and hint > max_retry_after:
        return RetryDecision(
            retry=False,
            reason=f"{reason}, retry-after {hint:g}s too long",
            status=status,
            breaker=breaker,
        )
    should_retry = headers.get("x-should-retry")
    if should_retry == "false":
        return RetryDecision(
            retry=False,
            reason=f"{reason}, x-should-retry false",
            status=status,
            breaker=breaker,
        )
    retryable = should_retry == "true" or status in C.RETRYABLE_STATUSES or status >= 500
    if not retryable:
        return RetryDecision(retry=False, reason=reason, status=status, breaker=breaker)
    return RetryDecision(
        retry=True,
        reason=reason,
        delay=hint,
        cooldown=status == 429 and hint is not None and hint > 0,
        status=status,
        breaker=breaker,
    )


def backoff_strategy(policy: RetryPolicy) -> wait_exponential_jitter:
    """The backoff used when the server gave no hint.

    tenacity's ``wait_exponential_jitter``: ``min(initial_backoff * 2**n + uniform(0, jitter),
    max_backoff)`` seconds before the n-th retry (n from 0). Jitter spreads clients that failed
    together (AWS Architecture Blog, "Exponential Backoff And Jitter").

    Args:
        policy: gives ``initial_backoff``, ``max_backoff`` and ``jitter`` (seconds).
    """
    return wait_exponential_jitter(
        multiplier=policy.initial_backoff, max=policy.max_backoff, jitter=policy.jitter
    )
