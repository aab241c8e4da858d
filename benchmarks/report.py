"""From a results document to targets, ``docs/performance.md`` and a PNG chart.

``evaluate`` checks the issue's targets; ``validate`` checks a document is well formed (what
``--smoke`` asserts: never timing); ``markdown`` renders the page; ``chart`` draws
throughput and CPU per request per client (matplotlib, from the ``bench`` extra). The
``overhead``, ``ws``, ``relay`` and ``cluster`` scenarios' parts of each are in
``overhead_report.py``, ``ws_report.py``, ``relay_report.py`` and ``cluster_report.py``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from . import cluster_report, overhead_report, relay_report, ws_report

NOTES = Path(__file__).with_name("NOTES.md")
"""Hand-written findings (profiles, fixes) inserted into the generated page."""


def _target(
    scenario: str, target: str, measured: str, passed: bool | None, verdict: str | None = None
) -> dict[str, Any]:
    """One target row; ``verdict`` overrides the word shown for ``passed`` (e.g. ``info``)."""
    row = {"scenario": scenario, "target": target, "measured": measured, "passed": passed}
    if verdict is not None:
        row["verdict"] = verdict
    return row


def verdict(row: dict[str, Any]) -> str:
    """The word for a target row: pass, miss, info or not measured."""
    if "verdict" in row:
        return str(row["verdict"])
    return {True: "pass", False: "miss", None: "not measured"}[row["passed"]]


def evaluate(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets against ``doc``; ``passed`` is ``None`` where not measured."""
    scenarios = doc["scenarios"]
    rows: list[dict[str, Any]] = []
    tp = scenarios.get("throughput")
    if tp is not None and "llmpool" in tp["variants"] and "raw" in tp["variants"]:
        cells = tp["cells"].values()
        cpu = [
            (c["median"]["llmpool"]["cpu_vs_raw"], c) for c in cells if c["concurrency"] in (16, 64)
        ]
        if cpu:
            worst, _ = max(cpu, key=lambda pair: pair[0])
            listing = ", ".join(
                f"{c['api']} C={c['concurrency']} {c['latency_ms']}ms: {r:.2f}x" for r, c in cpu
            )
            rows.append(
                _target(
                    "CPU per request through llmpool vs raw SDK, throughput grid over loopback",
                    "informational: the grid cannot resolve a few % (the overhead scenario does)",
                    f"worst {worst:.2f}x ({listing})",
                    None,
                    "info",
                )
            )
        pool = [
            c
            for c in cells
            if c["api"] == "json" and c["concurrency"] == 64 and c["latency_ms"] == 0
        ]
        for c in pool:
            m = c["median"]
            rr = m.get("raw-4rr", {}).get("rps_vs_raw")
            rows.append(
                _target(
                    "default pool vs one raw client, C=64 JSON (0 ms)",
                    ">= 1.15x throughput",
                    f"{m['llmpool']['rps_vs_raw']:.2f}x"
                    + (f" (4 round-robin raw clients: {rr:.2f}x)" if rr else ""),
                    m["llmpool"]["rps_vs_raw"] >= 1.15,
                )
            )
        if "litellm" in tp["variants"]:
            vs = [(c["median"]["llmpool"]["rps"] / c["median"]["litellm"]["rps"], c) for c in cells]
            worst, _ = min(vs, key=lambda pair: pair[0])
            rows.append(
                _target(
                    "vs LiteLLM Router, same concurrency",
                    ">= 2.5x throughput",
                    f"worst {worst:.2f}x, best {max(v for v, _ in vs):.2f}x over {len(vs)} cells",
                    worst >= 2.5,
                )
            )
        else:
            rows.append(
                _target(
                    "vs LiteLLM Router, same concurrency",
                    ">= 2.5x throughput",
                    "not measured: " + tp["skipped"].get("litellm", "litellm skipped"),
                    None,
                )
            )
    overhead = scenarios.get("overhead")
    if overhead is not None:
        rows += overhead_report.targets(overhead)
    sched = scenarios.get("scheduler")
    if sched is not None:
        us = sched["us_per_pair"]
        rows.append(
            _target(
                "scheduler: contended acquire+release",
                "<= 2x asyncio.Semaphore",
                f"{sched['ratio_vs_asyncio_semaphore']:.2f}x ({us['llmpool Scheduler']:.2f} µs"
                f" vs {us['asyncio.Semaphore']:.2f} µs)",
                sched["ratio_vs_asyncio_semaphore"] <= 2.0,
            )
        )
    memory = scenarios.get("memory")
    if memory is not None:
        own = memory["bytes_per_queued_request_llmpool"]
        total = memory["bytes_per_queued_request_total"]
        bare = memory["bytes_per_waiting_task_baseline"]
        rows.append(
            _target(
                f"memory per queued request at {memory['queued']:,} queued",
                "<= 1.5 KB",
                f"{own / 1024:.2f} KB llmpool's own ({total / 1024:.2f} KB with the caller's"
                f" task, {bare / 1024:.2f} KB of which a bare waiting task)",
                own <= 1536,
            )
        )
    storm = scenarios.get("storm")
    if storm is not None:
        for mode, r in storm["runs"].items():
            rows.append(
                _target(
                    f"429 storm ({mode}): 600 RPM burst 10, 3x offered "
                    f"for {r['window_seconds']:.0f} s",
                    "goodput >= 95 % of quota; 429s <= 2 % of calls; 0 lost",
                    f"goodput {r['goodput_vs_quota']:.1%}; 429s {r['share_429']:.2%}"
                    f" ({r['server_429']}/{r['server_calls']}); lost {r['lost']}",
                    r["goodput_vs_quota"] >= 0.95 and r["share_429"] <= 0.02 and r["lost"] == 0,
                )
            )
    hintless = scenarios.get("hintless")
    if hintless is not None:
        r = hintless["runs"]["llmpool"]
        raw = hintless["runs"]["raw-sdk"]
        # The first wave (one per slot) cannot be avoided; then at most 5 probes.
        limit = r.get("concurrency", 10) + 5
        rows.append(
            _target(
                f"hintless 429 storm: {r['callers']} callers, {r['storm_seconds']:g} s of 429s"
                " without a hint, then 200s",
                f"every caller succeeds; <= {limit} requests during the storm",
                f"{r['succeeded']}/{r['callers']} succeeded, {r['requests_during_storm']} requests"
                f" during the storm (raw SDK: {raw['succeeded']}/{raw['callers']},"
                f" {raw['requests_during_storm']})",
                r["succeeded"] == r["callers"] and r["requests_during_storm"] <= limit,
            )
        )
    prio = scenarios.get("priority")
    if prio is not None:
        high = prio["by_class"]["high"]["queue_wait_ms"]["p95"]
        rows.append(
            _target(
                "priority under saturation, mixed classes",
                "HIGH p95 queue wait <= one upstream service time",
                f"HIGH p95 {high:.1f} ms vs service p50 {prio['service_ms_p50']:.1f} ms"
                f" ({prio['high_p95_wait_vs_service']:.2f}x)",
                prio["high_p95_wait_vs_service"] <= 1.0,
            )
        )
    ws = scenarios.get("ws")
    if ws is not None:
        rows += ws_report.targets(ws)
    relay = scenarios.get("relay")
    if relay is not None:
        rows += relay_report.targets(relay)
    cluster = scenarios.get("cluster")
    if cluster is not None:
        rows += cluster_report.targets(cluster)
    return rows


