"""The ``ws`` scenario: llmpool.server's CPU per chunk, first-chunk latency and idle memory.

Runs in a worker pinned to the upstream's core (the load generator); each measured process
(``benchmarks/wsproc.py``: ``sdk``, ``floor``, ``llmpool``, ``litellm``) is pinned alone to
the other core, and reports its own ``time.process_time()`` and RSS over its control pipe.

1. CPU per chunk: per repeat, in a balanced order that changes per repeat, each variant
   serves ``clients`` conversations of ``turns`` streamed turns (``chunks`` text deltas
   each); its CPU over the window divided by the text deltas delivered. ``sdk`` streams the
   same turns itself (the SDK's own stream cost), the servers relay them over WebSockets.
   Differences are paired within a repeat; medians with distribution-free 95 % intervals.
2. First-chunk latency: per round, ``burst`` fresh sockets (or ``burst`` direct SDK
   streams) send one message each at the same moment; send to first chunk frame (first
   text delta). Added = p99(server) - p99(sdk) per round (paired), and over all rounds'
   samples. A second set of processes streams from a paced upstream (``ttft_ms`` before
   the first event, then one every ``interval_ms``, as a model writes): an instant upstream
   would make this a test of how fast one core parses 100 whole streams.
3. Idle memory: a fresh server process, warmed by one socket and one turn; RSS before and
   after ``idle`` sockets on distinct sessions each got a pong for a ping.
"""

from __future__ import annotations

import asyncio  # noqa: TID251  the load generator runs on asyncio (websockets' client)
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

from websockets.asyncio.client import ClientConnection, connect

from .design import balanced_order, median_interval
from .worker import percentiles

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("sdk", "floor", "llmpool", "litellm")
SERVERS = ("floor", "llmpool")  # measured for idle memory (LiteLLM: see NOTES.md)
DIFFERENCES = (("llmpool", "sdk"), ("floor", "sdk"), ("llmpool", "floor"), ("litellm", "sdk"))
MESSAGE = "Say hello to the benchmark."
T = TypeVar("T")


class Proc:
    """A measured process and its control pipe (one JSON line each way)."""

    def __init__(
        self, kind: str, base_url: str, cpu: int | None, module: str = "benchmarks.wsproc"
    ) -> None:
        command = [sys.executable, "-m", module, kind, base_url]
        if cpu is not None:
            command += ["--cpu", str(cpu)]
        self.kind = kind
        self.log = tempfile.TemporaryFile("w+")  # noqa: SIM115  closed by close()
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            cwd=ROOT,
        )
        self.port = -1
        self.key = ""

    def ready(self) -> Proc:
        line = self._read()
        self.port, self.key = int(line["ready"]), line.get("key", "")
        return self

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            code = self.process.wait()
            raise RuntimeError(f"the {self.kind} process exited ({code}): {self.tail()}")
        data: dict[str, Any] = json.loads(line)
        return data

    def tail(self, chars: int = 2000) -> str:
        """The end of the process's stderr."""
        self.log.seek(0)
        return self.log.read()[-chars:]

    async def watch(self, what: Awaitable[T]) -> T:
        """Await ``what``; a failure names this process and carries its stderr's end."""
        try:
            return await what
        except Exception as exc:
            state = self.process.poll()
            raise RuntimeError(
                f"{self.kind} ({'running' if state is None else f'exited {state}'}): "
                f"{exc!r}\n{self.tail()}"
            ) from exc

    def call(self, op: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(op) + "\n")
        self.process.stdin.flush()
        return self._read()

    async def acall(self, **op: Any) -> dict[str, Any]:
        return await asyncio.to_thread(self.call, op)

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout, self.log):
            if pipe is not None:
                pipe.close()


class Sock:
    """One client socket of a server, speaking that server's protocol."""

    def __init__(self, ws: ClientConnection, kind: str) -> None:
        self.ws, self.kind = ws, kind
        self.previous: str | None = None  # litellm: the last response's id

    async def turn(self, counts: dict[str, int]) -> float:
        """Send one message, read to the turn's end; returns ms from send to first chunk."""
        if self.kind == "litellm":
            request: dict[str, Any] = {"type": "response.create", "model": "bench-model"}
            request["input"] = [{"role": "user", "content": MESSAGE}]
            if self.previous is not None:
                request["previous_response_id"] = self.previous
            chunk, done = "response.output_text.delta", "response.completed"
        else:
            request = {"type": "message", "message": MESSAGE}
            chunk, done = "chunk", "complete"
        t0 = time.perf_counter()
        await self.ws.send(json.dumps(request))
        first = 0.0
        while True:
            frame = json.loads(await self.ws.recv())
            kind = frame["type"]
            if kind == chunk:
                if not first:
                    first = (time.perf_counter() - t0) * 1000
                counts["frames"] += 1
                counts["deltas"] += bool(frame.get("content", frame.get("delta")))
            elif kind == done:
                if self.kind == "litellm":
                    self.previous = frame["response"]["id"]
                counts["streams"] += 1
                return first
            elif kind in ("error", "response.failed"):
                raise RuntimeError(f"{self.kind}: {frame}")


