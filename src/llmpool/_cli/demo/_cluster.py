"""``llmpool demo --instances N``: N processes, one quota on Redis, and what the provider saw.

The parent starts a local Redis (``llmpool.testing.RedisServer``) and one simulated provider
(no faults, only latency), then N worker processes (``_instance``, the same interpreter), each
with its own ``ConnectionManager`` on ``RedisState(...).stores()``: one RPM/TPM budget and one
global concurrency cap for all of them. When every worker is ready the parent sends them one
end instant; their callers send until then, the queued requests finish, each worker prints its
report. The parent prints a table per instance and in all, then the provider's view: the most
arrivals in any sliding 1, 10 and 60 s window against the shared buckets' bound (the quota for
60 s), the arrivals of each second, and the most attempts in flight at once (timed at the
instances' HTTP transports: the provider does not record when it answered). Exit status 0 only
if every request completed and nothing went over. Above ``_options``, ``_windows`` and
``_instance`` (which it runs as a module, never imports); imports rich when it runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final

import llmpool
from llmpool import RateLimitPolicy
from llmpool._cli._command import SetupError
from llmpool._extras import require

from ._options import SIMULATOR_API_KEY, ClusterOptions
from ._windows import ClusterSummary, InstanceReport, peak_overlap, summarize_cluster

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["FEATURE", "INSTANCE_MODULE", "run_cluster"]

FEATURE: Final = "llmpool demo --instances"
"""How ``--instances`` names itself in a missing extra's message."""
INSTANCE_MODULE: Final = "llmpool._cli.demo._instance"
"""The module each worker process runs (``python -m``)."""
_READY_TIMEOUT: Final = 60.0  # seconds for every worker to import llmpool and open Redis
_DRAIN_TIMEOUT: Final = 120.0  # seconds after the end for the queued requests to finish
_NO_REDIS: Final = (
    "--instances needs redis-server on PATH: install the 'redis-server' package "
    "(Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis)"
)


def run_cluster(options: ClusterOptions) -> int:
    """Run ``--instances`` and print its report.

    Returns:
        0 if every request of every instance completed and the provider saw no overshoot,
        1 otherwise.

    Raises:
        MissingExtraError: rich, the simulated provider's Starlette or uvicorn (the ``demo``
            extra), coredis (the ``redis`` extra) or trio for ``backend="trio"`` is missing.
        SetupError: redis-server is not on PATH.
    """
    require("rich", "demo", feature=FEATURE)
    require("starlette", "demo", feature=FEATURE)
    require("uvicorn", "demo", feature=FEATURE)
    require("coredis", "redis", feature=FEATURE)
    if options.backend == "trio":
        require("trio", None, feature=f"{FEATURE} --backend trio")
    if shutil.which("redis-server") is None:
        raise SetupError(_NO_REDIS)
    from llmpool.redis import SharedBudgetPolicy
    from llmpool.testing import FaultPlan, RedisServer, SimulatedProvider

    from . import _report as report  # rich's console, as the demo's

    console = report.make_console()
    plan = FaultPlan(
        latency_min=options.latency_min, latency_max=options.latency_max, seed=options.seed
    )
    with RedisServer() as redis, SimulatedProvider(plan, api_key=SIMULATOR_API_KEY) as sim:
        _print_header(console, options, redis.url)
        workers = [_spawn(options, n, redis.url, sim.base_url) for n in range(options.instances)]
        try:
            ready = [_ready(worker) for worker in workers]
            start = time.monotonic()
            end = start + options.duration
            console.print(
                f"{options.instances} instances ready (pids "
                f"{', '.join(str(pid) for pid in ready)}); sending for {options.duration:g} s…\n"
            )
            for worker in workers:
                _send(worker.stdin, {"end": end})
            reports = [
                _collect(worker, name) for worker, name in zip(workers, options.names, strict=True)
            ]
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.kill()
                    worker.wait()
        seen = sim.requests
        summary = summarize_cluster(
            options,
            redis_url=redis.url,
            instances=reports,
            arrivals=[r.received_at for r in seen],
            outcomes=Counter(r.outcome for r in seen),
            start=start,
            end=time.monotonic(),
            burst=RateLimitPolicy().burst,
            margin=SharedBudgetPolicy().window_margin,
        )
    _print_report(console, summary)
    return 0 if summary.ok else 1