def validate(doc: dict[str, Any]) -> list[str]:
    """Problems that make ``doc`` malformed (empty list: well formed). Never checks timing."""
    problems: list[str] = []

    def number(path: str, value: Any, *, positive: bool = True) -> None:
        if not isinstance(value, int | float) or math.isnan(value) or math.isinf(value):
            problems.append(f"{path}: not a finite number ({value!r})")
        elif positive and value <= 0:
            problems.append(f"{path}: expected > 0, got {value!r}")

    problems += [
        f"missing {key!r}" for key in ("settings", "machine", "scenarios") if key not in doc
    ]
    scenarios = doc.get("scenarios", {})
    tp = scenarios.get("throughput")
    if tp is not None:
        for key, cell in tp["cells"].items():
            for variant in tp["variants"]:
                summary = cell["median"][variant]
                for field in ("rps", "cpu_ms_per_request", "server_cpu_ms_per_request"):
                    number(f"{key}/{variant}/{field}", summary[field])
                for p in ("p50", "p95", "p99"):
                    number(f"{key}/{variant}/latency {p}", summary["latency_ms"][p])
                if summary["errors"]:
                    problems.append(f"{key}/{variant}: {summary['errors']} failed requests")
                if len(cell["runs"][variant]) != doc["settings"]["repeats"]:
                    problems.append(f"{key}/{variant}: wrong number of repeats")
    overhead = scenarios.get("overhead")
    if overhead is not None:
        problems += overhead_report.problems(overhead)
    sched = scenarios.get("scheduler")
    if sched is not None:
        for name, value in sched["us_per_pair"].items():
            number(f"scheduler/{name}", value)
    memory = scenarios.get("memory")
    if memory is not None:
        number("memory/total", memory["bytes_per_queued_request_total"])
        if memory["completed_after_drain"] != memory["queued"] + 1:
            problems.append("memory: not every queued request completed after the drain")
    storm = scenarios.get("storm")
    if storm is not None:
        for mode, r in storm["runs"].items():
            number(f"storm/{mode}/goodput", r["goodput_rps"])
            if r["server_calls"] < r["outcomes"].get("ok", 0):
                problems.append(f"storm/{mode}: more successes than calls reached the upstream")
            if sum(r["outcomes"].values()) != r["offered"]:
                problems.append(f"storm/{mode}: outcomes do not add up to the offered requests")
    hintless = scenarios.get("hintless")
    if hintless is not None:
        for variant, r in hintless["runs"].items():
            if sum(r["outcomes"].values()) != r["callers"]:
                problems.append(f"hintless/{variant}: outcomes do not add up to the callers")
    ws = scenarios.get("ws")
    if ws is not None:
        problems += ws_report.problems(ws)
    relay = scenarios.get("relay")
    if relay is not None:
        problems += relay_report.problems(relay)
    cluster = scenarios.get("cluster")
    if cluster is not None:
        problems += cluster_report.problems(cluster)
    prio = scenarios.get("priority")
    if prio is not None:
        for name, c in prio["by_class"].items():
            if c["started"] == 0:
                problems.append(f"priority/{name}: no request of this class started")
    return problems