async def _open(proc: Proc, session: str) -> Sock:
    if proc.kind == "litellm":
        path, headers = "/v1/responses?model=bench-model", {"Authorization": f"Bearer {proc.key}"}
    else:
        path, headers = f"/ws/chat/{session}", {}
    ws = await connect(
        f"ws://127.0.0.1:{proc.port}{path}",
        additional_headers=headers,
        compression=None,
        max_size=None,
        ping_interval=None,
        open_timeout=60,
    )
    return Sock(ws, proc.kind)


async def _open_many(proc: Proc, prefix: str, n: int, batch: int = 100) -> list[Sock]:
    socks: list[Sock] = []
    for start in range(0, n, batch):
        count = min(batch, n - start)
        socks += await asyncio.gather(*(_open(proc, f"{prefix}-{start + i}") for i in range(count)))
    return socks


async def _close(socks: list[Sock]) -> None:
    await asyncio.gather(*(s.ws.close() for s in socks))


def _counts() -> dict[str, int]:
    return {"frames": 0, "deltas": 0, "streams": 0}


async def _cpu_window(proc: Proc, tag: str, clients: int, turns: int) -> dict[str, Any]:
    """One variant's CPU over ``clients`` x ``turns`` turns (sockets open before the window)."""
    if proc.kind == "sdk":
        before = await proc.acall(op="stats")
        result = await proc.acall(op="streams", concurrency=clients, turns=turns, message=MESSAGE)
        after = await proc.acall(op="stats")
        counts = {k: result[k] for k in ("deltas", "events", "streams")}
    else:
        counts = _counts()
        socks = await _open_many(proc, tag, clients)

        async def one(sock: Sock) -> None:
            for _ in range(turns):
                await sock.turn(counts)

        before = await proc.acall(op="stats")
        await asyncio.gather(*(one(s) for s in socks))
        after = await proc.acall(op="stats")
        await _close(socks)
    cpu = after["cpu"] - before["cpu"]
    return {**counts, "cpu_seconds": cpu, "us_per_chunk": cpu * 1e6 / max(counts["deltas"], 1)}


async def _burst(proc: Proc, tag: str, n: int) -> list[float]:
    """``n`` first-chunk latencies, ms: one message (or direct stream) each, all at once."""
    if proc.kind == "sdk":
        result = await proc.acall(op="streams", concurrency=n, turns=1, message=MESSAGE)
        return list(result["first_ms"])
    counts = _counts()
    socks = await _open_many(proc, tag, n)
    try:
        return list(await asyncio.gather(*(s.turn(counts) for s in socks)))
    finally:
        await _close(socks)


async def _idle(proc: Proc, n: int) -> dict[str, Any]:
    """RSS growth of a fresh server for ``n`` idle sockets on distinct sessions."""
    warm = await _open(proc, "warm")
    await warm.turn(_counts())
    await warm.ws.close()
    await asyncio.sleep(0.5)
    before = (await proc.acall(op="stats"))["rss"]
    socks = await _open_many(proc, "idle", n)

    async def ping(sock: Sock) -> None:
        await sock.ws.send('{"type":"ping"}')
        frame = json.loads(await sock.ws.recv())
        if frame["type"] != "pong":
            raise RuntimeError(f"expected a pong, got {frame}")

    await asyncio.gather(*(ping(s) for s in socks))
    await asyncio.sleep(0.5)
    after = (await proc.acall(op="stats"))["rss"]
    await _close(socks)
    return {"sockets": n, "rss_before": before, "rss_after": after, "rss_added": after - before}


async def _start(procs: dict[str, Proc], litellm: dict[str, Any]) -> None:
    """Wait for every process; a LiteLLM proxy that cannot start is skipped, with why."""
    for kind, proc in list(procs.items()):
        try:
            await asyncio.to_thread(proc.ready)
        except RuntimeError as exc:
            if not kind.startswith("litellm"):
                raise
            litellm.update(status="skipped", reason=f"the proxy did not start: {exc}")
            procs.pop(kind).close()


