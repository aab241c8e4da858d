"""The ``cluster`` scenario's targets, checks, log lines and docs section (for ``report.py``)."""

from __future__ import annotations

import math
from typing import Any

from .ws_report import chunk_verdict, source_lines

GOODPUT_TARGET = 0.97
"""Requests answered per 60 s window, as a share of the binding quota, at least."""

ADDED_ADMISSION_TARGET_MS = 0.5
"""Median added admission latency of the shared Redis store over the in-memory one, at most."""

LABELS = {
    "llmpool": "llmpool, one budget on Redis",
    "llmpool-split": "llmpool, quota split per instance (no Redis)",
    "llmpool-local": "llmpool, every instance the whole quota (no Redis)",
    "litellm": "LiteLLM Router, usage-based-routing-v2 on Redis",
    "litellm-enforce": "LiteLLM Router, enforce_model_rate_limits on Redis",
}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _over(peak: int, over: int) -> str:
    return f"{peak:,} (+{over:,})" if over else f"{peak:,} (0)"


def _goodput(run: dict[str, Any]) -> str:
    g = run["goodput"]
    if not g["windows"]:
        return f"no whole 60 s window; {_pct(g['rate'])} of the request rate"
    q = g["quota"]
    return f"min {_pct(q['min'])}, median {_pct(q['median'])} over {g['windows']} windows"


def _refused(run: dict[str, Any]) -> int:
    return sum(run["errors"].values())


def run_line(run: dict[str, Any]) -> str:
    """One line for the run's log."""
    p, peaks, over = run["params"], run["peaks"], run["overshoot"]
    kind = "kill" if "kill" in run else "load"
    return (
        f"cluster {run['variant']:15s} {kind} ({run['mode']}): peaks "
        f"{_over(peaks['requests'], over['rpm'])} req/{p['rpm']}, "
        f"{_over(peaks['tokens'], over['tpm'])} tok/{p['tpm']:,}, "
        f"{_over(peaks['concurrency'], over['concurrency'])} in flight/{p['concurrency']}; "
        f"goodput {_goodput(run)}; {run['calls']['ok']}/{run['calls']['sent']} calls ok, "
        f"errors {run['errors'] or 'none'}"
    )


def latency_line(latency: dict[str, Any]) -> str:
    ms = latency["latency_ms"]
    return (
        f"cluster admission latency ({latency['mode']}): memory p50 {ms['memory']['p50']:.3f} ms,"
        f" redis p50 {ms['redis']['p50']:.3f} ms, added {_iv(latency['round_added_ms'])} "
        f"(p99 {latency['added_p99_ms']:+.3f} ms)"
    )


def summary(cluster: dict[str, Any]) -> list[str]:
    lines = [run_line(run) for run in (*cluster["runs"].values(), *cluster["kill"].values())]
    if cluster.get("latency") is not None:
        lines.append(latency_line(cluster["latency"]))
    if cluster["litellm"]["status"] != "measured":
        lines.append(f"cluster litellm skipped: {cluster['litellm']['reason']}")
    return lines


def _iv(interval: dict[str, float]) -> str:
    return f"{interval['median']:+.3f} ms [{interval['lo']:+.3f}, {interval['hi']:+.3f}]"


def _load(p: dict[str, Any]) -> str:
    return (
        f"{p['processes']} instances x {p['callers']} callers, {p['offered_factor']:g}x the "
        f"quota offered ({p['rpm']} RPM, {p['tpm']:,} TPM, {p['concurrency']} in flight), "
        f"{p['duration']:g} s"
    )


def _measured(run: dict[str, Any]) -> str:
    peaks, over = run["peaks"], run["overshoot"]
    text = (
        f"peaks {_over(peaks['requests'], over['rpm'])} requests, "
        f"{_over(peaks['tokens'], over['tpm'])} tokens, "
        f"{_over(peaks['concurrency'], over['concurrency'])} in flight; goodput {_goodput(run)}"
    )
    if run["errors"]:
        text += f"; {_refused(run):,} of {run['calls']['sent']:,} calls refused or failed"
    return text


