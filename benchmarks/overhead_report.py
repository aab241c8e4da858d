"""The ``overhead`` scenario's targets, checks and docs section (used by ``report.py``)."""

from __future__ import annotations

import math
from typing import Any

OVERHEAD_TARGET = 0.02
"""llmpool's added CPU per request: at most 2 % of the SDK's own (the issue's target)."""

RUN_TARGET_US = 17.0
"""``run(no-op)`` CPU per call on asyncio: at or under the 17 µs measured before."""


def overhead_verdict(fraction: dict[str, float], target: float = OVERHEAD_TARGET) -> str:
    """``pass`` when the interval lies at or under ``target``, ``miss`` above, else unresolved."""
    if fraction["hi"] <= target:
        return "pass"
    if fraction["lo"] > target:
        return "miss"
    return "unresolved"


def _row(
    scenario: str, target: str, measured: str, passed: bool | None, verdict: str | None = None
) -> dict[str, Any]:
    """A target row, shaped as ``report.evaluate``'s rows."""
    row = {"scenario": scenario, "target": target, "measured": measured, "passed": passed}
    if verdict is not None:
        row["verdict"] = verdict
    return row


def targets(overhead: dict[str, Any]) -> list[dict[str, Any]]:
    """The target rows: per backend and concurrency, and ``run(no-op)`` per backend."""
    rows: list[dict[str, Any]] = []
    for backend, run in overhead["runs"].items():
        api_cells = [c for c in run["cells"].values() if c["api"] != "run"]
        for concurrency in sorted({c["concurrency"] for c in api_cells}):
            cells = [c for c in api_cells if c["concurrency"] == concurrency]
            verdicts = [overhead_verdict(c["fraction"]) for c in cells]
            worst = max(cells, key=lambda c: c["fraction"]["median"])
            listing = "; ".join(
                f"{_cell_name(c)} {c['added_us']['median']:+.1f} µs = {_pct(c['fraction'])} ({v})"
                for c, v in zip(cells, verdicts, strict=True)
            )
            rows.append(
                _row(
                    f"llmpool's added CPU per request over the raw SDK ({backend}, "
                    f"C={concurrency}, in-process mock transport)",
                    f"<= {OVERHEAD_TARGET:.0%} of the SDK's own CPU per request, JSON and stream"
                    " (95 % interval at or under it)",
                    f"worst {worst['fraction']['median']:.1%}: {listing}",
                    all(v == "pass" for v in verdicts),
                    None if "unresolved" not in verdicts or "miss" in verdicts else "unresolved",
                )
            )
        noop = run["cells"].get("run(no-op) C=1")
        if noop is not None:
            added = noop["added_us"]
            situ = [c["run_added_us"]["median"] for c in api_cells if c["concurrency"] == 1]
            in_situ = (
                f"; around a real SDK call run() adds {min(situ):.0f}-{max(situ):.0f} µs"
                if situ
                else ""
            )
            measured = (
                f"{added['median']:+.1f} µs [{added['lo']:.1f}, {added['hi']:.1f}] over "
                f"calling fn directly{in_situ}"
            )
            if backend == "asyncio":
                rows.append(
                    _row(
                        "run(no-op) CPU per call (asyncio, 1 task)",
                        f"<= {RUN_TARGET_US:g} µs (the figure before this benchmark)",
                        measured,
                        added["hi"] <= RUN_TARGET_US,
                    )
                )
            else:
                rows.append(
                    _row(
                        f"run(no-op) CPU per call ({backend}, 1 task)",
                        "informational (17.6-17.8 µs before)",
                        measured,
                        None,
                        "info",
                    )
                )
    return rows


def _cell_name(cell: dict[str, Any]) -> str:
    if cell["api"] == "run":
        return "run(no-op)"
    api = "responses.create" if cell["api"] == "responses" else "chat.completions.create"
    return f"{api} {'stream' if cell['stream'] else 'JSON'}"


def _pct(interval: dict[str, float]) -> str:
    return f"{interval['median']:.1%} [{interval['lo']:.1%}, {interval['hi']:.1%}]"


def _us(interval: dict[str, float]) -> str:
    return f"{interval['median']:.1f} [{interval['lo']:.1f}, {interval['hi']:.1f}]"


def problems(overhead: dict[str, Any]) -> list[str]:
    """What makes the scenario's results malformed (never timing)."""
    found: list[str] = []

    def number(path: str, value: Any) -> None:
        if not isinstance(value, int | float) or math.isnan(value) or math.isinf(value):
            found.append(f"{path}: not a finite number ({value!r})")

    for backend, run in overhead["runs"].items():
        if not run["cells"]:
            found.append(f"overhead/{backend}: no cells")
        for key, cell in run["cells"].items():
            where = f"overhead/{backend}/{key}"
            for variant, samples in cell["samples_us"].items():
                if len(samples) != run["alternations"]:
                    found.append(f"{where}/{variant}: wrong number of alternations")
                for value in samples:
                    number(f"{where}/{variant}", value)
            number(f"{where}/sdk_us", cell["sdk_us"]["median"])
            number(f"{where}/added_us", cell["added_us"]["median"])
            if cell["api"] != "run":
                number(f"{where}/fraction", cell["fraction"]["median"])
        if run["events_wrong"]:
            found.append(f"overhead/{backend}: wrong event counts {run['events_wrong']}")
        if run["transport_requests"] != run["expected_transport_requests"]:
            found.append(
                f"overhead/{backend}: the transport answered {run['transport_requests']}"
                f" requests, expected {run['expected_transport_requests']}"
            )
    return found


