"""``OpenTelemetryInstrument``: GenAI client metrics (semconv v1.41.0) and one span per
request, read back through the SDK's in-memory reader and exporter; providers are passed
explicitly (no global is set)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import openai
import pytest
import respx
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llmpool import QueueTimeoutError
from llmpool.instrumentation.opentelemetry import (
    DURATION_BUCKETS,
    SCHEMA_URL,
    TOKEN_BUCKETS,
    OpenTelemetryInstrument,
)

from .scenarios import (
    BASE,
    COMPLETION,
    HOST,
    SDK_CHAT_STREAM_TRIO_WARNING,
    chat,
    chunk,
    error,
    manager,
    mixed,
    sse,
    stream_chat,
)

pytestmark = pytest.mark.anyio

CHAT = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "m",
    "server.address": HOST,
    "server.port": 80,
}
EMBEDDINGS = {**CHAT, "gen_ai.operation.name": "embeddings", "gen_ai.request.model": "e"}


class Telemetry:
    """SDK providers with in-memory reader and exporter, and an instrument on them."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.instrument = OpenTelemetryInstrument(
            meter_provider=MeterProvider(metric_readers=[self.reader]),
            tracer_provider=self.tracer_provider,
        )

    def metrics(self) -> dict[str, tuple[str, list[HistogramDataPoint]]]:
        """Metric name -> (unit, data points)."""
        found: dict[str, tuple[str, list[HistogramDataPoint]]] = {}
        data = self.reader.get_metrics_data()
        assert data is not None
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                assert scope.schema_url == SCHEMA_URL
                for metric in scope.metrics:
                    found[metric.name] = (metric.unit or "", list(metric.data.data_points))  # type: ignore[arg-type]
        return found

    def spans(self) -> tuple[ReadableSpan, ...]:
        return self.exporter.get_finished_spans()


def points(found: Any, name: str) -> dict[frozenset[tuple[str, Any]], tuple[int, float]]:
    return {frozenset(dp.attributes.items()): (dp.count, dp.sum) for dp in found[name][1]}


def key(attributes: dict[str, Any], **more: Any) -> frozenset[tuple[str, Any]]:
    return frozenset({**attributes, **more}.items())


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


async def test_operation_duration(mock: respx.MockRouter) -> None:
    """One duration per GenAI request, by the semconv attributes (error.type on the failed
    one); ``run`` records none; unit ``s`` and the advised buckets."""
    otel = Telemetry()
    await mixed(mock, otel.instrument)
    found = otel.metrics()
    unit, data = found["gen_ai.client.operation.duration"]
    assert unit == "s"
    assert {tuple(dp.explicit_bounds) for dp in data} == {DURATION_BUCKETS}
    durations = points(found, "gen_ai.client.operation.duration")
    assert {k: count for k, (count, _) in durations.items()} == {
        key(CHAT, **{"gen_ai.response.model": "m-2024"}): 2,
        key(CHAT, **{"error.type": "InternalServerError"}): 1,
        key(EMBEDDINGS, **{"gen_ai.response.model": "e-2024"}): 1,
    }
    assert all(total > 0 for _, total in durations.values())


async def test_token_usage(mock: respx.MockRouter) -> None:
    """Input and output tokens are recorded per request as reported in usage ({token})."""
    otel = Telemetry()
    await mixed(mock, otel.instrument)
    found = otel.metrics()
    unit, data = found["gen_ai.client.token.usage"]
    assert unit == "{token}"
    assert {tuple(dp.explicit_bounds) for dp in data} == {tuple(map(float, TOKEN_BUCKETS))}
    chat_ok = {**CHAT, "gen_ai.response.model": "m-2024"}
    assert points(found, "gen_ai.client.token.usage") == {
        key(chat_ok, **{"gen_ai.token.type": "input"}): (2, 14),
        key(chat_ok, **{"gen_ai.token.type": "output"}): (2, 6),
        key(EMBEDDINGS, **{"gen_ai.response.model": "e-2024", "gen_ai.token.type": "input"}): (
            1,
            4,
        ),
    }
    assert "gen_ai.client.operation.time_to_first_chunk" not in found  # no stream here


