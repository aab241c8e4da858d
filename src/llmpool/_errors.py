"""llmpool's errors.

The tree is shallow; every class carries keyword-only context and builds its message from it::

    LLMPoolError
    ├── QueueFullError          admission refused: the queue holds max_queue_size requests
    ├── QueueTimeoutError       waited longer than queue_timeout for a concurrency slot
    ├── RequestTimeoutError     an attempt ran longer than request_timeout (retried; raised
    │                           when the last attempt timed out)
    ├── DeadlineExceededError   the call's total deadline (with_options(deadline=...)) passed
    │                           while queued, running or backing off
    ├── ManagerClosedError      submitted to a closed manager, or still unfinished when the
    │                           shutdown grace period ran out
    ├── RequestTooLargeError    the request's estimated tokens exceed the configured
    │                           tokens-per-minute limit of its model on every upstream
    ├── InvalidSessionIdError   (also a ValueError) a session id that is not 1-128
    │                           printable ASCII characters without leading/trailing spaces
    ├── InvalidHeaderError      (also a ValueError) an ``extra_headers`` name or value that
    │                           HTTP cannot carry (RFC 9110): refused before queueing
    ├── StreamInterruptedError  a recovering stream broke after output reached the caller
    │                           (never restarted); carries the partial text and items
    └── InvalidConversationError (also a ValueError) a conversation item the sanitizer cannot
        │                        read: "item 3: expected a mapping or an SDK model, got int"
        └── CompactionBudgetError  the budget is smaller than the instructions plus the latest
                                   user message

Errors raised by the API that llmpool does not retry (401, 400, a 429 ``insufficient_quota``…),
and the last one after retries ran out, are **not** wrapped: they propagate as the ``openai``
exception the SDK raised, so ``except openai.AuthenticationError`` keeps working.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CompactionBudgetError",
    "DeadlineExceededError",
    "InvalidConversationError",
    "InvalidHeaderError",
    "InvalidSessionIdError",
    "LLMPoolError",
    "ManagerClosedError",
    "QueueFullError",
    "QueueTimeoutError",
    "RequestTimeoutError",
    "RequestTooLargeError",
    "StreamInterruptedError",
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
    """The queue holds ``max_queue_size`` requests: the new one is refused at once.

    Also raised to a queued request that was evicted to make room for a higher-priority one
    (the newest waiter of the lowest class goes first; see docs/scheduling.md).
    """


class QueueTimeoutError(LLMPoolError):
    """The request waited longer than ``queue_timeout`` seconds for a concurrency slot."""


class RequestTimeoutError(LLMPoolError):
    """An attempt ran longer than ``request_timeout`` seconds.

    Timeouts are retried under the retry policy; this error reaches the caller when the last
    attempt timed out too.
    """


class DeadlineExceededError(LLMPoolError):
    """The call's total deadline passed (``manager.with_options(deadline=...)``).

    The deadline covers queueing, every attempt and every backoff; when it passes, whatever
    is under way is cancelled and this is raised, chained (``__cause__``) to the last
    attempt's error if there was one.
    """


class ManagerClosedError(LLMPoolError):
    """The manager is closed, or closed before this request could finish.

    Raised at once for work submitted after the manager's context was left (or before it was
    entered), and for work still unfinished when the shutdown grace period ran out.
    """


class RequestTooLargeError(LLMPoolError):
    """The request's estimated tokens exceed its model's configured tokens-per-minute limit.

    Raised at once, before queueing, when every upstream has a configured limit below the
    estimate: waiting could never make room for it. A limit learned from response headers
    never refuses a request (it only paces). Attributes ``tokens`` (the estimate) and
    ``limit`` (the largest configured per-minute limit) say by how much.
    """

    def __init__(self, message: str, *, tokens: int, limit: int, **context: Any) -> None:
        self.tokens = tokens
        self.limit = limit
        super().__init__(message, **context)


class InvalidSessionIdError(LLMPoolError, ValueError):
    """A session id is not a non-empty string of at most 128 printable characters.

    The id travels as an HTTP header value, so it may not begin or end with a space either
    (RFC 9110 §5.5).
    """


class InvalidHeaderError(LLMPoolError, ValueError):
    """An ``extra_headers`` entry of a façade call that HTTP cannot carry.

    Raised at once, before queueing, and never retried: a name that is not an RFC 9110 token,
    or a value with a control character (CR, LF, NUL…), a non-ASCII character, or leading or
    trailing whitespace. The message names the header and the position, e.g.
    ``extra_headers['x-trace']: value ' abc' starts with whitespace (position 0); …``.
    """


class StreamInterruptedError(LLMPoolError):
    """A stream broke after output had reached the caller, or the API ended it with an error.

    A recovering stream (``llmpool.stream_response``) never restarts once text or a tool-call
    delta was yielded: restarting would duplicate output. It raises this instead, carrying what
    was already yielded, so the caller can show or keep it. ``__cause__`` is the error that cut
    the stream (e.g. ``openai.APIConnectionError``).

    Attributes:
        partial_text: the text yielded before the interruption (``""`` if none).
        partial_items: the output items completed before it (Responses API item dicts, e.g. a
            finished ``function_call``); empty if none.
        response_id: the upstream response (``resp_…``) or completion (``chatcmpl-…``) id, if
            the stream got that far.
        code: the API's error code when it ended the stream with an ``error`` or
            ``response.failed`` event, else ``None``.
    """

    def __init__(
        self,
        message: str,
        *,
        partial_text: str = "",
        partial_items: list[dict[str, object]] | None = None,
        response_id: str | None = None,
        code: str | None = None,
        **context: Any,
    ) -> None:
        self.partial_text = partial_text
        self.partial_items = list(partial_items or [])
        self.response_id = response_id
        self.code = code
        detail = f"{message}; {len(partial_text)} characters already streamed"
        super().__init__(detail, **context)


class InvalidConversationError(LLMPoolError, ValueError):
    """A conversation item that ``ConversationSanitizer`` cannot read.

    The message names the item's index in the caller's list and the reason, e.g.
    ``item 3: expected a mapping or an SDK model, got int``.

    Attributes:
        index: position of the bad item in the caller's list, or ``None`` when the whole
            argument is wrong (not a list, a budget too small).
        reason: what is wrong with it.
    """

    def __init__(self, reason: str, *, index: int | None = None) -> None:
        self.index = index
        self.reason = reason
        super().__init__(reason if index is None else f"item {index}: {reason}")


class CompactionBudgetError(InvalidConversationError):
    """``compact_*`` was given a budget smaller than what must be kept.

    The system/developer instructions and the latest user message are always kept; when they
    alone exceed ``max_items`` or ``max_tokens``, no valid compacted conversation exists.
    """
