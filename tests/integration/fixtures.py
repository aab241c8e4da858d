"""Shared simulator fixtures for the loopback integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from llmpool.testing import FaultPlan, RealtimePlan, SimulatedProvider


def simulator_fixtures(name: str, **options: Any) -> tuple[Any, Any]:
    """``(shared_sim, sim)`` fixtures: one simulator per module, reset before each test.

    Assign them at module level: ``shared_sim, sim = simulator_fixtures("a", api_key="k")``.
    """

    @pytest.fixture(scope="module")
    def shared_sim() -> Iterator[SimulatedProvider]:
        with SimulatedProvider(name=name, **options) as simulator:
            yield simulator

    @pytest.fixture
    def sim(shared_sim: SimulatedProvider) -> SimulatedProvider:
        shared_sim.set_fault_plan(FaultPlan())
        shared_sim.clear_requests()
        shared_sim.set_realtime_plan(RealtimePlan())
        shared_sim.clear_realtime_sessions()
        return shared_sim

    return shared_sim, sim