def section(overhead: dict[str, Any]) -> list[str]:
    """The docs section: the method, then a table per backend and a line on the noise."""
    first = next(iter(overhead["runs"].values()))
    out = [
        "## llmpool's added CPU per request (in-process mock transport)",
        "",
        "Both sides talk to the same in-process `httpx2` transport (`benchmarks/mock.py`): "
        "canned Responses and Chat Completions bodies shaped like the API's, SSE streams of "
        f"{first['deltas_per_stream']} text deltas ending with the usage event, OpenAI's "
        "`x-ratelimit-*` headers; no sockets. `sdk` = `AsyncOpenAI(max_retries=0, "
        "http_client=httpx2.AsyncClient(transport=...))`; `llmpool` = the same calls through "
        "`ConnectionManager(PoolConfig(pool_size=1, max_concurrency=C))` whose factory builds "
        "that client; `llmpool-run` = `manager.run(fn)` with `fn` making the SDK call, which "
        "splits llmpool's cost between `run()` and the façade; `transport` = the mock alone, "
        "subtracted to give the SDK's own cost; at C=1 `sdk-again`, a second raw client: the "
        "A/A control (sdk-again - sdk over the SDK's own), which reads what the method finds "
        "when there is nothing to find. JSON = `responses.create` / "
        "`chat.completions.create`; stream = `stream=True` read to the end.",
        "",
        "Method: one client process per backend; each batch is N requests (calibrated so "
        f"the slowest variant's batch takes about {first['batch_seconds']:g} s of CPU; C tasks "
        "share a batch at C > 1), timed with `time.process_time()`; the variants of a cell "
        "run back to back in an order that changes every alternation (rows of a balanced Latin "
        f"square), {first['alternations']} alternations after a warm-up, `gc.collect()` before "
        "each batch with the warmed-up heap frozen. Per alternation: added = llmpool - sdk, "
        "SDK's own = sdk - transport, fraction = added / own. Shown: medians over alternations "
        "with a distribution-free 95 % interval for the median (order statistics: ranks from "
        "the binomial distribution, as the sign test; no bootstrap). Pass: the interval lies "
        f"at or under {OVERHEAD_TARGET:.0%}; miss: above it; unresolved: it straddles it.",
        "",
    ]
    for backend, run in overhead["runs"].items():
        cells = list(run["cells"].values())
        out += [
            f"### {backend}",
            "",
            "| cell | C | SDK µs/req | SDK's own µs/req | llmpool adds µs/req [95 %] | of the"
            " SDK's own [95 %] | run() part µs | façade part µs | A/A control [95 %] | result |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for c in cells:
            if c["api"] == "run":
                if backend != "asyncio":
                    word = "no target"
                elif c["added_us"]["hi"] <= RUN_TARGET_US:
                    word = f"pass (<= {RUN_TARGET_US:g} µs)"
                else:
                    word = f"**miss** (<= {RUN_TARGET_US:g} µs)"
                out.append(
                    f"| run(no-op), against `await fn(client)` | 1 | {c['sdk_us']['median']:.1f}"
                    f" | | {_us(c['added_us'])} | | | | | {word} |"
                )
                continue
            word = overhead_verdict(c["fraction"])
            out.append(
                f"| {_cell_name(c)} | {c['concurrency']} | {c['sdk_us']['median']:.1f} | "
                f"{c['sdk_own_us']['median']:.1f} | {_us(c['added_us'])} | "
                f"{_pct(c['fraction'])} | {c['run_added_us']['median']:.1f} | "
                f"{c['facade_added_us']['median']:.1f} | "
                + (_pct(c["null_fraction"]) if "null_fraction" in c else "")
                + " | "
                + (word if word == "pass" else f"**{word}**")
                + " |"
            )
        spreads = [c["sdk_spread"] for c in cells if c["api"] != "run"]
        iqrs = [c["added_iqr_us"] for c in cells if c["api"] != "run"]
        sizes = [c["requests_per_batch"] for c in cells]
        out += [
            "",
            f"Noise: the SDK's per-batch cost moved by {min(spreads):.1%}-{max(spreads):.1%} "
            "(interquartile range over median) between alternations; the per-alternation "
            f"difference's interquartile range was {min(iqrs):.1f}-{max(iqrs):.1f} µs. "
            f"{min(sizes):,}-{max(sizes):,} requests per batch.",
            "",
        ]
    return out
