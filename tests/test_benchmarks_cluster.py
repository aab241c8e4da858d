"""The ``cluster`` benchmark scenario: its smoke run is well formed, its analysis counts what
it must from hand-made records, and the checks catch what they must (``benchmarks/cluster.py``,
``benchmarks/cluster_report.py``)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from benchmarks import cluster, cluster_report, clusterproc, report, runner

from llmpool.testing import RecordedRequest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def smoke() -> dict[str, Any]:
    lines: list[str] = []
    result = runner.run_cluster(runner.Settings.for_mode("smoke"), lines.append)
    result["log"] = lines
    return result


def _doc(result: dict[str, Any]) -> dict[str, Any]:
    return {"settings": {}, "machine": {}, "scenarios": {"cluster": copy.deepcopy(result)}}


def test_the_smoke_run_is_well_formed(smoke: dict[str, Any]) -> None:
    """Every instance sent calls that reached the provider; the run, the Redis-kill run and the
    admission latency each have a log line, a target row and a docs section."""
    assert report.validate(_doc(smoke)) == []
    settings = runner.Settings.for_mode("smoke")
    assert list(smoke["runs"]) == list(settings.cluster_variants)
    assert list(smoke["kill"]) == list(settings.cluster_kill)
    assert smoke["litellm"] == {"status": "skipped", "reason": "not run in smoke mode"}
    run = smoke["runs"]["llmpool"]
    assert run["mode"] in ("shared", "split")
    assert [i["index"] for i in run["instances"]] == list(range(settings.cluster_processes))
    assert all(i["provider_requests"] > 0 for i in run["instances"])
    assert run["calls"]["ok"] <= run["provider"]["outcomes"]["ok"]
    assert run["provider"]["tokens"] == sum(i["provider_tokens"] for i in run["instances"])
    assert smoke["kill"]["llmpool"]["kill"]["events"][0].startswith("killed at")
    assert len(smoke["log"]) == 3
    rows = cluster_report.targets(smoke)
    assert len(rows) == 3
    assert rows[-1]["scenario"].startswith("added admission latency")
    section = "\n".join(cluster_report.section(smoke))
    assert "## Several instances, one quota (`cluster`)" in section
    assert "### Redis killed mid-run: llmpool" in section
    assert "### Added admission latency" in section


def test_validate_flags_arrivals_that_do_not_add_up(smoke: dict[str, Any]) -> None:
    doc = _doc(smoke)
    doc["scenarios"]["cluster"]["runs"]["llmpool"]["per_second"]["arrivals"][0] += 1
    assert report.validate(doc) == ["cluster/runs/llmpool: per-second arrivals do not add up"]


def test_validate_flags_a_missing_instance(smoke: dict[str, Any]) -> None:
    doc = _doc(smoke)
    doc["scenarios"]["cluster"]["kill"]["llmpool"]["instances"].pop()
    assert report.validate(doc) == ["cluster/kill/llmpool: 1 instances, not 2"]


def record(at: float, tokens: int, outcome: str = "ok", instance: str = "0") -> RecordedRequest:
    return RecordedRequest(
        method="POST",
        path="/v1/responses",
        headers={clusterproc.INSTANCE_HEADER: instance},
        body=None,
        received_at=at,
        outcome=outcome,
        finished_at=at + 0.1,
        usage_tokens=tokens if outcome == "ok" else None,
    )


def test_goodput_counts_whole_windows_inside_the_run() -> None:
    """One window per second from the start, each wholly inside the run; the binding share
    is the larger of the request and the token shares; errors are not goodput."""
    records = [record(0.5 * k, 100) for k in range(130)]  # 2 per second over 65 s
    records.append(record(10.0, 0, outcome="status:500"))
    result = cluster.goodput(records, start=0.0, end=65.0, rpm=120, tpm=10_000)
    assert result["windows"] == 6
    assert result["requests"] == {"min": 1.0, "median": 1.0, "max": 1.0}
    assert result["tokens"]["min"] == pytest.approx(1.2)
    assert result["quota"]["min"] == pytest.approx(1.2)
    assert cluster.goodput(records[:10], start=0.0, end=5.0, rpm=120, tpm=10_000)["windows"] == 0


def test_analyze_counts_overshoot_at_the_provider() -> None:
    """Peaks over the limits are the overshoot; per-instance counts come from the header."""
    records = [record(k * 0.01, 10, instance=str(k % 2)) for k in range(12)]
    results = [
        {"index": i, "sent": 7, "ok": 6, "errors": {"RateLimitError": 1}, "mode": "split"}
        | {"ok_per_second": [6, 0], "errors_per_second": [1, 0]}
        for i in range(2)
    ]
    spec = {"variant": "llmpool", "rpm": 10, "tpm": 100, "concurrency": 4, "duration": 2.0}
    out = cluster.analyze(records, results, start=0.0, spec=spec)
    assert out["overshoot"] == {"rpm": 2, "tpm": 20, "concurrency": 6}
    assert out["errors"] == {"RateLimitError": 2}
    assert [i["provider_requests"] for i in out["instances"]] == [6, 6]
    assert out["per_second"] == {"arrivals": [12, 0], "ok": [12, 0], "errors": [2, 0]}


def test_request_sizes_average_the_quota() -> None:
    """The two sizes' tokens average the quota's tokens per request, so both limits bind."""
    small, large = clusterproc.sizes(600, 200_000)
    mean = (clusterproc.request_tokens(small) + clusterproc.request_tokens(large)) / 2
    assert mean == pytest.approx(200_000 / 600, abs=1)
    assert small >= clusterproc.ECHOED_WORDS


def test_litellm_settings_use_redis_and_the_deployment_limits() -> None:
    spec = {"variant": "litellm", "base_url": "http://x/v1", "redis_url": "redis://h:7000/0"}
    spec |= {"rpm": 600, "tpm": 200_000, "concurrency": 8}
    kwargs = clusterproc.router_kwargs(spec)
    assert kwargs["routing_strategy"] == "usage-based-routing-v2"
    assert (kwargs["redis_host"], kwargs["redis_port"]) == ("h", 7000)
    params = kwargs["model_list"][0]["litellm_params"]
    assert (params["rpm"], params["tpm"], params["max_parallel_requests"]) == (600, 200_000, 8)
    enforce = clusterproc.router_kwargs({**spec, "variant": "litellm-enforce"})
    assert enforce["optional_pre_call_checks"] == ["enforce_model_rate_limits"]
    assert "routing_strategy" not in enforce
