"""Rate-limit bookkeeping (``_limits``): durations, token buckets, learning from headers."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmpool import RateLimitPolicy
from llmpool import _constants as C
from llmpool._limits import TokenBucket, UpstreamLimits, _header_int, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("6m0s", 360.0),
        ("1s", 1.0),
        ("1.5s", 1.5),
        ("20ms", 0.02),
        ("1h2m3.5s", 3723.5),
        ("250us", 0.00025),
        ("0s", 0.0),
        ("7", 7.0),  # a bare number is seconds
        ("2.5", 2.5),
        ("", None),
        ("soon", None),
        ("5 s", None),
        ("-1s", None),
        ("1m x", None),
        ("nan", None),
        ("-3", None),
        (None, None),
        ("1.5\u03bcs", 1.5e-6),  # Greek mu, which Go's ParseDuration accepts too
        ("1.5\u00b5s", 1.5e-6),  # the micro sign Go prints
        ("inf", None),
        ("Infinity", None),
        ("1e400", None),
        ("1e3", None),
        pytest.param("9" * 400, None, id="400-digits"),  # float() gives inf
        pytest.param("9" * 400 + "s", None, id="400-digits-s"),
        pytest.param("1" * 5000 + "h", None, id="5000-digits-h"),
        ("\u0663s", None),  # ARABIC-INDIC DIGIT THREE: float() would read it as 3
        ("1_000s", None),
    ],
    ids=repr,
)
def test_parse_duration(text: str | None, seconds: float | None) -> None:
    """x-ratelimit-reset-* values are Go durations; malformed ones give None."""
    assert parse_duration(text) == (None if seconds is None else pytest.approx(seconds))


def test_bucket_holds_one_second_of_quota_and_refills_at_limit_per_60s() -> None:
    """600/min with burst 1 s: 10 units at once, then one every 0.1 s."""
    bucket = TokenBucket(600, 1.0, now=0.0)
    assert bucket.capacity == 10
    for _ in range(10):
        assert bucket.wait_for(1, 0.0) == 0.0
        bucket.take(1)
    assert bucket.wait_for(1, 0.0) == pytest.approx(0.1)
    assert bucket.wait_for(1, 0.05) == pytest.approx(0.05)
    assert bucket.wait_for(1, 0.1) == 0.0


def test_bucket_never_smaller_than_one_unit() -> None:
    """A limit under 60/min still admits one request (capacity floor of 1)."""
    bucket = TokenBucket(6, 1.0, now=0.0)
    assert bucket.capacity == 1.0
    bucket.take(1)
    assert bucket.wait_for(1, 0.0) == pytest.approx(10.0)


def test_cost_larger_than_bucket_waits_for_full_bucket_then_leaves_debt() -> None:
    """A cost over the capacity is admitted on a full bucket; the debt delays what follows."""
    bucket = TokenBucket(600, 1.0, now=0.0)  # capacity 10, 10/s
    assert bucket.wait_for(100, 0.0) == 0.0
    bucket.take(100)
    assert bucket.level == -90
    assert bucket.wait_for(10, 0.0) == pytest.approx(10.0)


def test_refund_and_clamp() -> None:
    """Refunds never overfill; the server's remaining budget caps the local one."""
    bucket = TokenBucket(600, 1.0, now=0.0)
    bucket.take(10)
    bucket.give(50, now=0.0)
    assert bucket.level == 10
    bucket.clamp(3, now=0.0)
    assert bucket.level == 3


def test_learn_sets_unknown_limits_from_headers() -> None:
    """With no configured limit, x-ratelimit-limit-* creates the budget; remaining caps it."""
    limits = UpstreamLimits(RateLimitPolicy(), now=0.0)
    assert not limits.limited
    seen = limits.learn(
        {
            "x-ratelimit-limit-requests": "120",
            "x-ratelimit-remaining-requests": "1",
            "x-ratelimit-reset-requests": "30s",
            "x-ratelimit-limit-tokens": "6000",
            "x-ratelimit-remaining-tokens": "5990",
            "x-ratelimit-reset-tokens": "100ms",
        },
        now=0.0,
    )
    assert seen
    assert limits.requests is not None
    assert limits.tokens is not None
    assert (limits.requests.limit, limits.requests.level) == (120, 1)
    assert (limits.tokens.limit, limits.tokens.capacity) == (6000, 100)
    assert limits.learned_reset == {"requests": 30.0, "tokens": 0.1}


def test_learned_limit_only_lowers_a_configured_one() -> None:
    """A configured limit is an upper bound: a larger header does not raise it."""
    limits = UpstreamLimits(RateLimitPolicy(requests_per_minute=60), now=0.0)
    limits.learn({"x-ratelimit-limit-requests": "600"}, now=0.0)
    assert limits.requests is not None
    assert limits.requests.limit == 60
    limits.learn({"x-ratelimit-limit-requests": "30"}, now=0.0)
    assert limits.requests.limit == 30


