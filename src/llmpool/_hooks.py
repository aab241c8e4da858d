"""Instrumentation seam: typed event records and the ``Instrument`` protocol.

The engine reports what happens to each request as an event record: an immutable, typed
``NamedTuple`` built once and handed to every instrument that listens to that event. An
instrument is any object with some of the ``on_*`` methods of ``Instrument`` (subclass it to
get no-op defaults for the rest). ``Hooks`` keeps, per event, the callables of the
instruments that define it (trio's per-hook cache, ``trio/_core/_instrumentation.py``), so an
event nobody listens to costs the engine one attribute check and builds no record.

Events of one request arrive in order: ``RequestQueued`` (only when it waits), then per
attempt ``AttemptStarted`` ... ``AttemptFinished`` (a failed one possibly followed by
``RetryScheduled`` or ``RetryRefused``), ``FirstChunk`` for a stream, and ``RequestFinished``
last, exactly once. A recovering stream that reopens gives each open its own request id:
an open it replaced ends with a ``RequestFinished`` marked ``superseded``.
``CooldownStarted`` and ``CircuitChanged`` describe an upstream and name the request whose
answer caused them. Times are seconds on the event loop's clock
(durations only: no absolute timestamps).

An instrument that raises is removed (the error is logged on the ``llmpool`` logger with its
traceback), as trio does: a broken exporter must not break requests.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, Final, Literal, NamedTuple, Protocol, TypeAlias

from . import _constants as C
from ._types import AttemptOutcome, Priority, RequestOutcome

__all__ = [
    "HOOK_NAMES",
    "AttemptFinished",
    "AttemptOutcome",
    "AttemptStarted",
    "CircuitChanged",
    "CircuitState",
    "CooldownStarted",
    "Event",
    "FirstChunk",
    "Hooks",
    "Instrument",
    "RequestFinished",
    "RequestOutcome",
    "RequestQueued",
    "RetryRefused",
    "RetryScheduled",
]

logger = logging.getLogger(C.LOGGER_NAME)

CircuitState: TypeAlias = Literal["open", "half_open", "closed"]
"""An upstream circuit breaker's state (``half_open``: one probe is let through)."""


class RequestQueued(NamedTuple):
    """A request found no free slot (or no budget) and waits in the queue."""

    request_id: str
    session_id: str | None
    priority: Priority
    model: str | None
    queued: int
    """Requests queued now, this one included."""
    operation: str | None = None
    """``"chat"``, ``"responses"``, ``"embeddings"``, ``"lease"``; ``None`` for ``run``."""
    stream: bool = False
    """An SDK stream (``stream=True``)."""


class AttemptStarted(NamedTuple):
    """An attempt starts on a pooled client (the slot and the budget are held)."""

    request_id: str
    session_id: str | None
    priority: Priority
    model: str | None
    attempt: int
    """1 for the first attempt."""
    upstream: str
    """The upstream's label: base URL and a hash of the API key."""
    client: int
    """The client's pool index."""
    operation: str | None = None
    """As ``RequestQueued.operation``."""
    stream: bool = False
    """An SDK stream (``stream=True``)."""


class AttemptFinished(NamedTuple):
    """An attempt ended (for a stream or a lease: when it was released)."""

    request_id: str
    session_id: str | None
    priority: Priority
    model: str | None
    attempt: int
    upstream: str
    client: int
    outcome: AttemptOutcome
    status: int | None
    """The HTTP status of an API error, else ``None`` (also for a success)."""
    error: str | None
    """The exception's class name, or ``None``."""
    duration: float
    """Seconds from the attempt's start to its end."""


class RetryScheduled(NamedTuple):
    """A failed attempt (or a recovering stream's open) will be retried after ``delay``."""

    request_id: str
    session_id: str | None
    priority: Priority
    model: str | None
    attempt: int
    """Attempts made so far."""
    delay: float
    """Seconds until the retry queues again."""
    reason: str
    """Why, e.g. ``"status 429"``, ``"connection"``, ``"request timeout"``."""
    cooldown: bool
    """The failure cooled its upstream down (a 429 with a hint)."""


class RetryRefused(NamedTuple):
    """A retryable failure is not retried: the retry budget is spent."""

    request_id: str
    session_id: str | None
    priority: Priority
    model: str | None
    attempt: int
    retries_in_flight: int
    allowed: float
    """Retries in flight the budget allows now."""


