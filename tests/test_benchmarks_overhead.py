"""The overhead benchmark's parts: run orders and median intervals (``benchmarks/design.py``),
the canned upstream (``benchmarks/mock.py``) and the well-formedness of its results."""

from __future__ import annotations

import copy
import itertools
import math
from collections import Counter
from typing import Any

import pydantic
import pytest
from benchmarks import mock, overhead, overhead_report, report
from benchmarks.design import balanced_order, median_interval, median_ranks
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent

import llmpool


@pytest.mark.parametrize(
    ("n", "ranks"),
    [(6, (1, 6)), (10, (2, 9)), (20, (6, 15)), (25, (8, 18)), (30, (10, 21))],
    ids=lambda value: str(value),
)
def test_median_ranks_match_the_sign_test_table(n: int, ranks: tuple[int, int]) -> None:
    """The 95 % ranks for the median are the published ones (Conover, table A3)."""
    assert median_ranks(n)[:2] == ranks


@pytest.mark.parametrize("n", range(6, 61))
def test_median_ranks_are_the_narrowest_with_95_percent_coverage(n: int) -> None:
    """The interval covers at least 95 %, and one rank narrower would not."""
    lo, hi, coverage = median_ranks(n)

    def cover(rank: int) -> float:
        return 1 - 2 * sum(math.comb(n, i) for i in range(rank)) / 2**n

    assert hi == n + 1 - lo
    assert coverage == pytest.approx(cover(lo))
    assert coverage >= 0.95
    assert cover(lo + 1) < 0.95 or lo + 1 > (n + 1) / 2


def test_median_interval_below_six_samples_is_the_range() -> None:
    """With too few samples for 95 %, the interval is the range, with its real coverage."""
    interval = median_interval([3.0, 1.0, 2.0])
    assert (interval["lo"], interval["median"], interval["hi"]) == (1.0, 2.0, 3.0)
    assert interval["coverage"] == pytest.approx(0.75)


