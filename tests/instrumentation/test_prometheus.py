"""``PrometheusInstrument``: exact series, parsed from the text exposition, after a real
``ConnectionManager`` ran requests against a respx-mocked upstream."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import httpx
import prometheus_client
import pytest
import respx
from prometheus_client.parser import text_string_to_metric_families

from llmpool.instrumentation.prometheus import DURATION_BUCKETS, PrometheusInstrument

from .scenarios import (
    API_KEY,
    BASE,
    COMPLETION,
    SDK_CHAT_STREAM_TRIO_WARNING,
    Finished,
    chat,
    chunk,
    manager,
    mixed,
    sse,
    stream_chat,
)

pytestmark = pytest.mark.anyio

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


def scrape(registry: prometheus_client.CollectorRegistry) -> Series:
    """Every sample of the text exposition, keyed by (name, labels)."""
    text = prometheus_client.generate_latest(registry).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def values(series: Series, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: value for (n, labels), value in series.items() if n == name}


def labels(**pairs: str) -> frozenset[tuple[str, str]]:
    return frozenset(pairs.items())


def upstream_of(series: Series) -> str:
    (upstream,) = {
        value
        for (n, ls) in series
        if n == "llmpool_attempts_total"
        for k, value in ls
        if k == "upstream"
    }
    return upstream


async def test_requests_attempts_retries_and_tokens(mock: respx.MockRouter) -> None:
    """Each request is counted once by outcome; each attempt by outcome and status; the 429
    and the first 500 are retries (the second 500 exhausts max_attempts=2); the 429 with a
    hint cools its upstream down; usage tokens add up by type."""
    registry = prometheus_client.CollectorRegistry()
    await mixed(mock, PrometheusInstrument(registry))
    series = scrape(registry)
    upstream = upstream_of(series)
    assert upstream.startswith(BASE)
    assert API_KEY not in upstream

    assert values(series, "llmpool_requests_total") == {
        labels(priority="high", outcome="completed", operation="chat", model="m"): 1,
        labels(priority="normal", outcome="completed", operation="chat", model="m"): 1,
        labels(priority="low", outcome="failed", operation="chat", model="m"): 1,
        labels(priority="normal", outcome="cancelled", operation="run", model=""): 1,
        labels(priority="normal", outcome="completed", operation="embeddings", model="e"): 1,
    }
    u = {"upstream": upstream}
    assert values(series, "llmpool_attempts_total") == {
        labels(**u, model="m", outcome="ok", status=""): 2,
        labels(**u, model="m", outcome="error", status="429"): 1,
        labels(**u, model="m", outcome="error", status="500"): 2,
        labels(**u, model="", outcome="cancelled", status=""): 1,
        labels(**u, model="e", outcome="ok", status=""): 1,
    }
    assert values(series, "llmpool_retries_total") == {
        labels(reason="status 429"): 1,
        labels(reason="status 500"): 1,
    }
    assert values(series, "llmpool_cooldowns_total") == {labels(**u): 1}
    assert values(series, "llmpool_retry_budget_refusals_total") == {labels(): 0}
    assert values(series, "llmpool_tokens_total") == {
        labels(model="m", type="input"): 14,  # two answered chats, 7 prompt tokens each
        labels(model="m", type="output"): 6,
        labels(model="e", type="input"): 4,
    }


async def test_histograms_count_every_request_and_attempt(mock: respx.MockRouter) -> None:
    """Durations are observed once per request (and per attempt), into the semconv buckets;
    queue wait once per request that started an attempt."""
    registry = prometheus_client.CollectorRegistry()
    await mixed(mock, PrometheusInstrument(registry))
    series = scrape(registry)
    upstream = upstream_of(series)
    durations = values(series, "llmpool_request_duration_seconds_count")
    assert durations == {
        labels(priority="high", outcome="completed", model="m"): 1,
        labels(priority="normal", outcome="completed", model="m"): 1,
        labels(priority="low", outcome="failed", model="m"): 1,
        labels(priority="normal", outcome="cancelled", model=""): 1,
        labels(priority="normal", outcome="completed", model="e"): 1,
    }
    cancelled = labels(priority="normal", outcome="cancelled", model="")
    assert values(series, "llmpool_request_duration_seconds_sum")[cancelled] >= 0.05
    assert values(series, "llmpool_attempt_duration_seconds_count") == {
        labels(upstream=upstream, model="m"): 5,
        labels(upstream=upstream, model=""): 1,
        labels(upstream=upstream, model="e"): 1,
    }
    assert values(series, "llmpool_queue_wait_seconds_count") == {
        labels(priority="high"): 1,
        labels(priority="normal"): 3,
        labels(priority="low"): 1,
    }
    bounds = {
        dict(ls)["le"]
        for ls in values(series, "llmpool_request_duration_seconds_bucket")
        if dict(ls)["priority"] == "high"
    }
    assert bounds == {*(str(b) for b in DURATION_BUCKETS), "+Inf"}


async def test_gauges_rise_while_busy_and_return_to_zero() -> None:
    """With one slot and three requests, two wait in the queue and one attempt runs; when
    they are done, both gauges are back at 0 (a cancelled waiter included)."""
    registry = prometheus_client.CollectorRegistry()
    release = anyio.Event()

    async def hold(client: object) -> str:
        await release.wait()
        return "done"

    waiter = anyio.CancelScope()

    async def wait_low() -> None:
        with waiter:
            await m.run(hold, priority="low")

    async with (
        manager(PrometheusInstrument(registry), max_concurrency=1) as m,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(m.run, hold)  # takes the slot
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(m.run, hold)
        tg.start_soon(m.run, hold)
        tg.start_soon(wait_low)
        await anyio.wait_all_tasks_blocked()
        during = scrape(registry)
        waiter.cancel()
        await anyio.wait_all_tasks_blocked()
        release.set()
    after = scrape(registry)
    queued = values(during, "llmpool_queued_requests")
    assert queued == {labels(priority="normal"): 2, labels(priority="low"): 1}
    assert sum(values(during, "llmpool_attempts_in_progress").values()) == 1
    assert set(values(after, "llmpool_queued_requests").values()) == {0}
    assert set(values(after, "llmpool_attempts_in_progress").values()) == {0}
    finished = values(after, "llmpool_requests_total")
    assert finished == {
        labels(priority="normal", outcome="completed", operation="run", model=""): 3,
        labels(priority="low", outcome="cancelled", operation="run", model=""): 1,
    }


@SDK_CHAT_STREAM_TRIO_WARNING
async def test_stream_time_to_first_chunk(mock: respx.MockRouter) -> None:
    """A streamed chat observes its time to first chunk once; its attempt ends at release."""
    mock.post("/chat/completions").return_value = sse(chunk("hel"), chunk("lo"))
    registry = prometheus_client.CollectorRegistry()
    async with manager(PrometheusInstrument(registry)) as m:
        assert await stream_chat(m) == "hello"
    series = scrape(registry)
    assert values(series, "llmpool_time_to_first_chunk_seconds_count") == {
        labels(priority="normal", model="m"): 1
    }
    assert values(series, "llmpool_requests_total") == {
        labels(priority="normal", outcome="completed", operation="chat", model="m"): 1
    }
    assert set(values(series, "llmpool_attempts_in_progress").values()) == {0}


async def test_no_session_or_request_ids_in_labels(mock: respx.MockRouter) -> None:
    """Label names are the bounded set; no value is a session id or a request id."""
    registry = prometheus_client.CollectorRegistry()
    mock.post("/chat/completions").return_value = httpx.Response(200, json=COMPLETION)
    finished = Finished()
    async with manager(PrometheusInstrument(registry), finished) as m:
        for session in ("terminal-1", "terminal-2"):
            await chat(m, session_id=session)
    series = scrape(registry)
    names = {name for (_, ls) in series for name, _ in ls}
    bounded = {"priority", "outcome", "operation", "model", "upstream", "status", "type", "le"}
    assert names == bounded
    ids = {"terminal-1", "terminal-2", *(event.request_id for event in finished.events)}
    assert len(ids) == 4
    assert not ids & {value for (_, ls) in series for _, value in ls}


def test_namespace_prefixes_every_metric() -> None:
    """``namespace`` is the prefix of every metric; ``""`` leaves none."""
    registry = prometheus_client.CollectorRegistry()
    PrometheusInstrument(registry, namespace="")
    names = {family.name for family in registry.collect()}
    assert "requests" in names
    assert not any(name.startswith("llmpool") for name in names)
    other = prometheus_client.CollectorRegistry()
    PrometheusInstrument(other, namespace="app")
    assert all(family.name.startswith("app_") for family in other.collect())


def test_second_instrument_on_one_registry_fails() -> None:
    """Two instruments cannot share one registry: prometheus_client refuses the duplicate."""
    registry = prometheus_client.CollectorRegistry()
    PrometheusInstrument(registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        PrometheusInstrument(registry)
