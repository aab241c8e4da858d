"""The orchestrator: one upstream process for the whole run, one client process per measurement.

The upstream is pinned to one core and every client process to another
(``os.sched_setaffinity``), so the client's CPU time is its own. Throughput runs are
interleaved (for each repeat, every cell, every variant, in an order that changes per repeat)
so slow drift of the machine bills all variants alike; medians are taken over repeats, and
ratios to ``raw`` come from the same run. The ``overhead`` scenario needs no upstream: one
client process per backend runs its own interleaved A/B (see ``overhead.py``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import cluster_report, relay_report, ws_report
from .clients import VARIANTS, litellm_available
from .design import balanced_order

ROOT = Path(__file__).resolve().parent.parent  # subprocesses run here: `-m benchmarks.*`

SCENARIOS = (
    "throughput",
    "overhead",
    "scheduler",
    "memory",
    "storm",
    "hintless",
    "priority",
    "ws",
    "relay",
    "cluster",
)
"""Scenario names, in run order (``--scenario NAME`` picks some)."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """How long and how wide a run is (``smoke``, ``quick`` or ``full``)."""

    mode: str
    repeats: int
    warmup: float  # seconds before a throughput window opens
    duration: float  # seconds of a throughput window
    concurrencies: tuple[int, ...]
    latencies_ms: tuple[int, ...]
    variants: tuple[str, ...]
    scheduler_ops: int
    queued: int  # requests queued for the memory measurement
    storm_seconds: float
    storm_modes: tuple[str, ...]
    priority_seconds: float
    hintless_seconds: float = 5.0  # the hintless 429 storm's length
    hintless_callers: int = 30
    overhead_alternations: int = 30  # A/B rounds of the overhead scenario
    overhead_batch_seconds: float = 0.12  # CPU seconds of its slowest variant's batch
    overhead_warmup: int = 100  # requests per variant before calibration
    overhead_concurrencies: tuple[int, ...] = (1, 16)
    overhead_backends: tuple[str, ...] = ("asyncio", "trio")
    ws_repeats: int = 15  # interleaved CPU windows per variant (the ws scenario)
    ws_clients: int = 8  # concurrent conversations of a CPU window
    ws_turns: int = 10  # turns per conversation
    ws_chunks: int = 40  # text deltas per streamed turn
    ws_burst: int = 100  # sessions sending at the same moment (first-chunk latency)
    ws_rounds: int = 20
    ws_ttft_ms: int = 200  # the paced upstream of the latency rounds: first event after
    ws_interval_ms: int = 20  # ... then one every 20 ms
    ws_idle: int = 1000  # idle sockets, each on its own session (RSS)
    ws_litellm: bool = True
    relay_loads: tuple[tuple[int, int], ...] = ((20, 50), (100, 50))  # (sessions, frames/s)
    relay_audio_bytes: int = 960  # 20 ms of 24 kHz 16-bit mono audio per append
    relay_rounds: int = 15  # interleaved rounds (each: every load, every variant)
    relay_seconds: float = 3.0  # a steady window
    relay_warm: float = 0.5  # seconds at the rate before the window opens
    relay_fuzz_sessions: int = 10_000  # readiness-gate fuzz sessions through llmpool
    relay_fuzz_concurrency: int = 50
    relay_fuzz_early: int = 64  # frames sent before session.created, at most
    relay_fuzz_after: int = 8  # frames sent after it, at most
    relay_fuzz_direct: int = 200  # the control: the same sessions, direct to the upstream
    cluster_processes: int = 3  # app instances sharing one quota (the cluster scenario)
    cluster_callers: int = 64  # callers per instance
    cluster_offered: float = 5.0  # all callers together offer this many times the quota
    cluster_rpm: int = 600
    cluster_tpm: int = 200_000
    cluster_concurrency: int = 8  # requests in flight at the provider, at most
    cluster_seconds: float = 120.0  # one run; 60 s windows wholly inside it are judged
    cluster_latency: tuple[float, float] = (0.05, 0.15)  # the provider's service time, s
    cluster_variants: tuple[str, ...] = ("llmpool", "litellm", "litellm-enforce")
    cluster_kill: tuple[str, ...] = ("llmpool", "litellm")  # runs with Redis killed mid-run
    cluster_kill_at: float = 40.0  # seconds into the run
    cluster_back_at: float = 55.0
    cluster_latency_rounds: int = 20  # admission latency: interleaved rounds
    cluster_latency_requests: int = 50  # sequential calls per manager per round

    @classmethod
    def for_mode(cls, mode: str) -> Settings:
        if mode == "smoke":
            return cls(
                mode="smoke",
                repeats=1,
                warmup=0.1,
                duration=0.4,
                concurrencies=(4,),
                latencies_ms=(0,),
                variants=("raw", "llmpool"),
                scheduler_ops=50,
                queued=1000,
                storm_seconds=2.0,
                storm_modes=("configured",),
                priority_seconds=1.0,
                hintless_seconds=1.0,
                hintless_callers=10,
                overhead_alternations=2,
                overhead_batch_seconds=0.0,  # one request (C per concurrent batch)
                overhead_warmup=2,
                overhead_concurrencies=(1, 4),
                ws_repeats=1,
                ws_clients=2,
                ws_turns=2,
                ws_chunks=5,
                ws_burst=10,
                ws_rounds=1,
                ws_ttft_ms=0,  # no paced processes: a few seconds
                ws_interval_ms=0,
                ws_idle=20,
                ws_litellm=False,
                relay_loads=((4, 20),),
                relay_rounds=1,
                relay_seconds=0.3,
                relay_warm=0.1,
                relay_fuzz_sessions=30,
                relay_fuzz_direct=10,
                cluster_processes=2,
                cluster_callers=4,
                cluster_seconds=2.0,
                cluster_variants=("llmpool",),
                cluster_kill=("llmpool",),
                cluster_kill_at=0.7,
                cluster_back_at=1.3,
                cluster_latency_rounds=2,
                cluster_latency_requests=10,
            )
        if mode == "quick":
            return cls(
                mode="quick",
                repeats=1,
                warmup=0.5,
                duration=1.5,
                concurrencies=(16, 64),
                latencies_ms=(0, 50),
                variants=VARIANTS,
                scheduler_ops=500,
                queued=100_000,
                storm_seconds=10.0,
                storm_modes=("configured", "learned"),
                priority_seconds=5.0,
                overhead_alternations=20,
                overhead_batch_seconds=0.08,
                ws_repeats=9,  # the fewest with a 95 % interval narrower than the range
                ws_rounds=10,
                relay_rounds=9,
                relay_seconds=2.0,
                cluster_seconds=70.0,  # at least one whole 60 s window
                cluster_variants=("llmpool", "litellm"),
                cluster_kill=("llmpool",),
                cluster_kill_at=25.0,
                cluster_back_at=35.0,
                cluster_latency_rounds=10,
            )
        return cls(
            mode="full",
            repeats=5,
            warmup=0.5,
            duration=1.5,
            concurrencies=(16, 64),
            latencies_ms=(0, 50),
            variants=VARIANTS,
            scheduler_ops=1000,
            queued=100_000,
            storm_seconds=60.0,
            storm_modes=("configured", "learned"),
            priority_seconds=10.0,
        )


def cores() -> tuple[int | None, int | None]:
    """(upstream core, client core): two different cores when there are two, else no pinning."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return None, None
    return available[0], available[-1]