@pytest.mark.parametrize("n", range(2, 8))
def test_balanced_order_puts_each_name_in_each_place_equally(n: int) -> None:
    """Over a cycle (n rounds, 2n when n is odd) every name takes every place equally often."""
    names = [chr(ord("a") + i) for i in range(n)]
    rounds = n if n % 2 == 0 else 2 * n
    rows = [balanced_order(names, k) for k in range(rounds)]
    assert all(sorted(row) == names for row in rows)
    for place in range(n):
        assert Counter(row[place] for row in rows) == dict.fromkeys(names, rounds // n)


@pytest.mark.parametrize("n", range(2, 8))
def test_balanced_order_balances_predecessors(n: int) -> None:
    """Over a cycle every name runs right after every other name equally often."""
    names = list(range(n))
    rounds = n if n % 2 == 0 else 2 * n
    pairs = Counter(
        pair for k in range(rounds) for pair in itertools.pairwise(balanced_order(names, k))
    )
    assert set(pairs.values()) == {rounds // n}
    assert len(pairs) == n * (n - 1)


def test_balanced_order_runs_the_pair_compared_in_either_order_equally() -> None:
    """``sdk`` runs before ``llmpool`` in half of the overhead benchmark's alternations."""
    names = ["transport", "sdk", "llmpool", "llmpool-run"]
    rows = [balanced_order(names, k) for k in range(len(names))]
    first = sum(row.index("sdk") < row.index("llmpool") for row in rows)
    assert first == len(rows) // 2


@pytest.mark.parametrize(
    ("fraction", "word"),
    [
        ({"lo": 0.001, "median": 0.01, "hi": 0.02}, "pass"),
        ({"lo": 0.021, "median": 0.03, "hi": 0.04}, "miss"),
        ({"lo": 0.01, "median": 0.019, "hi": 0.025}, "unresolved"),
    ],
    ids=["under", "over", "straddles"],
)
def test_overhead_verdict_needs_the_whole_interval(fraction: dict[str, float], word: str) -> None:
    """Pass needs the interval at or under 2 %, miss the interval above; else unresolved."""
    assert overhead_report.overhead_verdict(fraction) == word


def test_canned_json_bodies_validate_as_the_sdk_types() -> None:
    """The canned JSON answers pass the SDK's models with validation (not only construct)."""
    response = Response.model_validate_json(mock.json_body("responses"))
    assert response.output_text == "".join(mock._text(mock.DELTAS))
    assert response.usage is not None
    completion = ChatCompletion.model_validate_json(mock.json_body("chat"))
    assert completion.choices[0].message.content == response.output_text


def test_canned_streams_validate_as_the_sdk_event_types() -> None:
    """Every canned SSE event is a valid SDK event; each stream ends with its usage."""
    events: pydantic.TypeAdapter[ResponseStreamEvent] = pydantic.TypeAdapter(ResponseStreamEvent)
    parsed = [events.validate_python(event) for _, event in mock.response_events()]
    assert [e.type for e in parsed].count("response.output_text.delta") == mock.DELTAS
    assert parsed[-1].type == "response.completed"
    assert parsed[-1].response.usage is not None
    chunks = [ChatCompletionChunk.model_validate(chunk) for chunk in mock.chat_chunks()]
    assert chunks[-1].usage is not None
    assert not chunks[-1].choices
    assert mock.sse_body("chat")[-1] == b"data: [DONE]\n\n"


# On trio the SDK leaves its SSE generators suspended when a Chat stream ends at ``[DONE]``
# (it stops reading there); trio reports them when they are collected. Real streams end so.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.anyio
@pytest.mark.parametrize(
    ("api", "stream"),
    [("responses", False), ("responses", True), ("chat", False), ("chat", True)],
    ids=["responses-json", "responses-stream", "chat-json", "chat-stream"],
)
async def test_sdk_and_llmpool_read_the_same_answer(api: str, stream: bool) -> None:
    """The benchmark's call reads every event, raw and through llmpool, one request each."""
    transport = mock.CannedTransport(api, stream=stream)
    call = overhead.api_call(api, stream)
    client = overhead._client(transport)
    config = llmpool.PoolConfig(pool_size=1)
    async with llmpool.ConnectionManager(config, client_factory=overhead._factory(transport)) as m:
        raw = await call(client)
        pooled = await call(m)
        assert m.stats().completed_requests == 1
    await client.close()
    assert raw == pooled == overhead.expected_events(api, stream)
    assert transport.requests == 2


@pytest.mark.anyio
async def test_the_transport_refuses_another_endpoint() -> None:
    """A call to the wrong endpoint fails instead of timing an error path."""
    client = overhead._client(mock.CannedTransport("chat", stream=False))
    with pytest.raises(AssertionError, match=r"chat transport got POST .*/v1/responses"):
        await overhead.api_call("responses", False)(client)
    await client.close()


@pytest.fixture(scope="module")
def small_run() -> dict[str, Any]:
    spec = {
        "backend": "asyncio",
        "alternations": 2,
        "batch_seconds": 0.0,
        "warmup_requests": 1,
        "concurrencies": [1, 2],
    }
    return {"scenarios": {"overhead": {"runs": {"asyncio": overhead.run(spec)}}}}


def _doc(run: dict[str, Any]) -> dict[str, Any]:
    return {"settings": {}, "machine": {}, **copy.deepcopy(run)}


def test_a_small_run_is_well_formed(small_run: dict[str, Any]) -> None:
    """Every cell has one sample per alternation per variant and the requests add up."""
    assert report.validate(_doc(small_run)) == []
    cells = small_run["scenarios"]["overhead"]["runs"]["asyncio"]["cells"]
    assert set(cells) == {
        f"{api} {mode} C={c}" for api in mock.APIS for mode in ("json", "stream") for c in (1, 2)
    } | {"run(no-op) C=1"}
    assert all(row["passed"] is not None or "verdict" in row for row in report.evaluate(small_run))


def test_validate_flags_a_missing_alternation(small_run: dict[str, Any]) -> None:
    """A variant with fewer samples than alternations makes the results malformed."""
    doc = _doc(small_run)
    cell = doc["scenarios"]["overhead"]["runs"]["asyncio"]["cells"]["chat json C=1"]
    cell["samples_us"]["llmpool"].pop()
    assert report.validate(doc) == [
        "overhead/asyncio/chat json C=1/llmpool: wrong number of alternations"
    ]


def test_validate_flags_requests_the_transport_did_not_answer(small_run: dict[str, Any]) -> None:
    """The transport's request count must match what the batches were meant to send."""
    doc = _doc(small_run)
    doc["scenarios"]["overhead"]["runs"]["asyncio"]["transport_requests"] -= 1
    assert len(report.validate(doc)) == 1