def merge(doc: dict[str, Any], other: dict[str, Any], shown: str) -> None:
    """Add ``other``'s scenarios to ``doc``, each marked with the run it comes from."""
    machine, settings = other["machine"], other["settings"]
    source = {
        "results": shown,
        "mode": settings["mode"],
        "date_utc": machine["date_utc"],
        "git": machine["git"],
        "loadavg_before": machine["loadavg_before"],
        "loadavg_after": machine.get("loadavg_after"),
    }
    for name, scenario in other["scenarios"].items():
        doc["scenarios"][name] = {**scenario, "source": source}


def _fmt(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def markdown(doc: dict[str, Any], *, results_path: str, chart_path: str | None) -> str:
    """The ``docs/performance.md`` page for ``doc``."""
    machine = doc["machine"]
    settings = doc["settings"]
    scenarios = doc["scenarios"]
    out: list[str] = [
        "# Performance",
        "",
        "<!-- Generated by `python -m benchmarks` from "
        f"`{results_path}`; hand-written findings come from `benchmarks/NOTES.md`. -->",
        "",
        f"Measured {machine['date_utc']} on llmpool `{machine['git']}` "
        f"({settings['mode']} run, {settings['repeats']} repeat(s), medians). "
        "Raw numbers per repeat are in the results JSON.",
        "",
        "## Targets",
        "",
        "| scenario | target | measured | result |",
        "|---|---|---|---|",
    ]
    for row in evaluate(doc):
        word = verdict(row)
        shown = f"**{word}**" if word in ("miss", "unresolved") else word
        out.append(f"| {row['scenario']} | {row['target']} | {row['measured']} | {shown} |")
    if NOTES.exists():
        out += ["", NOTES.read_text().strip()]
    out += ["", "## How to reproduce", "", _REPRODUCE.strip(), ""]
    out += _machine_section(machine, settings)
    overhead = scenarios.get("overhead")
    if overhead is not None:
        out += overhead_report.section(overhead)
    tp = scenarios.get("throughput")
    if tp is not None:
        out += _throughput_section(tp, settings, chart_path)
    out += _micro_sections(scenarios)
    if "ws" in scenarios:
        out += ws_report.section(scenarios["ws"])
    if "relay" in scenarios:
        out += relay_report.section(scenarios["relay"])
    if "cluster" in scenarios:
        out += cluster_report.section(scenarios["cluster"])
    return "\n".join(out).rstrip() + "\n"


_REPRODUCE = """
```sh
make bench                                  # installs the bench extra + LiteLLM, full run
.venv/bin/python -m benchmarks --quick      # one repeat, shorter storm (~8 min)
.venv/bin/python -m benchmarks --smoke      # seconds; part of `make test`, asserts no timing
.venv/bin/python -m benchmarks --scenario storm --duration 20
.venv/bin/python -m benchmarks --scenario overhead --alternations 60   # narrower intervals
.venv/bin/python -m benchmarks.sampler responses stream   # where llmpool's CPU goes, in situ
.venv/bin/python -m benchmarks --quick --scenario relay --output benchmarks/results/relay.json
.venv/bin/python -m benchmarks --scenario cluster --output benchmarks/results/cluster.json # 12 min
.venv/bin/python -m benchmarks --from-results benchmarks/results/full.json \
    benchmarks/results/ws.json benchmarks/results/relay.json \
    benchmarks/results/cluster.json    # re-render docs (this page)
```

`make bench` installs `.[bench]` (matplotlib, uvloop, httptools, pyinstrument), then LiteLLM:
litellm 1.109 declares `certifi>=2026.10.19`, which the package index used here does not
have, so its other dependencies are installed from `benchmarks/litellm-deps.txt` and litellm
itself with `pip install --no-deps "litellm==1.109.*"`. If that fails, the LiteLLM column is
skipped with a note and everything else still runs.

How it measures: the upstream (`benchmarks/server.py`: a raw ASGI app under uvicorn with
httptools and uvloop, responses from pre-encoded templates) runs in one process pinned to one
core for the whole run; each measurement runs in a fresh client process pinned to the other
core (`os.sched_setaffinity`). A throughput measurement is a closed loop of C callers, each
repeating one chat completion (JSON, or a stream of 5 chunks read to the end), against
`/latency_ms=L/v1` (the upstream waits L ms before answering). After a warm-up, a window
opens: requests completing inside it count; client CPU is `resource.getrusage(RUSAGE_SELF)`
at its edges, upstream CPU likewise in the server. Runs are interleaved (repeat -> cell ->
variant, the variants in the order of a balanced Latin square row that changes per repeat);
the tables show medians over repeats and ratios to `raw` from the same run. The grid cannot
resolve a few per cent of CPU (see the findings); llmpool's own cost is measured by the
`overhead` scenario, described in its section, in one process without sockets.
"""


def _machine_section(machine: dict[str, Any], settings: dict[str, Any]) -> list[str]:
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v)
    load_before = ", ".join(f"{x:.2f}" for x in machine["loadavg_before"])
    load_after = ", ".join(f"{x:.2f}" for x in machine.get("loadavg_after", ()))
    return [
        "## Machine notes",
        "",
        f"- CPU: {machine['cpu_model'] or 'unknown'}, {machine['cpus']} cores; upstream on core "
        f"{machine['server_core']}, clients on core {machine['client_core']}.",
        f"- Python {machine['python']} on {machine['platform']}.",
        f"- Versions: {versions}.",
        f"- Load average (1, 5, 15 min) before: {load_before}; after: {load_after}. Other "
        "engineers' jobs share this machine; a load well above 1 before the run means some "
        "numbers are pessimistic, ratios from the same run less so.",
        f"- Window {settings['duration']} s after {settings['warmup']} s warm-up per "
        f"measurement; {settings['repeats']} repeat(s); the whole run took "
        f"{machine.get('elapsed_seconds', 0) / 60:.1f} min.",
        "",
    ]


