"""The ``cluster`` scenario: several app instances, one quota, counted at the provider.

One run (``run(spec)``, in a ``benchmarks.worker`` process of its own) starts a fresh
``llmpool.testing.RedisServer`` and a ``SimulatedProvider`` (latency between ``latency_min``
and ``latency_max``, so calls overlap; no limit of its own: it counts, it does not refuse),
then ``processes`` instances (``benchmarks/clusterproc.py``), each with ``callers`` callers,
together offering ``offered_factor`` x the quota (``rpm`` requests and ``tpm`` tokens per
minute, ``concurrency`` in flight) for ``duration`` seconds, all starting at one moment. The
provider's records then say what the instances together sent:

- peaks: the most requests and tokens (``usage_tokens``: the usage the provider returned,
  equal to each call's estimate by construction, see ``clusterproc.sizes``) arriving in any
  sliding 60 s window, and the most requests in flight (``llmpool.testing.window_peaks``);
  overshoot = max(0, peak - limit);
- goodput: the requests answered ``ok`` arriving in each 60 s window that lies wholly inside
  the run (one per second), against the quota; the share of the binding limit (the larger of
  the request and the token share) is the figure judged;
- each instance's calls, successes and errors (by exception type) at its callers, and its
  requests at the provider (``x-bench-instance``), per second too.

``mode: kill`` kills Redis (SIGKILL) ``kill_at`` seconds into the run and restarts it, empty,
on the same port at ``back_at``; ``mode: latency`` runs one process of sequential calls
through an in-memory and a Redis-backed manager (``clusterproc.run_latency``).
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from llmpool.testing import (
    FaultPlan,
    RecordedRequest,
    RedisServer,
    SimulatedProvider,
    window_peaks,
)

from .clusterproc import INSTANCE_HEADER, request_tokens, sizes
from .design import median_interval

ROOT = Path(__file__).resolve().parent.parent
WINDOW = 60.0  # seconds: the quota's window
READY_TIMEOUT = 120.0  # seconds for every instance to import and open its client
START_DELAY = 0.5  # seconds between the last "ready" and the common start
RESULT_GRACE = 60.0  # seconds after the run's end for an instance to report
PATHS = ("/v1/responses", "/v1/chat/completions")


class Instance:
    """One ``clusterproc`` process and its control pipe."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.index = int(spec["index"])
        self.log = tempfile.TemporaryFile("w+")  # noqa: SIM115  closed by close()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.clusterproc", json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            cwd=ROOT,
        )

    def read(self, timeout: float) -> dict[str, Any]:
        """The next JSON line, within ``timeout`` seconds."""
        assert self.process.stdout is not None
        box: list[str] = []
        reader = threading.Thread(target=lambda: box.append(self.process.stdout.readline()))  # type: ignore[union-attr]
        reader.daemon = True
        reader.start()
        reader.join(timeout)
        if not box or not box[0]:
            state = self.process.poll()
            raise RuntimeError(
                f"cluster instance {self.index} "
                f"({'silent' if state is None else f'exited {state}'}): {self.tail()}"
            )
        data: dict[str, Any] = json.loads(box[0])
        return data

    def write(self, payload: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(payload) + "\n")
        self.process.stdin.flush()

    def tail(self, chars: int = 3000) -> str:
        self.log.seek(0)
        return self.log.read()[-chars:]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout, self.log):
            if pipe is not None:
                pipe.close()


def instance_spec(
    spec: dict[str, Any], index: int, base_url: str, redis_url: str
) -> dict[str, Any]:
    keys = ("variant", "processes", "callers", "rpm", "tpm", "concurrency", "offered_factor")
    keys += ("duration", "latency_rounds", "latency_requests", "latency_warmup")
    out = {key: spec[key] for key in keys if key in spec}
    return {
        **out,
        "index": index,
        "base_url": base_url,
        "redis_url": redis_url,
        "prefix": f"bench-{spec['variant']}",
        "local_concurrency": spec["callers"],
    }


