"""Run orders and intervals for interleaved measurements (pure: no I/O, no imports of clients).

``balanced_order`` decides which variant runs when, so slow drift of a shared machine and
"who ran just before" bill every variant alike; ``median_interval`` turns per-alternation
samples into a median with a distribution-free 95 % interval.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Final, TypeVar

T = TypeVar("T")

CONFIDENCE: Final = 0.95


def balanced_order(names: Sequence[T], k: int) -> list[T]:
    """Round ``k``'s order of ``names``: a row of a balanced Latin square (Williams, 1949).

    Row ``k`` is ``(k + s_j) mod n`` for ``s = 0, 1, n-1, 2, n-2, ...``. Over ``n`` rounds each
    name takes each place once and, for an even ``n``, directly follows each other name once;
    for an odd ``n`` the rounds ``n .. 2n-1`` are the mirrored rows, which balances the
    predecessors over ``2n`` rounds. Any two names run in either order equally often over a
    full cycle.
    """
    n = len(names)
    if n == 0:
        return []
    steps = [0]
    low, high = 1, n - 1
    while len(steps) < n:
        steps.append(low)
        low += 1
        if len(steps) < n:
            steps.append(high)
            high -= 1
    row = [names[(k + step) % n] for step in steps]
    if n % 2 and (k // n) % 2:
        row.reverse()
    return row


def median_ranks(n: int, confidence: float = CONFIDENCE) -> tuple[int, int, float]:
    """1-based ranks (lo, hi) of the order statistics bracketing the median, and their coverage.

    ``[x_(lo), x_(hi)]`` with ``hi = n + 1 - lo`` holds the population median with probability
    ``1 - 2 P(Binomial(n, 1/2) < lo)`` for any continuous distribution (the interval that
    inverts the sign test; Conover, *Practical Nonparametric Statistics*, 3rd ed., 3.2).
    ``lo`` is the largest rank that keeps the coverage at least ``confidence``. Below 6
    samples no rank reaches 95 %: the range (``lo = 1``) is returned with its lower coverage.

    Raises:
        ValueError: ``n < 1``.
    """
    if n < 1:
        raise ValueError(f"no samples (n={n})")
    lo, below = 1, 1 / 2**n  # below = P(Binomial(n, 1/2) <= lo - 1)
    while lo < (n + 1) / 2:
        wider = below + math.comb(n, lo) / 2**n
        if 1 - 2 * wider < confidence:
            break
        lo, below = lo + 1, wider
    return lo, n + 1 - lo, 1 - 2 * below


def median_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> dict[str, float]:
    """``values``' median and the order-statistic interval for it (see ``median_ranks``)."""
    ordered = sorted(values)
    lo, hi, coverage = median_ranks(len(ordered), confidence)
    return {
        "median": float(statistics.median(ordered)),
        "lo": float(ordered[lo - 1]),
        "hi": float(ordered[hi - 1]),
        "coverage": coverage,
    }


def iqr(values: Sequence[float]) -> float:
    """Interquartile range (0 for fewer than two values)."""
    if len(values) < 2:
        return 0.0
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q3 - q1
