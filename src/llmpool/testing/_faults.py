"""Fault plans: what the simulated provider gets wrong, how often, and how slowly.

A ``FaultPlan`` is a frozen description. The provider turns it into run-time state (a seeded RNG,
the queue of scripted faults, the requests-per-minute window) in ``_engine``; replacing the plan
with ``SimulatedProvider.set_fault_plan`` starts that state afresh. Every duration is a float in
seconds and every rate a probability per request in ``[0, 1]``.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["FaultKind", "FaultPlan", "RetryAfterHeader", "ScriptedFault"]

FaultKind = Literal["ok", "status", "rate_limit", "insufficient_quota", "drop", "stream_disconnect"]
"""What the provider does with one request."""

RetryAfterHeader = Literal["retry-after", "retry-after-ms", "both", "none"]
"""Which header(s) carry the wait of a rate-limit (429) answer."""

_Probability = Annotated[float, Field(ge=0.0, le=1.0)]
_RATE_FIELDS = ("rate_limit_rate", "insufficient_quota_rate", "drop_rate", "stream_disconnect_rate")


class ScriptedFault(BaseModel):
    """One deterministic answer, consumed by exactly one request.

    Scripted faults are used in order, one per request that reaches an API endpoint (not the
    401/404 answers for a wrong key or an unknown path), before any random rate is drawn.

    Attributes:
        kind: ``"ok"`` answers normally; ``"status"`` answers ``status`` with an OpenAI-shaped
            error body; ``"rate_limit"`` a 429 ``rate_limit_exceeded``; ``"insufficient_quota"``
            a 429 ``insufficient_quota``; ``"drop"`` closes the connection without an answer;
            ``"stream_disconnect"`` sends ``after_events`` SSE events of a streamed answer then
            closes the connection (a non-streaming request gets a drop instead).
        status: HTTP status for ``kind="status"``, 400-599. Default 500.
        retry_after: sent verbatim as the ``retry-after`` header, in seconds (``1.5`` is sent
            as ``"1.5"``). When neither this nor ``retry_after_ms`` is set, a ``rate_limit``
            fault uses the plan's ``retry_after``/``retry_after_header``. Default ``None``.
        retry_after_ms: sent as the ``retry-after-ms`` header, in milliseconds. Default ``None``.
        headers: extra response headers, e.g. ``{"x-should-retry": "false"}``. Default none.
        latency: service time of this request in seconds, overriding the plan's random
            latency. Default ``None`` (use the plan's).
        after_events: SSE events sent before a ``stream_disconnect``. Default 3.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: FaultKind = Field(description="What the provider does with the request.")
    status: int = Field(
        default=500, ge=400, le=599, description="HTTP status answered by kind='status' (400-599)."
    )
    retry_after: float | None = Field(
        default=None,
        ge=0.0,
        description="Value of the retry-after header, seconds; None: not sent.",
    )
    retry_after_ms: int | None = Field(
        default=None,
        ge=0,
        description="Value of the retry-after-ms header, milliseconds; None: not sent.",
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra response headers (name: value)."
    )
    latency: float | None = Field(
        default=None, ge=0.0, description="Service time of this request, seconds; None: the plan's."
    )
    after_events: int = Field(
        default=3, ge=0, description="SSE events sent before a stream_disconnect, count."
    )


class FaultPlan(BaseModel):
    """How the simulated provider misbehaves: latency, error rates, rate limits, drops.

    For each request, the next ``scripted`` fault is used if any is left. Otherwise a request
    over ``rpm_limit`` or ``tpm_limit`` gets a 429; otherwise one uniform draw picks at most one
    fault among ``rate_limit_rate``, ``insufficient_quota_rate``, every ``error_rates`` entry,
    ``drop_rate`` and ``stream_disconnect_rate`` (so their sum must not exceed 1), and the rest
    is answered normally. The service time (``latency_min``-``latency_max``) is waited before
    every answer of an API endpoint, fault or not. A ``seed`` makes the draws reproducible for a
    given order of requests. With ``rpm_limit``/``tpm_limit`` every answer carries the API's
    ``x-ratelimit-limit-*``, ``x-ratelimit-remaining-*`` and ``x-ratelimit-reset-*`` headers
    (``requests`` and ``tokens``; resets as Go durations such as ``"6m0s"``, ``"20ms"``).

    Raises:
        pydantic.ValidationError: on construction, for a negative duration, a probability
            outside [0, 1], probabilities summing over 1, ``latency_min > latency_max``, an
            ``error_rates`` status outside 400-599 or an unknown field; the message names the
            field.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    latency_min: float = Field(
        default=0.0, ge=0.0, description="Shortest service time before answering, seconds."
    )
    latency_max: float = Field(
        default=0.0, ge=0.0, description="Longest service time before answering, seconds (uniform)."
    )
    stream_chunk_delay: float = Field(
        default=0.0,
        ge=0.0,
        description="Pause between two SSE events of a streamed answer, seconds.",
    )
    error_rates: dict[int, _Probability] = Field(
        default_factory=dict,
        description="Probability per request (0-1) of answering each HTTP status (400-599).",
    )
    rate_limit_rate: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="Probability per request (0-1) of a 429 rate limit.",
    )
    retry_after: float | None = Field(
        default=1.0,
        ge=0.0,
        description="Wait advertised by a random 429, seconds; None: no header.",
    )
    retry_after_header: RetryAfterHeader = Field(
        default="retry-after",
        description=(
            "Header(s) carrying a 429's wait: 'retry-after' (whole seconds, rounded up), "
            "'retry-after-ms' (milliseconds), 'both' or 'none'."
        ),
    )
    rpm_limit: int | None = Field(
        default=None,
        ge=1,
        description="Requests admitted per sliding 60-second window, count; None: unlimited.",
    )
    tpm_limit: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Tokens admitted per sliding 60-second window (a request counts its prompt plus "
            "max_output_tokens / max_tokens, or 16), count; None: unlimited."
        ),
    )
    insufficient_quota_rate: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="Probability per request (0-1) of a 429 insufficient_quota (no retry-after).",
    )
    drop_rate: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="Probability per request (0-1) that the connection closes without an answer.",
    )
    stream_disconnect_rate: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description=(
            "Probability per streaming request (0-1) that the connection closes mid-stream; "
            "non-streaming requests drawn into this band are answered normally."
        ),
    )
    stream_disconnect_after: int = Field(
        default=3, ge=0, description="SSE events sent before a random mid-stream disconnect, count."
    )
    scripted: list[ScriptedFault] = Field(
        default_factory=list,
        description="Faults consumed one per request, in order, before the random rates.",
    )
    seed: int | None = Field(
        default=None, description="Seed of the plan's random draws; None: seeded from the OS."
    )

    @model_validator(mode="after")
    def _check_consistency(self) -> Self:
        if self.latency_min > self.latency_max:
            raise ValueError(
                f"latency_min ({self.latency_min}) must not exceed latency_max ({self.latency_max})"
            )
        for status in self.error_rates:
            if not 400 <= status <= 599:
                raise ValueError(f"error_rates: status {status} is not an HTTP error (400-599)")
        total = sum(getattr(self, name) for name in _RATE_FIELDS) + sum(self.error_rates.values())
        if total > 1.0 + 1e-9:
            raise ValueError(
                f"the probabilities {' + '.join(_RATE_FIELDS)} + error_rates sum to "
                f"{total:.6g}, which exceeds 1"
            )
        return self
