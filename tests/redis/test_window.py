"""The window-safe bucket: no window of 60 + margin seconds admits more than the limit."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from llmpool.redis._window import WindowBucket, window_rate


@settings(max_examples=200, deadline=None)
@given(
    limit=st.integers(2, 2_000),
    burst=st.floats(0.1, 5.0),
    margin=st.floats(0.0, 2.0),
    gaps=st.lists(st.floats(0.0, 3.0), min_size=1, max_size=300),
)
def test_no_window_admits_more_than_the_limit(
    limit: int, burst: float, margin: float, gaps: list[float]
) -> None:
    """Requests arriving at random take a unit whenever the bucket has one: every window of
    60 + margin seconds holds at most ``limit`` admissions (Cruz's bound c + r * T)."""
    bucket = WindowBucket(limit, burst, margin, 0.0)
    now, admitted = 0.0, []
    for gap in gaps:
        now += gap
        if bucket.wait_for(1, now) == 0.0:
            bucket.take(1)
            admitted.append(now)
    window = 60.0 + margin
    start = 0
    for end, at in enumerate(admitted):
        while admitted[start] <= at - window:
            start += 1
        assert end - start + 1 <= limit


def test_goodput_with_one_second_of_burst_and_the_default_margin() -> None:
    """600 RPM: capacity 10, refill (600 - 10) / 60.25 per second: 97.9 % of the limit."""
    rate = window_rate(600, 10.0, 0.25)
    assert abs(rate * 60 / 600 - 0.979) < 0.001


def test_an_empty_bucket_starts_empty_and_refills_at_the_window_rate() -> None:
    """``level=0.0``: what an instance that lost Redis starts from."""
    bucket = WindowBucket(120, 1.0, 0.25, 10.0, 0.0)
    assert bucket.available(10.0) == 0.0
    assert abs(bucket.available(11.0) - window_rate(120, 2.0, 0.25)) < 1e-9
    bucket.relimit(60, 1.0, 11.0)
    assert bucket.rate == window_rate(60, 1.0, 0.25)


def test_a_lease_ttl_within_two_heartbeats_is_refused() -> None:
    """A lease must outlive two heartbeats, or it expires between two renewals."""
    import pydantic
    import pytest

    from llmpool.redis import SharedBudgetPolicy

    with pytest.raises(pydantic.ValidationError, match="lease_ttl"):
        SharedBudgetPolicy(lease_ttl=2.0, heartbeat_interval=1.0)
    assert SharedBudgetPolicy(lease_ttl=2.1, heartbeat_interval=1.0).lease_ttl == 2.1