class CooldownStarted(NamedTuple):
    """An upstream cools down: a 429 (or 503) carried a ``Retry-After``-style hint."""

    upstream: str
    seconds: float
    reason: str
    request_id: str
    """The request whose answer started it."""
    session_id: str | None
    priority: Priority
    attempt: int


class CircuitChanged(NamedTuple):
    """An upstream's circuit breaker changed state (see docs/retries.md)."""

    upstream: str
    state: CircuitState
    cooldown: float | None
    """Seconds the circuit stays open (``state="open"``), else ``None``."""
    reason: str | None
    """The failure that opened it, e.g. ``"status 503"``; else ``None``."""
    request_id: str
    """The request whose answer (or probe, for ``half_open``) changed it."""
    session_id: str | None
    priority: Priority
    attempt: int


class FirstChunk(NamedTuple):
    """A stream delivered its first event to the caller."""

    request_id: str
    session_id: str | None
    priority: Priority
    model: str | None
    attempt: int
    seconds: float
    """Seconds since the request was submitted (queueing included)."""


class RequestFinished(NamedTuple):
    """A request ended: exactly once per request, after all its other events."""

    request_id: str
    session_id: str | None
    priority: Priority
    model: str | None
    """The requested model, when llmpool can see it."""
    outcome: RequestOutcome
    error: str | None
    """The class name of the exception the caller got, or ``None``."""
    exception: BaseException | None
    """That exception itself (its message may hold secrets: redact before logging)."""
    attempts: int
    queue_wait: float | None
    """Seconds from submission to the first attempt, or ``None`` if none started."""
    latency: float
    """Seconds from submission to the end."""
    status: int | None
    """The HTTP status of the API error the request failed with, else ``None``."""
    upstream: str | None
    """The label of the last attempt's upstream, if an attempt started."""
    server_address: str | None
    """The host of the last attempt's upstream base URL, if an attempt started."""
    operation: str | None
    """``"chat"``, ``"responses"``, ``"embeddings"``, ``"lease"``; ``None`` for ``run``."""
    stream: bool
    estimated_tokens: int
    input_tokens: int | None
    """Usage reported by the API, when seen (prompt tokens for Chat Completions)."""
    output_tokens: int | None
    total_tokens: int | None
    response_model: str | None
    """The model the API says answered, when seen."""
    superseded: bool = False
    """``True`` for an open of a recovering stream that failed before any output and was
    retried or rebuilt as another request: not the stream's end (``stats()`` and the logs
    skip it; the stream's own ``RequestFinished`` follows), but the end of this id's events,
    so per-request state kept by an instrument can be dropped."""
    server_port: int | None = None
    """The port of the last attempt's upstream base URL (its scheme's default when the URL
    names none), if an attempt started."""


Event: TypeAlias = (
    RequestQueued
    | AttemptStarted
    | AttemptFinished
    | RetryScheduled
    | RetryRefused
    | CooldownStarted
    | CircuitChanged
    | FirstChunk
    | RequestFinished
)


class Instrument(Protocol):
    """Receives llmpool's events. Define only the hooks you need; each gets one record.

    Subclass it for no-op defaults, or pass any object with some of these methods. Hooks run
    synchronously on the event loop, inside the request path: keep them short and never
    block (hand slow exports to a thread or a queue). Register instruments with
    ``ConnectionManager(instruments=[...])`` or ``manager.add_instrument``.
    """

    def on_request_queued(self, event: RequestQueued) -> None:
        """A request waits in the queue."""
        return None

    def on_attempt_started(self, event: AttemptStarted) -> None:
        """An attempt starts."""
        return None

    def on_attempt_finished(self, event: AttemptFinished) -> None:
        """An attempt ended."""
        return None

    def on_retry_scheduled(self, event: RetryScheduled) -> None:
        """A retry will follow after ``event.delay`` seconds."""
        return None

    def on_retry_refused(self, event: RetryRefused) -> None:
        """A retryable failure is not retried (retry budget)."""
        return None

    def on_cooldown_started(self, event: CooldownStarted) -> None:
        """An upstream cools down."""
        return None

    def on_circuit_changed(self, event: CircuitChanged) -> None:
        """An upstream's circuit breaker changed state."""
        return None

    def on_first_chunk(self, event: FirstChunk) -> None:
        """A stream delivered its first event."""
        return None

    def on_request_finished(self, event: RequestFinished) -> None:
        """A request ended."""
        return None


