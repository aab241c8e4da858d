"""Run-time state of a fault plan: decides, request by request, what the provider does.

``FaultEngine`` owns the seeded RNG, the queue of scripted faults and the requests-per-minute
window of one ``FaultPlan``. ``decide`` is atomic (a ``threading.Lock``), so a scripted fault is
consumed by exactly one request however many arrive at once.
"""

from __future__ import annotations

import math
import random
import threading
from collections import deque
from dataclasses import dataclass, field

from ._faults import FaultKind, FaultPlan, RetryAfterHeader, ScriptedFault

__all__ = [
    "RPM_WINDOW",
    "Decision",
    "FaultEngine",
    "format_duration",
    "format_seconds",
    "retry_after_headers",
]

RPM_WINDOW = 60.0
"""Length of the ``rpm_limit`` sliding window, seconds."""


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one request.

    Attributes:
        kind: the answer's kind (``"stream_disconnect"`` only for streaming requests).
        latency: seconds to wait before answering.
        status: HTTP status of an error answer (429 for the two rate-limit kinds).
        headers: extra response headers, ``retry-after``/``retry-after-ms`` included.
        after_events: SSE events sent before a ``stream_disconnect``.
        retry_after: the advertised wait in seconds (for the error message), or ``None``.
        rpm: ``(limit, used)`` when the 429 comes from the ``rpm_limit`` window, else ``None``.
    """

    kind: FaultKind
    latency: float
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    after_events: int = 3
    retry_after: float | None = None
    rpm: tuple[int, int] | None = None

    @property
    def outcome(self) -> str:
        """The ``RecordedRequest.outcome`` of this decision, e.g. ``"status:503"``."""
        return f"status:{self.status}" if self.kind == "status" else self.kind


def format_seconds(seconds: float) -> str:
    """Format seconds for a header: ``"2"`` for 2.0, ``"1.5"`` for 1.5."""
    return str(int(seconds)) if float(seconds).is_integer() else repr(float(seconds))


def format_duration(seconds: float) -> str:
    """Format seconds as OpenAI's ``x-ratelimit-reset-*`` values: ``"6m0s"``, ``"20ms"``.

    Go's ``time.Duration`` notation: milliseconds under a second, else minutes and seconds.
    """
    seconds = max(0.0, seconds)
    if seconds < 1.0:
        return f"{round(seconds * 1000.0)}ms"
    minutes, rest = divmod(round(seconds, 3), 60.0)
    text = f"{rest:.3f}".rstrip("0").rstrip(".")
    return f"{int(minutes)}m{text}s" if minutes else f"{text}s"


def retry_after_headers(seconds: float | None, mode: RetryAfterHeader) -> dict[str, str]:
    """Headers advertising a wait of ``seconds`` (``None``: no header) in the given mode.

    ``retry-after`` carries whole seconds rounded up, ``retry-after-ms`` milliseconds rounded up.
    """
    if seconds is None or mode == "none":
        return {}
    headers: dict[str, str] = {}
    if mode in ("retry-after", "both"):
        headers["retry-after"] = str(math.ceil(seconds))
    if mode in ("retry-after-ms", "both"):
        headers["retry-after-ms"] = str(math.ceil(seconds * 1000.0))
    return headers


class FaultEngine:
    """Decides the fate of each request under one ``FaultPlan``.

    Args:
        plan: the plan; its ``scripted`` list is copied, so the plan itself never changes.
    """

    def __init__(self, plan: FaultPlan) -> None:
        self.plan = plan
        self._lock = threading.Lock()
        self._rng = random.Random(plan.seed)
        self._script: deque[ScriptedFault] = deque(plan.scripted)
        self._window: deque[float] = deque()
        self._token_window: deque[tuple[float, int]] = deque()
        self._tokens_used = 0

    def decide(self, *, stream: bool, now: float, tokens: int = 0) -> Decision:
        """Pick the answer to one request.

        Args:
            stream: whether the request asked for a streamed (SSE) answer.
            now: the request's arrival, ``time.monotonic()`` seconds (for the limits).
            tokens: what the request counts against ``tpm_limit``.

        Returns:
            The decision; a scripted fault is consumed if any is left. With a limit set, its
            headers include the ``x-ratelimit-*`` ones.
        """
        with self._lock:
            self._prune(now)
            if self._script:
                decision = self._scripted(self._script.popleft(), stream=stream)
                self._window.append(now)
            else:
                limited = self._check_rpm(now)
                if limited is None:
                    limited = self._check_tpm(now, tokens)
                decision = limited if limited is not None else self._drawn(stream=stream)
                if limited is None:
                    self._window.append(now)
                    self._charge(now, tokens)
            decision.headers.update(self._ratelimit_headers(now))
            return decision

    def _prune(self, now: float) -> None:
        window, tokens = self._window, self._token_window
        while window and window[0] <= now - RPM_WINDOW:
            window.popleft()
        while tokens and tokens[0][0] <= now - RPM_WINDOW:
            self._tokens_used -= tokens.popleft()[1]

    def _charge(self, now: float, tokens: int) -> None:
        if self.plan.tpm_limit is not None and tokens > 0:
            self._token_window.append((now, tokens))
            self._tokens_used += tokens

    def _ratelimit_headers(self, now: float) -> dict[str, str]:
        headers: dict[str, str] = {}
        plan = self.plan
        if plan.rpm_limit is not None:
            window = self._window
            reset = window[-1] + RPM_WINDOW - now if window else 0.0
            headers["x-ratelimit-limit-requests"] = str(plan.rpm_limit)
            headers["x-ratelimit-remaining-requests"] = str(max(0, plan.rpm_limit - len(window)))
            headers["x-ratelimit-reset-requests"] = format_duration(reset)
        if plan.tpm_limit is not None:
            spent = self._token_window
            reset = spent[-1][0] + RPM_WINDOW - now if spent else 0.0
            headers["x-ratelimit-limit-tokens"] = str(plan.tpm_limit)
            headers["x-ratelimit-remaining-tokens"] = str(
                max(0, plan.tpm_limit - self._tokens_used)
            )
            headers["x-ratelimit-reset-tokens"] = format_duration(reset)
        return headers

    def _check_tpm(self, now: float, tokens: int) -> Decision | None:
        limit = self.plan.tpm_limit
        if limit is None or self._tokens_used + tokens <= limit:
            return None
        freed, wait = self._tokens_used, 1.0
        for at, spent in self._token_window:  # oldest first: when does enough fall out?
            freed -= spent
            if freed + tokens <= limit:
                wait = float(max(1, math.ceil(at + RPM_WINDOW - now)))
                break
        return self._quota_exceeded(wait)

    def _quota_exceeded(self, wait: float, rpm: tuple[int, int] | None = None) -> Decision:
        """A 429 for a breached rpm/tpm window, advertising ``wait`` seconds."""
        return Decision(
            kind="rate_limit",
            latency=self._latency(),
            status=429,
            headers=retry_after_headers(wait, self.plan.retry_after_header),
            retry_after=wait,
            rpm=rpm,
        )

    def _latency(self) -> float:
        plan = self.plan
        if plan.latency_max <= 0.0:
            return 0.0
        return self._rng.uniform(plan.latency_min, plan.latency_max)

    def _scripted(self, fault: ScriptedFault, *, stream: bool) -> Decision:
        latency = self._latency() if fault.latency is None else fault.latency
        headers: dict[str, str] = {}
        retry_after = fault.retry_after
        if fault.retry_after is not None:
            headers["retry-after"] = format_seconds(fault.retry_after)
        if fault.retry_after_ms is not None:
            headers["retry-after-ms"] = str(fault.retry_after_ms)
            retry_after = fault.retry_after_ms / 1000.0 if retry_after is None else retry_after
        if fault.kind == "rate_limit" and not headers:
            retry_after = self.plan.retry_after
            headers = retry_after_headers(retry_after, self.plan.retry_after_header)
        headers.update({name.lower(): value for name, value in fault.headers.items()})
        kind: FaultKind = fault.kind
        if kind == "stream_disconnect" and not stream:
            kind = "drop"
        status = {"status": fault.status, "rate_limit": 429, "insufficient_quota": 429}.get(kind)
        return Decision(
            kind=kind,
            latency=latency,
            status=200 if status is None else status,
            headers=headers,
            after_events=fault.after_events,
            retry_after=retry_after,
        )

    def _check_rpm(self, now: float) -> Decision | None:
        limit = self.plan.rpm_limit
        if limit is None:
            return None
        window = self._window
        if len(window) < limit:
            return None
        wait = float(max(1, math.ceil(window[0] + RPM_WINDOW - now)))
        return self._quota_exceeded(wait, (limit, len(window)))

    def _drawn(self, *, stream: bool) -> Decision:
        plan = self.plan
        draw = self._rng.random()
        latency = self._latency()
        bands: list[tuple[float, FaultKind, int]] = [
            (plan.rate_limit_rate, "rate_limit", 429),
            (plan.insufficient_quota_rate, "insufficient_quota", 429),
            *((rate, "status", status) for status, rate in sorted(plan.error_rates.items())),
            (plan.drop_rate, "drop", 200),
            (plan.stream_disconnect_rate, "stream_disconnect", 200),
        ]
        edge = 0.0
        for rate, kind, status in bands:
            edge += rate
            if draw < edge:
                if kind == "stream_disconnect" and not stream:
                    break
                if kind == "rate_limit":
                    return Decision(
                        kind=kind,
                        latency=latency,
                        status=status,
                        headers=retry_after_headers(plan.retry_after, plan.retry_after_header),
                        retry_after=plan.retry_after,
                    )
                return Decision(
                    kind=kind,
                    latency=latency,
                    status=status,
                    after_events=plan.stream_disconnect_after,
                )
        return Decision(kind="ok", latency=latency)
