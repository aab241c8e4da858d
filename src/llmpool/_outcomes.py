"""How requests and attempts end: their records, capture blocks, SDK error notes, events.

Every request of the engine ends here exactly once (``finish``), and each attempt once
(``attempt_finished``, ``end_attempt``). A request whose ``capture.inner`` is set is an open of
a recovering stream: its attempts are reported, but not its outcome; the stream reports one
when it ends (``stream_finished``).
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import openai

from ._errors import ManagerClosedError, RequestTimeoutError
from ._hooks import (
    AttemptFinished,
    AttemptStarted,
    FirstChunk,
    Hooks,
    RequestFinished,
    RequestQueued,
    RetryScheduled,
)
from ._pool import PooledClient
from ._record import Capture, RequestRecord, annotate_error
from ._request import Request
from ._types import AttemptOutcome

__all__ = ["Outcomes", "attempt_started", "queued"]


class Outcomes:
    """Reports an engine's outcomes through its hooks, on its clock.

    Args:
        hooks: the engine's instruments.
        now: the event loop's clock (the engine sets the loop's own on open).
    """

    __slots__ = ("hooks", "now")

    def __init__(self, hooks: Hooks, now: Callable[[], float]) -> None:
        self.hooks = hooks
        self.now = now

    def retry_scheduled(self, request: Request, delay: float, reason: str, cooldown: bool) -> None:
        """Report that ``request`` (or the recovering stream it opened) retries in ``delay`` s."""
        hook = self.hooks.on_retry_scheduled
        if hook is not None:
            hook(
                RetryScheduled(
                    request.id,
                    request.session_id,
                    request.priority,
                    request.model,
                    request.attempts,
                    delay,
                    reason,
                    cooldown,
                )
            )

    # A request whose ``capture.inner`` is set is an open of a recovering stream: its attempts
    # are reported, but not its outcome; the stream reports one when it ends.

    def finish(self, request: Request, exc: BaseException | None) -> None:
        """Record a request's one outcome: its record, its SDK error's note, the event."""
        now = request.ended_at = self.now()
        if exc is None:
            request.outcome = "completed"
        else:
            self.end_attempt(request, exc, now)  # a lease's attempt ends with the lease
            cancelled = isinstance(exc, anyio.get_cancelled_exc_class())
            request.outcome = "cancelled" if cancelled else "failed"
            request.failure = type(exc).__name__
        capture = request.capture
        if capture is not None:
            if capture.inner is not None:
                return
            record = request.record()
            assert record is not None  # the outcome is set
            capture.publish(record)
        if exc is not None and isinstance(exc, openai.OpenAIError):
            annotate_error(exc, request.id, request.attempts)  # propagates unchanged
        hook = self.hooks.on_request_finished
        if hook is not None:
            hook(request.finished(exc))

    def end_attempt(self, request: Request, exc: BaseException, now: float) -> None:
        """Close the request's open attempt, if any, with how ``exc`` ended it."""
        pooled = request.attempt_client
        if pooled is None:
            return
        outcome: AttemptOutcome = "error"
        if isinstance(exc, anyio.get_cancelled_exc_class() | ManagerClosedError):
            outcome = "cancelled"
        elif isinstance(exc, RequestTimeoutError):
            outcome = "timeout"
        status = exc.status_code if isinstance(exc, openai.APIStatusError) else None
        error = type(exc).__name__
        self.attempt_finished(request, pooled, outcome, status, error, now)
        request.end_attempt(now, outcome, status, error)

    def attempt_finished(
        self,
        request: Request,
        pooled: PooledClient,
        outcome: AttemptOutcome,
        status: int | None,
        error: str | None,
        now: float,
    ) -> None:
        hook = self.hooks.on_attempt_finished
        if hook is not None:
            hook(
                AttemptFinished(
                    request.id,
                    request.session_id,
                    request.priority,
                    request.model,
                    request.attempts,
                    pooled.upstream.label,
                    pooled.index,
                    outcome,
                    status,
                    error,
                    now - request.attempt_started,
                )
            )

    def mark_failed(self, request: Request, exc: BaseException, now: float) -> None:
        """Mark ``request``'s last attempt failed by ``exc`` in its record (a stream saw it)."""
        request.end_attempt(
            now,
            "error",
            exc.status_code if isinstance(exc, openai.APIStatusError) else None,
            type(exc).__name__,
        )

    def stream_finished(
        self,
        event: RequestFinished,
        record: RequestRecord | None,
        capture: Capture | None,
        exc: BaseException | None,
    ) -> None:
        """A recovering stream's one outcome (its opens reported none; see ``_streams``)."""
        if record is not None:
            if capture is not None:
                capture.publish(record)
            if isinstance(exc, openai.OpenAIError):
                annotate_error(exc, record.request_id, len(record.attempts))
        hook = self.hooks.on_request_finished
        if hook is not None:
            hook(event)

    def superseded(self, request: Request, exc: BaseException | None) -> None:
        """A recovering stream replaces ``request`` (an open that failed before output)."""
        hook = self.hooks.on_request_finished
        if hook is not None:
            outcome = request.outcome or "failed"
            hook(request.finished(exc, outcome)._replace(superseded=True))

    def first_chunk(self, request: Request, started_at: float | None = None) -> None:
        """A stream handed its first event to the caller (``FirstChunk``).

        ``started_at``: when the stream started (a recovering stream's first open), on the
        event loop's clock; default the request's submission.
        """
        hook = self.hooks.on_first_chunk
        if hook is not None:
            hook(
                FirstChunk(
                    request.id,
                    request.session_id,
                    request.priority,
                    request.model,
                    request.attempts,
                    self.now() - (request.submitted_at if started_at is None else started_at),
                )
            )


def queued(request: Request, depth: int) -> RequestQueued:
    """``request``'s ``RequestQueued`` event; ``depth``: requests queued, this one included."""
    return RequestQueued(
        request.id,
        request.session_id,
        request.priority,
        request.model,
        depth,
        request.operation,
        request.stream,
    )


def attempt_started(request: Request, pooled: PooledClient) -> AttemptStarted:
    """The ``AttemptStarted`` event of ``request``'s attempt on ``pooled``."""
    return AttemptStarted(
        request.id,
        request.session_id,
        request.priority,
        request.model,
        request.attempts,
        pooled.upstream.label,
        pooled.index,
        request.operation,
        request.stream,
    )
