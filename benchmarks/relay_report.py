"""The ``relay`` scenario's targets, checks, log lines and docs section (used by ``report.py``)."""

from __future__ import annotations

import math
from typing import Any

from .ws_report import chunk_verdict, source_lines

FRAME_TARGET_US = 50.0
"""The relay process's CPU per relayed frame (both directions), at most."""

LATENCY_TARGET_MS = 1.0
"""Added p99 round-trip latency over direct, at 100 sessions x 50 frames/s, at most."""


def _iv(interval: dict[str, float], unit: str = "µs", sign: str = "") -> str:
    return (
        f"{interval['median']:{sign}.1f} {unit} [{interval['lo']:{sign}.1f}, "
        f"{interval['hi']:{sign}.1f}]"
    )


def _ms(interval: dict[str, float]) -> str:
    return f"{interval['median']:+.2f} ms [{interval['lo']:+.2f}, {interval['hi']:+.2f}]"


def _row(scenario: str, target: str, measured: str, word: str) -> dict[str, Any]:
    row: dict[str, Any] = {"scenario": scenario, "target": target, "measured": measured}
    row["passed"] = word == "pass"
    if word == "unresolved":
        row["verdict"] = word
    return row


def _target_load(relay: dict[str, Any]) -> dict[str, Any]:
    """The load the latency target is judged at: the most sessions (100 x 50 outside smoke)."""
    loads: list[dict[str, Any]] = list(relay["loads"].values())
    return max(loads, key=lambda load: int(load["sessions"]))


def summary(relay: dict[str, Any]) -> list[str]:
    """One line per measured figure, for the run's log."""
    lines: list[str] = []
    for label, load in relay["loads"].items():
        cpu, lat = load["cpu"], load["latency"]
        lines += [
            f"relay {label:7s} {kind:8s} {_iv(cpu['us_per_frame'][kind])} CPU/frame, "
            f"rtt p99 {lat['rtt_ms'][kind]['p99']:.2f} ms "
            f"(per round {_ms(lat['round_added_p99_ms'][kind])} over direct)"
            for kind in ("floor", "llmpool")
        ]
        lines.append(
            f"relay {label:7s} direct   rtt p50 {lat['rtt_ms']['direct']['p50']:.2f} ms, "
            f"p99 {lat['rtt_ms']['direct']['p99']:.2f} ms"
        )
    fuzz = relay["fuzz"]
    if fuzz["status"] == "run":
        lines.append(
            f"relay gate fuzz: {fuzz['passed']}/{fuzz['checked']} sessions passed, "
            f"{fuzz['frames']} frames ({fuzz['frames_sent_early']} before session.created); "
            f"direct: {fuzz['direct']['failed']}/{fuzz['direct']['checked']} saw the race"
        )
    else:
        lines.append(f"relay gate fuzz skipped: {fuzz['reason']}")
    return lines