async def run_async(spec: dict[str, Any]) -> dict[str, Any]:
    base_url = f"{spec['server']}/chunks={spec['chunks']}/v1"
    pace = f"latency_ms={spec['ttft_ms']},interval_ms={spec['interval_ms']}"
    paced_url = f"{spec['server']}/chunks={spec['chunks']},{pace}/v1"
    core = spec.get("measured_cpu")
    clients, turns, repeats = spec["clients"], spec["turns"], spec["repeats"]
    litellm: dict[str, Any] = {"status": "skipped", "reason": spec.get("litellm_skip", "")}
    kinds = [k for k in VARIANTS if k != "litellm" or not spec.get("litellm_skip")]
    procs = {kind: Proc(kind, base_url, core) for kind in kinds}
    paced = procs  # first-chunk latency (smoke: the same processes, unpaced)
    if spec["ttft_ms"] or spec["interval_ms"]:
        paced = {kind: Proc(kind, paced_url, core) for kind in kinds}
    every = [procs] if paced is procs else [procs, paced]
    fresh = {kind: procs[kind] for kind in SERVERS}  # idle RSS (smoke: the warm processes)
    if spec["fresh_idle"]:
        fresh = {kind: Proc(kind, base_url, core) for kind in SERVERS}
        every.append(fresh)
    try:
        for group in every:
            await _start(group, litellm)
        if "litellm" in procs and "litellm" not in paced:
            procs.pop("litellm").close()
        if "litellm" in procs:
            litellm = {"status": "measured", "path": "WebSocket /v1/responses (hosted_vllm)"}
        variants = list(procs)
        for kind in variants:  # imports, upstream connections, first streams
            await procs[kind].watch(_cpu_window(procs[kind], f"warm-{kind}", clients, 2))
            await paced[kind].watch(_burst(paced[kind], f"warmburst-{kind}", spec["burst"]))
        runs: list[dict[str, Any]] = []
        for repeat in range(repeats):
            order = balanced_order(variants, repeat)
            row: dict[str, Any] = {"order": order, "variants": {}}
            for kind in order:
                window = _cpu_window(procs[kind], f"c{repeat}", clients, turns)
                row["variants"][kind] = await procs[kind].watch(window)
            runs.append(row)
        samples: dict[str, list[float]] = {kind: [] for kind in variants}
        round_p99: dict[str, list[float]] = {kind: [] for kind in variants}
        for rnd in range(spec["rounds"]):
            for kind in balanced_order(variants, rnd):
                firsts = await paced[kind].watch(_burst(paced[kind], f"b{rnd}", spec["burst"]))
                samples[kind] += firsts
                round_p99[kind].append(percentiles(firsts)["p99"])
        idle = {kind: await proc.watch(_idle(proc, spec["idle"])) for kind, proc in fresh.items()}
    finally:
        for proc in [p for group in every for p in group.values()]:
            proc.close()

    def per_repeat(a: str, b: str | None = None) -> list[float]:
        return [
            r["variants"][a]["us_per_chunk"] - (r["variants"][b]["us_per_chunk"] if b else 0.0)
            for r in runs
        ]

    first = {kind: percentiles(values) for kind, values in samples.items()}
    servers = [k for k in variants if k != "sdk"]
    return {
        "params": {k: v for k, v in spec.items() if k not in ("kind", "server")},
        "variants": variants,
        "cpu": {
            "runs": runs,
            "us_per_chunk": {kind: median_interval(per_repeat(kind)) for kind in variants},
            "added_us": {
                f"{a}-{b}": median_interval(per_repeat(a, b))
                for a, b in DIFFERENCES
                if a in variants and b in variants
            },
        },
        "latency": {
            "first_chunk_ms": first,
            "added_p99_ms": {k: first[k]["p99"] - first["sdk"]["p99"] for k in servers},
            "round_added_p99_ms": {
                k: median_interval(
                    [s - d for s, d in zip(round_p99[k], round_p99["sdk"], strict=True)]
                )
                for k in servers
            },
            "samples_ms": {k: [round(v, 3) for v in vs] for k, vs in samples.items()},
        },
        "idle": idle,
        "litellm": litellm,
    }


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """The worker's entry point (``kind: ws``)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 2 * int(spec["idle"]) + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, want), hard))
    return asyncio.run(run_async(spec))
