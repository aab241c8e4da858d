"""A simulated OpenAI-compatible provider: a real HTTP server with injectable faults.

Also what a test or a benchmark around it needs: ``window_peaks`` (the busiest sliding window
and the most requests in flight, from the provider's records) and ``RedisServer`` (a real
redis-server on a free loopback port, that can be killed and restarted).

Needs the ``testing`` extra (``pip install 'llmpool[testing]'``: Starlette, uvicorn and
wsproto, uvicorn's WebSocket protocol for the Realtime endpoint)::

    from llmpool.testing import FaultPlan, ScriptedFault, SimulatedProvider, window_peaks

    plan = FaultPlan(latency_min=0.01, latency_max=0.05, rate_limit_rate=0.1, seed=1)
    with SimulatedProvider(plan) as sim:
        client = openai.AsyncOpenAI(base_url=sim.base_url, api_key="test")
        ...
        assert sim.count(path="/v1/responses") == 3
        assert window_peaks(sim.requests).requests <= 600
"""

from __future__ import annotations

from llmpool._extras import require

# Checked first, so that a missing one is named with the extra to install.
require("starlette", "testing", feature="llmpool.testing")
require("uvicorn", "testing", feature="llmpool.testing")
require("wsproto", "testing", feature="llmpool.testing")
del require

from ._faults import FaultPlan, ScriptedFault  # noqa: E402  (after the extras check)
from ._peaks import WindowPeaks, window_peaks  # noqa: E402
from ._realtime_plan import RealtimeFault, RealtimePlan  # noqa: E402
from ._records import RecordedFrame, RecordedRealtimeSession, RecordedRequest  # noqa: E402
from ._redis_server import RedisServer  # noqa: E402
from ._server import SimulatedProvider  # noqa: E402

__all__ = [
    "FaultPlan",
    "RealtimeFault",
    "RealtimePlan",
    "RecordedFrame",
    "RecordedRealtimeSession",
    "RecordedRequest",
    "RedisServer",
    "ScriptedFault",
    "SimulatedProvider",
    "WindowPeaks",
    "window_peaks",
]

for _exported in (
    FaultPlan,
    RealtimeFault,
    RealtimePlan,
    RecordedFrame,
    RecordedRealtimeSession,
    RecordedRequest,
    RedisServer,
    ScriptedFault,
    SimulatedProvider,
    WindowPeaks,
    window_peaks,
):
    _exported.__module__ = __name__
del _exported
