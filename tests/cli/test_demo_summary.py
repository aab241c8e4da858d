"""The demo's typed summary: what ``llmpool demo --json`` prints, computed without a run."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pydantic
import pytest

from llmpool import Priority
from llmpool._cli.demo._options import DemoOptions
from llmpool._cli.demo._summary import DemoSummary, summarize

from .helpers import complete_hop, hop_turn, outcome, result

DEMO_MD = Path(__file__).resolve().parents[2] / "docs" / "demo.md"
GROUP = ["requests", "succeeded", "failed", "attempts", "retries", "queue_wait", "latency"]


def two_by_two() -> tuple[DemoOptions, DemoSummary]:
    """2 terminals x 2 requests (high, normal); terminal-2's second request failed; the hop ran."""
    options = DemoOptions(terminals=2, requests=2)
    results = (
        result("terminal-1", 1),
        result("terminal-1", 2, latency=1.5, attempts=1, retries=0),
        result("terminal-2", 1, Priority.NORMAL),
        result("terminal-2", 2, Priority.NORMAL, ok=False, attempts=1, retries=0),
    )
    return options, summarize(options, outcome(results, hop=complete_hop()), "simulated")


def test_json_has_todays_keys_in_order() -> None:
    """model_dump(mode="json") has the keys --json has always printed, in the same order."""
    _, summary = two_by_two()
    data = summary.model_dump(mode="json")
    assert list(data) == [
        "ok", "config", "per_terminal", "per_priority", "totals", "failures", "simulator",
        "stats", "hop", "server",
    ]  # fmt: skip
    assert list(data["config"]) == [
        "terminals", "requests", "stagger", "priority", "api", "model", "endpoint", "backend",
        "pool", "fault_plan",
    ]  # fmt: skip
    assert list(data["per_terminal"]) == ["terminal-1", "terminal-2"]
    assert list(data["per_terminal"]["terminal-1"]) == ["priority", *GROUP]
    assert list(data["per_priority"]["high"]) == GROUP
    assert list(data["totals"]) == [*GROUP, "expected", "elapsed"]
    assert list(data["totals"]["latency"]) == ["p50", "p95"]
    assert list(data["failures"][0]) == [
        "terminal", "request", "priority", "request_id", "attempts", "error", "message",
    ]  # fmt: skip
    assert list(data["simulator"]) == ["requests", "outcomes", "paths"]
    assert list(data["hop"]) == ["session", "ok", "requests", "recoveries", "retries", "turns"]
    assert list(data["hop"]["turns"][0]) == [
        "turn", "instance", "ok", "text", "tool_calls", "recovered", "reason", "attempts",
        "processing_ms", "duplicated",
    ]  # fmt: skip
    assert data["config"]["pool"] == DemoOptions().pool.model_dump(mode="json")
    assert data["config"]["fault_plan"] == {"latency_min": 0.2, "seed": 7}
    assert "completedRequests" in data["stats"]  # by alias, as stats().model_dump(by_alias=True)
    assert data["hop"]["turns"][0]["tool_calls"] == ["get_weather"]


def test_counts_and_percentiles() -> None:
    """Groups count requests, successes, failures, attempts, retries; latency percentiles are
    of succeeded requests only; durations are rounded to milliseconds."""
    _, summary = two_by_two()
    data = summary.model_dump(mode="json")
    assert data["totals"] | {"queue_wait": None, "latency": None} == {
        "requests": 4, "succeeded": 3, "failed": 1, "attempts": 6, "retries": 2,
        "queue_wait": None, "latency": None, "expected": 4, "elapsed": 1.234,
    }  # fmt: skip
    assert data["per_terminal"]["terminal-2"]["latency"] == {"p50": 0.5, "p95": 0.5}
    assert data["per_terminal"]["terminal-2"]["priority"] == "normal"
    assert data["failures"] == [
        {
            "terminal": "terminal-2", "request": 2, "priority": "normal",
            "request_id": "req_0123456789abcdef", "attempts": 1,
            "error": "APIConnectionError", "message": "Connection error.",
        }
    ]  # fmt: skip
    assert data["ok"] is False


def test_a_percentile_without_samples_is_null() -> None:
    """Nothing succeeded: latency is null; never ran: no queue wait either."""
    options = DemoOptions(terminals=1, requests=1, hop=False)
    failed = result(ok=False, queue_wait=None, attempts=0, retries=0)
    data = summarize(options, outcome((failed,)), "simulated").model_dump(mode="json")
    assert data["totals"]["latency"] == {"p50": None, "p95": None}
    assert data["totals"]["queue_wait"] == {"p50": None, "p95": None}


