"""The ``relay`` scenario: the realtime relay's CPU per frame and added latency, and its gate.

Runs in a worker pinned to the upstream's core (the load generator: the ``websockets``
asyncio client); the upstream (``benchmarks/relayproc.py upstream``: a fast Realtime
endpoint) shares that core, and each relay (``floor``, ``llmpool``) runs alone on the other
and reports its own ``time.process_time()`` and RSS over its control pipe.

1. Steady windows. Per round, in a balanced order that changes per round, each variant
   carries ``sessions`` sessions that each send one ``input_audio_buffer.append`` of
   ``audio_bytes`` bytes of audio (base64) every ``1/rate`` s, phases spread over the
   period; the upstream answers each with one small ``bench.echo`` carrying the frame's
   ``event_id`` and its send time ``t``. ``direct``: the load generator talks to the
   upstream itself; ``floor`` and ``llmpool`` relay. After ``warm`` s, a window of
   ``seconds`` s: the relay's CPU over it divided by the frames it relayed (client frames
   that reached the upstream plus echoes that reached the client), and each echo's round
   trip (send to receipt, ms). Added latency = p99(relay) - p99(direct), paired per
   round; medians over rounds with distribution-free 95 % intervals
   (``design.median_interval``).
2. Gate fuzz. ``fuzz_sessions`` sessions through llmpool (``fuzz_concurrency`` at a time),
   each sending 0-``fuzz_early`` frames at once after connecting, then, after
   ``session.created`` (which the upstream delays by 0-50 ms), 0-``fuzz_after`` more and a
   ``bench.done``; the upstream's ``bench.verdict`` says how many frames it got, how many
   out of order, how many before it had sent ``session.created``. A session passes when all
   arrived, once, in order, none early. The same sessions sent directly
   (``fuzz_direct`` of them) show that the check sees the race a relay must close.
"""

from __future__ import annotations

import asyncio  # noqa: TID251  the load generator runs on asyncio (websockets' client)
import base64
import contextlib
import json
import math
import random
import resource
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from .design import balanced_order, median_interval
from .relayproc import FUZZ_MODEL, MODEL
from .worker import percentiles
from .ws import Proc

VARIANTS = ("direct", "floor", "llmpool")
RELAYS = ("floor", "llmpool")
MODULE = "benchmarks.relayproc"


def _url(port: int, model: str) -> str:
    return f"ws://127.0.0.1:{port}/v1/realtime?model={model}"


async def _connect(url: str) -> ClientConnection:
    return await connect(
        url,
        additional_headers={"Authorization": "Bearer bench"},
        compression=None,
        max_size=None,
        ping_interval=None,
        open_timeout=60,
    )


async def _session(url: str) -> tuple[ClientConnection, float]:
    """A socket whose ``session.created`` has arrived, and ms from connect to it."""
    t0 = time.perf_counter()
    ws = await _connect(url)
    first = json.loads(await ws.recv())
    if first.get("type") != "session.created":
        raise RuntimeError(f"expected session.created, got {first}")
    return ws, (time.perf_counter() - t0) * 1000


async def _open_many(url: str, n: int, batch: int = 100) -> list[tuple[ClientConnection, float]]:
    out: list[tuple[ClientConnection, float]] = []
    for start in range(0, n, batch):
        out += await asyncio.gather(*(_session(url) for _ in range(min(batch, n - start))))
    return out


def _prefix(audio_bytes: int) -> str:
    audio = base64.b64encode(random.Random(1).randbytes(audio_bytes)).decode()
    return f'{{"type":"input_audio_buffer.append","audio":"{audio}","event_id":"'


async def _stats(*procs: Proc | None) -> list[dict[str, Any] | None]:
    async def one(proc: Proc | None) -> dict[str, Any] | None:
        return None if proc is None else await proc.acall(op="stats")

    return list(await asyncio.gather(*(one(p) for p in procs)))


