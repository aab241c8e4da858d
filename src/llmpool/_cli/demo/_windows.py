"""``--instances``: what the instances did and the provider saw, against the shared quota.

Pure: lists of times in, counts out. Every time is ``time.monotonic()`` seconds, which on
Linux and macOS is one clock for every process of the machine (``CLOCK_MONOTONIC``,
``mach_absolute_time``), so the provider's arrivals (``RecordedRequest.received_at``, in the
parent) and the instances' attempts (in their own processes) compare directly.

The shared buckets' bound (docs/redis.md, "Shared budgets"): a bucket of capacity
``c = max(1, limit * burst / 60)`` refilled at ``r = (limit - c) / (60 + margin)`` per second
admits at most ``c + r * T`` in any ``T`` seconds (Cruz's (sigma, rho) regulator); a request
reaches the provider at most ``margin`` after its admission, so any ``W`` seconds at the
provider hold at most ``c + r * (W + margin)`` requests, which for ``W = 60`` is the limit.
Above ``_options`` only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Self

from ._options import ClusterOptions

__all__ = [
    "WINDOWS",
    "ClusterSummary",
    "InstanceReport",
    "WindowCheck",
    "bucket_allowance",
    "most_in_window",
    "peak_overlap",
    "per_second",
    "summarize_cluster",
]

WINDOWS: Final = (1.0, 10.0, 60.0)
"""The sliding windows checked, seconds: 60 s is the provider's minute."""


@dataclass(frozen=True, slots=True)
class InstanceReport:
    """What one instance (one worker process) did.

    Attributes:
        name: ``instance-n``.
        pid: its process id.
        completed: requests that returned a response.
        failed: requests that raised.
        errors: the failures' exception types, counted.
        attempts: each HTTP attempt's (sent, answered) times, ``time.monotonic()`` seconds,
            as its HTTP transport saw them.
        exit_status: the process's exit status; ``None`` if it had to be killed.
        problem: why it reported nothing (it died, timed out), else ``None``.
    """

    name: str
    pid: int | None
    completed: int = 0
    failed: int = 0
    errors: Mapping[str, int] = field(default_factory=dict)
    attempts: tuple[tuple[float, float], ...] = ()
    exit_status: int | None = 0
    problem: str | None = None

    @classmethod
    def from_json(cls, name: str, data: Mapping[str, Any], exit_status: int | None) -> Self:
        """The report of ``name`` from the JSON line its process printed last."""
        return cls(
            name=name,
            pid=int(data["pid"]),
            completed=int(data["completed"]),
            failed=int(data["failed"]),
            errors={str(k): int(v) for k, v in data["errors"].items()},
            attempts=tuple((float(a), float(b)) for a, b in data["attempts"]),
            exit_status=exit_status,
        )

    @property
    def ok(self) -> bool:
        """It reported, exited 0, and none of its requests failed."""
        return self.problem is None and self.exit_status == 0 and self.failed == 0


@dataclass(frozen=True, slots=True)
class WindowCheck:
    """The most requests the provider saw in any sliding window of ``seconds``.

    Attributes:
        seconds: the window's width.
        most: the most arrivals in any closed window that wide.
        allowed: the shared buckets' bound for it (the quota itself for 60 s).
    """

    seconds: float
    most: int
    allowed: float

    @property
    def ok(self) -> bool:
        """No overshoot: at most the bound (a float; a count is compared with its floor)."""
        return self.most <= int(self.allowed + 1e-9)