def _redis_outage(redis: RedisServer, start: float, kill_at: float, back_at: float) -> list[str]:
    """Kill Redis at ``start + kill_at``, restart it at ``start + back_at``; what happened."""
    events: list[str] = []
    time.sleep(max(0.0, start + kill_at - time.monotonic()))
    redis.kill()
    events.append(f"killed at {time.monotonic() - start:.3f} s")
    time.sleep(max(0.0, start + back_at - time.monotonic()))
    redis.restart()
    events.append(f"back at {time.monotonic() - start:.3f} s")
    return events


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """The worker's entry point (``kind: cluster``): one variant, one mode."""
    mode = spec.get("mode", "load")
    processes = 1 if mode == "latency" else int(spec["processes"])
    plan = FaultPlan(latency_min=spec["latency_min"], latency_max=spec["latency_max"], seed=1)
    if mode == "latency":
        plan = FaultPlan()
    with RedisServer() as redis, SimulatedProvider(plan, name="cluster") as sim:
        instances = [
            Instance(instance_spec(spec, i, sim.base_url, redis.url)) for i in range(processes)
        ]
        try:
            for instance in instances:
                instance.read(READY_TIMEOUT)
            start = time.monotonic() + START_DELAY
            start_utc = time.time() + START_DELAY
            for instance in instances:
                instance.write({"start_at": start})
            events: list[str] = []
            if mode == "kill":
                events = _redis_outage(redis, start, spec["kill_at"], spec["back_at"])
            wait = start + float(spec.get("duration", 0.0)) + RESULT_GRACE - time.monotonic()
            if mode == "latency":
                wait = 600.0
            results = [instance.read(max(1.0, wait)) for instance in instances]
        finally:
            for instance in instances:
                instance.close()
        # The instances' warm-up calls came before the start.
        records = [r for r in sim.requests if r.path in PATHS and r.received_at >= start]
    params = {k: v for k, v in spec.items() if k not in ("kind", "cpu")}
    if mode == "latency":
        return {"params": params, **latency_summary(results[0])}
    out = analyze(records, results, start=start, spec=spec)
    out["params"] = params
    out["start_utc"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start_utc))
    out["start_second_of_minute"] = round(start_utc % 60.0, 3)  # LiteLLM counts per minute
    if mode == "kill":
        out["kill"] = {"at": spec["kill_at"], "back": spec["back_at"], "events": events}
    return out


# -- analysis (pure) -------------------------------------------------------------------------


def goodput(
    records: Sequence[RecordedRequest], start: float, end: float, rpm: int, tpm: int
) -> dict[str, Any]:
    """Requests and tokens answered ok per 60 s window wholly inside ``[start, end]``.

    Windows start every second from ``start``; each is ``[s, s + 60)`` with ``s + 60 <=
    end``. ``quota`` is the larger share (the binding limit). Runs shorter than a window
    have none: then only ``rate`` (ok requests per second after the first second, as a share
    of ``rpm / 60``) is given.
    """
    ok = sorted((r.received_at, r.usage_tokens or 0) for r in records if r.outcome == "ok")
    anchors = [start + k for k in range(math.floor(end - start - WINDOW) + 1)]
    rows = []
    for anchor in anchors:
        inside = [tokens for at, tokens in ok if anchor <= at < anchor + WINDOW]
        share_r, share_t = len(inside) / rpm, sum(inside) / tpm
        rows.append((share_r, share_t, max(share_r, share_t)))
    steady = [at for at, _ in ok if start + 1.0 <= at < end]
    rate = len(steady) / max(end - start - 1.0, 1e-9) / (rpm / 60.0)

    def spread(values: list[float]) -> dict[str, float] | None:
        if not values:
            return None
        return {"min": min(values), "median": statistics.median(values), "max": max(values)}

    return {
        "windows": len(rows),
        "requests": spread([r[0] for r in rows]),
        "tokens": spread([r[1] for r in rows]),
        "quota": spread([r[2] for r in rows]),
        "rate": rate,
    }


def per_second(times: Iterable[float], start: float, seconds: int) -> list[int]:
    counts = [0] * seconds
    for at in times:
        second = math.floor(at - start)
        if 0 <= second < seconds:
            counts[second] += 1
    return counts


