"""llmpool: resilient, fair, fast access to OpenAI and OpenAI-compatible LLM APIs.

This module only re-exports. Imports inside the package point one way (each module imports
only those above it in this list):

    _constants, _types, _errors      constants, closed sets, the error tree
    _tokens, _headers, _redact       token estimates; HTTP header checks; log redaction (pure)
    _config                          PoolConfig, RetryPolicy, RateLimitPolicy (pydantic)
    _limits, _breaker, _retry        rate-limit budgets (token buckets); circuit breaker;
                                     pure retry rules
    _scheduler, _pool                slot scheduling with a budget gate; clients, cooldowns
    _stats, _record, _request        snapshots; per-request records; one request's bookkeeping
    _facade                          the SDK-shaped views and PooledStream
    _manager                         ConnectionManager: composes all of the above
    _pairing                         which output answers which call (pure policy)
    _compact, _sanitizer             ConversationSanitizer: pure, imports nothing stateful
    _conversation                    Conversation: the local transcript (pydantic)
    _stream_events, _stream_translate   the StreamEvent envelope; SDK events -> envelope
    _recovery, _stream_params        when and how to rebuild; the SDK's typed parameters
    _streams                         RecoveringStream over the façade

``llmpool.testing`` (the simulated provider) and the ``llmpool`` CLI need extras and are
never imported from here.
"""

from ._config import ENV_VARS as ENV_VARS
from ._config import Admission as Admission
from ._config import CallOptions as CallOptions
from ._config import CircuitPolicy as CircuitPolicy
from ._config import ModelRateLimit as ModelRateLimit
from ._config import PoolConfig as PoolConfig
from ._config import RateLimitPolicy as RateLimitPolicy
from ._config import RetryPolicy as RetryPolicy
from ._conversation import Conversation as Conversation
from ._errors import CompactionBudgetError as CompactionBudgetError
from ._errors import DeadlineExceededError as DeadlineExceededError
from ._errors import InvalidConversationError as InvalidConversationError
from ._errors import InvalidHeaderError as InvalidHeaderError
from ._errors import InvalidSessionIdError as InvalidSessionIdError
from ._errors import LLMPoolError as LLMPoolError
from ._errors import ManagerClosedError as ManagerClosedError
from ._errors import QueueFullError as QueueFullError
from ._errors import QueueTimeoutError as QueueTimeoutError
from ._errors import RequestTimeoutError as RequestTimeoutError
from ._errors import RequestTooLargeError as RequestTooLargeError
from ._errors import StreamInterruptedError as StreamInterruptedError
from ._facade import ManagerView as ManagerView
from ._facade import PooledStream as PooledStream
from ._manager import ConnectionManager as ConnectionManager
from ._pool import ClientFactory as ClientFactory
from ._record import AttemptRecord as AttemptRecord
from ._record import CapturedRequests as CapturedRequests
from ._record import RequestRecord as RequestRecord
from ._record import capture_requests as capture_requests
from ._recovery import RecoveryPolicy as RecoveryPolicy
from ._recovery import missing_reference as missing_reference
from ._retry import RetryDecision as RetryDecision
from ._retry import classify as classify
from ._retry import parse_retry_after as parse_retry_after
from ._sanitizer import ConversationSanitizer as ConversationSanitizer
from ._stats import ConnectionStats as ConnectionStats
from ._stats import LatencyStats as LatencyStats
from ._stats import UpstreamLimitStats as UpstreamLimitStats
from ._stream_events import ChunkEvent as ChunkEvent
from ._stream_events import CompleteEvent as CompleteEvent
from ._stream_events import ErrorEvent as ErrorEvent
from ._stream_events import RecoveredEvent as RecoveredEvent
from ._stream_events import StreamEvent as StreamEvent
from ._stream_events import ToolCallEvent as ToolCallEvent
from ._stream_events import Usage as Usage
from ._stream_events import parse_stream_event as parse_stream_event
from ._streams import RecoveringStream as RecoveringStream
from ._streams import stream_chat as stream_chat
from ._streams import stream_response as stream_response
from ._types import Priority as Priority

__all__ = [
    "ENV_VARS",
    "Admission",
    "AttemptRecord",
    "CallOptions",
    "CapturedRequests",
    "ChunkEvent",
    "CircuitPolicy",
    "ClientFactory",
    "CompactionBudgetError",
    "CompleteEvent",
    "ConnectionManager",
    "ConnectionStats",
    "Conversation",
    "ConversationSanitizer",
    "DeadlineExceededError",
    "ErrorEvent",
    "InvalidConversationError",
    "InvalidHeaderError",
    "InvalidSessionIdError",
    "LLMPoolError",
    "LatencyStats",
    "ManagerClosedError",
    "ManagerView",
    "ModelRateLimit",
    "PoolConfig",
    "PooledStream",
    "Priority",
    "QueueFullError",
    "QueueTimeoutError",
    "RateLimitPolicy",
    "RecoveredEvent",
    "RecoveringStream",
    "RecoveryPolicy",
    "RequestRecord",
    "RequestTimeoutError",
    "RequestTooLargeError",
    "RetryDecision",
    "RetryPolicy",
    "StreamEvent",
    "StreamInterruptedError",
    "ToolCallEvent",
    "UpstreamLimitStats",
    "Usage",
    "capture_requests",
    "classify",
    "missing_reference",
    "parse_retry_after",
    "parse_stream_event",
    "stream_chat",
    "stream_response",
]

__version__ = "0.1.0.dev0"

for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) or (callable(_obj) and hasattr(_obj, "__code__")):
        _obj.__module__ = "llmpool"
del _name, _obj
