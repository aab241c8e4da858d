"""The ``relay`` benchmark scenario: a small real run is well formed, and the checks catch what
they must (``benchmarks/relay.py``, ``benchmarks/relay_report.py``)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from benchmarks import relay, relay_report, report

SMALL = {
    "loads": [[3, 20]],
    "audio_bytes": 96,
    "rounds": 2,
    "seconds": 0.2,
    "warm": 0.05,
    "fuzz_sessions": 12,
    "fuzz_concurrency": 4,
    "fuzz_early": 16,
    "fuzz_after": 4,
    "fuzz_direct": 4,
}


@pytest.fixture(scope="module")
def small_run() -> dict[str, Any]:
    return relay.run(dict(SMALL))


def _doc(result: dict[str, Any]) -> dict[str, Any]:
    return {"settings": {}, "machine": {}, "scenarios": {"relay": copy.deepcopy(result)}}


def test_a_small_run_is_well_formed(small_run: dict[str, Any]) -> None:
    """Every frame of every window came back; every fuzz session passed; each target has a row."""
    assert report.validate(_doc(small_run)) == []
    assert small_run["variants"] == ["direct", "floor", "llmpool"]
    load = small_run["loads"]["3x20"]
    assert len(load["runs"]) == 2
    for run in load["runs"]:
        assert sorted(run["order"]) == ["direct", "floor", "llmpool"]
        assert all(window["lost"] == 0 for window in run["variants"].values())
    fuzz = small_run["fuzz"]
    assert (fuzz["sessions"], fuzz["checked"], fuzz["passed"]) == (12, 12, 12)
    assert fuzz["frames_seen_early"] == 0
    assert fuzz["direct"]["checked"] == 4
    rows = relay_report.targets(small_run)
    assert len(rows) == 3  # CPU per frame (one load), added p99, the gate fuzz
    assert rows[-1]["passed"] is True
    section = "\n".join(relay_report.section(small_run))
    assert "## The realtime relay (`/v1/realtime`)" in section
    assert "### 3 sessions x 20 frames/s" in section


def test_validate_flags_a_lost_frame(small_run: dict[str, Any]) -> None:
    """A frame whose echo never came back makes the results malformed."""
    doc = _doc(small_run)
    doc["scenarios"]["relay"]["loads"]["3x20"]["runs"][1]["variants"]["llmpool"]["lost"] = 2
    assert report.validate(doc) == ["relay/3x20[1]/llmpool: 2 frames without an echo"]


def test_validate_flags_a_failed_fuzz_session(small_run: dict[str, Any]) -> None:
    """A gate session that lost, reordered or leaked a frame is a malformed result, not a miss."""
    doc = _doc(small_run)
    fuzz = doc["scenarios"]["relay"]["fuzz"]
    fuzz["failed"], fuzz["passed"] = 1, 11
    fuzz["failures"] = [{"ok": False, "frames": 3, "out_of_order": 1, "early": 0}]
    [problem] = report.validate(doc)
    assert problem.startswith("relay/fuzz: 1 of 12 sessions failed (12 run)")
    assert relay_report.targets(doc["scenarios"]["relay"])[-1]["passed"] is False


def test_validate_flags_a_window_without_cpu(small_run: dict[str, Any]) -> None:
    doc = _doc(small_run)
    window = doc["scenarios"]["relay"]["loads"]["3x20"]["runs"][0]["variants"]["floor"]
    del window["us_per_frame"]
    assert report.validate(doc) == ["relay/3x20[0]/floor/us_per_frame: not a finite number (None)"]


def test_validate_flags_a_skip_without_a_reason(small_run: dict[str, Any]) -> None:
    doc = _doc(small_run)
    doc["scenarios"]["relay"]["fuzz"] = {"status": "skipped", "reason": ""}
    assert report.validate(doc) == ["relay/fuzz: skipped without a reason"]
