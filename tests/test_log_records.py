"""The ``llmpool`` logger's records keep the names, levels and fields docs/logging.md lists."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from llmpool import Priority
from llmpool import _constants as C
from llmpool.instrumentation import (
    AttemptStarted,
    CircuitChanged,
    CooldownStarted,
    Event,
    LoggingInstrument,
    RequestFinished,
    RequestOutcome,
    RequestQueued,
    RetryRefused,
    RetryScheduled,
)

DOC = Path(__file__).resolve().parents[1] / "docs" / "logging.md"
COMMON = {"llmpool_event", "request_id", "session_id", "priority", "attempt"}
IDS = ("req_1", "s1", Priority.HIGH)


def documented() -> dict[str, tuple[int, set[str]]]:
    """event -> (level, extra fields) from the events table of docs/logging.md."""
    rows: dict[str, tuple[int, set[str]]] = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        match = re.match(r"\| `(\w+)` \| (DEBUG|INFO|WARNING) \| [^|]+ \|([^|]*)\|$", line)
        if match:
            event, level, extra = match.groups()
            number = logging.getLevelNamesMapping()[level]
            rows[event] = (number, set(re.findall(r"`(\w+)`:", extra)))
    return rows


def finished(outcome: RequestOutcome, error: str | None = None) -> RequestFinished:
    return RequestFinished(
        *IDS,
        "m",
        outcome,
        error,
        None if error is None else RuntimeError("x"),
        2,
        0.1,
        0.5,
        None,
        "up",
        "host",
        None,
        False,
        0,
        None,
        None,
        None,
        None,
    )


EVENTS: dict[str, Event] = {
    "queued": RequestQueued(*IDS, "m", 3),
    "executing": AttemptStarted(*IDS, "m", 1, "up", 0),
    "retrying": RetryScheduled(*IDS, "m", 1, 0.5, "status 429", True),
    "cooldown": CooldownStarted("up", 2.0, "status 429", *IDS, 1),
    "circuit_open": CircuitChanged("up", "open", 0.5, "status 503", *IDS, 1),
    "probe": CircuitChanged("up", "half_open", None, None, *IDS, 1),
    "circuit_closed": CircuitChanged("up", "closed", None, None, *IDS, 1),
    "retry_budget": RetryRefused(*IDS, "m", 1, 3, 3.0),
    "completed": finished("completed"),
    "cancelled": finished("cancelled", "CancelledError"),
    "failed": finished("failed", "RuntimeError"),
}


def test_every_documented_event_has_a_source() -> None:
    """The table and the instrument describe the same events."""
    assert set(documented()) == set(EVENTS)


@pytest.mark.parametrize("name", sorted(EVENTS))
def test_record_name_level_and_fields(name: str, caplog: pytest.LogCaptureFixture) -> None:
    """Each event becomes one record with the documented name, level and extra fields."""
    level, fields = documented()[name]
    instrument = LoggingInstrument()
    event = EVENTS[name]
    hook = {
        RequestQueued: instrument.on_request_queued,
        AttemptStarted: instrument.on_attempt_started,
        RetryScheduled: instrument.on_retry_scheduled,
        CooldownStarted: instrument.on_cooldown_started,
        CircuitChanged: instrument.on_circuit_changed,
        RetryRefused: instrument.on_retry_refused,
        RequestFinished: instrument.on_request_finished,
    }[type(event)]
    with caplog.at_level(logging.DEBUG, logger=C.LOGGER_NAME):
        hook(event)  # type: ignore[operator]
    (record,) = caplog.records
    assert record.levelno == level
    assert record.llmpool_event == name  # type: ignore[attr-defined]
    assert record.getMessage().startswith(f"req_1 {name}: ")
    assert (COMMON | fields) <= set(vars(record))
    assert (record.request_id, record.session_id, record.priority) == ("req_1", "s1", "high")  # type: ignore[attr-defined]
