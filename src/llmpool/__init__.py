"""llmpool: resilient, fair, fast access to OpenAI and OpenAI-compatible LLM APIs.

This module only re-exports. Imports inside the package point one way, layer by layer (a
module imports only from its own layer or those below); ``make lint`` checks it with
import-linter (``[tool.importlinter]`` in pyproject.toml; docs/design.md draws it):

    L0 vocabulary    _constants, _types, _errors, _extras (optional imports naming the extra)
    L1 pure policy   _config, _tokens, _headers, _redact, _limits, _breaker, _retry,
                     _pairing, _compact, _walk, _sanitizer, _conversation, _recovery,
                     _stream_events, _stream_translate, _stream_decide (a stream's
                     state and what it does after a failure)
    L2 seams         _hooks (the Instrument protocol and its event records)
    L3 mechanics     _clock, _waiters, _scheduler, _pool, _record, _request, _stats, _log,
                     _lease, _outcomes, _admission, _health, _engine (the request path
                     and leases)
    L4 public faces  _facade (SDK-shaped views, PooledStream; imports the engine, never the
                     manager), _manager (ConnectionManager: lifecycle, config, API),
                     _stream_params, _streams (RecoveringStream)

Subpackages sit on top and the core never imports them: ``llmpool.instrumentation``
(events, logging, Prometheus and OpenTelemetry instruments), ``llmpool.testing`` (the
simulated provider), the ``llmpool`` CLI (``_cli``); ``llmpool.server`` and ``llmpool.redis``
come next. They need extras, imported only when used.
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
from ._lease import Lease as Lease
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
    "Lease",
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
