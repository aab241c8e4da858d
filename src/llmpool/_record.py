"""One request's story, without a logging handler: ``RequestRecord`` and ``capture_requests``.

The manager keeps, on each ``Request``, what it needs to tell that request's story (each
attempt's client, start, end and error). A ``RequestRecord`` is built from it only when someone
asks: a ``capture_requests()`` block is active where the call was made, or the caller reads a
stream's ``record``. The cost when nobody asks is one ``ContextVar.get`` per request (read when
the request enters the manager's request path) and a few slot assignments.

The same context variable marks the inner opens of a recovering stream: the stream sets a
``Capture`` with ``inner`` around each open, and the manager then leaves that open's outcome to
the stream, which counts and records itself once (see ``_streams``).

Durations are seconds on the event loop's clock (``anyio.current_time()``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final, overload

from ._types import AttemptOutcome, Priority, RequestOutcome

__all__ = [
    "CAPTURE",
    "AttemptOutcome",
    "AttemptRecord",
    "Capture",
    "CapturedRequests",
    "RequestOutcome",
    "RequestRecord",
    "annotate_error",
    "capture_requests",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptRecord:
    """One attempt of a request: one call of ``fn`` (one HTTP request on the façade).

    Attributes:
        number: the attempt's place in its record, from 1.
        request_id: llmpool's id of the request that made it (``req_…``); within a recovering
            stream's record, each open is a request of its own.
        outcome: ``"ok"``, ``"error"``, ``"timeout"`` or ``"cancelled"``.
        status: the HTTP status of a failed attempt (429, 503…), else ``None``.
        error: the class name of the attempt's exception (``"RateLimitError"``), else ``None``.
        upstream: the upstream it ran on: base URL and a hash of the API key (never the key).
        client: the pool index of the client it ran on.
        duration: seconds from the attempt's start (a slot and budget granted) to its end; a
            stream's attempt ends when the stream does.
    """

    number: int
    request_id: str
    outcome: AttemptOutcome
    status: int | None
    error: str | None
    upstream: str
    client: int
    duration: float


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestRecord:
    """What llmpool did for one call: ``run``, a façade call, a stream, a recovering stream.

    Attributes:
        request_id: llmpool's id of the request (``req_…``), the one its errors and log records
            carry. A recovering stream's is that of its last open (``stream.request_id``).
        session_id: the caller's session id, or ``None``.
        priority: the request's priority.
        outcome: ``"completed"``, ``"failed"`` or ``"cancelled"`` (as counted in ``stats()``).
        error: the class name of the exception the caller got, or ``None``.
        attempts: every attempt, in order; empty if none started (e.g. ``QueueFullError``).
        queue_wait: seconds from submission to the first attempt's start (slot, budget and
            cooldown waits), or ``None`` if no attempt started.
        latency: seconds from submission to the end (a stream: until it ended).
        estimated_tokens: tokens charged at admission (the façade estimates them only when an
            upstream has a token limit; ``run`` takes ``estimated_tokens``); 0 if none.
        used_tokens: ``usage.total_tokens`` of the answer, when one reported it, else ``None``.
    """

    request_id: str
    session_id: str | None
    priority: Priority
    outcome: RequestOutcome
    error: str | None
    attempts: tuple[AttemptRecord, ...]
    queue_wait: float | None
    latency: float
    estimated_tokens: int
    used_tokens: int | None

    @property
    def retries(self) -> int:
        """Attempts after the first (retries and, for a recovering stream, rebuilds)."""
        return max(0, len(self.attempts) - 1)


class CapturedRequests(Sequence[RequestRecord]):
    """The records of the calls made inside one ``capture_requests()`` block.

    In the order the calls ended. Read-only for the caller; llmpool appends as calls end.
    """

    __slots__ = ("_records",)

    def __init__(self) -> None:
        self._records: list[RequestRecord] = []

    @overload
    def __getitem__(self, index: int) -> RequestRecord: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[RequestRecord]: ...
    def __getitem__(self, index: int | slice) -> RequestRecord | Sequence[RequestRecord]:
        return self._records[index]

    def __len__(self) -> int:
        return len(self._records)

    def __repr__(self) -> str:
        return f"CapturedRequests({self._records!r})"

    def by_id(self, request_id: str) -> RequestRecord | None:
        """The record whose ``request_id`` is ``request_id``, or ``None``."""
        return next((r for r in self._records if r.request_id == request_id), None)

    def _add(self, record: RequestRecord) -> None:
        self._records.append(record)


@dataclass(frozen=True, slots=True)
class Capture:
    """What a request entering the manager finds in the context (``CAPTURE``).

    Attributes:
        collectors: the active ``capture_requests()`` blocks, outermost first.
        inner: set by a recovering stream around each open: the manager appends the open's
            ``Request`` here and leaves its outcome to the stream (``list[Request]``; typed
            ``Any`` because this module sits below ``_request``).
    """

    collectors: tuple[CapturedRequests, ...] = ()
    inner: list[Any] | None = None

    def publish(self, record: RequestRecord) -> None:
        """Append ``record`` to every collector."""
        for collector in self.collectors:
            collector._add(record)


CAPTURE: Final[ContextVar[Capture | None]] = ContextVar("llmpool_capture", default=None)


@contextmanager
def capture_requests() -> Iterator[CapturedRequests]:
    """Collect a ``RequestRecord`` for every call made inside the block.

    Works for ``manager.run``, ``responses.create`` / ``chat.completions.create`` (streams
    included) and ``stream_response`` / ``stream_chat``, in this task and in tasks it starts
    inside the block (they inherit the context). A call belongs to the block it was made in:
    its record is appended when it ends, so a stream opened inside the block and read after
    it is still recorded. Blocks nest; each gets the records of the calls made inside it.
    A call refused before it is queued (``ManagerClosedError`` at submission,
    ``RequestTooLargeError``, a bad argument) has no record; its error carries the request id.

    Example::

        with llmpool.capture_requests() as records:
            await manager.responses.create(model="gpt-5", input="hi")
        [record] = records
        record.request_id, record.queue_wait, [a.status for a in record.attempts]

    Yields:
        A read-only sequence of ``RequestRecord``, in the order the calls ended.
    """
    collector = CapturedRequests()
    outer = CAPTURE.get()
    collectors = (collector,) if outer is None else (*outer.collectors, collector)
    token = CAPTURE.set(Capture(collectors))
    try:
        yield collector
    finally:
        CAPTURE.reset(token)


def annotate_error(exc: BaseException, request_id: str, attempts: int) -> None:
    """Tie an SDK error that reaches the caller unchanged to its llmpool request, once.

    Sets ``exc.llmpool_request_id`` and ``exc.llmpool_attempts`` and adds a PEP 678 note
    (``"llmpool: request req_… after 3 attempts"``, shown under the traceback).
    """
    if getattr(exc, "llmpool_request_id", None) is not None:
        return
    exc.llmpool_request_id = request_id  # type: ignore[attr-defined]
    exc.llmpool_attempts = attempts  # type: ignore[attr-defined]
    plural = "" if attempts == 1 else "s"
    exc.add_note(f"llmpool: request {request_id} after {attempts} attempt{plural}")