async def test_spans_one_per_request_with_attempt_events(mock: respx.MockRouter) -> None:
    """A CLIENT span per request named ``{operation} {model}``; each attempt is an event; a
    failure sets error.type and status ERROR; the 429's retry and cooldown are events."""
    otel = Telemetry()
    await mixed(mock, otel.instrument)
    spans = otel.spans()
    assert [span.name for span in spans] == [
        "chat m",
        "chat m",
        "chat m",
        "llmpool.run",
        "embeddings e",
    ]
    assert {span.kind for span in spans} == {trace.SpanKind.CLIENT}
    ok, retried, failed, cancelled, embedded = spans
    assert ok.status.status_code == trace.StatusCode.UNSET
    assert ok.attributes is not None
    assert {k: ok.attributes[k] for k in CHAT} == CHAT
    assert ok.attributes["gen_ai.response.model"] == "m-2024"
    assert ok.attributes["openai.api.type"] == "chat_completions"
    assert ok.attributes["gen_ai.usage.input_tokens"] == 7
    assert ok.attributes["llmpool.priority"] == "high"
    assert [e.name for e in ok.events] == ["llmpool.attempt"]

    names = [e.name for e in retried.events]
    assert names == ["llmpool.cooldown", "llmpool.attempt", "llmpool.retry", "llmpool.attempt"]
    first, second = (
        dict(e.attributes or {}) for e in retried.events if e.name == "llmpool.attempt"
    )
    assert first["http.response.status_code"] == 429
    assert first["llmpool.attempt.outcome"] == "error"
    assert first["error.type"] == "RateLimitError"
    assert second["llmpool.attempt.outcome"] == "ok"
    assert "http.response.status_code" not in second

    assert failed.status.status_code == trace.StatusCode.ERROR
    assert failed.attributes is not None
    assert failed.attributes["error.type"] == "InternalServerError"
    assert failed.attributes["llmpool.attempts"] == 2

    assert cancelled.status.status_code == trace.StatusCode.ERROR
    assert cancelled.attributes is not None
    assert cancelled.attributes["error.type"] == "cancelled"
    assert "gen_ai.operation.name" not in cancelled.attributes
    (attempt,) = cancelled.events
    assert (attempt.attributes or {})["error.type"] == "cancelled"

    assert embedded.attributes is not None
    assert embedded.attributes["gen_ai.operation.name"] == "embeddings"
    assert "openai.api.type" not in embedded.attributes
    assert otel.instrument.open_requests == 0


async def test_span_is_child_of_the_callers_span(mock: respx.MockRouter) -> None:
    """The request's span starts in the caller's context: the caller's span is its parent,
    and it starts before and ends after its attempts."""
    mock.post("/chat/completions").return_value = httpx.Response(200, json=COMPLETION)
    otel = Telemetry()
    tracer = otel.tracer_provider.get_tracer("app")
    async with manager(otel.instrument) as m:
        with tracer.start_as_current_span("handler") as parent:
            await chat(m)
    request, handler = otel.spans()
    assert handler.name == "handler"
    assert request.parent is not None
    assert request.parent.span_id == parent.get_span_context().span_id
    assert request.start_time is not None
    assert request.end_time is not None
    (attempt,) = request.events
    assert request.start_time <= attempt.timestamp <= request.end_time


@SDK_CHAT_STREAM_TRIO_WARNING
async def test_stream_time_to_first_chunk(mock: respx.MockRouter) -> None:
    """A stream records its time to first chunk once, with the operation's attributes; the
    span says it streamed."""
    mock.post("/chat/completions").return_value = sse(chunk("hel"), chunk("lo"))
    otel = Telemetry()
    async with manager(otel.instrument) as m:
        assert await stream_chat(m) == "hello"
    found = otel.metrics()
    unit, _ = found["gen_ai.client.operation.time_to_first_chunk"]
    assert unit == "s"
    ttfc = points(found, "gen_ai.client.operation.time_to_first_chunk")
    ((attributes, (count, seconds)),) = ttfc.items()
    assert dict(attributes)["gen_ai.operation.name"] == "chat"
    assert count == 1
    assert seconds > 0
    (span,) = otel.spans()
    assert span.attributes is not None
    assert span.attributes["gen_ai.request.stream"] is True
    assert span.attributes["gen_ai.response.time_to_first_chunk"] == seconds


async def test_no_span_is_left_open(mock: respx.MockRouter) -> None:
    """After many requests (successes, failures, queue timeouts, cancellations while queued
    and while running) every span has ended and none is kept."""
    mock.post("/chat/completions").side_effect = [
        httpx.Response(200, json=COMPLETION) if i % 3 else error(400) for i in range(20)
    ]
    otel = Telemetry()

    async def hold(client: object) -> None:
        await anyio.sleep(0.03)  # longer than every timeout below

    async def call(kind: int) -> None:
        try:
            if kind == 0:
                await chat(m)
            elif kind == 1:
                with anyio.move_on_after(0.01):
                    await m.run(hold)
            else:
                await m.with_options(queue_timeout=0.005).run(hold)
        except (openai.BadRequestError, QueueTimeoutError):
            pass

    async with manager(otel.instrument, max_concurrency=2) as m:
        for _ in range(5):
            async with anyio.create_task_group() as tg:
                for kind in (0, 0, 0, 0, 1, 1, 2, 2):
                    tg.start_soon(call, kind)
            assert otel.instrument.open_requests == 0
    assert len(otel.spans()) == 40
    outcomes = {(span.attributes or {})["llmpool.outcome"] for span in otel.spans()}
    assert outcomes == {"completed", "failed", "cancelled"}