HOOK_NAMES: Final = tuple(name for name in vars(Instrument) if name.startswith("on_"))
"""The hooks an instrument may define, in event order: ``Instrument``'s ``on_*`` methods."""

Hook: TypeAlias = Callable[[Any], None]


class Hooks:
    """Per-event cache of the registered instruments' hooks.

    Each ``on_*`` attribute is ``None`` when no instrument defines that hook, else one
    callable that hands the record to each of them in registration order. The engine checks
    the attribute before building a record.
    """

    __slots__ = (*HOOK_NAMES, "_instruments", "_trusted")

    on_request_queued: Hook | None
    on_attempt_started: Hook | None
    on_attempt_finished: Hook | None
    on_retry_scheduled: Hook | None
    on_retry_refused: Hook | None
    on_cooldown_started: Hook | None
    on_circuit_changed: Hook | None
    on_first_chunk: Hook | None
    on_request_finished: Hook | None

    def __init__(self, instruments: Iterable[object] = (), *, trusted: int = 0) -> None:
        # The first ``trusted`` instruments are llmpool's own (logging, stats): they are
        # called without the guard, and a hook only they define is their bound method itself.
        self._trusted = trusted
        self._instruments: list[object] = []
        for instrument in instruments:
            self._check_new(instrument)
            self._instruments.append(instrument)
        self._rebuild()

    @property
    def instruments(self) -> tuple[object, ...]:
        """The registered instruments, in registration order."""
        return tuple(self._instruments)

    def add(self, instrument: object) -> None:
        """Register ``instrument``.

        Raises:
            ValueError: it is already registered.
            TypeError: it defines none of the ``on_*`` hooks.
        """
        self._check_new(instrument)
        self._instruments.append(instrument)
        self._rebuild()

    def remove(self, instrument: object) -> None:
        """Unregister ``instrument``.

        Raises:
            ValueError: it is not registered (llmpool's own instruments cannot be removed).
        """
        for index, known in enumerate(self._instruments):
            if index < self._trusted:
                continue
            if known is instrument:
                del self._instruments[index]
                self._rebuild()
                return
        raise ValueError(f"instrument {instrument!r} is not registered")

    def _check_new(self, instrument: object) -> None:
        if any(known is instrument for known in self._instruments):
            raise ValueError(f"instrument {instrument!r} is already registered")
        if not any(_method(instrument, name) is not None for name in HOOK_NAMES):
            raise TypeError(
                f"{type(instrument).__name__} defines none of the instrument hooks "
                f"({', '.join(HOOK_NAMES)})"
            )

    def _rebuild(self) -> None:
        trusted = self._instruments[: self._trusted]
        for name in HOOK_NAMES:
            own = tuple(m for i in trusted if (m := _method(i, name)) is not None)
            guarded = tuple(
                (instrument, method)
                for instrument in self._instruments[self._trusted :]
                if (method := _method(instrument, name)) is not None
            )
            hook: Hook | None
            if guarded:
                hook = self._dispatcher(name, own, guarded)
            elif len(own) == 1:
                hook = own[0]
            elif own:
                hook = _chain(own)
            else:
                hook = None
            setattr(self, name, hook)

    def _dispatcher(
        self, name: str, own: tuple[Hook, ...], guarded: tuple[tuple[object, Hook], ...]
    ) -> Hook:
        def dispatch(event: object) -> None:
            for method in own:
                method(event)
            for instrument, method in guarded:
                try:
                    method(event)
                except Exception:
                    logger.exception("instrument %r raised in %s; it is removed", instrument, name)
                    if any(known is instrument for known in self._instruments):
                        self.remove(instrument)

        return dispatch


def _chain(methods: tuple[Hook, ...]) -> Hook:
    first, *rest = methods
    if len(rest) == 1:
        second = rest[0]

        def both(event: object) -> None:
            first(event)
            second(event)

        return both

    def each(event: object) -> None:
        for method in methods:
            method(event)

    return each


def _method(instrument: object, name: str) -> Hook | None:
    """``instrument``'s hook ``name``, or ``None`` if absent or ``Instrument``'s no-op."""
    method = getattr(instrument, name, None)
    if method is None or not callable(method):
        return None
    if getattr(type(instrument), name, None) is getattr(Instrument, name):
        return None  # inherited no-op default: not a listener
    return method  # type: ignore[no-any-return]