def _throughput_section(
    tp: dict[str, Any], settings: dict[str, Any], chart_path: str | None
) -> list[str]:
    out = ["## Throughput, CPU and latency per client", ""]
    if chart_path:
        out += [f"![throughput and CPU per request per client]({chart_path})", ""]
    out += [
        "Clients: `raw` = one `AsyncOpenAI(max_retries=0)` behind an `asyncio.Semaphore(C)`; "
        "`raw-retries` = the same with the SDK's default 2 retries; `tenacity` = `raw` inside "
        "tenacity `AsyncRetrying`; `raw-4rr` = 4 raw clients round-robin; `llmpool` = "
        "`ConnectionManager(PoolConfig(max_concurrency=C))` (5 pooled clients) through "
        "`manager.chat.completions.create`; `litellm` = LiteLLM `Router`, one deployment.",
        "",
    ]
    for skipped, why in tp["skipped"].items():
        out += [f"`{skipped}` skipped: {why}.", ""]
    for key, cell in tp["cells"].items():
        out += [
            f"### {key}",
            "",
            "| client | req/s | vs raw | client CPU ms/req | vs raw | p50 ms | p95 ms | p99 ms |"
            " upstream CPU ms/req |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for variant in tp["variants"]:
            m = cell["median"][variant]
            lat = m["latency_ms"]
            out.append(
                f"| {variant} | {_fmt(m['rps'])} | {m.get('rps_vs_raw', 1):.2f}x | "
                f"{m['cpu_ms_per_request']:.3f} | {m.get('cpu_vs_raw', 1):.2f}x | "
                f"{_fmt(lat['p50'])} | {_fmt(lat['p95'])} | {_fmt(lat['p99'])} | "
                f"{m['server_cpu_ms_per_request']:.3f} |"
            )
        out.append("")
    return out


def _micro_sections(scenarios: dict[str, Any]) -> list[str]:
    out: list[str] = []
    sched = scenarios.get("scheduler")
    if sched is not None:
        p = sched["params"]
        out += [
            "## Scheduler: contended acquire + release",
            "",
            f"{p['tasks']} tasks share {p['limit']} slots; each does {p['ops_per_task']} x "
            "(acquire, one `await asyncio.sleep(0)` holding the slot, release), on asyncio; "
            f"median of {p['repeats']} interleaved repeats. The floor is the same loop with no "
            "lock.",
            "",
            "| primitive | µs per acquire+release |",
            "|---|---:|",
        ]
        out += [f"| {name} | {value:.2f} |" for name, value in sched["us_per_pair"].items()]
        out.append("")
    memory = scenarios.get("memory")
    if memory is not None:
        out += [
            "## Memory per queued request",
            "",
            f"`ConnectionManager(max_concurrency=1)` with one call holding the slot and "
            f"{memory['queued']:,} `run` calls queued behind it, each in its own task "
            "(tracemalloc, after `gc.collect()`). The baseline is the same number of tasks "
            "each waiting on an `anyio.Event`: what any caller costs before llmpool.",
            "",
            "| measure | bytes per request |",
            "|---|---:|",
            f"| queued in llmpool, caller's task included | "
            f"{memory['bytes_per_queued_request_total']:,.0f} |",
            f"| bare waiting task (baseline) | {memory['bytes_per_waiting_task_baseline']:,.0f} |",
            f"| llmpool's own | {memory['bytes_per_queued_request_llmpool']:,.0f} |",
            "",
        ]
    storm = scenarios.get("storm")
    if storm is not None:
        out += [
            "## 429 storm",
            "",
            "The upstream enforces 600 requests per minute with a burst of 10 (a token bucket; "
            "429 with `retry-after`/`retry-after-ms`, `x-ratelimit-*` on every response, 20 ms "
            "service time). An open loop offers 30 requests/s (3x) through "
            "`ConnectionManager(max_concurrency=16)` for the window; goodput counts successes "
            "inside it. Requests still queued when the window closes are cancelled and "
            "reported as pending (not lost: they were never sent). Modes: `configured` = "
            "`RateLimitPolicy(requests_per_minute=600, burst=1.0)`; `learned` = the default "
            "policy, learning from the headers; `retries-only` = llmpool before "
            "`RateLimitPolicy`."
            + (
                ""
                if storm["rate_limit_policy"]
                else " `llmpool.RateLimitPolicy` did not exist at this revision."
            ),
            "",
            "| mode | offered req/s | goodput req/s | of quota | calls | 429s | share | shed |"
            " lost | retries | outcomes |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for mode, r in storm["runs"].items():
            outcomes = ", ".join(f"{k}: {v}" for k, v in sorted(r["outcomes"].items()))
            out.append(
                f"| {mode} | {r['offered_rps']:.1f} | {r['goodput_rps']:.2f} | "
                f"{r['goodput_vs_quota']:.1%} | {r['server_calls']} | {r['server_429']} | "
                f"{r['share_429']:.2%} | {r['shed']} | {r['lost']} | {r['retries']} | {outcomes} |"
            )
        out.append("")
    hintless = scenarios.get("hintless")
    if hintless is not None:
        first = next(iter(hintless["runs"].values()))
        out += [
            "## 429 storm without hints",
            "",
            f"{first['callers']} callers start at once; the simulated provider answers every "
            f"request with a 429 that carries no `Retry-After` and no `x-ratelimit-*` for "
            f"{first['storm_seconds']:g} s, then 200s (20 ms service time). `llmpool`: "
            "`PoolConfig(max_concurrency=10, queue_timeout=60)` with the default circuit "
            "breaker; `llmpool-no-breaker`: the same with `CircuitPolicy(enabled=False)`; "
            "`raw-sdk`: one `AsyncOpenAI` with its default `max_retries=2`, every caller at once.",
            "",
            "| variant | requests during the storm | requests in all | succeeded | last done s |"
            " outcomes |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for variant, r in hintless["runs"].items():
            outcomes = ", ".join(f"{k}: {v}" for k, v in sorted(r["outcomes"].items()))
            out.append(
                f"| {variant} | {r['requests_during_storm']} | {r['requests_total']} | "
                f"{r['succeeded']}/{r['callers']} | {r['last_done_seconds']:.1f} | {outcomes} |"
            )
        out.append("")
    prio = scenarios.get("priority")
    if prio is not None:
        out += [
            "## Priority under saturation",
            "",
            f"An open loop offers {prio['offered_rps']:.0f} requests/s (capacity "
            f"{prio['capacity_rps']:.0f}/s: 4 slots x 50 ms) mixed 20 % HIGH, 40 % NORMAL, "
            "40 % LOW. Queue wait is submission to the first call of `fn` "
            f"(`manager.with_options(priority=...).run(fn)`); measured service time p50 "
            f"{prio['service_ms_p50']:.1f} ms.",
            "",
            "| class | started | pending at end | wait p50 ms | p95 ms | p99 ms |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, c in prio["by_class"].items():
            w = c["queue_wait_ms"]
            out.append(
                f"| {name} | {c['started']} | {c['pending_at_end']} | {w['p50']:.1f} | "
                f"{w['p95']:.1f} | {w['p99']:.1f} |"
            )
        out.append("")
    return out


def chart(doc: dict[str, Any], path: Path) -> bool:
    """Draw throughput and CPU per request per client; ``False`` without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    tp = doc["scenarios"].get("throughput")
    if tp is None:
        return False
    cells = list(tp["cells"].items())
    variants = tp["variants"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 8), sharex=True)
    width = 0.8 / len(variants)
    xs = range(len(cells))
    for i, variant in enumerate(variants):
        offsets = [x + (i - (len(variants) - 1) / 2) * width for x in xs]
        top.bar(offsets, [c["median"][variant]["rps"] for _, c in cells], width, label=variant)
        bottom.bar(offsets, [c["median"][variant]["cpu_ms_per_request"] for _, c in cells], width)
    top.set_ylabel("requests / s (higher is better)")
    bottom.set_ylabel("client CPU ms / request (lower is better)")
    bottom.set_xticks(list(xs), [k.replace(" latency=", "\n") for k, _ in cells], fontsize=8)
    top.legend(ncols=len(variants), fontsize=8, loc="upper right")
    top.set_title(f"llmpool vs other clients ({doc['settings']['mode']} run, medians)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
