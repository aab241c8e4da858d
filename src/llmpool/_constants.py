"""Every default llmpool uses, in one place.

Config models, docs and tests refer to these names; a default is changed here and nowhere else.
Durations are float seconds unless the name ends in a unit (``_MS``).
"""

from __future__ import annotations

from typing import Final

# Pool and admission (seed 000: 5 clients, 3 concurrent, 120 s queue, 180 s request).
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

# Session ids travel in this header (seed 000) and are limited to this many characters.
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

# `llmpool demo` (docs/demo.md): terminals x requests, seconds between terminal starts.
DEMO_TERMINALS: Final = 5
DEMO_REQUESTS: Final = 3
DEMO_STAGGER: Final = 0.3
DEMO_MODEL: Final = "gpt-4o-mini"
# A simulator seed whose default run succeeds: each request has 4 attempts and ~16 % of
# attempts fail (seeds 1-10 all pass; 7 shows every fault kind).
DEMO_SEED: Final = 7
DEMO_SIMULATOR_API_KEY: Final = "sk-llmpool-demo"
