"""``Lease``: one concurrency slot and one pooled client, held until released."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

import anyio
import openai

from ._pool import PooledClient, Upstream
from ._request import Request

__all__ = ["Lease", "LeaseOwner"]


class LeaseOwner(Protocol):
    """What a lease needs from the engine that granted it."""

    def release_lease(
        self, lease: Lease, pooled: PooledClient, exc: BaseException | None
    ) -> None: ...
    def lease_first_chunk(self, request: Request) -> None: ...
    def learn(
        self, upstream: Upstream, headers: Mapping[str, str], model: str | None = None
    ) -> None: ...


class Lease:
    """One concurrency slot and one pooled client held until ``release``.

    Built by the engine when an attempt that keeps its slot succeeds (an SDK stream opened,
    ``ConnectionManager.lease`` granted). Released once: the slot goes to the next waiter,
    the token estimate is settled with the usage seen, and the request's outcome is recorded
    (``RequestFinished``). At shutdown, after the grace period, the engine aborts it:
    ``abort`` (set by the holder) runs, or the holder's cancel scope is cancelled.
    """

    __slots__ = ("_engine", "_pooled", "abort", "client", "released", "request", "scope")

    def __init__(
        self, engine: LeaseOwner, request: Request, pooled: PooledClient, client: openai.AsyncOpenAI
    ) -> None:
        self._engine = engine
        self._pooled = pooled
        self.request = request
        self.client = client
        self.released = False
        self.abort: Callable[[], Awaitable[None]] | None = None
        self.scope: anyio.CancelScope | None = None

    @property
    def upstream(self) -> Upstream:
        """The upstream of the held client."""
        return self._pooled.upstream

    def first_chunk(self) -> None:
        """The stream on this lease handed its first event to the caller (``FirstChunk``)."""
        self._engine.lease_first_chunk(self.request)

    def learn(self, headers: Mapping[str, str]) -> None:
        """Take the rate limits of a response seen on ``client`` (its ``x-ratelimit-*``).

        Calls made directly on the lease's client are not seen by llmpool; feeding their
        headers here keeps the model's budget accurate for everyone else.
        """
        self._engine.learn(self._pooled.upstream, headers, self.request.model)

    def record_usage(
        self,
        total_tokens: int,
        *,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
    ) -> None:
        """Report the tokens the lease's calls used so far (they settle its estimate).

        Args:
            total_tokens: tokens used in all (replaces what was reported before).
            input_tokens: of which input (prompt) tokens, for instruments; optional.
            output_tokens: of which output tokens, for instruments; optional.

        Raises:
            ValueError: a count is negative or not an int.
        """
        for name, value in (
            ("total_tokens", total_tokens),
            ("input_tokens", input_tokens),
            ("output_tokens", output_tokens),
        ):
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        request = self.request
        request.used_tokens = total_tokens
        if input_tokens is not None:
            request.input_tokens = input_tokens
        if output_tokens is not None:
            request.output_tokens = output_tokens

    @property
    def request_id(self) -> str:
        """Llmpool's id of the lease (``req_…``), as in its errors and events."""
        return self.request.id

    def release(self, exc: BaseException | None) -> None:
        """Give the slot and client back and record how the work ended. Idempotent."""
        if not self.released:
            self.released = True
            self._engine.release_lease(self, self._pooled, exc)
