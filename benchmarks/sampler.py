"""Where llmpool's added CPU goes, in situ: ``python -m benchmarks.sampler responses stream``.

A sampling profiler on CPU time (``SIGPROF`` every 0.5 ms of CPU, ``signal.setitimer``) over
the overhead benchmark's variants (``sdk``, ``llmpool``, ``llmpool-run`` on the mock
transport), alternated in short rounds. Unlike cProfile or a tracing profiler, it adds no cost
per call, so code that is cheap in a tight loop but cold next to the SDK's work (the case
here) shows its real share. Python runs a signal handler between bytecodes, so a sample that
lands in C code is charged to the Python frame that called it.

Each sample goes to the innermost frame on the stack that is llmpool's (charged to that
function, with the library code it called: anyio, asyncio, pydantic, ...), the SDK's
(``openai``, ``httpx2``), or this benchmark's (the calling loop); else to ``loop/other``.
"""

from __future__ import annotations

import argparse
import collections
import gc
import signal
import time
from types import FrameType
from typing import Any

import anyio

import llmpool

from . import mock, overhead

INTERVAL = 0.0005  # CPU seconds between samples


_KINDS = {"llmpool": "llmpool", "openai": "sdk", "httpx2": "sdk", "benchmarks": "bench"}


def owner_kind(module: str) -> str | None:
    """Whose code a module is: ``llmpool``, ``sdk``, ``bench`` or ``None`` (anyone else's)."""
    return _KINDS.get(module.partition(".")[0])


class Sampler:
    """Counts samples per owner; the ``leaves`` name library code run for llmpool."""

    def __init__(self) -> None:
        self.owners: collections.Counter[tuple[str, str]] = collections.Counter()
        self.leaves: collections.Counter[tuple[str, str]] = collections.Counter()
        self.samples = 0

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.samples += 1
        leaf, current = frame, frame
        while current is not None:
            code = current.f_code
            module = current.f_globals.get("__name__", "")
            kind = owner_kind(module)
            if kind == "llmpool":
                name = f"{code.co_qualname} ({module}:{code.co_firstlineno})"
                self.owners["llmpool", name] += 1
                if leaf is not None and leaf is not current:
                    where = leaf.f_globals.get("__name__", "?")
                    self.leaves[code.co_name, f"{leaf.f_code.co_qualname} ({where})"] += 1
                return
            if kind is not None:
                self.owners[kind, ""] += 1
                return
            current = current.f_back
        self.owners["loop/other", ""] += 1


async def _sample(
    call: overhead.Call, target: Any, cpu_seconds: float, sampler: Sampler
) -> tuple[int, float]:
    previous = signal.signal(signal.SIGPROF, sampler)
    signal.setitimer(signal.ITIMER_PROF, INTERVAL, INTERVAL)
    requests, start = 0, time.process_time()
    try:
        while time.process_time() - start < cpu_seconds:
            await overhead.batch(call, target, 20, 1)
            requests += 20
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        signal.signal(signal.SIGPROF, previous)
    return requests, time.process_time() - start


async def profile(api: str, stream: bool, seconds: float, rounds: int) -> dict[str, Any]:
    """Sample each variant for ``seconds`` of CPU in all, in ``rounds`` alternations."""
    transport = mock.CannedTransport(api, stream=stream)
    client = overhead._client(transport)
    call = overhead.api_call(api, stream)
    config = llmpool.PoolConfig(pool_size=1)
    factory = overhead._factory(transport)
    async with llmpool.ConnectionManager(config, client_factory=factory) as manager:
        variants = {
            "sdk": (call, client),
            "llmpool": (call, manager),
            "llmpool-run": (overhead._run_of(call), manager),
        }
        for fn, target in variants.values():
            await overhead.batch(fn, target, 200, 1)
        samplers = {name: Sampler() for name in variants}
        requests = collections.Counter[str]()
        cpu: dict[str, float] = collections.defaultdict(float)
        gc.collect()
        gc.freeze()
        try:
            for _ in range(rounds):
                for name, (fn, target) in variants.items():
                    done, spent = await _sample(fn, target, seconds / rounds, samplers[name])
                    requests[name] += done
                    cpu[name] += spent
        finally:
            gc.unfreeze()
    await client.close()
    out: dict[str, Any] = {}
    for name, sampler in samplers.items():
        per = cpu[name] / max(sampler.samples, 1) / requests[name] * 1e6  # µs per sample
        out[name] = {
            "us_per_request": cpu[name] / requests[name] * 1e6,
            "samples": sampler.samples,
            "by_owner": {
                kind: count * per
                for kind, count in _group(sampler.owners).most_common()  # µs per request
            },
            "llmpool_functions": {
                name: count * per
                for (kind, name), count in sampler.owners.most_common()
                if kind == "llmpool"
            },
            "library_code_in_llmpool": {
                f"{owner} -> {leaf}": count * per
                for (owner, leaf), count in sampler.leaves.most_common()
            },
        }
    return out


def _group(owners: collections.Counter[tuple[str, str]]) -> collections.Counter[str]:
    grouped: collections.Counter[str] = collections.Counter()
    for (kind, _), count in owners.items():
        grouped[kind] += count
    return grouped


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sampler", description=__doc__)
    parser.add_argument("api", choices=mock.APIS)
    parser.add_argument("mode", choices=("json", "stream"))
    parser.add_argument("--seconds", type=float, default=20.0, help="CPU seconds per variant")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--min-us", type=float, default=1.0, help="hide smaller lines")
    args = parser.parse_args(argv)
    result = anyio.run(
        profile, args.api, args.mode == "stream", args.seconds, args.rounds, backend=args.backend
    )
    base = result["sdk"]["us_per_request"]
    for name, r in result.items():
        owners = ", ".join(f"{kind} {us:.1f}" for kind, us in r["by_owner"].items())
        print(
            f"{args.api} {args.mode} {args.backend} {name}: {r['us_per_request']:.1f} µs/request"
            f" ({r['us_per_request'] - base:+.1f} vs sdk), {r['samples']} samples; {owners}"
        )
        if name == "sdk":
            continue
        for function, us in r["llmpool_functions"].items():
            if us >= args.min_us:
                print(f"  {us:6.1f} µs  {function}")
        shown = [(k, us) for k, us in r["library_code_in_llmpool"].items() if us >= args.min_us]
        if shown:
            print("  of which library code called by llmpool:")
            for key, us in shown:
                print(f"  {us:6.1f} µs  {key}")


if __name__ == "__main__":
    main()
