"""Test helpers: SDK-shaped errors and clients that never touch the network."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx2
import openai

from llmpool import ConnectionManager

REQUEST = httpx2.Request("POST", "http://upstream.test/v1/responses")

_CLASSES: dict[int, type[openai.APIStatusError]] = {
    400: openai.BadRequestError,
    401: openai.AuthenticationError,
    403: openai.PermissionDeniedError,
    404: openai.NotFoundError,
    409: openai.ConflictError,
    422: openai.UnprocessableEntityError,
    429: openai.RateLimitError,
}


def status_error(
    status: int, headers: dict[str, str] | None = None, code: str | None = None
) -> openai.APIStatusError:
    """The exception the SDK raises for an HTTP ``status`` (same class mapping)."""
    default = openai.InternalServerError if status >= 500 else openai.APIStatusError
    cls = _CLASSES.get(status, default)
    response = httpx2.Response(status, headers=headers or {}, request=REQUEST)
    body = {"message": f"status {status}", "type": "x", "param": None, "code": code}
    return cls(f"status {status}", response=response, body=body)


def client_factory(
    *base_urls: str, api_key: str = "test-key"
) -> Callable[[int], openai.AsyncOpenAI]:
    """A factory whose clients point at ``base_urls`` in turn (never contacted by fn-only tests)."""
    urls = base_urls or ("http://upstream.test/v1",)

    def factory(index: int) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(api_key=api_key, base_url=urls[index % len(urls)], max_retries=0)

    return factory


async def read_all(stream: Any) -> list[Any]:
    """Every event of ``stream``, closing it after."""
    async with stream:
        return [event async for event in stream]


def counts(m: ConnectionManager) -> tuple[int, int, int, int]:
    """``(completed, failed, cancelled, retries)`` from ``m.stats()``."""
    s = m.stats()
    return s.completed_requests, s.failed_requests, s.cancelled_requests, s.retries