def test_learning_can_be_disabled_and_junk_is_ignored() -> None:
    """learn_from_headers=False ignores headers; malformed values are skipped."""
    off = UpstreamLimits(RateLimitPolicy(learn_from_headers=False), now=0.0)
    assert not off.learn({"x-ratelimit-limit-requests": "10"}, now=0.0)
    assert not off.limited
    on = UpstreamLimits(RateLimitPolicy(), now=0.0)
    assert not on.learn({"x-ratelimit-limit-requests": "many", "other": "1"}, now=0.0)
    assert not on.limited


def test_never_fits_only_over_the_per_minute_limit() -> None:
    """Only a request above the whole per-minute token limit can never be admitted."""
    limits = UpstreamLimits(RateLimitPolicy(tokens_per_minute=1000), now=0.0)
    assert not limits.never_fits(1000)
    assert limits.never_fits(1001)
    assert not UpstreamLimits(RateLimitPolicy(), now=0.0).never_fits(10**9)


def test_settle_refunds_or_charges_the_difference() -> None:
    """The estimate is corrected with the usage: a refund or an extra charge."""
    limits = UpstreamLimits(RateLimitPolicy(tokens_per_minute=600), now=0.0)
    assert limits.tokens is not None
    limits.take(10)
    limits.settle(10, 4, now=0.0)
    assert limits.tokens.level == 6
    limits.settle(0, 16, now=0.0)
    assert limits.tokens.level == -10


def test_rounding_dust_counts_as_refilled() -> None:
    """A refill that falls short of a unit only by float rounding admits now: otherwise the
    scheduler would re-check at the same clock reading forever (the property test caught it)."""
    bucket = TokenBucket(60, 1.0, now=0.0)
    bucket.take(1)
    bucket.level = -1e-12
    bucket.updated = 1.0
    assert bucket.wait_for(1, 1.0) == pytest.approx(1.0)
    bucket.level = 1.0 - 1e-12
    assert bucket.wait_for(1, 1.0) == 0.0


JUNK_HEADER_VALUES = [
    "inf",
    "-inf",
    "Infinity",
    "1e400",
    "nan",
    "NaN",
    "-1",
    "-0",
    "+5",
    "1e3",
    "1_000",
    "0x10",
    "12abc",
    "",
    "   ",
    "\x00",
    "\u0661\u0662",  # ARABIC-INDIC DIGITS ONE TWO
    "\uff11\uff12",  # FULLWIDTH DIGITS ONE TWO
    pytest.param("9" * 16, id="16-digits"),  # one more than RATELIMIT_HEADER_MAX_DIGITS
    pytest.param("9" * 400, id="400-digits"),  # float() gives inf: int(inf) raised OverflowError
    pytest.param("9" * 5000, id="5000-digits"),  # int() refuses more than 4300 digits
]


@pytest.mark.parametrize("value", JUNK_HEADER_VALUES, ids=repr)
def test_junk_rate_limit_headers_are_ignored(value: str) -> None:
    """A limit or remaining header that is not a plain bounded decimal teaches nothing."""
    limits = UpstreamLimits(RateLimitPolicy(), now=0.0)
    headers = {
        "x-ratelimit-limit-requests": value,
        "x-ratelimit-remaining-requests": value,
        "x-ratelimit-limit-tokens": value,
        "x-ratelimit-remaining-tokens": value,
        "x-ratelimit-reset-requests": value,
    }
    assert not limits.learn(headers, now=0.0)
    assert not limits.limited
    assert limits.learned_reset == {}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120),
        (" 120 ", 120),
        ("0", 0),
        ("5.9", 5),  # a fraction is dropped
        ("7.", 7),
        ("9" * C.RATELIMIT_HEADER_MAX_DIGITS, 10**C.RATELIMIT_HEADER_MAX_DIGITS - 1),
    ],
    ids=repr,
)
def test_header_int_reads_plain_decimals(value: str, expected: int) -> None:
    """Plain ASCII decimals up to RATELIMIT_HEADER_MAX_DIGITS digits are read."""
    assert _header_int({"h": value}, "h") == expected


@given(st.one_of(st.text(), st.floats().map(str), st.integers().map(str)))
def test_rate_limit_header_parsing_never_raises(value: str) -> None:
    """Whatever a header holds: None, or a bounded int / finite seconds >= 0."""
    number = _header_int({"h": value}, "h")
    assert number is None or 0 <= number < 10**C.RATELIMIT_HEADER_MAX_DIGITS
    seconds = parse_duration(value)
    assert seconds is None or (math.isfinite(seconds) and seconds >= 0)
    UpstreamLimits(RateLimitPolicy(), now=0.0).learn(
        {
            f"x-ratelimit-{kind}-{unit}": value
            for kind in ("limit", "remaining", "reset")
            for unit in ("requests", "tokens")
        },
        now=0.0,
    )
