"""``RecordedRequest``: what the simulated provider saw of one request, and what it did."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["RecordedRequest"]


class RecordedRequest(BaseModel):
    """One request that reached the simulated provider, failed ones included.

    Attributes:
        method: HTTP method, e.g. ``"POST"``.
        path: URL path without the query string, e.g. ``"/v1/responses"``.
        headers: request headers by lower-cased name (repeated headers joined with ``", "``).
        body: the parsed JSON body, or ``None`` for an empty or non-JSON body.
        received_at: arrival time, ``time.monotonic()`` seconds.
        outcome: what the provider did: ``"ok"``, ``"status:<code>"`` (e.g. ``"status:500"``,
            also a 400 for an unparsable body), ``"rate_limit"``, ``"insufficient_quota"``,
            ``"drop"``, ``"stream_disconnect"``, ``"not_found"`` (unknown path, response or
            item id) or ``"unauthorized"`` (wrong or missing API key).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: str = Field(description="HTTP method.")
    path: str = Field(description="URL path, without the query string.")
    headers: dict[str, str] = Field(description="Request headers by lower-cased name.")
    body: Any = Field(description="Parsed JSON body, or None.")
    received_at: float = Field(description="Arrival time, time.monotonic() seconds.")
    outcome: str = Field(description="What the provider did with the request.")
