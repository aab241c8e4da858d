"""Provider rate limits: requests and tokens per minute of one upstream and model.

OpenAI's limits, and its ``x-ratelimit-*`` headers, are per model on one key.

Each limit is a token bucket (the model OpenAI describes for its own limits, "Rate limits"
guide): it refills continuously at ``limit / 60`` units per second and holds at most
``limit * burst / 60`` units. A request takes one unit of the request bucket and its estimated
tokens of the token bucket; a cost larger than the bucket is admitted when the bucket is full
and leaves it in debt, so the long-run rate still equals the limit. After the response the
estimate is settled against the ``usage`` the API reports (a refund or an extra charge).

The API's ``x-ratelimit-*`` headers teach the limits (``limit-requests``/``limit-tokens``) and
the budget left (``remaining-…``): the local bucket never holds more than the server says
remains, which keeps several processes sharing one key below the wall. ``reset-…`` durations
are Go-style (``6m0s``, ``1.5s``, ``20ms``) and are parsed here only for ``stats()``: the bucket's
refill already predicts them.

This module is pure bookkeeping on an injected clock (float seconds); it never sleeps.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from typing import Final

from . import _constants as C
from ._config import RateLimitPolicy

__all__ = ["TokenBucket", "UpstreamLimits", "has_ratelimit_headers", "parse_duration"]

_EPSILON: Final = 1e-9  # units; a deficit this small counts as none

# x-ratelimit-limit-* / remaining-* values: plain decimal integers (OpenAI "Rate limits" guide).
_HEADER_INT: Final = re.compile(rf"([0-9]{{1,{C.RATELIMIT_HEADER_MAX_DIGITS}}})(?:\.[0-9]*)?")

# Go's time.Duration.String() units, as OpenAI formats x-ratelimit-reset-* values. A regular
# expression is the whole parser: no library on PyPI parses exactly this format. Digits are
# ASCII only ([0-9], not \d, which also matches other scripts' digits); micro is U+00B5 (what
# Go prints) or U+03BC (which Go's ParseDuration also accepts).
_NUMBER: Final = r"[0-9]+(?:\.[0-9]+)?"
_BARE_NUMBER: Final = re.compile(_NUMBER)
_DURATION_PART: Final = re.compile(rf"({_NUMBER})(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")
_UNIT_SECONDS: Final = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,
    "\u03bcs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_duration(text: str | None) -> float | None:
    """Seconds in a Go-style duration such as ``"6m0s"``, ``"1.5s"``, ``"20ms"``.

    A bare number is taken as seconds. Never raises: ``None``, empty, malformed or non-finite
    text (``inf``, ``nan``, 400 digits) gives ``None``. Short texts are cached: a reset header
    repeats the same few values on every response.
    """
    if not isinstance(text, str):
        return None
    if len(text) <= _CACHED_DURATION_LENGTH:
        return _cached_duration(text)
    return _parse_duration(text)


_CACHED_DURATION_LENGTH: Final = 16


@functools.lru_cache(maxsize=256)
def _cached_duration(text: str) -> float | None:
    return _parse_duration(text)


def _parse_duration(text: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    if _BARE_NUMBER.fullmatch(text):
        total = float(text)
    else:
        position = 0
        total = 0.0
        for match in _DURATION_PART.finditer(text):
            if match.start() != position:
                return None
            total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
            position = match.end()
        if position != len(text):
            return None
    return total if math.isfinite(total) else None


def _header_int(headers: Mapping[str, str], name: str) -> int | None:
    """The header's value as an int in [0, 10**RATELIMIT_HEADER_MAX_DIGITS), else ``None``.

    Total: junk in a header must never change the caller's outcome, so anything but plain
    ASCII decimal digits (an optional fraction is dropped) is ignored: ``inf``, ``nan``,
    ``1e400``, ``-1``, ``1e3``, ``1_000``, non-ASCII digits, a 400-digit number.
    """
    raw = headers.get(name)
    if not isinstance(raw, str):
        return None
    if raw.isascii() and raw.isdigit() and len(raw) <= C.RATELIMIT_HEADER_MAX_DIGITS:
        return int(raw)  # the usual form, without the regular expression
    match = _HEADER_INT.fullmatch(raw.strip())
    return None if match is None else int(match.group(1))


# The API's own headers, then the same passed on by a gateway (LiteLLM's proxy sends
# ``llm_provider-x-ratelimit-remaining-requests``...).
_RATELIMIT_PREFIXES: Final = (
    C.RATELIMIT_HEADER_PREFIX,
    C.GATEWAY_HEADER_PREFIX + C.RATELIMIT_HEADER_PREFIX,
)


_RAW_PREFIXES: Final = tuple(prefix.encode() for prefix in _RATELIMIT_PREFIXES)
_TRIPLE: Final = 3


def ratelimit_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The ``x-ratelimit-*`` headers (and their gateway forms), names lowercased, in one pass.

    An HTTP response's headers are read once instead of once per looked-up name (an
    ``httpx2.Headers`` lookup scans every header): through their raw ``(name, value)`` byte
    pairs when they have them, else as a mapping.
    """
    found: dict[str, str] = {}
    # httpx2/httpx ``Headers`` keep (raw name, lowercased name, value) triples: read them as
    # they are (no lowercasing, no decoding of the headers that are not wanted).
    triples = getattr(headers, "_list", None)
    if isinstance(triples, list) and triples and len(triples[0]) == _TRIPLE:
        for _, lowered, value in triples:
            if lowered.startswith(_RAW_PREFIXES):
                found[lowered.decode("latin-1")] = value.decode("latin-1")
        return found
    raw = getattr(headers, "raw", None)
    if isinstance(raw, list):
        for name, value in raw:
            if isinstance(name, bytes) and isinstance(value, bytes):
                lowered = name.lower()
                if lowered.startswith(_RAW_PREFIXES):
                    found[lowered.decode("latin-1")] = value.decode("latin-1")
        return found
    for name, text in headers.items():
        lowered_name = name.lower()
        if lowered_name.startswith(_RATELIMIT_PREFIXES):
            found[lowered_name] = text
    return found


