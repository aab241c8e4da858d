"""The simulated Realtime API's plan: RealtimePlan and RealtimeFault validate on construction."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from llmpool.testing import RealtimeFault, RealtimePlan


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        pytest.param({"session_created_delay": -1.0}, "session_created_delay", id="negative"),
        pytest.param({"surprise": 1}, "surprise", id="unknown-field"),
        pytest.param({"scripted": [{"kind": "explode"}]}, "kind", id="unknown-kind"),
        pytest.param(
            {"scripted": [{"kind": "close", "close_code": 1006}]}, "close_code", id="1006"
        ),
        pytest.param({"scripted": [{"kind": "refuse", "status": 200}]}, "status", id="status"),
    ],
)
def test_realtime_plan_validation_names_the_field(kwargs: dict[str, Any], field: str) -> None:
    """Invalid plans fail at construction, naming the field."""
    with pytest.raises(pydantic.ValidationError, match=field):
        RealtimePlan(**kwargs)


def test_realtime_plans_are_frozen() -> None:
    """A plan and its faults are immutable; variants are made with model_copy."""
    plan = RealtimePlan(delta_delay=0.1)
    with pytest.raises(pydantic.ValidationError):
        plan.delta_delay = 0.2  # type: ignore[misc]
    assert plan.model_copy(update={"delta_delay": 0.2}).delta_delay == 0.2
    with pytest.raises(pydantic.ValidationError):
        RealtimeFault(kind="close").close_code = 1000  # type: ignore[misc]
