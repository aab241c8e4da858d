"""llmpool's events and the instruments that consume them (see docs/instrumentation.md).

An instrument is an object with some of the ``on_*`` hooks of ``Instrument``; each hook gets
one immutable, typed event record (a ``NamedTuple``). Register instruments with
``ConnectionManager(instruments=[...])`` or ``manager.add_instrument(...)``. An event nobody
listens to costs one attribute check and builds no record.

``LoggingInstrument`` is how the ``llmpool`` logger's records are made (every manager has
one). The Prometheus and OpenTelemetry instruments need their extras and are imported from
their own modules, which this package does not import (so ``import llmpool.instrumentation``
loads neither ``prometheus_client`` nor ``opentelemetry``):

- ``from llmpool.instrumentation.prometheus import PrometheusInstrument`` (extra
  ``prometheus``: ``pip install 'llmpool[prometheus]'``);
- ``from llmpool.instrumentation.opentelemetry import OpenTelemetryInstrument`` (extra
  ``otel``: ``pip install 'llmpool[otel]'``), the OpenTelemetry GenAI client metrics and one
  span per request.
"""

from llmpool._hooks import HOOK_NAMES as HOOK_NAMES
from llmpool._hooks import AttemptFinished as AttemptFinished
from llmpool._hooks import AttemptStarted as AttemptStarted
from llmpool._hooks import CircuitChanged as CircuitChanged
from llmpool._hooks import CircuitState as CircuitState
from llmpool._hooks import CooldownStarted as CooldownStarted
from llmpool._hooks import Event as Event
from llmpool._hooks import FirstChunk as FirstChunk
from llmpool._hooks import Instrument as Instrument
from llmpool._hooks import RequestFinished as RequestFinished
from llmpool._hooks import RequestQueued as RequestQueued
from llmpool._hooks import RetryRefused as RetryRefused
from llmpool._hooks import RetryScheduled as RetryScheduled
from llmpool._log import LoggingInstrument as LoggingInstrument
from llmpool._types import AttemptOutcome as AttemptOutcome
from llmpool._types import RequestOutcome as RequestOutcome

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
    "Instrument",
    "LoggingInstrument",
    "RequestFinished",
    "RequestOutcome",
    "RequestQueued",
    "RetryRefused",
    "RetryScheduled",
]

for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type):
        _obj.__module__ = "llmpool.instrumentation"
del _name, _obj
