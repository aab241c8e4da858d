"""``OpenTelemetryInstrument``: GenAI client metrics and one span per request (extra ``otel``).

Follows the OpenTelemetry semantic conventions for generative AI, **v1.41.0** (the last
release of open-telemetry/semantic-conventions that defines them; from v1.42.0 they live in
open-telemetry/semantic-conventions-genai):
https://github.com/open-telemetry/semantic-conventions/blob/v1.41.0/docs/gen-ai/gen-ai-metrics.md
and, for the span and the OpenAI specifics,
https://github.com/open-telemetry/semantic-conventions/blob/v1.41.0/docs/gen-ai/openai.md.
The meter and the tracer carry that version's schema URL.

Metrics (histograms, with the conventions' advisory bucket boundaries):
``gen_ai.client.operation.duration`` (s), ``gen_ai.client.token.usage`` ({token}, by
``gen_ai.token.type``), ``gen_ai.client.operation.time_to_first_chunk`` (s, streams only).
The span of a request is a CLIENT span named ``{gen_ai.operation.name} {gen_ai.request.model}``;
each attempt, retry and cooldown is one of its events. Needs only ``opentelemetry-api``
(``pip install 'llmpool[otel]'``); the application configures the SDK and its exporters.
``import llmpool.instrumentation`` does not import this module. Tables in
docs/instrumentation.md.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

from llmpool import _constants as C
from llmpool._extras import require
from llmpool._hooks import (
    AttemptFinished,
    AttemptStarted,
    CooldownStarted,
    FirstChunk,
    Instrument,
    RequestFinished,
    RequestQueued,
    RetryRefused,
    RetryScheduled,
)
from llmpool._types import Priority

if TYPE_CHECKING:
    from opentelemetry import metrics, trace
    from opentelemetry.util.types import AttributeValue
else:
    _FEATURE = "llmpool.instrumentation.opentelemetry"
    metrics = require("opentelemetry.metrics", "otel", feature=_FEATURE)
    trace = require("opentelemetry.trace", "otel", feature=_FEATURE)

__all__ = [
    "DURATION_BUCKETS",
    "OPERATION_NAMES",
    "SCHEMA_URL",
    "SEMCONV_VERSION",
    "TOKEN_BUCKETS",
    "OpenTelemetryInstrument",
]

SEMCONV_VERSION: Final = "1.41.0"
"""The version of the OpenTelemetry semantic conventions this instrument follows."""

SCHEMA_URL: Final = f"https://opentelemetry.io/schemas/{SEMCONV_VERSION}"

DURATION_BUCKETS: Final = C.DURATION_BUCKETS
"""Seconds: the advised ``ExplicitBucketBoundaries`` of ``gen_ai.client.operation.duration``
and ``gen_ai.client.operation.time_to_first_chunk`` (semconv v1.41.0)."""

TOKEN_BUCKETS: Final = tuple(4**n for n in range(14))
"""Tokens: 1, 4, 16, ... 67108864, the advised boundaries of ``gen_ai.client.token.usage``."""

OPERATION_NAMES: Final[dict[str, str]] = {
    "chat": "chat",
    "responses": "chat",
    "embeddings": "embeddings",
}
"""``gen_ai.operation.name`` by llmpool operation. The Responses API is ``chat``: the
conventions' OpenAI page (v1.41.0) keeps ``chat`` for it and tells the two APIs apart with
``openai.api.type`` (``responses`` / ``chat_completions``), set on the span. ``run`` and
``lease`` (any SDK call) have no GenAI operation: they get a span, no GenAI metric."""

_API_TYPES: Final = {"chat": "chat_completions", "responses": "responses"}
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


class _Open:
    """A request's span while it runs, and what its end still needs."""

    __slots__ = ("first_chunk", "span")

    def __init__(self, span: trace.Span) -> None:
        self.span = span
        self.first_chunk: float | None = None  # seconds, from FirstChunk