def analyze(
    records: Sequence[RecordedRequest],
    results: Sequence[dict[str, Any]],
    *,
    start: float,
    spec: dict[str, Any],
) -> dict[str, Any]:
    """Peaks, overshoot, goodput and per-instance counts of one run (see the module doc)."""
    rpm, tpm, concurrency = int(spec["rpm"]), int(spec["tpm"]), int(spec["concurrency"])
    duration = float(spec["duration"])
    end = start + duration
    seconds = max(1, math.ceil(duration))
    peaks = window_peaks(records, window=WINDOW)
    outcomes: dict[str, int] = {}
    by_instance: dict[str, list[RecordedRequest]] = {}
    for record in records:
        outcomes[record.outcome] = outcomes.get(record.outcome, 0) + 1
        by_instance.setdefault(record.headers.get(INSTANCE_HEADER, "?"), []).append(record)
    errors: dict[str, int] = {}
    kinds: dict[str, int] = {}
    instances = []
    for result in results:
        for name, count in result["errors"].items():
            errors[name] = errors.get(name, 0) + count
        for kind, count in result.get("error_kinds", {}).items():
            kinds[kind] = kinds.get(kind, 0) + count
        mine = by_instance.get(str(result["index"]), [])
        instances.append(
            {
                **{
                    k: v
                    for k, v in result.items()
                    if not k.endswith("_per_second") and k != "error_kinds"
                },
                "provider_requests": len(mine),
                "provider_tokens": sum(r.usage_tokens or 0 for r in mine),
            }
        )
    small, large = sizes(rpm, tpm)
    modes = sorted({str(result.get("mode")) for result in results})
    return {
        "variant": spec["variant"],
        "mode": modes[0] if len(modes) == 1 else "+".join(modes),
        "note": next((r["note"] for r in results if r.get("note")), None),
        "request_tokens": [request_tokens(small), request_tokens(large)],
        "provider": {
            "requests": len(records),
            "outcomes": dict(sorted(outcomes.items())),
            "tokens": sum(r.usage_tokens or 0 for r in records),
            "unfinished": sum(1 for r in records if r.finished_at is None),
        },
        "peaks": {
            "window": WINDOW,
            "requests": peaks.requests,
            "tokens": peaks.tokens,
            "concurrency": peaks.concurrency,
            "requests_at": _relative(peaks.requests_at, start),
            "tokens_at": _relative(peaks.tokens_at, start),
            "concurrency_at": _relative(peaks.concurrency_at, start),
        },
        "overshoot": {
            "rpm": max(0, peaks.requests - rpm),
            "tpm": max(0, peaks.tokens - tpm),
            "concurrency": max(0, peaks.concurrency - concurrency),
        },
        "goodput": goodput(records, start, end, rpm, tpm),
        "errors": dict(sorted(errors.items())),
        "error_kinds": dict(sorted(kinds.items(), key=lambda kv: -kv[1])),
        "calls": {
            "sent": sum(r["sent"] for r in results),
            "ok": sum(r["ok"] for r in results),
        },
        "instances": instances,
        "per_second": {
            "arrivals": per_second((r.received_at for r in records), start, seconds),
            "ok": [sum(col) for col in zip(*(r["ok_per_second"] for r in results), strict=True)],
            "errors": [
                sum(col) for col in zip(*(r["errors_per_second"] for r in results), strict=True)
            ],
        },
    }


def _relative(at: float | None, start: float) -> float | None:
    return None if at is None else round(at - start, 3)


def latency_summary(result: dict[str, Any]) -> dict[str, Any]:
    """Medians and p99s of the two managers, and their difference (paired by round)."""
    samples = result["samples_ms"]
    added = [r["redis"] - r["memory"] for r in result["rounds_ms"]]

    def quantiles(values: list[float]) -> dict[str, float]:
        ordered = sorted(values)
        p99 = ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]
        return {"p50": statistics.median(ordered), "p99": p99, "n": len(ordered)}

    per_kind = {kind: quantiles(values) for kind, values in samples.items()}
    return {
        "mode": "shared" if not result.get("note") else "no shared budget",
        "note": result.get("note"),
        "latency_ms": per_kind,
        "added_p50_ms": per_kind["redis"]["p50"] - per_kind["memory"]["p50"],
        "added_p99_ms": per_kind["redis"]["p99"] - per_kind["memory"]["p99"],
        "round_added_ms": median_interval(added),
        "rounds": len(result["rounds_ms"]),
    }
