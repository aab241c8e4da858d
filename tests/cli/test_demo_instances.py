"""``llmpool demo --instances N``: N processes share one quota through Redis.

The end-to-end test runs the command as a subprocess (it starts a real redis-server, the
simulated provider and 2 worker processes) for 3 s of sending at 120 RPM and 2 in flight, so
that both limits bind (0.5-1.5 s per request: ~2 in flight at 2 requests/s); it takes about
10 s. The window arithmetic and the verdict are tested on their own, with no run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from llmpool._cli import main
from llmpool._cli.demo import _cluster
from llmpool._cli.demo._options import ClusterOptions
from llmpool._cli.demo._windows import (
    InstanceReport,
    WindowCheck,
    bucket_allowance,
    most_in_window,
    peak_overlap,
    per_second,
    summarize_cluster,
)

SRC = Path(__file__).resolve().parents[2] / "src"
RUN_TIMEOUT = 60.0  # seconds; the run takes ~10


def run_cluster(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "FORCE_COLOR", "TTY_COMPATIBLE"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "llmpool._cli", "demo", "--instances", *args],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        env=env,
        check=False,
    )


def test_two_instances_share_one_quota() -> None:
    """Every request completes; the table lists each instance and their sum; the provider saw
    exactly the completed requests, never more than the quota or the global cap."""
    done = run_cluster(
        "2", "--callers", "3", "--duration", "3", "--global-concurrency", "2",
        "--latency-min", "0.5", "--latency-max", "1.5",
    )  # fmt: skip
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    rows = {
        m["name"]: (int(m["completed"]), int(m["failed"]), int(m["peak"]))
        for m in re.finditer(
            r"^(?P<name>instance-\d)\s+\d+\s+(?P<completed>\d+)\s+(?P<failed>\d+)\s+(?P<peak>\d+)$",
            out,
            re.MULTILINE,
        )
    }
    assert sorted(rows) == ["instance-1", "instance-2"]
    assert all(completed > 0 and failed == 0 for completed, failed, _ in rows.values())
    total = re.search(r"^total\s+(\d+)\s+(\d+)\s+(\d+)$", out, re.MULTILINE)
    assert total is not None, out
    completed, failed, peak = map(int, total.groups())
    assert completed == sum(row[0] for row in rows.values())
    assert failed == 0
    assert f"the provider saw {completed} requests (ok {completed})" in out
    windows = {
        float(m[1]): (int(m[2]), int(m[3]))
        for m in re.finditer(r"(\d+) s window:\s+(\d+) of (\d+) allowed", out)
    }
    assert sorted(windows) == [1.0, 10.0, 60.0]
    assert windows[60.0][1] == 120
    assert all(most <= allowed for most, allowed in windows.values())
    assert 1 <= peak <= 2
    assert "no overshoot" in out


def test_a_missing_redis_server_is_a_setup_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without redis-server on PATH: exit 2 and one line saying what to install."""
    monkeypatch.setattr(_cluster.shutil, "which", lambda name: None)
    assert main(["demo", "--instances", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "redis-server" in err
    assert "apt-get install redis-server" in err


@pytest.mark.parametrize("flag", [["--json"], ["--via-server"], ["--base-url", "http://x/v1"]])
def test_instances_refuse_what_they_cannot_do(
    flag: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """--instances runs on the simulated provider, with its own report: a usage error."""
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--instances", "2", *flag])
    assert exc.value.code == 2
    assert f"drop {flag[0]}" in capsys.readouterr().err


def test_the_bucket_bound_is_the_quota_over_a_minute() -> None:
    """c + r·(W + margin) is the limit for W = 60 s, and c + a little for a short window."""
    assert bucket_allowance(120, 60.0, burst=1.0, margin=0.25) == pytest.approx(120)
    # c = 2, r = 118 / 60.25 per second
    assert bucket_allowance(120, 1.0, burst=1.0, margin=0.25) == pytest.approx(2 + 118 / 48.2)


@pytest.mark.parametrize(
    ("times", "width", "most"),
    [
        ([], 1.0, 0),
        ([0.0, 0.5, 1.0, 1.01], 1.0, 3),
        ([0.0, 0.5, 1.0, 1.01], 0.5, 2),
        ([3.0, 0.0, 2.0, 1.0], 10.0, 4),
    ],
    ids=["empty", "closed-window", "narrow", "unsorted"],
)
def test_most_in_window(times: list[float], width: float, most: int) -> None:
    """The most times in any closed window [t, t + width]."""
    assert most_in_window(times, width) == most


def test_per_second_counts_each_second_from_the_start() -> None:
    """Bins of one second from the start to the end, empty ones included."""
    assert per_second([10.1, 10.9, 12.5], 10.0, 13.2) == (2, 0, 1, 0)


def test_peak_overlap_counts_intervals_open_at_once() -> None:
    """One ending as another starts is not an overlap."""
    assert peak_overlap([(0.0, 1.0), (1.0, 2.0)]) == 1
    assert peak_overlap([(0.0, 2.0), (0.5, 1.0), (0.9, 3.0)]) == 3
    assert peak_overlap([]) == 0


def _summary(arrivals: list[float], *, failed: int = 0, concurrency: int = 4) -> bool:
    options = ClusterOptions(instances=1, rpm=120, concurrency=concurrency)
    report = InstanceReport(
        "instance-1", 1, completed=len(arrivals), failed=failed,
        attempts=tuple((t, t + 0.5) for t in arrivals),
    )  # fmt: skip
    return summarize_cluster(
        options,
        redis_url="redis://127.0.0.1:1/0",
        instances=[report],
        arrivals=arrivals,
        outcomes={"ok": len(arrivals)},
        start=0.0,
        end=max(arrivals, default=0.0) + 1.0,
        burst=1.0,
        margin=0.25,
    ).ok


def test_the_verdict() -> None:
    """ok: every request completed, every window within its bound, the cap kept."""
    steady = [i * 0.5 for i in range(20)]  # 2 per second, 1 in flight
    assert _summary(steady)
    assert not _summary(steady, failed=1)
    assert not _summary([0.0, 0.1, 0.2, 0.3, 0.4])  # 5 in one second: over the bucket's bound
    assert not _summary(steady, concurrency=0)  # 1 in flight, cap 0: over the cap


def test_a_window_check_compares_the_count_with_the_bounds_floor() -> None:
    """4.45 allowed admits 4, not 5."""
    assert WindowCheck(1.0, 4, 4.45).ok
    assert not WindowCheck(1.0, 5, 4.45).ok