def _spawn(
    options: ClusterOptions, index: int, redis_url: str, base_url: str
) -> subprocess.Popen[str]:
    spec = {
        "options": asdict(options),
        "index": index + 1,
        "redis_url": redis_url,
        "base_url": base_url,
        "api_key": SIMULATOR_API_KEY,
    }
    # The workers import this very llmpool, wherever the interpreter would find another.
    here = str(Path(llmpool.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
    return subprocess.Popen(
        [sys.executable, "-m", INSTANCE_MODULE, json.dumps(spec)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
    )


def _send(stream: IO[str] | None, line: dict[str, float]) -> None:
    assert stream is not None
    stream.write(json.dumps(line) + "\n")
    stream.flush()


def _ready(worker: subprocess.Popen[str]) -> int:
    """The worker's pid once it says it is ready; ``SetupError`` if it died first."""
    assert worker.stdout is not None
    line = worker.stdout.readline()  # its first line; it exits (empty line) if it fails
    if not line:
        worker.wait(_READY_TIMEOUT)
        raise SetupError(
            f"an instance exited with status {worker.returncode} before it was ready "
            "(its error is above)"
        )
    return int(json.loads(line)["ready"])


def _collect(worker: subprocess.Popen[str], name: str) -> InstanceReport:
    try:
        out, _ = worker.communicate(timeout=_DRAIN_TIMEOUT)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()
        return InstanceReport(name, worker.pid, exit_status=None, problem="timed out")
    lines = out.strip().splitlines()
    if not lines:
        problem = f"exited with status {worker.returncode}, no report"
        return InstanceReport(name, worker.pid, exit_status=worker.returncode, problem=problem)
    return InstanceReport.from_json(name, json.loads(lines[-1]), worker.returncode)


def _print_header(console: Console, options: ClusterOptions, redis_url: str) -> None:
    console.print(
        f"llmpool demo --instances {options.instances}: {options.instances} processes, "
        f"one quota on {redis_url}"
    )
    console.print(
        f"  quota: {options.rpm} RPM, {options.tpm:,} TPM, {options.concurrency} in flight, "
        "all instances together"
    )
    console.print(
        f"  offered: {options.instances} x {options.callers} callers, back to back, "
        f"for {options.duration:g} s ({options.backend})"
    )
    console.print(
        f"  provider: simulated, {options.latency_min:g}-{options.latency_max:g} s "
        "per request, no faults"
    )


def _print_report(console: Console, summary: ClusterSummary) -> None:
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column in ("instance", "pid", "completed", "failed", "peak in flight"):
        table.add_column(column, justify="left" if column == "instance" else "right")
    for i in summary.instances:
        failed = str(i.failed) if i.problem is None else f"{i.failed} ({i.problem})"
        table.add_row(i.name, str(i.pid), str(i.completed), failed, str(peak_overlap(i.attempts)))
    table.add_section()
    table.add_row(
        "total", "", str(summary.completed), str(summary.failed), str(summary.peak_in_flight)
    )
    console.print(table)
    for i in summary.instances:
        if i.errors:
            errors = ", ".join(f"{kind} {count}" for kind, count in i.errors.items())
            console.print(f"{i.name} failures: {errors}")
    outcomes = ", ".join(f"{k} {v}" for k, v in summary.outcomes.items()) or "none"
    console.print(f"\nthe provider saw {summary.arrivals} requests ({outcomes})")
    options = summary.options
    console.print("  most requests in any sliding window:")
    for w in summary.windows:
        bound = "the quota" if w.seconds == 60 else "the shared bucket's bound"
        verdict = "ok" if w.ok else "OVERSHOOT"
        console.print(
            f"    {w.seconds:>4g} s window: {w.most:>4} of {int(w.allowed + 1e-9)} allowed "
            f"({bound}) {verdict}"
        )
    if summary.elapsed < 60:
        console.print(f"    (the run took {summary.elapsed:.1f} s: one 60 s window holds it all)")
    console.print("  arrivals per second:")
    for row in range(0, len(summary.per_second), 10):
        counts = " ".join(f"{n:>2}" for n in summary.per_second[row : row + 10])
        console.print(f"    {row:>3} s  {counts}")
    cap = "ok" if summary.peak_in_flight <= options.concurrency else "OVERSHOOT"
    console.print(
        f"  peak in flight: {summary.peak_in_flight} of {options.concurrency} allowed {cap} "
        "(timed by the instances)"
    )
    if summary.ok:
        console.print(
            f"\nAll {summary.completed} requests completed; no window over its bound, no overshoot."
        )
    elif summary.overshoot:
        console.print("\nFAILED: the provider saw more than the quota allows (above).")
    else:
        console.print(
            f"\nFAILED: {summary.failed} request(s) failed, or an instance did not report."
        )
