"""Every default llmpool uses, in one place.

Config models, docs and tests refer to these names; a default is changed here and nowhere else.
Durations are float seconds unless the name ends in a unit (``_MS``).
"""

from __future__ import annotations

from typing import Final

# Pool and admission: 5 clients, 3 concurrent attempts, 120 s queue timeout, 180 s per attempt.
DEFAULT_POOL_SIZE: Final = 5
DEFAULT_MAX_CONCURRENCY: Final = 3
DEFAULT_MAX_QUEUE_SIZE: Final = 1000
DEFAULT_QUEUE_TIMEOUT: Final = 120.0
DEFAULT_REQUEST_TIMEOUT: Final = 180.0
DEFAULT_SHUTDOWN_GRACE: Final = 30.0

# Anti-starvation: a waiting lower class is passed over at most this many grants in a row.
DEFAULT_STARVATION_LIMIT: Final = 10

# Retry policy. Backoff is tenacity's ``wait_exponential_jitter``:
# min(initial * 2**n + uniform(0, jitter), max) for the n-th retry (n from 0).
DEFAULT_MAX_ATTEMPTS: Final = 4
DEFAULT_INITIAL_BACKOFF: Final = 0.5
DEFAULT_MAX_BACKOFF: Final = 30.0
DEFAULT_JITTER: Final = 1.0
# A server hint (Retry-After / retry-after-ms) longer than this is not waited out: give up.
DEFAULT_MAX_RETRY_AFTER: Final = 60.0
# Retry budget (Envoy's ``retry_budget``): retries in flight at most this percentage of the
# active requests, and never fewer than DEFAULT_MIN_RETRY_CONCURRENCY.
DEFAULT_RETRY_BUDGET_PERCENT: Final = 20.0
DEFAULT_MIN_RETRY_CONCURRENCY: Final = 3

# Circuit breaker per upstream (docs/retries.md): a hintless 429 opens it, so do this many
# consecutive 5xx answers, connection errors or timeouts; cooldown
# min(initial * 2**(n-1) + uniform(0, jitter), max) seconds for the n-th open in a row;
# half-open lets one probe through.
DEFAULT_CIRCUIT_FAILURE_THRESHOLD: Final = 5
DEFAULT_CIRCUIT_INITIAL_COOLDOWN: Final = 0.5
DEFAULT_CIRCUIT_MAX_COOLDOWN: Final = 30.0
DEFAULT_CIRCUIT_JITTER: Final = 0.5
# Gateways that proxy a provider pass its headers on under this prefix (LiteLLM's proxy:
# ``llm_provider-retry-after``, ``llm_provider-x-ratelimit-remaining-requests``...).
GATEWAY_HEADER_PREFIX: Final = "llm_provider-"

# Token estimates (_tokens.estimate_tokens): nesting deeper than this is not followed, and one
# estimate counts at most this many values (containers, strings, numbers...), which bounds its
# time to tens of milliseconds of CPU whatever the caller passes.
MAX_ESTIMATE_DEPTH: Final = 64
MAX_ESTIMATE_NODES: Final = 100_000

# Session ids travel upstream in this header and are limited to this many characters.
SESSION_HEADER: Final = "x-session-id"
MAX_SESSION_ID_LENGTH: Final = 128

# Latency percentiles in stats are computed over the most recent this many requests.
LATENCY_WINDOW: Final = 2048

# HTTP statuses that are retried (with connection errors and timeouts), as in openai-python's
# ``_should_retry``: 408 request timeout, 409 lock timeout, 429 rate limit, every 5xx.
RETRYABLE_STATUSES: Final = frozenset({408, 409, 429})
# 429 error codes that are not transient (billing): never retried.
NON_TRANSIENT_429_CODES: Final = frozenset({"insufficient_quota"})

LOGGER_NAME: Final = "llmpool"
# Log redaction (docs/logging.md): configured API keys of at least this many characters are
# replaced in every record llmpool logs; a hidden secret this long or longer keeps its first 3
# and last 4 characters as a hint (sk-...wxyz), a shorter one becomes REDACTED.
MIN_REDACTED_SECRET_LENGTH: Final = 8
REDACTION_HINT_MIN_LENGTH: Final = 20
REDACTED: Final = "[REDACTED]"

