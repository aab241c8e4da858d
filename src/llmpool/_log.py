"""``LoggingInstrument``: llmpool's log records (docs/logging.md), built from its events.

Every manager has one, registered first. Its records keep the names and fields documented in
docs/logging.md (a test pins them): the message ``"<request_id> <event>: <details>"`` and the
``extra`` attributes ``llmpool_event``, ``request_id``, ``session_id``, ``priority``,
``attempt`` plus each event's own. Nothing is formatted or redacted when the ``llmpool``
logger does not log the record's level; every string that is logged goes through the
manager's redactor first.
"""

from __future__ import annotations

import logging
from typing import Any

from . import _constants as C
from ._hooks import (
    AttemptStarted,
    CircuitChanged,
    CooldownStarted,
    Instrument,
    RequestFinished,
    RequestQueued,
    RetryRefused,
    RetryScheduled,
)
from ._redact import DEFAULT_REDACTOR, Redactor

__all__ = ["LoggingInstrument", "log_event"]

logger = logging.getLogger(C.LOGGER_NAME)
# A library adds no output of its own: the application configures logging (Python HOWTO,
# "Configuring Logging for a Library").
logger.addHandler(logging.NullHandler())

_DEBUG, _INFO, _WARNING = logging.DEBUG, logging.INFO, logging.WARNING


def log_event(
    redact: Redactor,
    level: int,
    event: str,
    request_id: str,
    session_id: str | None,
    priority: str,
    attempt: int,
    message: str,
    **fields: Any,
) -> None:
    """Log ``event`` on the ``llmpool`` logger with the ids in ``extra``, redacted.

    Secrets (the manager's API keys, anything shaped like an OpenAI key) are replaced in
    ``message`` and in every string of ``extra``, so an upstream that echoes the key in an
    error body does not put it in the logs. Nothing is built when the logger does not log
    ``level``.
    """
    if not logger.isEnabledFor(level):
        return
    extra = {
        "llmpool_event": event,
        "request_id": request_id,
        "session_id": session_id,
        "priority": priority,
        "attempt": attempt,
        **fields,
    }
    for name, value in extra.items():
        if isinstance(value, str):
            extra[name] = redact(value)
    logger.log(level, "%s %s: %s", request_id, event, redact(message), extra=extra)


class LoggingInstrument(Instrument):
    """Turns events into the ``llmpool`` logger's records (docs/logging.md).

    Args:
        redactor: what hides secrets in every logged string; the manager passes one that
            knows its clients' API keys. Default: OpenAI-shaped keys only.
    """

    __slots__ = ("redactor",)

    def __init__(self, redactor: Redactor = DEFAULT_REDACTOR) -> None:
        self.redactor = redactor

    def on_request_queued(self, event: RequestQueued) -> None:
        """``queued`` (DEBUG)."""
        if logger.isEnabledFor(_DEBUG):
            log_event(
                self.redactor,
                _DEBUG,
                "queued",
                event.request_id,
                event.session_id,
                event.priority.value,
                0,
                f"queued ({event.queued} waiting)",
            )

    def on_attempt_started(self, event: AttemptStarted) -> None:
        """``executing`` (DEBUG), with ``client``."""
        if logger.isEnabledFor(_DEBUG):
            log_event(
                self.redactor,
                _DEBUG,
                "executing",
                event.request_id,
                event.session_id,
                event.priority.value,
                event.attempt,
                f"attempt {event.attempt} on client {event.client}",
                client=event.client,
            )

    def on_retry_scheduled(self, event: RetryScheduled) -> None:
        """``retrying`` (INFO), with ``delay`` and ``reason``."""
        if logger.isEnabledFor(_INFO):
            log_event(
                self.redactor,
                _INFO,
                "retrying",
                event.request_id,
                event.session_id,
                event.priority.value,
                event.attempt,
                f"{event.reason}; retrying in {event.delay:.3f}s",
                delay=event.delay,
                reason=event.reason,
            )

    def on_retry_refused(self, event: RetryRefused) -> None:
        """``retry_budget`` (INFO)."""
        if logger.isEnabledFor(_INFO):
            log_event(
                self.redactor,
                _INFO,
                "retry_budget",
                event.request_id,
                event.session_id,
                event.priority.value,
                event.attempt,
                f"not retried: {event.retries_in_flight} retries in flight, "
                f"the budget allows {event.allowed:g}",
            )

    def on_cooldown_started(self, event: CooldownStarted) -> None:
        """``cooldown`` (INFO), with ``delay``."""
        if logger.isEnabledFor(_INFO):
            log_event(
                self.redactor,
                _INFO,
                "cooldown",
                event.request_id,
                event.session_id,
                event.priority.value,
                event.attempt,
                f"{event.upstream} cooling for {event.seconds:.3f}s",
                delay=event.seconds,
            )

    def on_circuit_changed(self, event: CircuitChanged) -> None:
        """``circuit_open`` (WARNING), ``probe`` or ``circuit_closed`` (INFO)."""
        ids = (event.request_id, event.session_id, event.priority.value, event.attempt)
        if event.state == "open":
            if logger.isEnabledFor(_WARNING):
                seconds = event.cooldown or 0.0
                log_event(
                    self.redactor,
                    _WARNING,
                    "circuit_open",
                    *ids,
                    f"{event.upstream}: circuit open for {seconds:.3f}s ({event.reason})",
                    delay=seconds,
                    reason=event.reason,
                )
        elif logger.isEnabledFor(_INFO):
            if event.state == "half_open":
                name, text = "probe", f"{event.upstream}: half-open, probing"
            else:
                name, text = "circuit_closed", f"{event.upstream}: circuit closed"
            log_event(self.redactor, _INFO, name, *ids, text)

    def on_request_finished(self, event: RequestFinished) -> None:
        """``completed``/``cancelled`` (DEBUG) or ``failed`` (WARNING, with ``error``)."""
        if event.superseded:
            return  # the stream logs its own end (and ``stream_recovery`` said why)
        outcome = event.outcome
        level = _WARNING if outcome == "failed" else _DEBUG
        if not logger.isEnabledFor(level):
            return
        ids = (event.request_id, event.session_id, event.priority.value, event.attempts)
        if outcome == "completed":
            log_event(self.redactor, level, "completed", *ids, "completed", seconds=event.latency)
        elif outcome == "cancelled":
            log_event(self.redactor, level, "cancelled", *ids, "cancelled by the caller")
        else:
            kind = event.error
            log_event(
                self.redactor, level, "failed", *ids, f"{kind}: {event.exception}", error=kind
            )
