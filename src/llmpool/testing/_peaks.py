"""Peak load at the provider, from its records: what a rate limit there would have counted.

``window_peaks`` is pure: records in, peaks out. A provider's rate limit counts the requests
(and tokens) that arrived in the last ``window`` seconds, so the peak over every sliding
window is the figure to hold against a quota; the peak of requests in flight is the figure
to hold against a concurrency limit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from pydantic import BaseModel, ConfigDict, Field

from ._records import RecordedRequest

__all__ = ["WindowPeaks", "window_peaks"]


class WindowPeaks(BaseModel):
    """The busiest sliding window and the most requests in flight, over some records.

    A window is half-open, ``[start, start + window)``: two arrivals exactly ``window``
    seconds apart are never in the same one, as a limit over "the last 60 seconds" counts
    them. Times are the records' ``time.monotonic()`` seconds.

    Attributes:
        window: the window's length, seconds.
        requests: the most arrivals in one window (0 without records).
        requests_at: the start of the first such window (an arrival), or ``None``.
        tokens: the most tokens arriving in one window (0 without records).
        tokens_at: the start of the first such window (an arrival), or ``None``.
        concurrency: the most requests in flight at once, from each record's ``received_at``
            to its ``finished_at`` (one still open counts to the end; one ending when another
            arrives does not overlap it).
        concurrency_at: when that many were first in flight (an arrival), or ``None``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    window: float = Field(description="Window length, seconds.")
    requests: int = Field(description="Most arrivals in one window, count.")
    requests_at: float | None = Field(description="Start of the first busiest window, or None.")
    tokens: int = Field(description="Most tokens arriving in one window.")
    tokens_at: float | None = Field(description="Start of the first window with most tokens.")
    concurrency: int = Field(description="Most requests in flight at once, count.")
    concurrency_at: float | None = Field(description="When that many were first in flight.")


def _usage_tokens(record: RecordedRequest) -> int:
    return record.usage_tokens or 0


def window_peaks(
    records: Iterable[RecordedRequest],
    *,
    window: float = 60.0,
    tokens: Callable[[RecordedRequest], int] | None = None,
) -> WindowPeaks:
    """The peaks of requests and tokens per sliding window, and of requests in flight.

    Exact: the busiest window can always be moved to start at an arrival, so every window
    anchored at one is counted (linear after sorting). Filter the records first to count
    only some, e.g. ``[r for r in sim.requests if r.path == "/v1/responses"]``.

    Args:
        records: the requests to count, in any order (e.g. ``SimulatedProvider.requests``).
        window: the window's length, seconds; default 60.0 (per-minute limits).
        tokens: the tokens a record counts; default its ``usage_tokens`` (0 when ``None``:
            errors count as requests, not tokens).

    Returns:
        The peaks; zeros and ``None`` times without records.

    Raises:
        ValueError: ``window`` is not a positive finite number.
    """
    if not (isinstance(window, int | float) and math.isfinite(window) and window > 0):
        raise ValueError(f"window must be a positive number of seconds, got {window!r}")
    count = tokens or _usage_tokens
    arrivals = sorted(records, key=lambda record: record.received_at)
    times = [record.received_at for record in arrivals]
    weights = [count(record) for record in arrivals]
    best_requests, best_tokens = 0, 0
    requests_at: float | None = None
    tokens_at: float | None = None
    end, in_window = 0, 0
    for start, opened_at in enumerate(times):
        while end < len(times) and times[end] - opened_at < window:
            in_window += weights[end]
            end += 1
        if end - start > best_requests:
            best_requests, requests_at = end - start, opened_at
        if tokens_at is None or in_window > best_tokens:
            best_tokens, tokens_at = in_window, opened_at
        in_window -= weights[start]
    concurrency, concurrency_at = _most_in_flight(arrivals)
    return WindowPeaks(
        window=float(window),
        requests=best_requests,
        requests_at=requests_at,
        tokens=best_tokens,
        tokens_at=tokens_at,
        concurrency=concurrency,
        concurrency_at=concurrency_at,
    )


def _most_in_flight(records: list[RecordedRequest]) -> tuple[int, float | None]:
    """The most overlapping ``[received_at, finished_at)`` intervals, and when first reached."""
    # At equal times an end (-1) sorts before an arrival (+1): back-to-back is not overlap.
    events = [(record.received_at, 1) for record in records]
    events += [(record.finished_at, -1) for record in records if record.finished_at is not None]
    events.sort()
    most, at, open_now = 0, None, 0
    for moment, delta in events:
        open_now += delta
        if open_now > most:
            most, at = open_now, moment
    return most, at