def has_ratelimit_headers(headers: Mapping[str, str]) -> bool:
    """Whether any ``x-ratelimit-*`` header (or its gateway form) was sent."""
    return bool(ratelimit_headers(headers))


class TokenBucket:
    """One per-minute limit as a token bucket on an injected clock.

    Args:
        limit: units per minute (requests or tokens), >= 1.
        burst: bucket size in seconds of quota.
        now: the clock's current reading, seconds; the bucket starts full.
    """

    __slots__ = ("capacity", "level", "limit", "rate", "updated")

    def __init__(self, limit: int, burst: float, now: float) -> None:
        self.limit = limit
        self.rate = limit / C.RATE_LIMIT_WINDOW
        self.capacity = max(1.0, limit * burst / C.RATE_LIMIT_WINDOW)
        self.level = self.capacity
        self.updated = now

    def available(self, now: float) -> float:
        """Units in the bucket at ``now`` (negative: in debt)."""
        self._refill(now)
        return self.level

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
            self.updated = now

    def wait_for(self, amount: float, now: float) -> float:
        """Seconds until ``amount`` can be taken (0.0: now); a cost over the capacity waits.

        A cost larger than the bucket waits for a full bucket (and then leaves it in debt).
        """
        self._refill(now)
        need = min(amount, self.capacity)
        if self.level >= need - _EPSILON:  # float rounding of the refill must not stall
            return 0.0
        return (need - self.level) / self.rate

    def take(self, amount: float) -> None:
        """Spend ``amount`` (after ``wait_for`` returned 0; may leave the bucket in debt)."""
        self.level -= amount

    def give(self, amount: float, now: float) -> None:
        """Refund ``amount`` (negative: charge more), up to the capacity."""
        self._refill(now)
        self.level = min(self.capacity, self.level + amount)

    def clamp(self, remaining: float, now: float) -> None:
        """Hold no more than ``remaining``, the budget the server reports left."""
        self._refill(now)
        self.level = min(self.level, remaining)

    def relimit(self, limit: int, burst: float, now: float) -> None:
        """Change the per-minute limit, keeping the current fill ratio's level bounded."""
        if limit == self.limit:
            return
        self._refill(now)
        self.limit = limit
        self.rate = limit / C.RATE_LIMIT_WINDOW
        self.capacity = max(1.0, limit * burst / C.RATE_LIMIT_WINDOW)
        self.level = min(self.level, self.capacity)