@contextmanager
def upstream(cpu: int | None) -> Iterator[str]:
    """Start ``benchmarks.server`` in its own process; yield its root URL."""
    command = [sys.executable, "-m", "benchmarks.server", "--port", "0"]
    if cpu is not None:
        command += ["--cpu", str(cpu)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("READY "):
            raise RuntimeError(f"the benchmark upstream did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement in a fresh client process and return its JSON result."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=ROOT,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"benchmark worker failed ({spec['kind']}, {spec.get('variant', '')}):\n"
            f"{done.stderr[-3000:]}"
        )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _cell_key(api: str, concurrency: int, latency_ms: int) -> str:
    return f"{api} C={concurrency} latency={latency_ms}ms"


def run_throughput(
    settings: Settings, root: str, client_cpu: int | None, log: Any
) -> dict[str, Any]:
    """The client comparison matrix: variants x (JSON, stream) x concurrency x latency."""
    variants = [v for v in settings.variants if v != "litellm" or litellm_available()]
    skipped = [v for v in settings.variants if v not in variants]
    cells = [
        (api, concurrency, latency)
        for latency in settings.latencies_ms
        for concurrency in settings.concurrencies
        for api in ("json", "stream")
    ]
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {
        _cell_key(*cell): {v: [] for v in variants} for cell in cells
    }
    for repeat in range(settings.repeats):
        # A new order per repeat (a balanced Latin square's row): the first variant of a cell
        # must not always be the same one (it meets the server's warm-up and the machine's
        # drift first), nor one variant always run right after another.
        order = balanced_order(variants, repeat)
        for api, concurrency, latency in cells:
            for variant in order:
                spec = {
                    "kind": "load",
                    "variant": variant,
                    "server": root,
                    "latency_ms": latency,
                    "concurrency": concurrency,
                    "stream": api == "stream",
                    "warmup": settings.warmup,
                    "duration": settings.duration,
                    "cpu": client_cpu,
                }
                result = measure(spec)
                raw[_cell_key(api, concurrency, latency)][variant].append(result)
                log(
                    f"  [{repeat + 1}/{settings.repeats}] {_cell_key(api, concurrency, latency)}"
                    f" {variant:12s} {result['rps']:8.1f} req/s"
                    f" {result['cpu_ms_per_request']:6.3f} ms CPU/req"
                )
    cells_out: dict[str, Any] = {}
    for (api, concurrency, latency), key in zip(cells, raw, strict=True):
        medians = {v: summarize(runs) for v, runs in raw[key].items()}
        base = medians.get("raw")
        for summary in medians.values():
            if base is not None:
                summary["rps_vs_raw"] = summary["rps"] / base["rps"]
                summary["cpu_vs_raw"] = summary["cpu_ms_per_request"] / base["cpu_ms_per_request"]
        cells_out[key] = {
            "api": api,
            "concurrency": concurrency,
            "latency_ms": latency,
            "median": medians,
            "runs": raw[key],
        }
    return {
        "variants": variants,
        "skipped": {v: "litellm is not installed (make bench installs it)" for v in skipped},
        "cells": cells_out,
    }


def run_overhead(settings: Settings, client_cpu: int | None, log: Any) -> dict[str, Any]:
    """llmpool's added CPU per request over the raw SDK: one client process per backend."""
    runs: dict[str, Any] = {}
    for backend in settings.overhead_backends:
        result = runs[backend] = measure(
            {
                "kind": "overhead",
                "backend": backend,
                "alternations": settings.overhead_alternations,
                "batch_seconds": settings.overhead_batch_seconds,
                "warmup_requests": settings.overhead_warmup,
                "concurrencies": list(settings.overhead_concurrencies),
                "cpu": client_cpu,
            }
        )
        for key, cell in result["cells"].items():
            added = cell["added_us"]
            share = cell.get("fraction")
            log(
                f"  overhead {backend} {key:22s} sdk {cell['sdk_us']['median']:7.1f} µs,"
                f" llmpool {added['median']:+7.1f} µs [{added['lo']:.1f}, {added['hi']:.1f}]"
                + ("" if share is None else f" = {share['median']:.1%} of the SDK's own")
            )
    return {"runs": runs}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over repeats of one variant in one cell."""

    def median(get: Any) -> float:
        return float(statistics.median(get(run) for run in runs))

    return {
        "rps": median(lambda r: r["rps"]),
        "cpu_ms_per_request": median(lambda r: r["cpu_ms_per_request"]),
        "latency_ms": {p: median(lambda r, p=p: r["latency_ms"][p]) for p in ("p50", "p95", "p99")},
        "server_cpu_ms_per_request": median(lambda r: r["server_cpu_ms_per_request"]),
        "errors": sum(sum(r["errors"].values()) for r in runs),
        "repeats": len(runs),
    }


def run_ws(
    settings: Settings, root: str, load_cpu: int | None, measured_cpu: int | None, log: Any
) -> dict[str, Any]:
    """llmpool.server against the SDK alone, a bare relay and LiteLLM's proxy (``ws.py``)."""
    import importlib.util

    skip = ""
    if not settings.ws_litellm:
        skip = f"not run in {settings.mode} mode (its proxy takes ~15 s to start)"
    elif importlib.util.find_spec("litellm") is None:
        skip = "litellm is not installed (make bench installs it)"
    elif importlib.util.find_spec("fastapi") is None:
        skip = "its proxy needs fastapi and more (benchmarks/litellm-deps.txt), not installed"
    result = measure(
        {
            "kind": "ws",
            "server": root,
            "repeats": settings.ws_repeats,
            "clients": settings.ws_clients,
            "turns": settings.ws_turns,
            "chunks": settings.ws_chunks,
            "burst": settings.ws_burst,
            "rounds": settings.ws_rounds,
            "ttft_ms": settings.ws_ttft_ms,
            "interval_ms": settings.ws_interval_ms,
            "idle": settings.ws_idle,
            "fresh_idle": settings.mode != "smoke",  # smoke: no fresh processes for the RSS
            "litellm_skip": skip,
            "cpu": load_cpu,  # the load generator shares the upstream's core
            "measured_cpu": measured_cpu,  # each measured process alone on the other
        }
    )
    for line in ws_report.summary(result):
        log("  " + line)
    return result


def run_relay(
    settings: Settings, load_cpu: int | None, measured_cpu: int | None, log: Any
) -> dict[str, Any]:
    """The realtime relay against direct sessions and a bare relay (``relay.py``)."""
    result = measure(
        {
            "kind": "relay",
            "loads": [list(load) for load in settings.relay_loads],
            "audio_bytes": settings.relay_audio_bytes,
            "rounds": settings.relay_rounds,
            "seconds": settings.relay_seconds,
            "warm": settings.relay_warm,
            "fuzz_sessions": settings.relay_fuzz_sessions,
            "fuzz_concurrency": settings.relay_fuzz_concurrency,
            "fuzz_early": settings.relay_fuzz_early,
            "fuzz_after": settings.relay_fuzz_after,
            "fuzz_direct": settings.relay_fuzz_direct,
            "cpu": load_cpu,  # the load generator shares the upstream's core
            "measured_cpu": measured_cpu,  # each relay alone on the other
        }
    )
    for line in relay_report.summary(result):
        log("  " + line)
    return result


def run_cluster(settings: Settings, log: Any) -> dict[str, Any]:
    """Instances sharing one quota, counted at the provider; LiteLLM beside (``cluster.py``)."""
    base = {
        "kind": "cluster",
        "processes": settings.cluster_processes,
        "callers": settings.cluster_callers,
        "offered_factor": settings.cluster_offered,
        "rpm": settings.cluster_rpm,
        "tpm": settings.cluster_tpm,
        "concurrency": settings.cluster_concurrency,
        "duration": settings.cluster_seconds,
        "latency_min": settings.cluster_latency[0],
        "latency_max": settings.cluster_latency[1],
    }
    litellm: dict[str, Any] = {"status": "measured"}
    wanted = settings.cluster_variants + settings.cluster_kill
    if not any(v.startswith("litellm") for v in wanted):
        litellm = {"status": "skipped", "reason": f"not run in {settings.mode} mode"}
    elif not litellm_available():
        litellm = {
            "status": "skipped",
            "reason": "litellm is not installed (make bench installs it)",
        }

    def runnable(variants: tuple[str, ...]) -> list[str]:
        return [
            v for v in variants if not v.startswith("litellm") or litellm["status"] == "measured"
        ]

    out: dict[str, Any] = {"runs": {}, "kill": {}, "litellm": litellm}
    for variant in runnable(settings.cluster_variants):
        result = out["runs"][variant] = measure({**base, "variant": variant, "mode": "load"})
        log("  " + cluster_report.run_line(result))
    for variant in runnable(settings.cluster_kill):
        spec = {**base, "variant": variant, "mode": "kill"}
        seconds = settings.cluster_seconds  # a shorter --cluster-seconds moves the outage in
        spec.update(
            kill_at=min(settings.cluster_kill_at, 0.35 * seconds),
            back_at=min(settings.cluster_back_at, 0.65 * seconds),
        )
        result = out["kill"][variant] = measure(spec)
        log("  " + cluster_report.run_line(result))
    result = out["latency"] = measure(
        {
            **base,
            "variant": "latency",
            "mode": "latency",
            "latency_rounds": settings.cluster_latency_rounds,
            "latency_requests": settings.cluster_latency_requests,
            "latency_warmup": 20,
        }
    )
    log("  " + cluster_report.latency_line(result))
    return out


def run_all(settings: Settings, scenarios: tuple[str, ...], log: Any = print) -> dict[str, Any]:
    """Run ``scenarios`` with ``settings``; returns the results document (see ``report.py``)."""
    server_cpu, client_cpu = cores()
    started = time.time()
    out: dict[str, Any] = {
        "settings": dataclasses.asdict(settings),
        "machine": machine_info(server_cpu, client_cpu),
        "scenarios": {},
    }
    with upstream(server_cpu) as root:
        for name in scenarios:
            log(f"scenario {name} ...")
            t0 = time.perf_counter()
            result = _run_one(name, settings, root, client_cpu, log)
            result["elapsed_seconds"] = time.perf_counter() - t0
            out["scenarios"][name] = result
    out["machine"]["loadavg_after"] = os.getloadavg()
    out["elapsed_seconds"] = out["machine"]["elapsed_seconds"] = time.time() - started
    return out


def _run_one(
    name: str, settings: Settings, root: str, client_cpu: int | None, log: Any
) -> dict[str, Any]:
    if name == "throughput":
        return run_throughput(settings, root, client_cpu, log)
    if name == "overhead":
        return run_overhead(settings, client_cpu, log)
    if name == "scheduler":
        return measure(
            {
                "kind": "scheduler",
                "tasks": 64,
                "limit": 4,
                "ops": settings.scheduler_ops,
                "repeats": max(3, settings.repeats * 2) if settings.mode != "smoke" else 1,
                "cpu": client_cpu,
            }
        )
    if name == "memory":
        return measure({"kind": "memory", "queued": settings.queued, "cpu": client_cpu})
    if name == "storm":
        import llmpool

        has_policy = hasattr(llmpool, "RateLimitPolicy")
        modes = settings.storm_modes if has_policy else ("retries-only",)
        runs = {}
        for mode in modes:
            runs[mode] = measure(
                {
                    "kind": "storm",
                    "mode": mode,
                    "server": root,
                    "rpm": 600,
                    "burst": 10,
                    "overload": 3.0,
                    "latency_ms": 20,
                    "concurrency": 16,
                    "duration": settings.storm_seconds,
                    "cpu": client_cpu,
                }
            )
            r = runs[mode]
            log(
                f"  storm {mode}: goodput {r['goodput_vs_quota']:.1%} of quota,"
                f" 429s {r['share_429']:.1%} of calls, lost {r['lost']}"
            )
        return {"rate_limit_policy": has_policy, "runs": runs}
    if name == "hintless":
        runs = {}
        for variant in ("llmpool", "llmpool-no-breaker", "raw-sdk"):
            r = runs[variant] = measure(
                {
                    "kind": "hintless",
                    "variant": variant,
                    "callers": settings.hintless_callers,
                    "storm": settings.hintless_seconds,
                    "latency_ms": 20,
                    "concurrency": 10,
                    "cpu": client_cpu,
                }
            )
            log(
                f"  hintless {variant}: {r['requests_during_storm']} requests during the storm,"
                f" {r['succeeded']}/{r['callers']} succeeded,"
                f" last done {r['last_done_seconds']:.1f}s"
            )
        return {"runs": runs}
    if name == "ws":
        return run_ws(settings, root, cores()[0], client_cpu, log)
    if name == "relay":
        return run_relay(settings, cores()[0], client_cpu, log)
    if name == "cluster":
        return run_cluster(settings, log)
    if name == "priority":
        return measure(
            {
                "kind": "priority",
                "server": root,
                "latency_ms": 50,
                "concurrency": 4,
                "overload": 1.25,
                "duration": settings.priority_seconds,
                "cpu": client_cpu,
            }
        )
    raise ValueError(f"unknown scenario {name!r}; expected one of {SCENARIOS}")


def machine_info(server_cpu: int | None, client_cpu: int | None) -> dict[str, Any]:
    """Hardware, software versions and load: enough to judge whether two runs compare."""
    import importlib.metadata as md
    import platform

    def version(name: str) -> str | None:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return None

    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    packages = ["llmpool", "openai", "httpx2", "anyio", "tenacity", "pydantic"]
    packages += ["litellm", "uvicorn", "uvloop", "httptools"]
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "server_core": server_cpu,
        "client_core": client_cpu,
        "loadavg_before": os.getloadavg(),
        "versions": {name: version(name) for name in packages},
        "git": _git_revision(),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _git_revision() -> str | None:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "src"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty-src" if dirty else "")