def targets(relay: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's two targets (CPU per frame at each load, added p99), and the gate fuzz."""
    p = relay["params"]
    rows: list[dict[str, Any]] = []
    for load in relay["loads"].values():
        per, added = load["cpu"]["us_per_frame"], load["cpu"]["added_us"]["llmpool-floor"]
        rows.append(
            _row(
                f"relay CPU per relayed frame, {load['sessions']} sessions x {load['rate']} "
                f"frames/s ({p['audio_bytes']}-byte audio appends, each echoed; "
                f"{p['rounds']} interleaved rounds)",
                f"<= {FRAME_TARGET_US:g} µs (95 % interval)",
                f"llmpool {_iv(per['llmpool'])}; bare relay {_iv(per['floor'])}; "
                f"llmpool - floor {_iv(added, sign='+')}",
                chunk_verdict(per["llmpool"], FRAME_TARGET_US),
            )
        )
    load = _target_load(relay)
    lat = load["latency"]
    rounds, rtt = lat["round_added_p99_ms"], lat["rtt_ms"]
    rows.append(
        _row(
            f"relay added p99 round trip, {load['sessions']} sessions x {load['rate']} "
            f"frames/s (client -> relay -> upstream echo -> client)",
            f"<= {LATENCY_TARGET_MS:g} ms over direct (per round, paired; 95 % interval)",
            f"llmpool {_ms(rounds['llmpool'])}, floor {_ms(rounds['floor'])}; pooled p99 "
            f"llmpool {rtt['llmpool']['p99']:.2f} vs direct {rtt['direct']['p99']:.2f} ms, "
            f"p50 {rtt['llmpool']['p50']:.2f} vs {rtt['direct']['p50']:.2f} ms",
            chunk_verdict(rounds["llmpool"], LATENCY_TARGET_MS),
        )
    )
    fuzz = relay["fuzz"]
    if fuzz["status"] == "run":
        direct = fuzz["direct"]
        rows.append(
            _row(
                f"relay readiness gate fuzz, {fuzz['sessions']:,} sessions (0-{p['fuzz_early']} "
                "frames before session.created, the upstream ready after 0-50 ms)",
                "every frame upstream once, in order, none before session.created",
                f"{fuzz['passed']:,}/{fuzz['checked']:,} sessions passed, {fuzz['frames']:,} "
                f"frames ({fuzz['frames_sent_early']:,} sent before session.created); "
                f"control, direct to the upstream: {direct['failed']}/{direct['checked']} "
                f"sessions had frames arrive early ({direct['frames_seen_early']:,})",
                "pass" if fuzz["failed"] == 0 and fuzz["checked"] == fuzz["sessions"] else "miss",
            )
        )
    return rows


def problems(relay: dict[str, Any]) -> list[str]:
    """What makes the results malformed (a lost frame, a failed fuzz session); never timing."""
    out: list[str] = []
    p = relay["params"]

    def number(path: str, value: Any) -> None:
        if not isinstance(value, int | float) or math.isnan(value) or math.isinf(value):
            out.append(f"relay/{path}: not a finite number ({value!r})")
        elif value <= 0:
            out.append(f"relay/{path}: expected > 0, got {value!r}")

    variants = relay["variants"]
    if not {"direct", "floor", "llmpool"} <= set(variants):
        out.append(f"relay: variants {variants} lack direct, floor or llmpool")
    if len(relay["loads"]) != len(p["loads"]):
        out.append(f"relay: {len(relay['loads'])} loads, expected {len(p['loads'])}")
    for label, load in relay["loads"].items():
        if len(load["runs"]) != p["rounds"]:
            out.append(f"relay/{label}: {len(load['runs'])} rounds, expected {p['rounds']}")
        for i, run in enumerate(load["runs"]):
            for kind in variants:
                window = run["variants"].get(kind)
                where = f"{label}[{i}]/{kind}"
                if window is None:
                    out.append(f"relay/{where}: no window")
                    continue
                if window["lost"]:
                    out.append(f"relay/{where}: {window['lost']} frames without an echo")
                for key in ("sent", "received", "rtt_samples"):
                    number(f"{where}/{key}", window[key])
                if kind != "direct":
                    number(f"{where}/us_per_frame", window.get("us_per_frame"))
        for kind in ("floor", "llmpool"):
            number(f"{label}/us_per_frame/{kind}", load["cpu"]["us_per_frame"][kind]["median"])
            number(f"{label}/rtt p99/{kind}", load["latency"]["rtt_ms"][kind]["p99"])
    fuzz = relay["fuzz"]
    if fuzz["status"] == "run":
        if fuzz["checked"] != fuzz["sessions"] or fuzz["failed"]:
            out.append(
                f"relay/fuzz: {fuzz['failed']} of {fuzz['checked']} sessions failed "
                f"({fuzz['sessions']} run): {fuzz['failures'][:2]}"
            )
    elif not fuzz.get("reason"):
        out.append("relay/fuzz: skipped without a reason")
    return out


def section(relay: dict[str, Any]) -> list[str]:
    """The docs page's section on the ``relay`` scenario."""
    p = relay["params"]
    out = ["## The realtime relay (`/v1/realtime`)", ""]
    out += source_lines(relay.get("source"))
    out += [
        f"Each relay runs alone on core {p.get('measured_cpu')}; the upstream (a minimal "
        "Realtime endpoint on the `websockets` library's asyncio server: `session.created` at "
        "once, one small `bench.echo` per client frame) and the load generator (the "
        f"`websockets` asyncio client) share core {p.get('cpu')}. Each session sends one "
        f"`input_audio_buffer.append` of {p['audio_bytes']} bytes of audio (base64) every "
        "1/rate s, phases spread over the period; the echo carries the frame's send time. "
        "Variants: `direct` = the load generator on the upstream itself (the baseline); "
        "`floor` = a bare relay (a Starlette WebSocket route under uvicorn with `serve`'s "
        "settings, httpx-ws upstream, forwarding both ways: no gate, no lease); `llmpool` = "
        "`create_app(ServerConfig(base_url=...))` + `serve`. CPU is the relay's own "
        "`time.process_time()` over the window, read over a control pipe, divided by the "
        "frames it relayed (client frames that reached the upstream, plus echoes that reached "
        "the client). Per round, each variant in a "
        f"balanced order that changes per round; {p['rounds']} rounds, windows of "
        f"{p['seconds']:g} s after {p['warm']:g} s at the rate. Medians over rounds with "
        "95 % order-statistic intervals (the range below 6 rounds); added latency is paired "
        "per round.",
        "",
    ]
    for load in relay["loads"].values():
        cpu, lat = load["cpu"], load["latency"]
        out += [
            f"### {load['sessions']} sessions x {load['rate']} frames/s",
            "",
            "| variant | µs CPU per relayed frame | relay's core busy | preempted /s | "
            "round trip p50 | p95 | p99 | max | added p99 per round, paired | "
            "echoes per frame sent | upstream + load generator's core busy |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for kind in relay["variants"]:
            r = lat["rtt_ms"][kind]
            per = cpu["us_per_frame"].get(kind)
            added = lat["round_added_p99_ms"].get(kind)
            busy = cpu.get("relay_share", {}).get(kind)
            preempted = cpu.get("preempted_per_s", {}).get(kind)
            out.append(
                f"| {kind} | {'-' if per is None else _iv(per)} | "
                f"{'-' if busy is None else format(busy['median'], '.0%')} | "
                f"{'-' if preempted is None else format(preempted['median'], '.0f')} | "
                f"{r['p50']:.2f} | {r['p95']:.2f} | {r['p99']:.2f} | {r['max']:.2f} | "
                f"{'-' if added is None else _ms(added)} | "
                f"{load['delivered'][kind]['median']:.3f} | "
                f"{cpu['core_share'][kind]['median']:.0%} |"
            )
        out += [
            "",
            f"llmpool - floor: {_iv(cpu['added_us']['llmpool-floor'], sign='+')} per frame. "
            f"Round trips in ms over all rounds' windows "
            f"({lat['samples']['llmpool']:,} echoes for llmpool).",
            "",
        ]
    fuzz = relay["fuzz"]
    out += ["### Readiness gate fuzz", ""]
    if fuzz["status"] == "run":
        direct = fuzz["direct"]
        out += [
            f"{fuzz['sessions']:,} sessions through llmpool, {p['fuzz_concurrency']} at a time: "
            f"each sends 0-{p['fuzz_early']} frames at once after connecting, 0-"
            f"{p['fuzz_after']} more after `session.created` (the upstream sends it after "
            "a random 0-50 ms), then `bench.done`; the upstream, reading from the first "
            "moment, answers how many frames arrived, how many out of order and how many "
            f"before it had sent `session.created`. **{fuzz['passed']:,} of "
            f"{fuzz['checked']:,} passed**: {fuzz['frames']:,} frames, "
            f"{fuzz['frames_sent_early']:,} of them sent before `session.created`, none early "
            f"at the upstream, none lost or reordered ({fuzz['seconds']:.1f} s). Control: the "
            f"same sessions sent directly to the upstream ({direct['checked']}) had "
            f"{direct['frames_seen_early']:,} frames arrive before `session.created` "
            f"({direct['failed']} sessions): the check sees the race the gate closes.",
            "",
        ]
    else:
        out += [f"Skipped: {fuzz['reason']}.", ""]
    return out