class UpstreamLimits:
    """The request and token budgets of one (upstream, model) pair.

    Args:
        policy: configured limits and whether headers may teach more.
        now: clock reading, seconds.
        model: the model these budgets are for; ``None``: calls whose model is not known.
    """

    __slots__ = ("configured", "learned_reset", "model", "policy", "requests", "tokens")

    def __init__(self, policy: RateLimitPolicy, now: float, model: str | None = None) -> None:
        self.policy = policy
        self.model = model
        rpm, tpm = self.configured = policy.limits_for(model)
        self.requests = None if rpm is None else TokenBucket(rpm, policy.burst, now)
        self.tokens = None if tpm is None else TokenBucket(tpm, policy.burst, now)
        self.learned_reset: dict[str, float] = {}

    @property
    def limited(self) -> bool:
        """Whether any limit is known (configured or learned)."""
        return self.requests is not None or self.tokens is not None

    def never_fits(self, tokens: int) -> bool:
        """Whether ``tokens`` exceed the *configured* per-minute token limit.

        Only a configured limit refuses a request outright: a limit learned from headers
        may be wrong (one odd response saying ``limit-tokens: 1``) and only paces requests,
        so the next response can correct it.
        """
        tpm = self.configured[1]
        return tpm is not None and tokens > tpm

    def wait_for(self, tokens: int, now: float) -> float:
        """Seconds until one request of ``tokens`` fits both budgets (0.0: now)."""
        wait = 0.0
        if self.requests is not None:
            wait = self.requests.wait_for(1, now)
        if self.tokens is not None and tokens > 0:
            wait = max(wait, self.tokens.wait_for(tokens, now))
        return wait

    def take(self, tokens: int) -> object | None:
        """Spend one request and ``tokens`` (after ``wait_for`` returned 0).

        Returns the *permit* of this reservation, handed back to ``refund`` or ``settle``:
        ``None`` here; a budget shared between processes returns what identifies the
        reservation there (``llmpool.redis``: its concurrency lease).
        """
        if self.requests is not None:
            self.requests.take(1)
        if self.tokens is not None and tokens > 0:
            self.tokens.take(tokens)
        return None

    def refund(self, tokens: int, now: float, permit: object | None = None) -> None:
        """Give back one request and ``tokens`` that were reserved but never sent."""
        if self.requests is not None:
            self.requests.give(1, now)
        if self.tokens is not None and tokens > 0:
            self.tokens.give(tokens, now)

    def settle(self, estimated: int, actual: int, now: float, permit: object | None = None) -> None:
        """Correct a reservation of ``estimated`` tokens with the ``actual`` usage.

        Called once per attempt that reserved budget, when it ends (``permit``: what
        ``take`` returned); with ``actual == estimated`` when no usage was reported.
        """
        if self.tokens is not None and actual != estimated:
            self.tokens.give(estimated - actual, now)

    def learn(self, headers: Mapping[str, str], now: float) -> bool:
        """Take limits and remaining budget from a response's ``x-ratelimit-*`` headers.

        A learned limit replaces an unknown one and lowers a configured one (never raises
        it). Returns whether any header was understood.
        """
        if not self.policy.learn_from_headers:
            return False
        headers = ratelimit_headers(headers)
        if not headers:
            return False
        seen = False
        for kind in ("requests", "tokens"):
            for prefix in _RATELIMIT_PREFIXES:
                limit = _header_int(headers, f"{prefix}limit-{kind}")
                remaining = _header_int(headers, f"{prefix}remaining-{kind}")
                if limit is not None or remaining is not None:
                    reset = parse_duration(headers.get(f"{prefix}reset-{kind}"))
                    break
            else:
                continue
            seen = True
            bucket = self._learn_limit(kind, limit, now)
            if bucket is not None and remaining is not None:
                bucket.clamp(remaining, now)
            if reset is not None:
                self.learned_reset[kind] = reset
        return seen

    def _learn_limit(self, kind: str, limit: int | None, now: float) -> TokenBucket | None:
        bucket = self.requests if kind == "requests" else self.tokens
        configured = self.configured[0] if kind == "requests" else self.configured[1]
        if limit is None or limit < 1:
            return bucket
        if configured is not None:
            limit = min(limit, configured)
        if bucket is None:
            bucket = TokenBucket(limit, self.policy.burst, now)
            if kind == "requests":
                self.requests = bucket
            else:
                self.tokens = bucket
        else:
            bucket.relimit(limit, self.policy.burst, now)
        return bucket