# Provider rate limits (docs/limits.md). Token buckets per upstream and model: a bucket holds
# ``limit * RATE_LIMIT_BURST / 60`` units (one second of quota: OpenAI's guide says limits "may
# also be quantized" over shorter periods, e.g. 60,000 RPM enforced as 1,000 per second) and
# refills at ``limit / 60`` units per second.
RATE_LIMIT_WINDOW: Final = 60.0
DEFAULT_RATE_LIMIT_BURST: Final = 1.0
# Output tokens assumed for a request that sets no max_output_tokens / max_tokens.
DEFAULT_OUTPUT_TOKEN_ESTIMATE: Final = 256
# The API's rate-limit headers (OpenAI "Rate limits" guide).
RATELIMIT_HEADER_PREFIX: Final = "x-ratelimit-"
# An x-ratelimit-limit-*/remaining-* value with more digits than this is ignored as junk: 10**15
# per minute is far above any provider's limit, and a bound keeps the buckets' floats exact.
RATELIMIT_HEADER_MAX_DIGITS: Final = 15

# `llmpool demo` (docs/demo.md): terminals x requests, seconds between terminal starts.
DEMO_TERMINALS: Final = 5
DEMO_REQUESTS: Final = 3
DEMO_STAGGER: Final = 0.3
DEMO_MODEL: Final = "gpt-4o-mini"
# A simulator seed whose default run succeeds: each request has 4 attempts and ~16 % of
# attempts fail (seeds 1-10 all pass; 7 shows every fault kind).
DEMO_SEED: Final = 7
DEMO_SIMULATOR_API_KEY: Final = "sk-llmpool-demo"
# `llmpool demo --instances N` (docs/demo.md): N processes sharing one small quota on Redis,
# their callers offering several times it. `make demo-cluster` runs 3 instances.
DEMO_CLUSTER_INSTANCES: Final = 3
DEMO_CLUSTER_CALLERS: Final = 4  # per instance, each sending back to back
DEMO_CLUSTER_DURATION: Final = 15.0  # seconds the callers keep sending new requests
DEMO_CLUSTER_RPM: Final = 120
DEMO_CLUSTER_TPM: Final = 40_000
DEMO_CLUSTER_CONCURRENCY: Final = 4  # requests in flight at once, all instances together
DEMO_CLUSTER_MAX_OUTPUT_TOKENS: Final = 64  # each request's cap: its token estimate's bound
# Seconds of simulated service time: 2 requests/s (120 RPM) of 1-3 s keep ~4 in flight, so
# the global cap binds as well as the RPM.
DEMO_CLUSTER_LATENCY_MIN: Final = 1.0
DEMO_CLUSTER_LATENCY_MAX: Final = 3.0

# Recovering streams (docs/recovery.md): rebuilds of the input after a 404 "Item with id … not
# found" / previous_response_not_found, per stream.
DEFAULT_MAX_RECOVERIES: Final = 2
# Codes of stream ``error`` / ``response.failed`` events that are transient (retried before any
# output was yielded, like a 5xx).
TRANSIENT_STREAM_ERROR_CODES: Final = frozenset(
    {"server_error", "internal_error", "rate_limit_exceeded", "server_is_overloaded"}
)

# ConversationSanitizer (docs/sanitizer.md): server bookkeeping removed from conversation items
# wherever the input schema (the openai SDK's param TypedDicts) does not declare the field. The
# SDK marks ``status`` "populated when items are returned via API"; ``response_id``, ``object``,
# ``created*``, ``model``, ``usage``, ``system_fingerprint``, ``service_tier``, ``finish_reason``,
# ``index`` are response/choice/delta fields; ``created_by`` comes from Conversations items;
# ``logprobs`` and chat ``annotations`` are output-only; ``reasoning_content`` is DeepSeek's,
# which answers 400 when it is sent back ("reasoning_content" must not be in input messages).
SANITIZER_STRIP_FIELDS: Final = frozenset(
    {
        "status",
        "response_id",
        "object",
        "created",
        "created_at",
        "completed_at",
        "created_by",
        "model",
        "usage",
        "system_fingerprint",
        "service_tier",
        "incomplete_details",
        "finish_reason",
        "index",
        "logprobs",
        "annotations",
        "reasoning_content",
    }
)

# Histogram buckets for durations in seconds, as the OpenTelemetry GenAI semantic conventions
# advise for gen_ai.client.operation.duration (v1.41.0): 0.01 s doubling to 81.92 s. The
# Prometheus and OpenTelemetry instruments both use them (prometheus_client's defaults stop
# at 10 s, short for an LLM call).
DURATION_BUCKETS: Final = (
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
)