class OpenTelemetryInstrument(Instrument):
    """Records llmpool's requests as OpenTelemetry GenAI client metrics and spans.

    Register it with ``ConnectionManager(instruments=[OpenTelemetryInstrument()])``. The span
    of a request starts at its first event (queued, or its first attempt), in the caller's
    context, so it is a child of the caller's current span; it ends at ``RequestFinished``.
    It is not made current while the request runs (hooks cannot enter and leave a context
    across the request's awaits). Exception messages are never recorded (they may hold
    secrets): ``error.type`` is the exception's class name (``"cancelled"`` for a
    cancellation).

    Args:
        meter_provider: the ``MeterProvider`` to create the instruments on. Default the
            global one (``opentelemetry.metrics.get_meter_provider()``).
        tracer_provider: the ``TracerProvider`` of the spans. Default the global one.
        provider_name: ``gen_ai.provider.name``; default ``"openai"`` (the conventions' value
            for the OpenAI API; use e.g. ``"azure.ai.openai"`` for Azure OpenAI).
    """

    def __init__(
        self,
        *,
        meter_provider: metrics.MeterProvider | None = None,
        tracer_provider: trace.TracerProvider | None = None,
        provider_name: str = "openai",
    ) -> None:
        self.provider_name = provider_name
        meter = metrics.get_meter(__name__, meter_provider=meter_provider, schema_url=SCHEMA_URL)
        self._tracer = trace.get_tracer(
            __name__, tracer_provider=tracer_provider, schema_url=SCHEMA_URL
        )
        self._duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self._tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self._first_chunk = meter.create_histogram(
            "gen_ai.client.operation.time_to_first_chunk",
            unit="s",
            description="Time to receive the first chunk of a streamed response.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self._open: dict[str, _Open] = {}
        self._ports: dict[str, int | None] = {}  # upstream label -> server.port

    @property
    def open_requests(self) -> int:
        """Requests whose span is open (started, not yet finished)."""
        return len(self._open)

    # -- a request's span ----------------------------------------------------------------------

    def _start(
        self,
        request_id: str,
        session_id: str | None,
        priority: Priority,
        model: str | None,
        start_time: int | None = None,
        operation: str | None = None,
    ) -> _Open:
        attributes: dict[str, AttributeValue] = {
            "gen_ai.provider.name": self.provider_name,
            "llmpool.request.id": request_id,
            "llmpool.priority": priority.value,
        }
        if model is not None:
            attributes["gen_ai.request.model"] = model
        if session_id is not None:
            attributes["llmpool.session.id"] = session_id
        # Named by the semantic conventions when the operation is known at the start (the
        # façade's calls); ``run()`` and leases are renamed at the end.
        name = "llmpool.request"
        semconv = None if operation is None else OPERATION_NAMES.get(operation)
        if semconv is not None:
            name = semconv if model is None else f"{semconv} {model}"
            attributes["gen_ai.operation.name"] = semconv
        span = self._tracer.start_span(
            name,
            kind=trace.SpanKind.CLIENT,
            attributes=attributes,
            start_time=start_time,
        )
        state = self._open[request_id] = _Open(span)
        return state

    def on_request_queued(self, event: RequestQueued) -> None:
        """Start the request's span; add a ``llmpool.queued`` event."""
        state = self._open.get(event.request_id) or self._start(
            event.request_id,
            event.session_id,
            event.priority,
            event.model,
            operation=event.operation,
        )
        state.span.add_event("llmpool.queued", {"llmpool.queued": event.queued})

    def on_attempt_started(self, event: AttemptStarted) -> None:
        """Start the request's span if it did not queue."""
        if event.request_id not in self._open:
            self._start(
                event.request_id,
                event.session_id,
                event.priority,
                event.model,
                operation=event.operation,
            )

    def on_attempt_finished(self, event: AttemptFinished) -> None:
        """Add a ``llmpool.attempt`` event: number, upstream, outcome, status, duration."""
        state = self._open.get(event.request_id)
        if state is None:
            return
        attributes: dict[str, AttributeValue] = {
            "llmpool.attempt": event.attempt,
            "llmpool.upstream": event.upstream,
            "llmpool.attempt.outcome": event.outcome,
            "llmpool.attempt.duration": event.duration,
        }
        if event.status is not None:
            attributes["http.response.status_code"] = event.status
        if event.outcome == "cancelled":
            attributes["error.type"] = "cancelled"  # the same on asyncio and trio
        elif event.error is not None:
            attributes["error.type"] = event.error
        state.span.add_event("llmpool.attempt", attributes)

    def on_retry_scheduled(self, event: RetryScheduled) -> None:
        """Add a ``llmpool.retry`` event: reason, delay, whether it cooled the upstream."""
        state = self._open.get(event.request_id)
        if state is not None:
            state.span.add_event(
                "llmpool.retry",
                {
                    "llmpool.attempt": event.attempt,
                    "llmpool.retry.reason": event.reason,
                    "llmpool.retry.delay": event.delay,
                    "llmpool.retry.cooldown": event.cooldown,
                },
            )

    def on_retry_refused(self, event: RetryRefused) -> None:
        """Add a ``llmpool.retry_refused`` event (the retry budget was spent)."""
        state = self._open.get(event.request_id)
        if state is not None:
            state.span.add_event(
                "llmpool.retry_refused",
                {
                    "llmpool.attempt": event.attempt,
                    "llmpool.retry.in_flight": event.retries_in_flight,
                    "llmpool.retry.allowed": event.allowed,
                },
            )

    def on_cooldown_started(self, event: CooldownStarted) -> None:
        """Add a ``llmpool.cooldown`` event to the span of the request that caused it."""
        state = self._open.get(event.request_id)
        if state is not None:
            state.span.add_event(
                "llmpool.cooldown",
                {
                    "llmpool.upstream": event.upstream,
                    "llmpool.cooldown.seconds": event.seconds,
                    "llmpool.cooldown.reason": event.reason,
                },
            )

    def on_first_chunk(self, event: FirstChunk) -> None:
        """Keep the time to first chunk; recorded at the end, with the operation's attributes."""
        state = self._open.get(event.request_id)
        if state is not None:
            state.first_chunk = event.seconds

    def on_request_finished(self, event: RequestFinished) -> None:
        """Record the metrics and end the span (status ERROR unless it completed)."""
        state = self._open.pop(event.request_id, None)
        if state is None:  # refused before any other event: the span covers its latency
            start = time.time_ns() - int(event.latency * 1e9)
            state = self._start(
                event.request_id, event.session_id, event.priority, event.model, start
            )
            del self._open[event.request_id]
        span = state.span
        if event.superseded:
            # A recovering stream's replaced open: its span ends here, without metrics (the
            # stream's last open records them once).
            span.set_attribute("llmpool.superseded", True)
            span.set_attribute("llmpool.outcome", event.outcome)
            span.end()
            return
        operation = None if event.operation is None else OPERATION_NAMES.get(event.operation)
        error_type = None
        if event.outcome == "cancelled":
            error_type = "cancelled"
        elif event.outcome == "failed":
            error_type = event.error or "_OTHER"

        common: dict[str, AttributeValue] = {}
        if event.response_model is not None:
            common["gen_ai.response.model"] = event.response_model
        if event.server_address is not None:
            common["server.address"] = event.server_address
            port = (
                event.server_port if event.server_port is not None else self._port(event.upstream)
            )
            if port is not None:
                common["server.port"] = port

        if operation is not None:
            attributes: dict[str, AttributeValue] = {
                "gen_ai.operation.name": operation,
                "gen_ai.provider.name": self.provider_name,
                **common,
            }
            if event.model is not None:
                attributes["gen_ai.request.model"] = event.model
            tokens = {**attributes}
            if error_type is not None:
                attributes["error.type"] = error_type
            self._duration.record(event.latency, attributes)
            if event.input_tokens is not None:
                self._tokens.record(event.input_tokens, {**tokens, "gen_ai.token.type": "input"})
            if event.output_tokens is not None:
                self._tokens.record(event.output_tokens, {**tokens, "gen_ai.token.type": "output"})
            if event.stream and state.first_chunk is not None:
                self._first_chunk.record(state.first_chunk, tokens)
            span.update_name(operation if event.model is None else f"{operation} {event.model}")
            span.set_attribute("gen_ai.operation.name", operation)
        else:
            span.update_name(f"llmpool.{event.operation or 'run'}")

        span.set_attributes(common)
        span.set_attribute("llmpool.outcome", event.outcome)
        span.set_attribute("llmpool.attempts", event.attempts)
        span.set_attribute("gen_ai.request.stream", event.stream)
        api_type = None if event.operation is None else _API_TYPES.get(event.operation)
        if api_type is not None:
            span.set_attribute("openai.api.type", api_type)
        if event.queue_wait is not None:
            span.set_attribute("llmpool.queue_wait", event.queue_wait)
        if event.input_tokens is not None:
            span.set_attribute("gen_ai.usage.input_tokens", event.input_tokens)
        if event.output_tokens is not None:
            span.set_attribute("gen_ai.usage.output_tokens", event.output_tokens)
        if state.first_chunk is not None:
            span.set_attribute("gen_ai.response.time_to_first_chunk", state.first_chunk)
        if error_type is not None:
            span.set_attribute("error.type", error_type)
            span.set_status(trace.StatusCode.ERROR, error_type)
        span.end()

    def _port(self, upstream: str | None) -> int | None:
        """``server.port`` of an upstream, from its label ``"<base URL>#<key hash>"``."""
        if upstream is None:
            return None
        if upstream not in self._ports:
            url = urlsplit(upstream.rsplit("#", 1)[0])
            try:
                port = url.port
            except ValueError:
                port = None
            self._ports[upstream] = port or _DEFAULT_PORTS.get(url.scheme)
        return self._ports[upstream]