@dataclass(frozen=True, slots=True)
class ClusterSummary:
    """The run of ``--instances``: per instance, in all, and what the provider saw.

    Attributes:
        options: what was run.
        redis_url: the Redis the instances shared.
        instances: each instance's report, in order.
        arrivals: requests that reached the provider.
        outcomes: the provider's outcomes, counted (``"ok"``, …).
        windows: the sliding-window checks, one per ``WINDOWS`` width.
        per_second: arrivals in each second from the start.
        peak_in_flight: the most attempts in flight at once, every instance together.
        elapsed: seconds from the start to the last instance's end.
    """

    options: ClusterOptions
    redis_url: str
    instances: tuple[InstanceReport, ...]
    arrivals: int
    outcomes: Mapping[str, int]
    windows: tuple[WindowCheck, ...]
    per_second: tuple[int, ...]
    peak_in_flight: int
    elapsed: float

    @property
    def completed(self) -> int:
        """Requests completed, every instance together."""
        return sum(i.completed for i in self.instances)

    @property
    def failed(self) -> int:
        """Requests failed, every instance together."""
        return sum(i.failed for i in self.instances)

    @property
    def overshoot(self) -> bool:
        """A window over its bound, or more attempts in flight than the global cap."""
        over_cap = self.peak_in_flight > self.options.concurrency
        return over_cap or not all(w.ok for w in self.windows)

    @property
    def ok(self) -> bool:
        """Every instance reported and every request completed, with no overshoot."""
        return all(i.ok for i in self.instances) and not self.overshoot


def bucket_allowance(limit: int, width: float, *, burst: float, margin: float) -> float:
    """The most requests a shared bucket lets reach the provider in ``width`` seconds.

    ``llmpool.redis.window_allowance``: exactly ``limit`` for a 60 s window. Imported here,
    not at the top: ``llmpool.redis`` needs the ``redis`` extra, which ``--instances`` asks
    for before it gets here.
    """
    from llmpool.redis import window_allowance

    return window_allowance(limit, width, burst=burst, margin=margin)


def most_in_window(times: Sequence[float], width: float) -> int:
    """The most of ``times`` in any closed window ``[t, t + width]``."""
    ordered = sorted(times)
    most, first = 0, 0
    for last, end in enumerate(ordered):
        while end - ordered[first] > width:
            first += 1
        most = max(most, last - first + 1)
    return most


def per_second(times: Sequence[float], start: float, end: float) -> tuple[int, ...]:
    """Counts of ``times`` in each second ``[start + k, start + k + 1)`` up to ``end``."""
    bins = [0] * max(1, int(end - start) + 1)
    for t in times:
        k = int(t - start)
        if 0 <= k < len(bins):
            bins[k] += 1
    return tuple(bins)


def peak_overlap(intervals: Sequence[tuple[float, float]]) -> int:
    """The most ``(start, end)`` intervals open at once (one ending as another starts: apart)."""
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    peak = current = 0
    for _, step in events:  # at a tie -1 sorts first: an end frees its place before a start
        current += step
        peak = max(peak, current)
    return peak


def summarize_cluster(
    options: ClusterOptions,
    *,
    redis_url: str,
    instances: Sequence[InstanceReport],
    arrivals: Sequence[float],
    outcomes: Mapping[str, int],
    start: float,
    end: float,
    burst: float,
    margin: float,
) -> ClusterSummary:
    """The summary of one run: windows and in-flight peak from the times collected.

    Args:
        options: what was run.
        redis_url: the Redis the instances shared.
        instances: each instance's report.
        arrivals: the provider's arrival times.
        outcomes: the provider's outcomes, counted.
        start: when the callers started, ``time.monotonic()`` seconds.
        end: when the last instance ended.
        burst: the rate limit's ``burst`` (``RateLimitPolicy.burst``), seconds.
        margin: the shared buckets' ``window_margin`` (``SharedBudgetPolicy``), seconds.
    """
    windows = tuple(
        WindowCheck(
            seconds=width,
            most=most_in_window(arrivals, width),
            allowed=bucket_allowance(options.rpm, width, burst=burst, margin=margin),
        )
        for width in WINDOWS
    )
    return ClusterSummary(
        options=options,
        redis_url=redis_url,
        instances=tuple(instances),
        arrivals=len(arrivals),
        outcomes=dict(sorted(outcomes.items())),
        windows=windows,
        per_second=per_second(arrivals, start, max([end, *arrivals])),
        peak_in_flight=peak_overlap([a for i in instances for a in i.attempts]),
        elapsed=end - start,
    )