async def _window(
    url: str, relay: Proc | None, upstream: Proc, spec: dict[str, Any], tag: str, seconds: float
) -> dict[str, Any]:
    """One variant's steady window (see the module docstring, 1)."""
    n, rate = spec["sessions"], spec["rate"]
    opened = await _open_many(url, n)
    socks = [ws for ws, _ in opened]
    loop = asyncio.get_running_loop()
    prefix = _prefix(spec["audio_bytes"])
    period = 1.0 / rate
    counts = {"sent": 0, "received": 0}
    rtts: list[float] = []
    late: list[float] = []
    flags = {"measuring": False, "stopping": False}
    drained = asyncio.Event()
    drain_to = [math.inf]  # every frame sent, once the senders have stopped
    start = loop.time() + 0.02

    async def sender(ws: ClientConnection, k: int) -> None:
        due, i = start + period * k / n, 0
        while not flags["stopping"]:
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            elif flags["measuring"]:
                late.append(-wait * 1000)
            await ws.send(f'{prefix}{tag}-{k}-{i}","t":{time.perf_counter()!r}}}')
            counts["sent"] += 1
            i += 1
            due += period

    async def receiver(ws: ClientConnection) -> None:
        async for message in ws:
            now = time.perf_counter()
            event = json.loads(message)
            counts["received"] += 1
            if flags["measuring"]:
                rtts.append((now - event["t"]) * 1000)
            elif counts["received"] >= drain_to[0]:
                drained.set()

    receivers = [asyncio.create_task(receiver(ws)) for ws in socks]
    senders = [asyncio.create_task(sender(ws, k)) for k, ws in enumerate(socks)]
    await asyncio.sleep(spec["warm"])
    relay0, up0 = await _stats(relay, upstream)
    own0, sent0, received0 = time.process_time(), counts["sent"], counts["received"]
    t0 = time.perf_counter()
    flags["measuring"] = True
    await asyncio.sleep(seconds)
    flags["measuring"] = False
    wall = time.perf_counter() - t0
    own1, sent1, received1 = time.process_time(), counts["sent"], counts["received"]
    relay1, up1 = await _stats(relay, upstream)
    assert up0 is not None
    assert up1 is not None
    flags["stopping"] = True
    await asyncio.gather(*senders)
    drain_to[0] = counts["sent"]
    if counts["received"] >= drain_to[0]:
        drained.set()
    with contextlib.suppress(TimeoutError):  # a lost frame: counted below
        await asyncio.wait_for(drained.wait(), 10)
    await asyncio.gather(*(ws.close() for ws in socks))
    await asyncio.gather(*receivers)
    # relayed: the client frames that reached the upstream, and the echoes that reached the
    # client, both within the window (a saturated relay has more sent than it forwarded)
    frames = (up1["frames"] - up0["frames"]) + (received1 - received0)
    window: dict[str, Any] = {
        "seconds": wall,
        "sent": sent1 - sent0,
        "received": received1 - received0,
        "upstream_received": up1["frames"] - up0["frames"],
        "frames": frames,
        "lost": counts["sent"] - counts["received"],
        "rtt_ms": percentiles(rtts),
        "rtt_samples": len(rtts),
        "late_ms": percentiles(late),
        "late_sends": len(late),
        "open_ms": percentiles([ms for _, ms in opened]),
        "upstream_cpu_seconds": up1["cpu"] - up0["cpu"],
        "load_cpu_seconds": own1 - own0,
        "core_share": (up1["cpu"] - up0["cpu"] + own1 - own0) / wall,
    }
    if relay0 is not None and relay1 is not None:
        cpu = relay1["cpu"] - relay0["cpu"]
        window.update(cpu_seconds=cpu, us_per_frame=cpu * 1e6 / max(frames, 1))
        window["cpu_share"] = cpu / wall  # of its core: 1.0 is saturated
        window["rss"] = relay1["rss"]
        window["preempted_per_s"] = (relay1["preempted"] - relay0["preempted"]) / wall
    window["_rtts"] = rtts  # pooled over rounds, then dropped (not in the results)
    return window


