"""llmpool's errors.

The tree is shallow; every class carries keyword-only context and builds its message from it::

    LLMPoolError
    ├── QueueFullError          admission refused: the queue holds max_queue_size requests
    ├── QueueTimeoutError       waited longer than queue_timeout for a concurrency slot
    ├── RequestTimeoutError     an attempt ran longer than request_timeout (retried; raised
    │                           when the last attempt timed out)
    ├── ManagerClosedError      submitted to a closed manager, or still unfinished when the
    │                           shutdown grace period ran out
    └── InvalidSessionIdError   (also a ValueError) a session id that is not 1-128
                                printable ASCII characters

Errors raised by the API that llmpool does not retry (401, 400, a 429 ``insufficient_quota``…),
and the last one after retries ran out, are **not** wrapped: they propagate as the ``openai``
exception the SDK raised, so ``except openai.AuthenticationError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "InvalidSessionIdError",
    "LLMPoolError",
    "ManagerClosedError",
    "QueueFullError",
    "QueueTimeoutError",
    "RequestTimeoutError",
]


class LLMPoolError(Exception):
    """Base class of every error llmpool raises itself.

    Attributes:
        request_id: llmpool's id of the request (``req_…``), or ``None``.
        session_id: the caller's session id, or ``None``.
        priority: the request's priority as a string, or ``None``.
        attempts: attempts made before the error (0 if it never ran).
        waited: seconds the request had spent in llmpool when the error was raised.
        last_status: HTTP status of the last failed attempt, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        request_id: str | None = None,
        session_id: str | None = None,
        priority: str | None = None,
        attempts: int = 0,
        waited: float | None = None,
        last_status: int | None = None,
    ) -> None:
        self.request_id = request_id
        self.session_id = session_id
        self.priority = priority
        self.attempts = attempts
        self.waited = waited
        self.last_status = last_status
        context = [
            f"{name}={value}"
            for name, value in (
                ("request_id", request_id),
                ("session_id", session_id),
                ("priority", priority),
                ("attempts", attempts or None),
                ("waited", None if waited is None else f"{waited:.3f}s"),
                ("last_status", last_status),
            )
            if value is not None
        ]
        super().__init__(f"{message} ({', '.join(context)})" if context else message)


class QueueFullError(LLMPoolError):
    """The queue already holds ``max_queue_size`` requests: the new one is refused at once."""


class QueueTimeoutError(LLMPoolError):
    """The request waited longer than ``queue_timeout`` seconds for a concurrency slot."""


class RequestTimeoutError(LLMPoolError):
    """An attempt ran longer than ``request_timeout`` seconds.

    Timeouts are retried under the retry policy; this error reaches the caller when the last
    attempt timed out too.
    """


class ManagerClosedError(LLMPoolError):
    """The manager is closed, or closed before this request could finish.

    Raised at once for work submitted after the manager's context was left (or before it was
    entered), and for work still unfinished when the shutdown grace period ran out.
    """


class InvalidSessionIdError(LLMPoolError, ValueError):
    """A session id is not a non-empty string of at most 128 printable characters."""
