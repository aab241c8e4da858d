"""A simulated OpenAI-compatible provider: a real HTTP server with injectable faults.

Needs the ``testing`` extra (``pip install 'llmpool[testing]'``: Starlette and uvicorn)::

    from llmpool.testing import FaultPlan, ScriptedFault, SimulatedProvider

    plan = FaultPlan(latency_min=0.01, latency_max=0.05, rate_limit_rate=0.1, seed=1)
    with SimulatedProvider(plan) as sim:
        client = openai.AsyncOpenAI(base_url=sim.base_url, api_key="test")
        ...
        assert sim.count(path="/v1/responses") == 3
"""

from __future__ import annotations

try:
    import starlette as _starlette
    import uvicorn as _uvicorn
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "llmpool.testing needs the 'testing' extra: pip install 'llmpool[testing]'"
    ) from exc

from ._faults import FaultPlan, ScriptedFault
from ._records import RecordedRequest
from ._server import SimulatedProvider

del _starlette, _uvicorn

__all__ = ["FaultPlan", "RecordedRequest", "ScriptedFault", "SimulatedProvider"]

for _exported in (FaultPlan, RecordedRequest, ScriptedFault, SimulatedProvider):
    _exported.__module__ = __name__
del _exported
