"""One request's bookkeeping while llmpool handles it, and session-id validation."""

from __future__ import annotations

from typing import Any

from . import _constants as C
from ._errors import (
    DeadlineExceededError,
    InvalidSessionIdError,
    LLMPoolError,
    ManagerClosedError,
)
from ._hooks import RequestFinished
from ._pool import PooledClient, Upstream
from ._record import AttemptOutcome, AttemptRecord, Capture, RequestOutcome, RequestRecord
from ._retry import RetryDecision
from ._types import Priority

__all__ = ["Request", "validate_session_id"]

_ANONYMOUS = ""  # the session key shared by requests without a session id

# An ended attempt: number, client index, upstream label, start, end, outcome, status, error.
# A plain tuple, because it is built on the request path; ``AttemptRecord`` only on demand.
_Ended = tuple[int, int, str, float, float, AttemptOutcome, int | None, str | None]


def validate_session_id(session_id: str | None) -> str | None:
    """Check a caller's session id.

    Args:
        session_id: ``None``, or 1 to 128 printable ASCII characters, the first and the last
            not a space (it travels in the ``x-session-id`` HTTP header, whose value allows no
            control characters and no leading or trailing whitespace, RFC 9110 §5.5).

    Returns:
        ``session_id`` unchanged.

    Raises:
        InvalidSessionIdError: the id is not a string, is empty, too long, has a control or
            non-ASCII character, or begins or ends with a space; the message says which.
    """
    if session_id is None:
        return None
    if not isinstance(session_id, str):
        raise InvalidSessionIdError(
            f"session_id must be a string or None, got {type(session_id).__name__}"
        )
    if not session_id:
        raise InvalidSessionIdError("session_id must not be empty")
    if len(session_id) > C.MAX_SESSION_ID_LENGTH:
        raise InvalidSessionIdError(
            f"session_id is {len(session_id)} characters long; "
            f"at most {C.MAX_SESSION_ID_LENGTH} are allowed"
        )
    for position, char in enumerate(session_id):
        if not " " <= char <= "~":
            raise InvalidSessionIdError(
                f"session_id has a control or non-ASCII character {char!r} at position "
                f"{position}; only printable ASCII is allowed"
            )
    # RFC 9110 §5.5: a header value has no leading or trailing whitespace. httpx would accept
    # the id, and h11 refuse it while sending: an APIConnectionError, retried, never sent.
    if session_id[0] == " " or session_id[-1] == " ":
        where = "starts" if session_id[0] == " " else "ends"
        position = 0 if where == "starts" else len(session_id) - 1
        raise InvalidSessionIdError(
            f"session_id {session_id!r} {where} with a space (position {position}); an HTTP "
            "header value cannot begin or end with whitespace (RFC 9110 §5.5)"
        )
    return session_id