async def _fuzz_one(
    url: str, rng: random.Random, spec: dict[str, Any], name: str
) -> dict[str, Any]:
    early, after = rng.randint(0, spec["fuzz_early"]), rng.randint(0, spec["fuzz_after"])
    frame = '{"type":"input_audio_buffer.append","audio":"AAAA","event_id":"%s-%d","i":%d}'
    ws = await _connect(url)
    try:
        for i in range(early):
            await ws.send(frame % (name, i, i))
        first = json.loads(await ws.recv())
        if first.get("type") != "session.created":
            return {"ok": False, "why": f"first event {first.get('type')!r}", "early": early}
        for i in range(early, early + after):
            await ws.send(frame % (name, i, i))
        await ws.send('{"type":"bench.done"}')
        verdict = json.loads(await ws.recv())
    finally:
        await ws.close()
    total = early + after
    ok = verdict.get("type") == "bench.verdict" and (
        verdict["frames"] == total and verdict["out_of_order"] == 0 and verdict["early"] == 0
    )
    return {"ok": ok, "sent": total, "sent_early": early, **verdict}


async def _fuzz(url: str, sessions: int, spec: dict[str, Any], seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    limit = asyncio.Semaphore(spec["fuzz_concurrency"])
    results: list[dict[str, Any]] = []

    async def one(k: int) -> None:
        async with limit:
            try:
                results.append(await _fuzz_one(url, rng, spec, f"f{seed}-{k}"))
            except Exception as exc:  # a refused or broken session is a failed one
                results.append({"ok": False, "why": repr(exc)})

    t0 = time.perf_counter()
    await asyncio.gather(*(one(k) for k in range(sessions)))
    failed = [r for r in results if not r["ok"]]
    return {
        "sessions": sessions,
        "checked": len(results),
        "passed": len(results) - len(failed),
        "failed": len(failed),
        "failures": failed[:5],
        "frames": sum(r.get("sent", 0) for r in results),
        "frames_sent_early": sum(r.get("sent_early", 0) for r in results),
        "frames_seen_early": sum(r.get("early", 0) for r in results),
        "seconds": time.perf_counter() - t0,
    }


def _label(load: list[int] | tuple[int, int]) -> str:
    return f"{load[0]}x{load[1]}"


def _summary(runs: list[dict[str, Any]], pooled: dict[str, list[float]]) -> dict[str, Any]:
    """One load's medians over rounds (per-round values paired within a round)."""

    def per_round(key: str, a: str) -> list[float]:
        return [r["variants"][a][key] for r in runs]

    def added(a: str, b: str, p: str) -> list[float]:
        return [r["variants"][a]["rtt_ms"][p] - r["variants"][b]["rtt_ms"][p] for r in runs]

    rtt = {kind: percentiles(values) for kind, values in pooled.items()}
    llmpool, floor = per_round("us_per_frame", "llmpool"), per_round("us_per_frame", "floor")
    return {
        "cpu": {
            "us_per_frame": {k: median_interval(per_round("us_per_frame", k)) for k in RELAYS},
            "added_us": {
                "llmpool-floor": median_interval(
                    [a - b for a, b in zip(llmpool, floor, strict=True)]
                )
            },
            "core_share": {k: median_interval(per_round("core_share", k)) for k in VARIANTS},
            "relay_share": {k: median_interval(per_round("cpu_share", k)) for k in RELAYS},
            "preempted_per_s": {
                k: median_interval(per_round("preempted_per_s", k)) for k in RELAYS
            },
        },
        "delivered": {  # echoes received in the window per frame sent in it
            k: median_interval(
                [r["variants"][k]["received"] / r["variants"][k]["sent"] for r in runs]
            )
            for k in VARIANTS
        },
        "latency": {
            "rtt_ms": rtt,
            "samples": {kind: len(values) for kind, values in pooled.items()},
            "added_p99_ms": {k: rtt[k]["p99"] - rtt["direct"]["p99"] for k in RELAYS},
            "added_p50_ms": {k: rtt[k]["p50"] - rtt["direct"]["p50"] for k in RELAYS},
            "round_added_p99_ms": {k: median_interval(added(k, "direct", "p99")) for k in RELAYS},
            "round_added_p50_ms": {k: median_interval(added(k, "direct", "p50")) for k in RELAYS},
        },
    }


async def run_async(spec: dict[str, Any]) -> dict[str, Any]:
    load_core, core = spec.get("cpu"), spec.get("measured_cpu")
    loads = [(int(n), int(rate)) for n, rate in spec["loads"]]
    upstream = Proc("upstream", "", load_core, module=MODULE)
    procs: dict[str, Proc] = {}
    try:
        await asyncio.to_thread(upstream.ready)
        base_url = f"http://127.0.0.1:{upstream.port}/v1"
        for kind in RELAYS:
            procs[kind] = Proc(kind, base_url, core, module=MODULE)
        for proc in procs.values():
            await asyncio.to_thread(proc.ready)
        urls = {"direct": _url(upstream.port, MODEL)}
        urls |= {kind: _url(proc.port, MODEL) for kind, proc in procs.items()}
        relays: dict[str, Proc | None] = {"direct": None, **procs}

        async def window(kind: str, load: tuple[int, int], tag: str, seconds: float) -> Any:
            params = {**spec, "sessions": load[0], "rate": load[1]}
            steady = _window(urls[kind], relays[kind], upstream, params, tag, seconds)
            return await procs.get(kind, upstream).watch(steady)

        for kind in VARIANTS:  # imports, first sockets, the relays' HTTP clients
            await window(kind, loads[-1], "warm", spec["warm"])
        runs: dict[str, list[dict[str, Any]]] = {_label(load): [] for load in loads}
        pooled = {_label(load): {kind: [] for kind in VARIANTS} for load in loads}
        for rnd in range(spec["rounds"]):
            for load in loads:
                order = balanced_order(list(VARIANTS), rnd)
                row: dict[str, Any] = {"order": order, "variants": {}}
                for kind in order:
                    result = await window(kind, load, f"r{rnd}", spec["seconds"])
                    pooled[_label(load)][kind] += result.pop("_rtts")
                    row["variants"][kind] = result
                runs[_label(load)].append(row)
        fuzz: dict[str, Any] = {"status": "skipped", "reason": "fuzz_sessions is 0"}
        if spec["fuzz_sessions"]:
            fuzz_url = _url(procs["llmpool"].port, FUZZ_MODEL)
            checked = await procs["llmpool"].watch(
                _fuzz(fuzz_url, spec["fuzz_sessions"], spec, seed=7)
            )
            direct = await upstream.watch(
                _fuzz(_url(upstream.port, FUZZ_MODEL), spec["fuzz_direct"], spec, seed=8)
            )
            keep = ("sessions", "checked", "failed", "frames_sent_early", "frames_seen_early")
            fuzz = {"status": "run", **checked, "direct": {k: direct[k] for k in keep}}
    finally:
        for proc in [*procs.values(), upstream]:
            proc.close()
    return {
        "params": {k: v for k, v in spec.items() if k != "kind"},
        "variants": list(VARIANTS),
        "loads": {
            _label(load): {
                "sessions": load[0],
                "rate": load[1],
                "runs": runs[_label(load)],
                **_summary(runs[_label(load)], pooled[_label(load)]),
            }
            for load in loads
        },
        "fuzz": fuzz,
    }


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """The worker's entry point (``kind: relay``)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    most = max([int(n) for n, _ in spec["loads"]] + [int(spec["fuzz_concurrency"])])
    want = 4 * most + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, want), hard))
    return asyncio.run(run_async(spec))
