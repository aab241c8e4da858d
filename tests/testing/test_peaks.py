"""``llmpool.testing.window_peaks``: the busiest sliding window and the most requests in flight,
from hand-made records (a pure function: no server)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmpool.testing import RecordedRequest, WindowPeaks, window_peaks


def record(
    at: float, tokens: int | None = None, finished: float | None = None, outcome: str = "ok"
) -> RecordedRequest:
    return RecordedRequest(
        method="POST",
        path="/v1/responses",
        headers={},
        body=None,
        received_at=at,
        outcome=outcome,
        finished_at=finished,
        usage_tokens=tokens,
    )


def test_no_records_give_zeros() -> None:
    """Without records every peak is 0 and no window has a start."""
    assert window_peaks([]) == WindowPeaks(
        window=60.0,
        requests=0,
        requests_at=None,
        tokens=0,
        tokens_at=None,
        concurrency=0,
        concurrency_at=None,
    )


@pytest.mark.parametrize(
    ("times", "peak", "start"),
    [
        ([0.0, 60.0], 1, 0.0),
        ([0.0, 59.999], 2, 0.0),
        ([0.0, 30.0, 60.0, 90.0], 2, 0.0),
        ([5.0, 5.0, 5.0], 3, 5.0),
        ([0.0, 60.0, 60.0], 2, 60.0),
        ([10.0, 0.0, 50.0, 61.0, 65.0], 4, 10.0),
    ],
    ids=["exactly-apart", "just-inside", "pairs", "equal-times", "equal-at-boundary", "unsorted"],
)
def test_requests_per_window(times: list[float], peak: int, start: float) -> None:
    """A window is [start, start + 60): arrivals exactly 60 s apart never share one; equal
    times all count; the reported start is the first busiest window's first arrival."""
    peaks = window_peaks([record(at) for at in times])
    assert (peaks.requests, peaks.requests_at) == (peak, start)


def test_tokens_peak_is_its_own_window() -> None:
    """The window with the most tokens need not be the one with the most requests; a record
    without usage counts as a request with 0 tokens."""
    records = [
        record(0.0, 10),
        record(1.0, 10),
        record(2.0, None, outcome="status:500"),
        record(70.0, 500),
    ]
    peaks = window_peaks(records)
    assert (peaks.requests, peaks.requests_at) == (3, 0.0)
    assert (peaks.tokens, peaks.tokens_at) == (500, 70.0)


def test_tokens_exactly_a_window_apart_are_not_summed() -> None:
    """Like requests, tokens arriving exactly ``window`` seconds apart are in two windows."""
    assert window_peaks([record(0.0, 100), record(10.0, 100)], window=10.0).tokens == 100


def test_a_tokens_function_replaces_usage() -> None:
    """``tokens=`` decides what a record counts, e.g. what the client estimated."""
    records = [record(0.0, 5), record(1.0, 5)]
    assert window_peaks(records, tokens=lambda r: 7).tokens == 14


@pytest.mark.parametrize(
    ("intervals", "peak", "at"),
    [
        ([(0.0, 1.0), (1.0, 2.0)], 1, 0.0),
        ([(0.0, 1.0), (0.5, 2.0)], 2, 0.5),
        ([(0.0, 1.0), (0.0, 1.0), (0.0, 3.0)], 3, 0.0),
        ([(0.0, None), (5.0, 6.0)], 2, 5.0),
        ([(0.0, 10.0), (1.0, 2.0), (3.0, 4.0), (3.5, 4.5)], 3, 3.5),
    ],
    ids=["back-to-back", "overlap", "equal-starts", "still-open", "nested"],
)
def test_concurrency(intervals: list[tuple[float, float | None]], peak: int, at: float) -> None:
    """In flight from received_at to finished_at; one ending as another arrives does not
    overlap it; one not finished counts to the end."""
    peaks = window_peaks([record(start, finished=end) for start, end in intervals])
    assert (peaks.concurrency, peaks.concurrency_at) == (peak, at)


@pytest.mark.parametrize("window", [0.0, -1.0, float("inf"), float("nan")])
def test_a_window_must_be_positive_and_finite(window: float) -> None:
    with pytest.raises(ValueError, match="window must be a positive number of seconds"):
        window_peaks([], window=window)


@given(
    st.lists(
        st.tuples(
            st.integers(0, 40).map(lambda tenth: tenth / 10),
            st.integers(0, 9),
            st.integers(0, 20).map(lambda tenth: tenth / 10),
        ),
        max_size=25,
    ),
    st.integers(1, 30).map(lambda tenth: tenth / 10),
)
def test_peaks_match_brute_force(rows: list[tuple[float, int, float]], window: float) -> None:
    """Every window and every instant, counted the slow way, agree with the peaks."""
    records = [record(at, tokens, finished=at + length) for at, tokens, length in rows]
    peaks = window_peaks(records, window=window)
    starts = [r.received_at for r in records]
    inside = [[r for r in records if 0 <= r.received_at - s < window] for s in starts]
    assert peaks.requests == max((len(group) for group in inside), default=0)
    assert peaks.tokens == max((sum(r.usage_tokens or 0 for r in g) for g in inside), default=0)
    moments = sorted(set(itertools.chain(starts, (r.finished_at or 0.0 for r in records))))
    flying = [
        sum(1 for r in records if r.received_at <= m < (r.finished_at or 0.0)) for m in moments
    ]
    assert peaks.concurrency == max(flying, default=0)