class Request:
    """Mutable state of one request; owned by the manager task running it."""

    __slots__ = (
        "admission",
        "attempt_client",
        "attempt_started",
        "attempts",
        "capture",
        "current_upstream",
        "deadline",
        "decision",
        "ended_at",
        "failure",
        "id",
        "input_tokens",
        "last_error",
        "last_upstream",
        "lease",
        "max_attempts",
        "model",
        "operation",
        "outcome",
        "output_tokens",
        "permit",
        "priority",
        "probe",
        "queue_timeout",
        "request_timeout",
        "response_model",
        "seq",
        "session_id",
        "session_key",
        "stream",
        "submitted_at",
        "ticket",
        "tokens",
        "trail",
        "used_tokens",
    )

    def __init__(
        self,
        *,
        id: str,
        priority: Priority,
        session_id: str | None,
        seq: int,
        now: float,
        tokens: int = 0,
        model: str | None = None,
        max_attempts: int = C.DEFAULT_MAX_ATTEMPTS,
        queue_timeout: float = C.DEFAULT_QUEUE_TIMEOUT,
        request_timeout: float = C.DEFAULT_REQUEST_TIMEOUT,
        deadline: float | None = None,
        admission: str = "reject",
        operation: str | None = None,
    ) -> None:
        self.id = id
        self.priority = priority
        self.session_id = session_id
        self.session_key = _ANONYMOUS if session_id is None else session_id
        self.seq = seq
        self.submitted_at = now
        self.attempts = 0
        self.decision: RetryDecision | None = None
        self.last_upstream: Upstream | None = None
        self.lease: PooledClient | None = None  # held by an open stream
        self.tokens = tokens  # estimated token cost of one attempt (admission)
        self.ticket: Upstream | None = None  # upstream whose budget the grant reserved
        self.permit: object | None = None  # that reservation's permit (UpstreamLimits.take)
        self.current_upstream: Upstream | None = None  # upstream of the running attempt
        self.used_tokens: int | None = None  # the response's usage.total_tokens, when seen
        self.input_tokens: int | None = None  # usage.input_tokens / prompt_tokens, when seen
        self.output_tokens: int | None = None  # usage.output_tokens / completion_tokens
        self.response_model: str | None = None  # the answer's ``model``, when seen
        self.operation = operation  # "responses", "chat", "embeddings", "lease" or None (run)
        self.stream = False  # an SDK stream holds the slot (PooledStream)
        self.model = model  # the API's model parameter, when llmpool can see it
        self.max_attempts = max_attempts
        self.queue_timeout = queue_timeout  # seconds, per wait for a slot
        self.request_timeout = request_timeout  # seconds, per attempt
        self.deadline = deadline  # event-loop clock: the whole call ends by then, or None
        self.admission = admission  # "reject" or "wait" when the queue is full
        self.last_error: Exception | None = None  # the last attempt's error
        self.probe: Upstream | None = None  # the upstream whose half-open probe this is
        # The request's story (``record()``): the open attempt's client and start, the ended
        # attempts, how the request ended. ``capture`` is what the context held on entry.
        self.attempt_client: PooledClient | None = None
        self.attempt_started = 0.0
        self.trail: list[_Ended] | None = None  # allocated at the first failed attempt
        self.capture: Capture | None = None
        self.outcome: RequestOutcome | None = None
        self.failure: str | None = None  # the class name of the caller's exception
        self.ended_at = 0.0

    def context(self, now: float) -> dict[str, Any]:
        """The keyword context every llmpool error of this request carries.

        ``request_id``, ``session_id``, ``priority``, ``attempts``, ``waited`` (seconds since
        submission at ``now``) and ``last_status``: built here only, for every error class.
        """
        return {
            "request_id": self.id,
            "session_id": self.session_id,
            "priority": self.priority.value,
            "attempts": self.attempts,
            "waited": now - self.submitted_at,
            "last_status": None if self.decision is None else self.decision.status,
        }

    def error(
        self, cls: type[LLMPoolError], message: str, now: float, **fields: Any
    ) -> LLMPoolError:
        """Build a typed error carrying this request's context (and ``fields``)."""
        return cls(message, **self.context(now), **fields)

    def closed_error(self, now: float) -> LLMPoolError:
        """``ManagerClosedError``: shutdown cancelled this request after the grace period."""
        return self.error(ManagerClosedError, "the manager closed before the request finished", now)

    def deadline_error(self, now: float) -> LLMPoolError:
        """``DeadlineExceededError`` for this request's ``deadline``, chained to its last error."""
        total = (self.deadline or now) - self.submitted_at
        error = self.error(DeadlineExceededError, f"the call's deadline of {total:g}s passed", now)
        error.__cause__ = self.last_error
        return error

    def read_usage(self, result: object) -> None:
        """Take the usage and model of an SDK result (``Response``, ``ChatCompletion``...).

        ``usage.total_tokens`` settles the token budget; input/output tokens and ``model``
        go to instruments. Absent or non-int fields leave what was seen before. Fields are
        read from the pydantic models' ``__dict__``: a ``getattr`` of a field the model lacks
        (``input_tokens`` on a Chat usage) raises inside pydantic's ``__getattr__``, several
        µs each.
        """
        fields = getattr(result, "__dict__", None)
        if not isinstance(fields, dict):
            return
        usage = fields.get("usage")
        counts = getattr(usage, "__dict__", None)
        if isinstance(counts, dict):
            total = counts.get("total_tokens")
            if isinstance(total, int):
                self.used_tokens = total
            tokens_in = counts.get("input_tokens", counts.get("prompt_tokens"))
            if isinstance(tokens_in, int):
                self.input_tokens = tokens_in
            tokens_out = counts.get("output_tokens", counts.get("completion_tokens"))
            if isinstance(tokens_out, int):
                self.output_tokens = tokens_out
        model = fields.get("model")
        if isinstance(model, str):
            self.response_model = model

    def finished(
        self, exc: BaseException | None, outcome: RequestOutcome | None = None
    ) -> RequestFinished:
        """The ``RequestFinished`` event of this request.

        ``outcome``: the one to report (a recovering stream's, built from its last open);
        default the request's own, which must be set.
        """
        first = self.first_attempt_at()
        upstream = self.current_upstream or self.last_upstream
        if outcome is None:
            outcome = self.outcome
        assert outcome is not None  # the request ended, or the caller says how
        return RequestFinished(
            self.id,
            self.session_id,
            self.priority,
            self.model,
            outcome,
            self.failure,
            exc,
            self.attempts,
            None if first is None else first - self.submitted_at,
            self.ended_at - self.submitted_at,
            None if self.decision is None or outcome == "completed" else self.decision.status,
            None if upstream is None else upstream.label,
            None if upstream is None else upstream.address,
            self.operation,
            self.stream,
            self.tokens,
            self.input_tokens,
            self.output_tokens,
            self.used_tokens,
            self.response_model,
            False,
            None if upstream is None else upstream.port,
        )

    # -- the request's story -----------------------------------------------------------------

    def end_attempt(
        self, now: float, outcome: AttemptOutcome, status: int | None, error: str | None
    ) -> None:
        """Close the open attempt (if any) with how it ended."""
        pooled = self.attempt_client
        if pooled is None:
            return
        self.attempt_client = None
        if self.trail is None:
            self.trail = []
        self.trail.append(
            (
                self.attempts,
                pooled.index,
                pooled.upstream.label,
                self.attempt_started,
                now,
                outcome,
                status,
                error,
            )
        )

    def attempt_records(self, first: int = 1) -> list[AttemptRecord]:
        """The attempts as records, numbered from ``first``.

        An attempt still open when the request ended (it returned the answer, or it is a
        stream's attempt and the stream ended well) is ``ok`` and lasts until ``ended_at``.
        """
        ended = list(self.trail or ())
        pooled = self.attempt_client
        if pooled is not None:
            start = self.attempt_started
            ended.append(
                (0, pooled.index, pooled.upstream.label, start, self.ended_at, "ok", None, None)
            )
        return [
            AttemptRecord(
                number=number,
                request_id=self.id,
                outcome=outcome,
                status=status,
                error=error,
                upstream=upstream,
                client=client,
                duration=max(0.0, end - start),
            )
            for number, (_, client, upstream, start, end, outcome, status, error) in enumerate(
                ended, start=first
            )
        ]

    def first_attempt_at(self) -> float | None:
        """When the first attempt started, or ``None`` if none did."""
        if self.trail:
            return self.trail[0][3]
        return self.attempt_started if self.attempt_client is not None else None

    def record(self) -> RequestRecord | None:
        """This request's ``RequestRecord``, or ``None`` while it has not ended."""
        if self.outcome is None:
            return None
        first = self.first_attempt_at()
        return RequestRecord(
            request_id=self.id,
            session_id=self.session_id,
            priority=self.priority,
            outcome=self.outcome,
            error=self.failure,
            attempts=tuple(self.attempt_records()),
            queue_wait=None if first is None else first - self.submitted_at,
            latency=self.ended_at - self.submitted_at,
            estimated_tokens=self.tokens,
            used_tokens=self.used_tokens,
        )
