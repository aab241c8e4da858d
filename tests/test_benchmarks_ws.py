"""The ``ws`` benchmark scenario: a small real run is well formed, and the checks catch what
they must (``benchmarks/ws.py``, ``benchmarks/ws_report.py``)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from benchmarks import report, runner, ws, ws_report

SMALL = {
    "repeats": 2,
    "clients": 2,
    "turns": 2,
    "chunks": 3,
    "burst": 4,
    "rounds": 1,
    "ttft_ms": 0,
    "interval_ms": 0,
    "idle": 5,
    "fresh_idle": False,
    "litellm_skip": "not run in the tests",
}


@pytest.fixture(scope="module")
def small_run() -> dict[str, Any]:
    with runner.upstream(None) as root:
        return ws.run({**SMALL, "server": root})


def _doc(result: dict[str, Any]) -> dict[str, Any]:
    return {"settings": {}, "machine": {}, "scenarios": {"ws": copy.deepcopy(result)}}


def test_a_small_run_is_well_formed(small_run: dict[str, Any]) -> None:
    """Every variant streamed every chunk of every turn; each target has a row."""
    assert report.validate(_doc(small_run)) == []
    assert small_run["variants"] == ["sdk", "floor", "llmpool"]
    assert small_run["litellm"] == {"status": "skipped", "reason": "not run in the tests"}
    assert set(small_run["cpu"]["added_us"]) == {"llmpool-sdk", "floor-sdk", "llmpool-floor"}
    assert {kind: idle["sockets"] for kind, idle in small_run["idle"].items()} == {
        "floor": 5,
        "llmpool": 5,
    }
    rows = ws_report.targets(small_run)
    assert len(rows) == 4
    assert rows[-1]["measured"] == "not measured: not run in the tests"
    section = "\n".join(ws_report.section(small_run))
    assert "## llmpool.server over WebSocket" in section
    assert "`litellm` skipped: not run in the tests." in section


def test_validate_flags_a_lost_chunk(small_run: dict[str, Any]) -> None:
    """A window that delivered fewer chunks than the upstream streamed is malformed."""
    doc = _doc(small_run)
    doc["scenarios"]["ws"]["cpu"]["runs"][1]["variants"]["llmpool"]["deltas"] -= 1
    assert report.validate(doc) == [
        "ws/cpu[1]/llmpool: 4 turns, 11 chunks; expected 4, 12",
    ]


def test_validate_flags_a_turn_without_a_first_chunk(small_run: dict[str, Any]) -> None:
    """Every latency sample must be a real first chunk, and there must be one per turn."""
    doc = _doc(small_run)
    samples = doc["scenarios"]["ws"]["latency"]["samples_ms"]
    samples["floor"][0] = 0.0
    samples["sdk"].pop()
    assert report.validate(doc) == [
        "ws/latency/sdk: 3 samples, expected 4",
        "ws/latency/floor: a turn without a first chunk",
    ]


def test_validate_flags_a_skip_without_a_reason(small_run: dict[str, Any]) -> None:
    doc = _doc(small_run)
    doc["scenarios"]["ws"]["litellm"]["reason"] = ""
    assert report.validate(doc) == ["ws/litellm: skipped without a reason"]


@pytest.mark.parametrize(
    ("added", "word"),
    [
        ({"lo": 3.0, "median": 10.0, "hi": 25.0}, "pass"),
        ({"lo": 25.5, "median": 30.0, "hi": 40.0}, "miss"),
        ({"lo": 12.0, "median": 20.0, "hi": 31.0}, "unresolved"),
    ],
    ids=["under", "over", "straddles"],
)
def test_chunk_verdict_needs_the_whole_interval(added: dict[str, float], word: str) -> None:
    """Pass needs the interval at or under 25 µs, miss the interval above; else unresolved."""
    assert ws_report.chunk_verdict(added) == word