def targets(cluster: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets (llmpool's shared budget, its admission latency), LiteLLM as info."""
    rows: list[dict[str, Any]] = []
    for variant, run in cluster["runs"].items():
        measured = _measured(run)
        if variant == "llmpool" and run["mode"] == "shared":
            over = run["overshoot"]
            g = run["goodput"]
            passed: bool | None = None
            if g["windows"]:
                passed = not any(over.values()) and g["quota"]["min"] >= GOODPUT_TARGET
            rows.append(
                {
                    "scenario": f"{LABELS[variant]}: {_load(run['params'])}",
                    "target": "0 RPM, TPM and concurrency overshoot in every 60 s window at the "
                    f"provider; goodput >= {GOODPUT_TARGET:.0%} of the quota in every window",
                    "measured": measured,
                    "passed": passed,
                }
            )
            continue
        if variant == "llmpool":
            measured = f"{run['mode']} mode ({run.get('note') or 'no shared budget'}): {measured}"
        rows.append(
            {
                "scenario": f"{LABELS.get(variant, variant)}: {_load(run['params'])}",
                "target": "informational",
                "measured": measured,
                "passed": None,
                "verdict": "info",
            }
        )
    for variant, run in cluster["kill"].items():
        kill = run["kill"]
        rows.append(
            {
                "scenario": f"{LABELS.get(variant, variant)}, Redis killed at {kill['at']:g} s "
                f"and back (empty) at {kill['back']:g} s: {_load(run['params'])}",
                "target": "informational (the issue asks what happens)",
                "measured": f"{run['mode']} mode: {_measured(run)}; arrivals during the outage "
                f"{_outage_arrivals(run)}",
                "passed": None,
                "verdict": "info",
            }
        )
    latency = cluster.get("latency")
    if latency is not None:
        interval = latency["round_added_ms"]
        ms = latency["latency_ms"]
        measured = (
            f"added {_iv(interval)} per round (medians: memory {ms['memory']['p50']:.3f} ms, "
            f"Redis {ms['redis']['p50']:.3f} ms; p99 {ms['memory']['p99']:.3f} vs "
            f"{ms['redis']['p99']:.3f} ms)"
        )
        row: dict[str, Any] = {
            "scenario": "added admission latency of the shared Redis budget, one sequential "
            f"call at a time ({latency['rounds']} interleaved rounds, loopback)",
            "target": f"median <= {ADDED_ADMISSION_TARGET_MS:g} ms over the in-memory store",
            "measured": measured,
        }
        if latency["mode"] == "shared":
            word = chunk_verdict(interval, ADDED_ADMISSION_TARGET_MS)
            row["passed"] = word == "pass"
            if word == "unresolved":
                row["verdict"] = word
        else:
            row["measured"] = f"not measured ({latency['note']}): {measured}"
            row["passed"] = None
        rows.append(row)
    return rows


def _outage_arrivals(run: dict[str, Any]) -> str:
    kill = run["kill"]
    arrivals = run["per_second"]["arrivals"]
    lo, hi = math.floor(kill["at"]), math.ceil(kill["back"])
    during = sum(arrivals[lo:hi])
    quota = run["params"]["rpm"] / 60.0 * (hi - lo)
    return f"{during} in {hi - lo} s (the quota's pace: {quota:.0f})"


# -- checks ----------------------------------------------------------------------------------


def problems(cluster: dict[str, Any]) -> list[str]:
    """What makes the results malformed; never timing."""
    out: list[str] = []

    def number(path: str, value: Any, *, positive: bool = False) -> None:
        if not isinstance(value, int | float) or math.isnan(value) or math.isinf(value):
            out.append(f"cluster/{path}: not a finite number ({value!r})")
        elif value < 0 or (positive and value == 0):
            out.append(f"cluster/{path}: expected {'> 0' if positive else '>= 0'}, got {value!r}")

    runs = [(f"runs/{v}", run) for v, run in cluster["runs"].items()]
    runs += [(f"kill/{v}", run) for v, run in cluster["kill"].items()]
    if not runs:
        out.append("cluster: no run")
    for path, run in runs:
        p = run["params"]
        if len(run["instances"]) != p["processes"]:
            out.append(f"cluster/{path}: {len(run['instances'])} instances, not {p['processes']}")
        out += [
            f"cluster/{path}/{instance['index']}: sent nothing"
            for instance in run["instances"]
            if instance["sent"] <= 0
        ]
        if run["provider"]["requests"] <= 0:
            out.append(f"cluster/{path}: nothing reached the provider")
        if run["calls"]["ok"] > run["provider"]["outcomes"].get("ok", 0):
            out.append(f"cluster/{path}: more successes at the callers than at the provider")
        for key in ("requests", "tokens", "concurrency"):
            number(f"{path}/peaks/{key}", run["peaks"][key], positive=True)
        for key, value in run["overshoot"].items():
            number(f"{path}/overshoot/{key}", value)
        number(f"{path}/goodput/rate", run["goodput"]["rate"])
        seconds = math.ceil(p["duration"])
        for key, counts in run["per_second"].items():
            if len(counts) != seconds:
                out.append(f"cluster/{path}/per_second/{key}: {len(counts)} s, not {seconds}")
        if sum(run["per_second"]["arrivals"]) != run["provider"]["requests"]:
            out.append(f"cluster/{path}: per-second arrivals do not add up")
        if "kill" in run and len(run["kill"]["events"]) != 2:
            out.append(f"cluster/{path}: Redis was not killed and restarted")
    latency = cluster.get("latency")
    if latency is not None:
        for kind, q in latency["latency_ms"].items():
            number(f"latency/{kind}/p50", q["p50"], positive=True)
            if q["n"] <= 0:
                out.append(f"cluster/latency/{kind}: no samples")
    lite = cluster["litellm"]
    if lite["status"] == "skipped" and not lite.get("reason"):
        out.append("cluster/litellm: skipped without a reason")
    return out


# -- docs ------------------------------------------------------------------------------------


def _litellm_settings(cluster: dict[str, Any]) -> list[str]:
    from .clusterproc import router_kwargs

    out: list[str] = []
    for variant in ("litellm", "litellm-enforce"):
        run = cluster["runs"].get(variant) or cluster["kill"].get(variant)
        if run is None:
            continue
        p = run["params"]
        kwargs = router_kwargs(
            {**p, "base_url": "<provider>/v1", "redis_url": "redis://127.0.0.1:<port>/0"}
        )
        shown = {k: v for k, v in kwargs.items() if k != "model_list"}
        arguments = ", ".join(
            f"{k}={v if k == 'redis_port' else repr(v)}" for k, v in shown.items()
        )
        params = kwargs["model_list"][0]["litellm_params"]
        held = p["processes"] * params["max_parallel_requests"]
        out.append(
            f"- `{variant}`: `Router({arguments})`, one "
            f"deployment `{params['model']}` with `rpm={params['rpm']}`, `tpm={params['tpm']}`, "
            f"`max_parallel_requests={params['max_parallel_requests']}` (per Router instance: "
            f"{p['processes']} instances may hold {held}) and a fixed `model_info.id`, so "
            "every instance counts on the same Redis keys."
        )
    return out


def _run_table(runs: dict[str, dict[str, Any]]) -> list[str]:
    out = [
        "| variant | mode | RPM peak (over) | TPM peak (over) | in flight peak (over) | "
        "goodput per 60 s window (over 100 %: overshoot) | calls ok / sent | refused or failed "
        "| start: s into its UTC minute |",
        "|---|---|---:|---:|---:|---|---:|---|---:|",
    ]
    for variant, run in runs.items():
        peaks, over = run["peaks"], run["overshoot"]
        errors = ", ".join(f"{k} {v:,}" for k, v in run["errors"].items()) or "none"
        out.append(
            f"| {variant} | {run['mode']} | {_over(peaks['requests'], over['rpm'])} | "
            f"{_over(peaks['tokens'], over['tpm'])} | "
            f"{_over(peaks['concurrency'], over['concurrency'])} | {_goodput(run)} | "
            f"{run['calls']['ok']:,} / {run['calls']['sent']:,} | {errors} | "
            f":{run.get('start_second_of_minute', 0.0):04.1f} |"
        )
    return out


def _refusals(runs: dict[str, dict[str, Any]]) -> list[str]:
    """What the refused or failed calls said, by kind (numbers blanked out as N)."""
    out: list[str] = []
    for variant, run in runs.items():
        kinds = run.get("error_kinds") or {}
        if kinds:
            listed = "; ".join(f"{count:,} x `{kind}`" for kind, count in kinds.items())
            out.append(f"- `{variant}`: {listed}")
    return ["What the refused calls said:", "", *out, ""] if out else []


def _instances(runs: dict[str, dict[str, Any]]) -> list[str]:
    out = [
        "| variant | instance | calls sent | ok | at the provider | tokens there | "
        "p50 / p99 call latency |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for variant, run in runs.items():
        for i in run["instances"]:
            lat = i["latency_ms"]
            out.append(
                f"| {variant} | {i['index']} | {i['sent']:,} | {i['ok']:,} | "
                f"{i['provider_requests']:,} | {i['provider_tokens']:,} | "
                f"{lat['p50']:,.0f} / {lat['p99']:,.0f} ms |"
            )
    return out


def _timeline(run: dict[str, Any]) -> list[str]:
    kill = run["kill"]
    arrivals, errors = run["per_second"]["arrivals"], run["per_second"]["errors"]
    lo = max(0, math.floor(kill["at"]) - 5)
    hi = min(len(arrivals), math.ceil(kill["back"]) + 10)
    seconds = range(lo, hi)
    return [
        "| second | " + " | ".join(str(s) for s in seconds) + " |",
        "|---|" + "---:|" * len(seconds),
        "| arrivals | " + " | ".join(str(arrivals[s]) for s in seconds) + " |",
        "| errors | " + " | ".join(str(errors[s]) for s in seconds) + " |",
    ]


def section(cluster: dict[str, Any]) -> list[str]:
    """The docs page's section on the ``cluster`` scenario."""
    runs = cluster["runs"]
    first = next(iter(runs.values()), None) or next(iter(cluster["kill"].values()))
    p = first["params"]
    small, large = first["request_tokens"]
    out = ["## Several instances, one quota (`cluster`)", ""]
    out += source_lines(cluster.get("source"))
    out += [
        f"{p['processes']} processes (`benchmarks/clusterproc.py`), each an app instance with "
        f"{p['callers']} callers, share one quota of {p['rpm']} requests and {p['tpm']:,} "
        f"tokens per minute and {p['concurrency']} requests in flight, against one "
        "`llmpool.testing.SimulatedProvider` (service time "
        f"{p['latency_min'] * 1000:.0f}-{p['latency_max'] * 1000:.0f} ms, no limit of its own)"
        " and one `llmpool.testing.RedisServer`, fresh for each run. Together the callers "
        f"offer {p['offered_factor']:g}x the quota for {p['duration']:g} s, every caller on a "
        "fixed period at its own phase (a call still waiting delays its caller's next). Calls "
        f"alternate between {small} and {large} tokens (input plus the output cap, which the "
        "provider's usage equals), so the request and the token quotas bind together. What "
        "the provider received is counted there, from its records (`window_peaks`): the most "
        "requests and tokens in any sliding 60 s window and the most requests in flight "
        "(overshoot = peak - limit); goodput = the requests answered in each 60 s window "
        "wholly inside the run (one a second), as a share of the binding quota.",
        "",
    ]
    if runs:
        out += _run_table(runs)
        out += [""]
        out += _refusals(runs)
    notes = {v: r["note"] for v, r in runs.items() if r.get("note")}
    for variant, note in notes.items():
        out += [f"`{variant}` ran in `{runs[variant]['mode']}` mode: {note}.", ""]
    lite = cluster["litellm"]
    if lite["status"] == "measured":
        out += [
            "LiteLLM's settings: its Router with Redis, two ways LiteLLM offers to hold "
            "deployments to their `rpm`/`tpm` across instances. `usage-based-routing-v2` is "
            'the routing strategy documented for it (its source: "meant to work across '
            'instances", counters incremented in Redis; Redis writes batched every 0.1 s); '
            '`enforce_model_rate_limits` is the pre-call check that "actively enforces those '
            'limits across ALL routing strategies". Both count per UTC minute (keys '
            "`<id>:<model>:rpm:<HH-MM>`), and tokens after each call, from its usage: a "
            "sliding window across the turn of a minute can hold two minutes' worth, so "
            "their peaks depend on where in its UTC minute a run starts (the table's last "
            "column). "
            "`max_parallel_requests` is LiteLLM's only concurrency limit, a semaphore per "
            "Router: per instance, not global. `num_retries=0`: a refused call goes back to "
            "its caller at once (LiteLLM does not queue).",
            "",
        ]
        out += _litellm_settings(cluster)
        out += [""]
    else:
        out += [f"LiteLLM skipped: {lite['reason']}.", ""]
    if runs:
        out += ["### Per instance", ""]
        out += _instances(runs)
        out += [""]
    for variant, run in cluster["kill"].items():
        kill = run["kill"]
        out += [
            f"### Redis killed mid-run: {variant}",
            "",
            f"Redis SIGKILLed {kill['at']:g} s into the run and restarted, empty, on the same "
            f"port at {kill['back']:g} s ({'; '.join(kill['events'])}).",
            "",
        ]
        out += _run_table({variant: run})
        out += [""]
        out += _refusals({variant: run})
        out += ["Requests arriving at the provider and errors at the callers, per second:", ""]
        out += _timeline(run)
        out += [""]
    latency = cluster.get("latency")
    if latency is not None:
        ms = latency["latency_ms"]
        out += [
            "### Added admission latency",
            "",
            "One process, one call at a time on a provider without service time, through two "
            "managers open side by side: in-memory stores, and the Redis-backed ones "
            f"(`RedisState.stores()`); {latency['rounds']} rounds, each manager's calls in an "
            "order that alternates per round. Added = the Redis median minus the in-memory "
            "median, per round; its median with a 95 % interval.",
            "",
            "| stores | p50 | p99 | calls |",
            "|---|---:|---:|---:|",
        ]
        for kind, q in ms.items():
            out.append(f"| {kind} | {q['p50']:.3f} ms | {q['p99']:.3f} ms | {q['n']:,} |")
        out += ["", f"Added per round: {_iv(latency['round_added_ms'])}."]
        if latency.get("note"):
            out += ["", f"Not the shared budget yet: {latency['note']}."]
        out.append("")
    return out