def test_per_priority_lists_the_used_priorities_high_first() -> None:
    """Only the priorities used appear, in Priority order whatever the results' order."""
    options = DemoOptions(terminals=3, requests=1, priority=Priority.LOW)
    results = (
        result("terminal-1", priority=Priority.LOW),
        result("terminal-2", priority=Priority.HIGH),
    )
    data = summarize(options, outcome(results), "simulated").model_dump(mode="json")
    assert list(data["per_priority"]) == ["high", "low"]
    assert data["config"]["priority"] == "low"


@pytest.mark.parametrize(
    ("results", "hop", "ok"),
    [
        pytest.param((result(), result(index=2)), None, True, id="all-ok"),
        pytest.param((result(),), None, False, id="a-request-missing"),
        pytest.param((result(), result(index=2, ok=False)), None, False, id="a-request-failed"),
        pytest.param((result(), result(index=2)), complete_hop(), True, id="hop-complete"),
        pytest.param(
            (result(), result(index=2)), complete_hop()[:3], False, id="hop-stopped-early"
        ),
        pytest.param(
            (result(), result(index=2)),
            (*complete_hop()[:3], hop_turn(3, "east", ok=False, reason="boom")),
            False,
            id="hop-turn-failed",
        ),
        pytest.param(
            (result(), result(index=2)),
            (*complete_hop()[:3], hop_turn(3, "east", duplicated=True)),
            False,
            id="hop-text-duplicated",
        ),
        pytest.param((result(), result(index=2)), (), False, id="hop-ran-nothing"),
    ],
)
def test_ok_needs_every_expected_request_and_the_hop(
    results: tuple[Any, ...], hop: tuple[Any, ...] | None, ok: bool
) -> None:
    """ok: every expected request succeeded and, if the hop ran, it completed its script with
    no failed turn and no duplicated text (the exit status follows it)."""
    options = DemoOptions(terminals=1, requests=2)
    summary = summarize(options, outcome(results, hop=hop), "simulated")
    assert summary.ok is ok
    if hop is not None:
        assert summary.hop is not None
        assert summary.hop.ok is ok


def test_real_endpoint_has_no_simulator() -> None:
    """Against a real endpoint: simulator, config.fault_plan and hop are null."""
    options = DemoOptions(terminals=1, requests=1, base_url="http://x.test/v1")
    data = summarize(options, outcome((result(),), simulated=False), "http://x.test/v1")
    dumped = data.model_dump(mode="json")
    assert (dumped["simulator"], dumped["config"]["fault_plan"], dumped["hop"]) == (None,) * 3
    assert dumped["config"]["endpoint"] == "http://x.test/v1"


def test_summary_is_frozen() -> None:
    """The summary is an immutable snapshot."""
    _, summary = two_by_two()
    with pytest.raises(pydantic.ValidationError):
        summary.ok = True  # type: ignore[misc]


def _json_type(value: object) -> str:
    return (
        "number"
        if isinstance(value, int | float) and not isinstance(value, bool)
        else (type(value).__name__)
    )


# Maps keyed by data (session ids, priorities, outcomes): the doc shows one entry of each.
_DATA_KEYED = {"per_terminal", "per_priority", "outcomes", "paths", "turns", "disconnects"}


def _same_shape(doc: object, real: object, path: str) -> list[str]:
    """Where the documented JSON differs from a real summary's (a '...' key stands for more)."""
    if doc is None or real is None:
        return []
    if isinstance(doc, dict) and isinstance(real, dict):
        if path.rsplit(".", 1)[-1] in _DATA_KEYED:
            first = next(iter(real.values()))
            return [e for k, v in doc.items() for e in _same_shape(v, first, f"{path}.{k}")]
        listed = [k for k in doc if k != "..."]
        expected = [k for k in real if k in listed] if "..." in doc else list(real)
        if listed != expected:
            return [f"{path}: documented {listed}, real {list(real)}"]
        return [e for k in listed for e in _same_shape(doc[k], real[k], f"{path}.{k}")]
    if isinstance(doc, list) and isinstance(real, list):
        return _same_shape(doc[0], real[0], f"{path}[0]") if doc and real else []
    if _json_type(doc) != _json_type(real):
        return [f"{path}: documented {doc!r}, real {real!r}"]
    return []


def test_docs_show_the_summary_as_it_is() -> None:
    """docs/demo.md's --json example has the real summary's keys, in order, and value types."""
    text = DEMO_MD.read_text(encoding="utf-8")
    (block,) = re.findall(r"```json\n(.*?)```", text, re.DOTALL)
    documented = json.loads(block)
    _, summary = two_by_two()
    assert _same_shape(documented, summary.model_dump(mode="json"), "$") == []
