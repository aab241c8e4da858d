"""Admission rules of the request path.

A request's per-call options, the budget it draws on, whether its tokens can ever fit a
configured limit, whether a failed attempt spent tokens. No I/O, no clock of its own.
"""

from __future__ import annotations

from ._config import CallOptions
from ._errors import RequestTooLargeError
from ._pool import ClientPool
from ._request import Request

__all__ = ["apply_options", "budget_key", "refused", "too_large"]


def apply_options(request: Request, options: CallOptions, now: float) -> None:
    """Per-call overrides (``with_options``) on a new request (``now``: loop clock, s)."""
    if options.max_attempts is not None:
        request.max_attempts = options.max_attempts
    if options.queue_timeout is not None:
        request.queue_timeout = options.queue_timeout
    if options.request_timeout is not None:
        request.request_timeout = options.request_timeout
    if options.deadline is not None:
        request.deadline = now + options.deadline
    if options.admission is not None:
        request.admission = options.admission


def budget_key(request: Request) -> str | None:
    """The budget a queued request draws on, for the scheduler: its model's."""
    return request.model


def too_large(pool: ClientPool, request: Request) -> RequestTooLargeError | None:
    """The error refusing ``request`` if its tokens exceed every configured TPM limit.

    Only a configured limit refuses (a learned one paces): ``never_fits`` is true only there.
    """
    limits = [u.budget(request.model) for u in pool.upstreams]
    if not all(limit.never_fits(request.tokens) for limit in limits):
        return None
    largest = max(tpm for limit in limits if (tpm := limit.configured[1]) is not None)
    error = request.error(
        RequestTooLargeError,
        f"estimated {request.tokens} tokens exceed the configured tokens-per-minute "
        f"limit ({largest}) of every upstream; it could never be admitted",
        request.submitted_at,
        tokens=request.tokens,
        limit=largest,
    )
    assert isinstance(error, RequestTooLargeError)
    return error


def refused(request: Request) -> bool:
    """Whether the last attempt was answered with an HTTP error (no tokens generated)."""
    decision = request.decision
    return decision is not None and decision.status is not None
