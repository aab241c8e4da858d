"""The circuit breaker's state machine (pure, injected clock) and how classify feeds it."""

from __future__ import annotations

import math

import pytest

from llmpool import CircuitPolicy, classify
from llmpool._breaker import BreakerState, CircuitBreaker

from .helpers import status_error

NO_JITTER = CircuitPolicy(failure_threshold=3, initial_cooldown=0.5, max_cooldown=4.0, jitter=0.0)


def test_a_trip_opens_at_once_for_the_initial_cooldown() -> None:
    """A hintless 429 opens a closed circuit for initial_cooldown seconds."""
    breaker = CircuitBreaker(NO_JITTER)
    assert breaker.record_failure("trip", 10.0, probe=False)
    assert breaker.state is BreakerState.OPEN
    assert breaker.wait(10.0) == pytest.approx(0.5)
    assert breaker.wait(10.25) == pytest.approx(0.25)


def test_failures_open_at_the_threshold_and_a_success_resets_the_count() -> None:
    """failure_threshold consecutive 5xx open it; a success in between starts again."""
    breaker = CircuitBreaker(NO_JITTER)
    assert not breaker.record_failure("failure", 0.0, probe=False)
    assert not breaker.record_failure("failure", 0.0, probe=False)
    breaker.record_success()
    assert not breaker.record_failure("failure", 0.0, probe=False)
    assert not breaker.record_failure("failure", 0.0, probe=False)
    assert breaker.record_failure("failure", 0.0, probe=False)
    assert breaker.state is BreakerState.OPEN


def test_half_open_lets_exactly_one_probe_through() -> None:
    """After the cooldown one request is the probe; the others wait for its outcome."""
    breaker = CircuitBreaker(NO_JITTER)
    breaker.record_failure("trip", 0.0, probe=False)
    assert breaker.wait(0.5) == 0.0
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.admit()
    assert breaker.wait(0.6) == math.inf
    assert not breaker.admit()


def test_probe_failure_reopens_with_a_doubled_cooldown_up_to_the_max() -> None:
    """Each failed probe doubles the cooldown (0.5, 1, 2, 4, 4 s with max 4 s)."""
    breaker = CircuitBreaker(NO_JITTER)
    now = 0.0
    breaker.record_failure("trip", now, probe=False)
    cooldowns = [breaker.open_until - now]
    for _ in range(4):
        now = breaker.open_until
        assert breaker.wait(now) == 0.0
        assert breaker.admit()
        assert breaker.record_failure("trip", now, probe=True)
        cooldowns.append(breaker.open_until - now)
    assert cooldowns == pytest.approx([0.5, 1.0, 2.0, 4.0, 4.0])


def test_probe_success_closes_and_resets_the_growth() -> None:
    """A successful probe closes the circuit; the next open starts from initial_cooldown."""
    breaker = CircuitBreaker(NO_JITTER)
    breaker.record_failure("trip", 0.0, probe=False)
    breaker.wait(1.0)
    breaker.admit()
    assert breaker.record_failure("trip", 1.0, probe=True)  # 1 s cooldown now
    breaker.wait(2.0)
    breaker.admit()
    assert breaker.record_success()
    assert breaker.closed
    breaker.record_failure("trip", 5.0, probe=False)
    assert breaker.open_until == pytest.approx(5.5)


def test_failures_sent_before_the_open_are_ignored() -> None:
    """While open (or half-open), failures of requests that are not the probe change
    nothing: the ten answers to one burst do not open the circuit ten times."""
    breaker = CircuitBreaker(NO_JITTER)
    breaker.record_failure("trip", 0.0, probe=False)
    for _ in range(9):
        assert not breaker.record_failure("trip", 0.01, probe=False)
    assert breaker.opens == 1
    assert breaker.open_until == pytest.approx(0.5)


def test_an_abandoned_probe_lets_the_next_request_probe() -> None:
    """A probe that ends without an answer (cancelled) frees the half-open slot."""
    breaker = CircuitBreaker(NO_JITTER)
    breaker.record_failure("trip", 0.0, probe=False)
    breaker.wait(1.0)
    assert breaker.admit()
    assert breaker.abandon_probe()
    assert breaker.wait(1.0) == 0.0
    assert breaker.admit()


def test_jitter_is_added_within_bounds() -> None:
    """The cooldown is initial + uniform(0, jitter)."""
    policy = CircuitPolicy(initial_cooldown=1.0, max_cooldown=30.0, jitter=0.5)
    for _ in range(50):
        breaker = CircuitBreaker(policy)
        breaker.record_failure("trip", 0.0, probe=False)
        assert 1.0 <= breaker.open_until <= 1.5


def test_policy_bounds_are_validated() -> None:
    """initial_cooldown above max_cooldown is refused, naming both."""
    with pytest.raises(ValueError, match="initial_cooldown"):
        CircuitPolicy(initial_cooldown=5.0, max_cooldown=1.0)


@pytest.mark.parametrize(
    ("headers", "breaker", "delay"),
    [
        ({}, "trip", None),
        ({"retry-after": "2"}, None, 2.0),
        ({"llm_provider-retry-after": "3"}, None, 3.0),
        ({"llm_provider-retry-after-ms": "1500"}, None, 1.5),
        ({"x-ratelimit-remaining-requests": "0"}, None, None),
        ({"llm_provider-x-ratelimit-remaining-tokens": "0"}, None, None),
        ({"retry-after": "junk"}, "trip", None),
    ],
    ids=[
        "no-hint",
        "retry-after",
        "gateway-retry-after",
        "gateway-retry-after-ms",
        "ratelimit-headers",
        "gateway-ratelimit-headers",
        "junk-hint",
    ],
)
def test_classify_429_hints(
    headers: dict[str, str], breaker: str | None, delay: float | None
) -> None:
    """A 429 trips the breaker only when it carries no hint under any known name."""
    decision = classify(status_error(429, headers))
    assert decision.retry
    assert decision.breaker == breaker
    assert decision.delay == delay
    assert decision.cooldown == (delay is not None)


@pytest.mark.parametrize(
    ("status", "breaker"), [(500, "failure"), (503, "failure"), (400, None), (401, None)]
)
def test_classify_5xx_counts_towards_the_breaker(status: int, breaker: str | None) -> None:
    """5xx answers count as failures; other statuses say the upstream is up."""
    assert classify(status_error(status)).breaker == breaker


@pytest.mark.parametrize(
    "headers",
    [{"x-should-retry": "false"}, {"retry-after": "3600"}],
    ids=["x-should-retry-false", "retry-after-too-long"],
)
def test_a_5xx_that_is_not_retried_still_counts_as_a_failure(headers: dict[str, str]) -> None:
    """A 5xx is news about the upstream's health even when it is not retried: it never
    reads as an answer that would close an open circuit."""
    decision = classify(status_error(503, headers))
    assert (decision.retry, decision.breaker) == (False, "failure")
